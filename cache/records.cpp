#include "cache/records.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "image/sql_stmt.hpp"
#include "util/fault.hpp"

namespace imgbuild::cache {

namespace {

constexpr int k_begin_attempts = 20;

// Statements on the cache tables; errors say which part of meta.db failed.
class Stmt : public image::SqlStmt {
public:
  Stmt(sqlite3* db, const char* sql) : SqlStmt(db, sql, "meta.db (cache)") {}
};

constexpr const char* k_columns =
    "SELECT key, parent_key, position, kind, blob_digest, diff_id, media_type, blob_size, diff_size, config, "
    "created_by, inputs, created_at, last_used, COALESCE(content_size, -1) FROM cache_records";

CacheRecord read_record(Stmt& s) {
  CacheRecord r;
  r.key = s.text(0);
  r.parent_key = s.text(1);
  r.position = static_cast<int>(s.integer(2));
  r.kind = s.text(3);
  r.layer.blob_digest = s.text(4);
  r.layer.diff_id = s.text(5);
  r.layer.media_type = s.text(6);
  r.layer.blob_size = s.integer(7);
  r.layer.diff_size = s.integer(8);
  r.config = s.text(9);
  r.created_by = s.text(10);
  r.inputs = s.text(11);
  r.created_at = s.integer(12);
  r.last_used = s.integer(13);
  r.layer.content_size = s.integer(14);
  return r;
}

// Rolls back unless committed.
class Tx {
public:
  Tx(sqlite3* db) : m_db(db) {}
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;
  ~Tx() {
    if (m_open) {
      sqlite3_exec(m_db, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }
  Result<void> commit() {
    m_open = false;
    char* err = nullptr;
    if (sqlite3_exec(m_db, "COMMIT", nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : sqlite3_errmsg(m_db);
      sqlite3_free(err);
      sqlite3_exec(m_db, "ROLLBACK", nullptr, nullptr, nullptr);
      return fail(Errc::io, fmt::format("meta.db (cache): commit: {}", msg));
    }
    return ok();
  }

private:
  sqlite3* m_db;
  bool m_open = true;
};

}  // namespace

Result<std::unique_ptr<CacheDb>> CacheDb::open(const std::filesystem::path& path) {
  TRY(sqlite3* raw, image::sql_open(path, SQLITE_OPEN_READWRITE));
  std::unique_ptr<CacheDb> db(new CacheDb(raw));
  TRY_VOID(db->exec("PRAGMA journal_mode=WAL"));
  // NORMAL in WAL mode: a commit is not fsync'd (a checkpoint is). A
  // killed process loses nothing; a power loss can lose the last commits,
  // never the database's consistency, and a lost commit only leaves blobs
  // (fsync'd before it) that nothing names, which prune removes.
  TRY_VOID(db->exec("PRAGMA synchronous=NORMAL"));
  Stmt s(raw, "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='cache_records'");
  TRY(bool row, s.step());
  if (!row || s.integer(0) == 0) {
    return fail(Errc::corrupt, fmt::format("{}: no cache_records table (schema not migrated)", path.string()));
  }
  return db;
}

CacheDb::CacheDb(sqlite3* db) : m_db(db) {}

CacheDb::~CacheDb() {
  m_stat_lookup.reset();  // finalized before the connection closes
  sqlite3_close(m_db);
}

Result<void> CacheDb::exec(const char* sql) { return image::sql_exec(m_db, sql, "meta.db (cache)"); }

Result<void> CacheDb::begin_immediate() {
  // The busy timeout already waits for other writers; a BUSY that still
  // comes back (e.g. a WAL checkpoint race) is retried a few times.
  for (int attempt = 0;; ++attempt) {
    int rc = sqlite3_exec(m_db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) {
      return ok();
    }
    if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) {
      return image::sql_fail(m_db, rc, "meta.db (cache)", fmt::format("begin: {}", sqlite3_errmsg(m_db)));
    }
    if (attempt + 1 >= k_begin_attempts) {
      return fail(Errc::io, "meta.db (cache): the database stayed locked by another writer");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50 * (attempt + 1)));
  }
}

Result<std::optional<CacheRecord>> CacheDb::get(const std::string& key) {
  std::lock_guard lock(m_mu);
  Stmt s(m_db, fmt::format("{} WHERE key = ?", k_columns).c_str());
  s.bind(1, key);
  TRY(bool row, s.step());
  if (!row) {
    return std::optional<CacheRecord>();
  }
  return std::optional<CacheRecord>(read_record(s));
}

Result<std::optional<CacheRecord>> CacheDb::previous(const std::string& parent_key, int position) {
  std::lock_guard lock(m_mu);
  Stmt s(m_db, fmt::format("{} WHERE parent_key = ? AND position = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                           k_columns)
                   .c_str());
  s.bind(1, parent_key).bind(2, int64_t{position});
  TRY(bool row, s.step());
  if (!row) {
    return std::optional<CacheRecord>();
  }
  return std::optional<CacheRecord>(read_record(s));
}

Result<std::vector<std::string>> CacheDb::build_traces(const std::string& identity) {
  std::lock_guard lock(m_mu);
  Stmt s(m_db, "SELECT trace FROM build_traces WHERE identity = ? ORDER BY finished_at DESC, rowid DESC");
  s.bind(1, identity);
  return s.first_column_texts();
}

Result<void> CacheDb::put_build_trace(const std::string& identity, int64_t at, const std::string& trace, int keep) {
  std::lock_guard lock(m_mu);
  TRY_VOID(begin_immediate());
  Tx tx(m_db);
  Stmt add(m_db, "INSERT INTO build_traces(identity, finished_at, trace) VALUES (?, ?, ?)");
  add.bind(1, identity).bind(2, at).bind(3, trace);
  TRY_VOID(add.run());
  Stmt trim(m_db,
            "DELETE FROM build_traces WHERE identity = ? AND rowid NOT IN (SELECT rowid FROM build_traces WHERE "
            "identity = ? ORDER BY finished_at DESC, rowid DESC LIMIT ?)");
  trim.bind(1, identity).bind(2, identity).bind(3, int64_t{keep});
  TRY_VOID(trim.run());
  return tx.commit();
}

Result<void> CacheDb::put(const CacheRecord& r, const std::function<Result<void>()>& in_transaction) {
  std::lock_guard lock(m_mu);
  TRY_VOID(begin_immediate());
  Tx tx(m_db);
  if (in_transaction) {
    TRY_VOID(in_transaction());
  }
  Stmt s(m_db,
         "INSERT INTO cache_records(key, parent_key, position, kind, blob_digest, diff_id, media_type, blob_size, "
         "diff_size, config, created_by, inputs, created_at, last_used, content_size) "
         "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULLIF(?,-1)) "
         "ON CONFLICT(key) DO UPDATE SET blob_digest=excluded.blob_digest, diff_id=excluded.diff_id, "
         "media_type=excluded.media_type, blob_size=excluded.blob_size, diff_size=excluded.diff_size, "
         "config=excluded.config, created_by=excluded.created_by, inputs=excluded.inputs, "
         "last_used=excluded.last_used, content_size=excluded.content_size");
  s.bind(1, r.key).bind(2, r.parent_key).bind(3, int64_t{r.position}).bind(4, r.kind);
  s.bind(5, r.layer.blob_digest).bind(6, r.layer.diff_id).bind(7, r.layer.media_type);
  s.bind(8, r.layer.blob_size).bind(9, r.layer.diff_size).bind(10, r.config).bind(11, r.created_by);
  s.bind(12, r.inputs).bind(13, r.created_at).bind(14, r.last_used).bind(15, r.layer.content_size);
  TRY_VOID(s.run());
  fault::point("cache-put");  // the layer blob is published, the record not yet committed
  return tx.commit();
}

Result<void> CacheDb::touch(const std::vector<std::string>& keys, int64_t now) {
  if (keys.empty()) {
    return ok();
  }
  std::lock_guard lock(m_mu);
  TRY_VOID(begin_immediate());
  Tx tx(m_db);
  for (const auto& key : keys) {
    Stmt s(m_db, "UPDATE cache_records SET last_used = ? WHERE key = ? AND last_used < ?");
    s.bind(1, now).bind(2, key).bind(3, now);
    TRY_VOID(s.run());
  }
  return tx.commit();
}

Result<void> CacheDb::remove(const std::string& key) {
  std::lock_guard lock(m_mu);
  Stmt s(m_db, "DELETE FROM cache_records WHERE key = ?");
  s.bind(1, key);
  return s.run();
}

Result<std::vector<CacheRecord>> CacheDb::list() {
  std::lock_guard lock(m_mu);
  Stmt s(m_db, fmt::format("{} ORDER BY last_used DESC, created_at DESC, key", k_columns).c_str());
  std::vector<CacheRecord> out;
  TRY_VOID(s.each_row([&] {
    out.push_back(read_record(s));
  }));
  return out;
}

Result<std::vector<std::string>> CacheDb::image_blobs() {
  std::lock_guard lock(m_mu);
  Stmt s(m_db, "SELECT DISTINCT blob_digest FROM image_blobs ORDER BY blob_digest");
  return s.first_column_texts();
}

Result<PruneResult> CacheDb::prune(const PruneOptions& options, int64_t now,
                                   const std::function<Result<uint64_t>(const std::string&)>& remove_blob) {
  std::lock_guard lock(m_mu);
  TRY_VOID(begin_immediate());
  Tx tx(m_db);
  std::vector<CacheRecord> all;
  {
    Stmt s(m_db, fmt::format("{} ORDER BY last_used ASC, created_at ASC, key", k_columns).c_str());
    TRY_VOID(s.each_row([&] {
      all.push_back(read_record(s));
    }));
  }
  std::set<std::string> image_refs;
  {
    Stmt s(m_db, "SELECT DISTINCT blob_digest FROM image_blobs");
    TRY_VOID(s.each_row([&] {
      image_refs.insert(s.text(0));
    }));
  }
  auto leased = [&](image::LeaseKind kind, const std::string& id) {
    return options.leases != nullptr && options.leases->holds(kind, id);
  };
  PruneResult result;
  std::set<std::string> held;  // leased records: never doomed
  for (const auto& r : all) {
    if (leased(image::LeaseKind::record, r.key)) {
      held.insert(r.key);
    }
  }
  std::set<std::string> doomed;
  for (const auto& r : all) {
    if (options.all || (options.unused_for_sec > 0 && now - r.last_used >= options.unused_for_sec)) {
      if (held.count(r.key) != 0) {
        ++result.leased;
      } else {
        doomed.insert(r.key);
      }
    }
  }
  if (options.keep_storage > 0) {
    // Bytes of cache-only layers still kept, counted once per blob.
    std::map<std::string, int> users;
    std::map<std::string, uint64_t> sizes;
    for (const auto& r : all) {
      if (doomed.count(r.key) == 0 && r.has_layer() && image_refs.count(r.layer.blob_digest) == 0) {
        ++users[r.layer.blob_digest];
        sizes[r.layer.blob_digest] = static_cast<uint64_t>(std::max<int64_t>(r.layer.blob_size, 0));
      }
    }
    uint64_t total = 0;
    for (const auto& [d, n] : sizes) {
      total += n;
    }
    for (const auto& r : all) {  // least recently used first
      if (total <= options.keep_storage) {
        break;
      }
      if (doomed.count(r.key) != 0 || held.count(r.key) != 0) {
        continue;
      }
      doomed.insert(r.key);
      if (r.has_layer() && users.count(r.layer.blob_digest) != 0 && --users[r.layer.blob_digest] == 0) {
        total -= sizes[r.layer.blob_digest];
      }
    }
  }
  std::set<std::string> candidate_blobs;
  std::map<std::string, std::string> diff_of;  // candidate blob → its diff_id
  for (const auto& r : all) {
    if (doomed.count(r.key) == 0) {
      continue;
    }
    Stmt s(m_db, "DELETE FROM cache_records WHERE key = ?");
    s.bind(1, r.key);
    TRY_VOID(s.run());
    ++result.records;
    if (r.has_layer()) {
      candidate_blobs.insert(r.layer.blob_digest);
      diff_of[r.layer.blob_digest] = r.layer.diff_id;
    }
  }
  std::set<std::string> gone_diffs;
  for (const auto& d : candidate_blobs) {
    if (image_refs.count(d) != 0 || leased(image::LeaseKind::blob, d)) {
      continue;
    }
    Stmt s(m_db, "SELECT COUNT(*) FROM cache_records WHERE blob_digest = ?");
    s.bind(1, d);
    TRY(bool row, s.step());
    if (row && s.integer(0) > 0) {
      continue;
    }
    TRY(uint64_t freed, remove_blob(d));
    result.reclaimed += freed;
    result.blobs.push_back(d);
    Stmt del(m_db, "DELETE FROM layers WHERE blob_digest = ?");
    del.bind(1, d);
    TRY_VOID(del.run());
    if (!diff_of[d].empty()) {
      gone_diffs.insert(diff_of[d]);
    }
  }
  // An unpacked layer directory is per diff_id: another blob of the same
  // layer (another compression) or a remaining record may still use it.
  for (const auto& diff : gone_diffs) {
    Stmt s(m_db,
           "SELECT (SELECT COUNT(*) FROM layers WHERE diff_id = ?1) + "
           "(SELECT COUNT(*) FROM cache_records WHERE diff_id = ?1)");
    s.bind(1, diff);
    TRY(bool row, s.step());
    if (row && s.integer(0) == 0 && !leased(image::LeaseKind::layer, diff)) {
      result.diff_ids.push_back(diff);
    }
  }
  TRY_VOID(tx.commit());
  return result;
}

Result<std::vector<StatEntry>> CacheDb::stat_entries() {
  std::lock_guard lock(m_mu);
  Stmt s(m_db, "SELECT dev, ino, size, mtime_ns, ctime_ns, digest, ifnull(xattrs, -1) FROM stat_index");
  std::vector<StatEntry> out;
  TRY_VOID(s.each_row([&] {
    StatEntry e;
    e.dev = static_cast<uint64_t>(s.integer(0));
    e.ino = static_cast<uint64_t>(s.integer(1));
    e.size = s.integer(2);
    e.mtime_ns = s.integer(3);
    e.ctime_ns = s.integer(4);
    e.digest = s.text(5);
    e.xattrs = static_cast<int>(s.integer(6));
    out.push_back(std::move(e));
  }));
  return out;
}

Result<std::optional<StatEntry>> CacheDb::stat_entry(uint64_t dev, uint64_t ino) {
  std::lock_guard lock(m_mu);
  if (!m_stat_lookup) {
    m_stat_lookup = std::make_unique<image::SqlStmt>(
        m_db, "SELECT size, mtime_ns, ctime_ns, digest, ifnull(xattrs, -1) FROM stat_index WHERE dev = ? AND ino = ?",
        "meta.db (cache)");
  }
  image::SqlStmt& s = *m_stat_lookup;
  s.reset();
  s.bind(1, static_cast<int64_t>(dev)).bind(2, static_cast<int64_t>(ino));
  TRY(bool row, s.step());
  if (!row) {
    return std::optional<StatEntry>();
  }
  StatEntry e;
  e.dev = dev;
  e.ino = ino;
  e.size = s.integer(0);
  e.mtime_ns = s.integer(1);
  e.ctime_ns = s.integer(2);
  e.digest = s.text(3);
  e.xattrs = static_cast<int>(s.integer(4));
  s.reset();  // no read transaction left open
  return std::optional<StatEntry>(std::move(e));
}

Result<void> CacheDb::put_stat_entries(const std::vector<StatEntry>& entries) {
  if (entries.empty()) {
    return ok();
  }
  std::lock_guard lock(m_mu);
  TRY_VOID(begin_immediate());
  Tx tx(m_db);
  Stmt s(m_db,
         "INSERT OR REPLACE INTO stat_index(dev, ino, size, mtime_ns, ctime_ns, digest, xattrs) "
         "VALUES (?,?,?,?,?,?,?)");
  for (const auto& e : entries) {
    s.bind(1, static_cast<int64_t>(e.dev)).bind(2, static_cast<int64_t>(e.ino)).bind(3, e.size);
    s.bind(4, e.mtime_ns).bind(5, e.ctime_ns).bind(6, e.digest);
    s.bind(7, int64_t{e.xattrs});
    TRY_VOID(s.run());
    s.reset();
  }
  return tx.commit();
}

}  // namespace imgbuild::cache
