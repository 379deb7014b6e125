#pragma once
// The host side of a RUN's --mount list: each resolved mount
// (builder/run_step.hpp) becomes bind or tmpfs mounts in the sandbox spec,
// one function per mount type. Everything a mount makes on the host (temp
// directories, cache-directory locks, source views, SSH relays) is owned by
// a RunMounts, which ends it all when it goes (or at release()).

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "builder/context_filter.hpp"
#include "builder/executor.hpp"
#include "builder/run_step.hpp"
#include "builder/secret_mask.hpp"
#include "builder/ssh_forward.hpp"
#include "image/lease.hpp"
#include "sandbox/sandbox.hpp"
#include "snapshot/snapshotter.hpp"
#include "util/fd.hpp"
#include "util/io.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// A directory a mount or COPY reads from, with what keeps it there.
struct SourceRoot {
  std::filesystem::path path;
  /// The ignore whiteouts under `view` (outlives it), or a filtered copy.
  io::TempDir filter;
  /// The view `path` is the root of (null for a plain directory).
  std::unique_ptr<snapshot::View> view;
};

/// Opens the roots mounts read from (the build implements it).
class SourceRoots {
public:
  virtual ~SourceRoots() = default;
  /// The root `source` names (the build context when source.ref is unset),
  /// seen through its .dockerignore when it is a context directory (only
  /// `sub` below it needs to be right).
  virtual Result<SourceRoot> open_source(const MountSource& source, std::string_view sub) = 0;
};

/// What mounting needs from the build.
struct MountEnv {
  SourceRoots* roots = nullptr;
  /// The store's root (cache mounts live in <root>/cache-mounts).
  std::filesystem::path store_root;
  /// --cache-from / --cache-to mounts (null = none).
  CacheIo* cache_io = nullptr;
  /// --secret values by id.
  const std::map<std::string, SecretSource>* secrets = nullptr;
  /// --ssh default agent socket ("" = none).
  std::string ssh_socket;
  /// The build's lease: a cache-mount directory in use is held in it, so
  /// that no cache prune removes it (null = none).
  image::Lease* lease = nullptr;
};

/// What one RUN holds on the host while it runs. Destruction (or release)
/// stops the SSH relays, removes source views, releases cache locks and
/// deletes temp directories, in that order.
class RunMounts {
public:
  /// Temp directories go under `tmp_root` (created when missing).
  explicit RunMounts(std::filesystem::path tmp_root) : m_tmp_root(std::move(tmp_root)) {}
  RunMounts(const RunMounts&) = delete;
  RunMounts& operator=(const RunMounts&) = delete;
  ~RunMounts() { release(); }

  /// A new empty directory, deleted with the mounts.
  Result<std::filesystem::path> temp_dir();
  /// Keeps a source root alive until the end.
  void keep(SourceRoot source) { m_sources.push_back(std::move(source)); }
  /// Holds a lock until the end.
  void hold(UniqueFd lock) { m_locks.push_back(std::move(lock)); }
  /// Keeps an SSH relay running until the end.
  void relay(std::unique_ptr<SshForwarder> forwarder) { m_relays.push_back(std::move(forwarder)); }
  /// The values of the secrets mounted so far.
  SecretMask& mask() { return m_mask; }
  const SecretMask& mask() const { return m_mask; }
  /// Ends everything now (idempotent).
  void release();

private:
  std::filesystem::path m_tmp_root;
  SecretMask m_mask;
  std::vector<io::TempDir> m_temps;
  std::vector<UniqueFd> m_locks;
  std::vector<SourceRoot> m_sources;
  std::vector<std::unique_ptr<SshForwarder>> m_relays;
};

/// The directory of the cache mount `id` in the store at `store_root`.
std::filesystem::path cache_mount_path(const std::filesystem::path& store_root, const std::string& id);

/// type=bind: the source directory or file, read-only, or a copy that is
/// discarded when rw. Errors: a missing source, a symlink source.
Result<void> mount_bind(const BindMount& mount, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec);
/// type=cache: the store's cache directory for the id (locked per sharing,
/// made and seeded on first use).
Result<void> mount_cache(const CacheMount& mount, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec);
/// type=tmpfs.
Result<void> mount_tmpfs(const TmpfsMount& mount, sandbox::RunSpec& spec);
/// type=secret: a file holding the value and/or an env variable; the value
/// is added to held.mask(). Errors: a required secret that was not given,
/// an unreadable secret file.
Result<void> mount_secret(const SecretMount& mount, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec);
/// type=ssh: a relay socket to the forwarded agent, SSH_AUTH_SOCK set.
/// Errors: a required agent that was not forwarded.
Result<void> mount_ssh(const SshMount& mount, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec);

/// Adds every mount of `run` to `spec`, in order.
Result<void> add_mounts(const ResolvedRun& run, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec);

}  // namespace imgbuild::builder
