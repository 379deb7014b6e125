#pragma once
// A prepared SQLite statement that finalizes itself: the one wrapper the
// store's metadata and the build cache (both in meta.db) use.

#include <sqlite3.h>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "image/metadata.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// The error of a failed SQLite call on `db` (result code `rc`): a full disk
/// (SQLITE_FULL, or an I/O error whose system errno is ENOSPC/EDQUOT) is
/// Errc::no_space naming the database, anything else Errc::io.
inline Unexpected sql_fail(sqlite3* db, int rc, std::string_view label, std::string_view what) {
  int sys = sqlite3_system_errno(db);
  int primary = rc & 0xff;
  if (primary == SQLITE_FULL || (primary == SQLITE_IOERR && (sys == ENOSPC || sys == EDQUOT))) {
    return fail(Errc::no_space, fmt::format("no space left on device while writing {}", label));
  }
  return fail(Errc::io, fmt::format("{}: {}", label, what));
}

/// A prepared statement on `db`; errors (also a failed prepare, reported at
/// the first step) name `label`, the database as users know it.
class SqlStmt {
public:
  SqlStmt(sqlite3* db, const char* sql, const char* label = k_meta_db_file) : m_db(db), m_label(label) {
    m_rc = sqlite3_prepare_v2(db, sql, -1, &m_stmt, nullptr);
  }
  ~SqlStmt() { sqlite3_finalize(m_stmt); }
  SqlStmt(const SqlStmt&) = delete;
  SqlStmt& operator=(const SqlStmt&) = delete;

  /// Fails when the statement did not prepare.
  Result<void> prepared() const {
    if (m_rc != SQLITE_OK) {
      return fail(Errc::io, fmt::format("{}: {}", m_label, sqlite3_errmsg(m_db)));
    }
    return ok();
  }
  /// Binds text to parameter i (1-based).
  SqlStmt& bind(int i, const std::string& s) {
    sqlite3_bind_text(m_stmt, i, s.c_str(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  /// Binds an integer to parameter i (1-based).
  SqlStmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(m_stmt, i, v);
    return *this;
  }
  /// Steps through every remaining row, calling `on_row()` at each (read
  /// the row's columns from this statement).
  template <class F>
  Result<void> each_row(F&& on_row) {
    while (true) {
      TRY(bool row, step());
      if (!row) {
        return ok();
      }
      on_row();
    }
  }
  /// Steps once: true when a row is available.
  Result<bool> step() {
    TRY_VOID(prepared());
    int rc = sqlite3_step(m_stmt);
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    return sql_fail(m_db, rc, m_label, sqlite3_errmsg(m_db));
  }
  /// Steps once, for statements that return no rows.
  Result<void> run() {
    TRY(bool row, step());
    (void)row;
    return ok();
  }
  /// Steps through every row, collecting column 0 as text.
  Result<std::vector<std::string>> first_column_texts() {
    std::vector<std::string> out;
    while (true) {
      TRY(bool row, step());
      if (!row) {
        return out;
      }
      out.push_back(text(0));
    }
  }
  /// Makes the statement ready to run again (bindings are kept until
  /// rebound), so a loop prepares it once.
  void reset() { sqlite3_reset(m_stmt); }
  /// Column col of the current row as text ("" for NULL).
  std::string text(int col) {
    const unsigned char* t = sqlite3_column_text(m_stmt, col);
    return t != nullptr ? std::string(reinterpret_cast<const char*>(t)) : std::string();
  }
  /// Column col of the current row as an integer.
  int64_t integer(int col) { return sqlite3_column_int64(m_stmt, col); }

private:
  sqlite3* m_db;
  const char* m_label;
  sqlite3_stmt* m_stmt = nullptr;
  int m_rc = SQLITE_OK;
};

/// Runs `sql` (no results) on `db`; an error names `label`.
/// How long a statement waits for another writer before SQLITE_BUSY.
inline constexpr int k_sql_busy_timeout_ms = 60'000;

/// Opens the SQLite database at `path` with sqlite3_open_v2 `flags`
/// (SQLITE_OPEN_NOMUTEX added) and the busy timeout; errors name the path.
/// The caller owns (and closes) the handle.
inline Result<sqlite3*> sql_open(const std::filesystem::path& path, int flags) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = raw != nullptr ? sqlite3_errmsg(raw) : "out of memory";
    sqlite3_close(raw);
    return fail(Errc::io, fmt::format("open {}: {}", path.string(), msg));
  }
  sqlite3_busy_timeout(raw, k_sql_busy_timeout_ms);
  return raw;
}

inline Result<void> sql_exec(sqlite3* db, const char* sql, const char* label = k_meta_db_file) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    return sql_fail(db, rc, label, msg);
  }
  return ok();
}

}  // namespace imgbuild::image
