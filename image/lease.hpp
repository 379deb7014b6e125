#pragma once
// Leases: what a running imgbuild process (a build, `imgbuild run`) holds in
// the store, so that deletion (image prune, rmi, cache prune, system check
// --repair) running in another process never removes it. containerd has the
// same idea; here a lease lives exactly as long as its process.
//
// On disk: <root>/leases/<random>.lease, one text file per holding process:
//   imgbuild-lease 1
//   pid <pid>
//   blob sha256:…          a blob (manifest, config, layer)
//   layer sha256:…         an unpacked layer directory, by diff_id
//   record sha256:…        a cache record, by key
//   cache-mount <name>     a RUN --mount=type=cache directory (its file name)
// Lines are only ever appended, each with one write(2). The holder keeps an
// exclusive flock(2) on the file while it runs; the kernel drops it when the
// process ends however it ends (SIGKILL included), so a lease file that can be
// locked by someone else belongs to a dead process: it is stale, ignored and
// deleted. A new file is locked under a temporary name and then renamed to
// *.lease, so no reader ever sees a live lease unlocked.
//
// Ordering: <root>/leases/lock serialises adding to a lease (shared, brief)
// with deleting (exclusive, for the whole deletion): once hold() returns, a
// deletion that starts later sees the entry and one that was running has
// finished, so an object that still exists after hold() stays while the
// holder runs. A deleter takes this lock before meta.db's write lock, and
// holders never call hold() inside a meta.db write transaction, so the two
// locks cannot deadlock.

#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "util/fd.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// What a lease entry names.
enum class LeaseKind { blob, layer, record, cache_mount };

/// One entry of a lease.
struct LeaseEntry {
  LeaseKind kind = LeaseKind::blob;
  std::string id;  ///< digest, diff_id, cache key or cache-mount directory name
};

/// The lease of this process on one store. Thread-safe. The lease file is
/// made on the first hold() and deleted when the object goes away.
class Lease {
public:
  /// A lease on the store at `root` (nothing is written yet).
  explicit Lease(std::filesystem::path root) : m_root(std::move(root)) {}
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  /// Adds entries (those held already are skipped). Never call it inside a
  /// meta.db write transaction (see the file comment).
  Result<void> hold(const std::vector<LeaseEntry>& entries);
  /// Adds one entry.
  Result<void> hold(LeaseKind kind, std::string_view id) { return hold({LeaseEntry{kind, std::string(id)}}); }

private:
  Result<void> create_locked();
  std::filesystem::path m_root;
  std::mutex m_mu;
  UniqueFd m_fd;
  std::filesystem::path m_path;
  std::set<std::pair<int, std::string>> m_held;
};

/// What every live lease of a store holds, read under the exclusive lease
/// lock, which the object keeps until it is destroyed: nothing can be added
/// meanwhile, so a deleter that consults it before deleting never removes a
/// leased object.
class LeaseSnapshot {
public:
  /// Takes the exclusive lease lock (waiting for hold() calls in flight),
  /// reads the live leases and deletes stale lease files.
  static Result<LeaseSnapshot> take(const std::filesystem::path& root);

  /// Blobs held.
  const std::set<std::string>& blobs() const { return m_blobs; }
  /// Unpacked layers held, by diff_id.
  const std::set<std::string>& layers() const { return m_layers; }
  /// Cache records held, by key.
  const std::set<std::string>& records() const { return m_records; }
  /// Cache-mount directory names held.
  const std::set<std::string>& cache_mounts() const { return m_cache_mounts; }
  /// Process ids of the live holders, sorted.
  const std::vector<long>& holders() const { return m_holders; }
  /// Stale lease files deleted (their processes are gone).
  int stale_removed() const { return m_stale_removed; }
  /// True when `id` of `kind` is held.
  bool holds(LeaseKind kind, const std::string& id) const;

private:
  UniqueFd m_lock;
  std::set<std::string> m_blobs;
  std::set<std::string> m_layers;
  std::set<std::string> m_records;
  std::set<std::string> m_cache_mounts;
  std::vector<long> m_holders;
  int m_stale_removed = 0;
};

/// The directory of a store's lease files.
std::filesystem::path lease_dir(const std::filesystem::path& root);

}  // namespace imgbuild::image
