#pragma once
// The stat index: (device, inode, size, mtime, ctime) → content digest of a
// regular file, kept in meta.db (table stat_index) so unchanged context files
// are not read again on the next build. ctime is part of the identity, so a
// rewrite that restores the mtime is still seen. Entries whose ctime is within
// a second of the build start are not stored (a write in the same clock tick
// after hashing would otherwise go unseen).

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cache/records.hpp"
#include "util/fs.hpp"
#include "util/result.hpp"

namespace imgbuild::cache {

/// A regular file's content digest and xattrs, as the cache keys them.
struct FileFacts {
  /// "sha256:…" of the content.
  std::string digest;
  /// False when the xattrs could not be listed (the key then has none).
  bool xattrs_read = true;
  /// The xattrs, sorted by name.
  fs::Xattrs xattrs;
};

/// Content digests of files, remembered across builds by stat identity.
class StatIndex {
public:
  /// An empty index (nothing remembered).
  StatIndex() = default;
  /// The index kept in the cache tables of db (read lazily; db must outlive
  /// the index).
  static Result<StatIndex> load(CacheDb& db);

  /// Identities looked up one by one before the whole index is read.
  static constexpr uint64_t k_point_lookups = 64;

  /// The "sha256:…" content digest of the regular file `name` in directory
  /// `dirfd` whose lstat is `st`; read and hashed only when the index does
  /// not know this identity. `display` names the file in errors.
  Result<std::string> digest(int dirfd, const std::string& name, const struct stat& st, const std::string& display);

  /// digest() and the file's xattrs; the xattrs are not listed when the index
  /// knows this identity had none.
  Result<FileFacts> facts(int dirfd, const std::string& name, const struct stat& st, const std::string& display);

  /// Writes the entries learnt since load() (skipping ones too recent to
  /// trust, relative to `now_ns`).
  Result<void> save(CacheDb& db, int64_t now_ns);

  /// Files hashed / answered from the index since load().
  uint64_t hashed() const { return m_hashed; }
  uint64_t reused() const { return m_reused; }
  /// Files whose xattrs facts() listed since load().
  uint64_t xattrs_listed() const { return m_xattrs_listed; }
  /// Bytes read and hashed since load().
  uint64_t hashed_bytes() const { return m_hashed_bytes; }

private:
  using Id = std::pair<uint64_t, uint64_t>;
  struct IdHash {
    size_t operator()(const Id& id) const noexcept {
      return std::hash<uint64_t>{}((id.first * 0x9e3779b97f4a7c15ULL) ^ id.second);
    }
  };
  // The entry matching st's identity, or null (call with m_mu held); reads
  // the database as the file comment says.
  const StatEntry* find(const struct stat& st);
  // Reads and hashes the file's content (counted in m_hashed_bytes).
  Result<std::string> hash_file(int dirfd, const std::string& name, const std::string& display);
  // Remembers an entry (new or updated) for save().
  void learn(StatEntry e, bool hashed);
  std::mutex m_mu;
  std::unordered_map<Id, StatEntry, IdHash> m_entries;
  CacheDb* m_db = nullptr;
  bool m_all_read = false;
  uint64_t m_point_reads = 0;
  std::vector<StatEntry> m_new;
  uint64_t m_hashed = 0;
  uint64_t m_reused = 0;
  uint64_t m_xattrs_listed = 0;
  std::atomic<uint64_t> m_hashed_bytes{0};

public:
  StatIndex(StatIndex&& o) noexcept;
  StatIndex& operator=(StatIndex&&) = delete;
  StatIndex(const StatIndex&) = delete;
  StatIndex& operator=(const StatIndex&) = delete;
};

/// Nanoseconds of a timespec.
inline int64_t timespec_ns(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace imgbuild::cache
