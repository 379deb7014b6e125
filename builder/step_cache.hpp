#pragma once
// The executor's handle on the build cache: the records of the store, the
// stat index, the --debug cache-keys directory, and the keys used by this
// build (their last_used is updated once, at the end).

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "builder/cache_io.hpp"
#include "builder/cache_steps.hpp"
#include "cache/records.hpp"
#include "cache/stat_index.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// One step of the current build's chain in a stage, for explaining misses.
struct TraceStep {
  /// Index of the instruction in its stage; -1 for the stage's start (its base).
  int position = 0;
  std::string key;
  /// The step's inputs summary (StepKey::inputs; null for the start).
  nlohmann::json inputs;
};

/// Why a step missed.
struct MissReason {
  /// The sentence ("COPY . /src: src/main.c changed", "first build").
  std::string text;
  /// True when there is nothing to tell per step (a first build).
  bool quiet = false;
};

/// Cache access for one build (thread-safe).
class StepCache {
public:
  /// Opens the cache tables of the store whose meta.db is `meta_db`;
  /// `keys_dir` ("" = none) receives one text file per key.
  static Result<std::unique_ptr<StepCache>> open(const std::filesystem::path& meta_db, std::string keys_dir);

  /// Leases every record this build hits or writes (with its layer blob
  /// and unpacked layer) on `lease`, so that no prune removes them while
  /// the build runs.
  void hold_with(image::Lease* lease) { m_lease = lease; }
  /// Consults `io`'s imported records on a local miss (their blobs go to
  /// `content`) and tells it every key used or written.
  void attach(CacheIo* io, const image::ContentStore* content) {
    m_io = io;
    m_content = content;
  }
  /// Where the hit of `key` came from: "" for the local cache, else the
  /// imported cache's label.
  std::string source_of(const std::string& key) const { return m_io != nullptr ? m_io->source_of(key) : ""; }

  /// The stat index of this build.
  cache::StatIndex& index() { return m_index; }
  /// The records.
  cache::CacheDb& db() { return *m_db; }

  /// The record of `key`, nullopt on a miss (also when its layer blob is
  /// gone: `has_blob` checks that); on a local miss, an imported record
  /// (stored locally first) when attached to a CacheIo.
  Result<std::optional<cache::CacheRecord>> lookup(const std::string& key,
                                                   const std::function<bool(const std::string&)>& has_blob);
  /// Loads the traces of the earlier builds of `identity` (the Dockerfile
  /// and target); a later save_trace adds this build's.
  Result<void> load_traces(const std::string& identity);
  /// Why the last step of `current` (the chain of stage `stage` so far,
  /// from its start) missed: the first step whose key differs from the
  /// closest earlier build of the same identity (the one sharing the
  /// longest prefix of keys with `current`), with what differs; `base_reason`
  /// names a difference of the stage's start ("" = "base image changed");
  /// `args` are the ARG names in scope.
  Result<MissReason> explain(const std::string& stage, const std::vector<TraceStep>& current,
                             const std::string& base_reason, const std::set<std::string>& args);
  /// Stores this build's trace (stage → chain of keys) for `identity`.
  Result<void> save_trace(const std::map<std::string, std::vector<TraceStep>>& stages, int64_t now_sec);
  /// Writes a record; `publish` runs inside the write transaction.
  Result<void> record(const cache::CacheRecord& record, const std::function<Result<void>()>& publish);
  /// Notes a key used by this build.
  void used(const std::string& key);
  /// Writes the key's inputs to the keys directory as `name`.txt.
  void debug(const std::string& name, const StepKey& step);
  /// Marks the used keys and saves the stat index.
  Result<void> finish(int64_t now_sec);

private:
  StepCache(std::unique_ptr<cache::CacheDb> db, cache::StatIndex index, std::string keys_dir)
      : m_db(std::move(db)), m_index(std::move(index)), m_keys_dir(std::move(keys_dir)) {}
  std::unique_ptr<cache::CacheDb> m_db;
  cache::StatIndex m_index;
  std::string m_keys_dir;
  std::mutex m_mu;
  std::vector<std::string> m_used;
  std::string m_identity;
  std::vector<nlohmann::json> m_traces;  // earlier builds of m_identity, newest first
  static constexpr int k_kept_traces = 5;
  Result<void> hold(const cache::CacheRecord& record);
  CacheIo* m_io = nullptr;
  const image::ContentStore* m_content = nullptr;
  image::Lease* m_lease = nullptr;
};

}  // namespace imgbuild::builder
