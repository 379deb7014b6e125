#pragma once
// Cache records: what a build step produced, stored in the store's meta.db
// (table cache_records, schema migration 2 in image/metadata.cpp).
//
// Record format (self-contained, so an export can carry records as is):
//   key         "sha256:…" step key (cache/key.hpp), primary key
//   parent_key  key of the step before it in the chain (for the first step
//               of a stage: the stage's base key; for a FROM record: "")
//   position    index of the instruction in its stage (ONBUILD triggers
//               first); -1 for a stage's FROM record
//   kind        instruction keyword ("RUN", "COPY", "ENV", "FROM", …)
//   layer       the layer the step added: blob digest, diff_id, media type,
//               compressed and uncompressed size; blob_digest "" = no layer
//               (metadata-only steps, FROM records)
//   config      the image config JSON after the step (history included)
//   created_by  the history text of the step (without " # buildkit")
//   inputs      JSON summary of the step's inputs, for explaining misses:
//               {"instruction": "...", "fields": {name: value},
//                "env": {name: value}, "files": {path: entry digest},
//                "base": digest}
//   created_at, last_used   unix seconds
//
// Build traces (table build_traces, migration 4): per build identity (the
// Dockerfile and target, as the builder names them) the step keys of its
// last few builds, as JSON {"version": 1, "stages": {stage: [{"position":
// p, "key": k}, …]}}. A miss is explained against the closest of them: the
// first step whose key differs, its inputs compared with that key's record.
//
// Concurrency: CacheDb opens its own connection to meta.db (WAL, busy
// timeout, IMMEDIATE transactions retried on SQLITE_BUSY); a record whose
// layer blob is published in put()'s callback is written in the same write
// transaction, so a concurrent prune never sees the blob unreferenced.
// CacheDb is safe to call from several threads (one mutex).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "image/lease.hpp"
#include "image/metadata.hpp"
#include "util/result.hpp"

struct sqlite3;

namespace imgbuild::image {
class SqlStmt;
}  // namespace imgbuild::image

namespace imgbuild::cache {

/// One cache record (see the file comment).
struct CacheRecord {
  std::string key;
  std::string parent_key;
  int position = 0;
  std::string kind;
  /// blob_digest "" when the step added no layer.
  image::LayerRecord layer;
  std::string config;
  std::string created_by;
  std::string inputs;
  int64_t created_at = 0;
  int64_t last_used = 0;

  /// True when the record carries a layer.
  bool has_layer() const { return !layer.blob_digest.empty(); }
};

/// One stat-index entry: a file identity and its content digest.
struct StatEntry {
  uint64_t dev = 0;
  uint64_t ino = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  std::string digest;
  /// What is known of the file's xattrs under this identity: -1 unknown,
  /// 0 none, 1 some (listed again on every use).
  int xattrs = -1;
};

/// What cache prune should remove.
struct PruneOptions {
  /// Every record (and, for the caller, the cache-mount dirs).
  bool all = false;
  /// Records not used for this many seconds (0 = no age filter).
  int64_t unused_for_sec = 0;
  /// Keep at most this many bytes of cache-only layers (0 = no limit),
  /// removing the least recently used records first.
  uint64_t keep_storage = 0;
  /// What running builds hold (image/lease.hpp): leased records, blobs and
  /// layers are never removed. The caller took it before prune().
  const image::LeaseSnapshot* leases = nullptr;
};

/// What cache prune removed.
struct PruneResult {
  int records = 0;
  /// Records kept because a running build holds them.
  int leased = 0;
  std::vector<std::string> blobs;
  uint64_t reclaimed = 0;
  /// diff_ids of the removed layers that no remaining layer row (images'
  /// layers included) or record has: their unpacked layer directories
  /// (<store>/snapshots/<hex>) can go too.
  std::vector<std::string> diff_ids;
};

/// The cache tables of one store.
class CacheDb {
public:
  /// Opens meta.db at `path` (image::MetaDb::open must have migrated it).
  static Result<std::unique_ptr<CacheDb>> open(const std::filesystem::path& path);
  ~CacheDb();
  CacheDb(const CacheDb&) = delete;
  CacheDb& operator=(const CacheDb&) = delete;

  /// The record with `key`.
  Result<std::optional<CacheRecord>> get(const std::string& key);
  /// The newest record with this parent key and position.
  Result<std::optional<CacheRecord>> previous(const std::string& parent_key, int position);
  /// The traces of the last builds of `identity`, newest first.
  Result<std::vector<std::string>> build_traces(const std::string& identity);
  /// Adds a build trace of `identity`, keeping the newest `keep` of them.
  Result<void> put_build_trace(const std::string& identity, int64_t at, const std::string& trace, int keep);
  /// Writes (or replaces) a record. `in_transaction`, when given, runs inside
  /// the write transaction first (publish the layer blob there).
  Result<void> put(const CacheRecord& record, const std::function<Result<void>()>& in_transaction = {});
  /// Deletes one record (its blob stays: the caller decides).
  Result<void> remove(const std::string& key);
  /// Marks records used at `now` (one transaction).
  Result<void> touch(const std::vector<std::string>& keys, int64_t now);
  /// Every record, most recently used first.
  Result<std::vector<CacheRecord>> list();
  /// Blobs that images reference (never pruned).
  Result<std::vector<std::string>> image_blobs();

  /// Removes records (see PruneOptions) and then every blob that only the
  /// removed records referenced; `remove_blob` deletes one blob and returns
  /// the bytes freed. Runs in one write transaction.
  Result<PruneResult> prune(const PruneOptions& options, int64_t now,
                            const std::function<Result<uint64_t>(const std::string&)>& remove_blob);

  /// Every stat-index entry.
  Result<std::vector<StatEntry>> stat_entries();
  /// The stat-index entry of one file identity, if any (one prepared
  /// statement, kept for the next call).
  Result<std::optional<StatEntry>> stat_entry(uint64_t dev, uint64_t ino);
  /// Inserts or replaces stat-index entries in one transaction.
  Result<void> put_stat_entries(const std::vector<StatEntry>& entries);

private:
  explicit CacheDb(sqlite3* db);
  Result<void> exec(const char* sql);
  Result<void> begin_immediate();
  sqlite3* m_db;
  std::mutex m_mu;
  std::unique_ptr<image::SqlStmt> m_stat_lookup;
};

}  // namespace imgbuild::cache
