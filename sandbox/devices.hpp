#pragma once
// The device policy of the sandbox: which device nodes a sandboxed process
// may open, whatever nodes it manages to create.
//
// Two layers, as defence in depth:
//  - every mount of the sandbox but /dev/pts is nodev, and /dev's standard
//    nodes are bind mounts of the host's own (namespace_sandbox.cpp): a node
//    made with mknod anywhere cannot be opened (EACCES);
//  - where the kernel lets imgbuild attach a program to a cgroup (root, a
//    writable cgroup2 hierarchy: a host, not a default-profile container),
//    each run is placed in a cgroup of its own whose device program allows
//    exactly what runc allows a Docker container by default (mknod of any
//    node; read/write of null, zero, full, random, urandom, tty, console,
//    ptmx and the pts terminals), so opening anything else fails with EPERM
//    before the mount flags are even looked at — what a Docker build sees.

#include <optional>
#include <string>
#include <vector>

#include "util/fd.hpp"
#include "util/result.hpp"

namespace imgbuild::sandbox::detail {

/// One device rule: a node type ('c' character, 'b' block), major and minor
/// (-1: any) and the access allowed (a mask of k_dev_mknod/read/write).
struct DeviceRule {
  char type = 'c';
  long major = -1;
  long minor = -1;
  unsigned access = 0;
};

inline constexpr unsigned k_dev_mknod = 1;  ///< BPF_DEVCG_ACC_MKNOD
inline constexpr unsigned k_dev_read = 2;   ///< BPF_DEVCG_ACC_READ
inline constexpr unsigned k_dev_write = 4;  ///< BPF_DEVCG_ACC_WRITE

/// Docker's (runc's) default device allow-list.
const std::vector<DeviceRule>& default_device_rules();

/// Evaluates `rules` for one access the way the cgroup program does (for
/// tests of the rules and of the compiled program's logic).
bool device_allowed(const std::vector<DeviceRule>& rules, char type, long major, long minor, unsigned access);

/// A cgroup (v2) with the device program attached, created for one run and
/// removed with this object. A process joins it by writing "0" to
/// procs_fd(); its children stay in it.
class DeviceCgroup {
public:
  DeviceCgroup(const DeviceCgroup&) = delete;
  DeviceCgroup& operator=(const DeviceCgroup&) = delete;
  DeviceCgroup(DeviceCgroup&& other) noexcept;
  DeviceCgroup& operator=(DeviceCgroup&& other) noexcept;
  ~DeviceCgroup();

  /// Creates the cgroup beside imgbuild's own and attaches the program of
  /// default_device_rules(). nullopt (with the reason in *why) where this
  /// environment does not allow it: no cgroup2 hierarchy, not writable,
  /// no BPF — the nodev layer still holds there.
  static std::optional<DeviceCgroup> create(std::string* why = nullptr);

  /// cgroup.procs of the new cgroup, open for writing.
  int procs_fd() const { return m_procs.get(); }
  /// The cgroup's directory.
  const std::string& path() const { return m_path; }

private:
  void remove() noexcept;
  DeviceCgroup(std::string path, UniqueFd procs) : m_path(std::move(path)), m_procs(std::move(procs)) {}
  std::string m_path;
  UniqueFd m_procs;
};

}  // namespace imgbuild::sandbox::detail
