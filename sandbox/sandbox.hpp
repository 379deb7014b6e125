#pragma once
// The process sandbox: runs one command inside an already mounted root
// filesystem, as RUN and `imgbuild run` need it.
//
// Callers see only Sandbox and RunSpec; the namespace implementation (root,
// new mount/PID/UTS/IPC[/net] namespaces) lives in a .cpp behind
// make_sandbox(), so a rootless implementation (user namespaces) can be added
// as another kind without touching callers.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/binfmt.hpp"
#include "util/platform.hpp"
#include "util/result.hpp"

namespace imgbuild::sandbox {

/// Network of the sandboxed process.
enum class NetworkMode {
  host,  ///< share the host's network namespace
  none,  ///< a new network namespace with only a loopback interface
};

/// Whether a bind mount may be written through.
enum class Access { read_only, read_write };

/// A host file or directory made visible inside the sandbox (RUN --mount).
struct BindMount {
  std::filesystem::path source;  ///< host path (trusted: chosen by imgbuild)
  std::string target;            ///< absolute path inside the rootfs
  Access access = Access::read_only;
};

/// A fresh tmpfs for the process (RUN --mount=type=tmpfs); gone when it ends.
struct TmpfsMount {
  std::string target;                ///< absolute path inside the rootfs
  std::optional<uint64_t> size;      ///< size limit in bytes (none: the kernel's default, half of RAM)
};

/// An extra line of /etc/hosts ("address name").
struct HostEntry {
  std::string name;
  std::string address;
};

/// Receives one line of output, without its trailing newline. The last line
/// of a stream is delivered even when it has no newline.
using LineSink = std::function<void(std::string_view line)>;

/// What to do with the process's standard streams.
enum class Stdio {
  capture,  ///< stdin is /dev/null; stdout/stderr go line by line to the sinks
  inherit,  ///< the process shares imgbuild's stdin/stdout/stderr (imgbuild run)
};

/// Whose environment the process gets besides its rootfs.
enum class Flavor {
  container,  ///< docker run's: /etc/hosts, /etc/resolv.conf, /etc/hostname; /dev/core -> /proc/kcore
  build,      ///< BuildKit v0.22's RUN: /etc/hosts and /etc/resolv.conf only; no /dev/core link
};

/// Everything needed to run one process.
struct RunSpec {
  /// The root filesystem, already mounted by the caller (a snapshot view).
  std::filesystem::path rootfs;
  /// argv[0] is looked up in the PATH of `env` when it has no slash.
  std::vector<std::string> argv;
  /// "KEY=value" entries. PATH defaults to Docker's default PATH and HOME to
  /// the user's home directory when absent.
  std::vector<std::string> env;
  /// Docker's USER: "name|uid[:group|gid]", resolved from the rootfs's
  /// /etc/passwd and /etc/group. Empty means root.
  std::string user;
  /// Absolute working directory inside the rootfs; created when missing.
  std::string workdir = "/";
  /// Hostname inside the sandbox (also written to /etc/hosts, and to
  /// /etc/hostname for Flavor::container).
  std::string hostname = "imgbuild";
  /// Which /etc files and /dev links the process sees (see Flavor).
  Flavor flavor = Flavor::container;
  NetworkMode network = NetworkMode::host;
  std::vector<BindMount> mounts;
  /// tmpfs mounts, made after the bind mounts.
  std::vector<TmpfsMount> tmpfs;
  /// RUN --security=insecure: keep every capability, mount /sys read-write,
  /// add the host's device nodes to /dev and mask nothing in /proc.
  /// Otherwise the bounding set is cut to Docker's default capabilities
  /// before exec, /sys is read-only and /proc has Docker's masked paths.
  bool privileged = false;
  std::vector<HostEntry> extra_hosts;
  /// Content of /etc/resolv.conf; when unset the host's file is used.
  std::optional<std::string> resolv_conf;
  Stdio stdio = Stdio::capture;
  LineSink on_stdout;
  LineSink on_stderr;
};

/// How the process ended.
struct RunResult {
  /// The exit status, or 128 + signal number when killed by a signal (as a
  /// shell reports it).
  int exit_code = 0;
  /// The signal that killed the process, if one did.
  std::optional<int> signal;
};

/// Runs processes in an isolated root filesystem.
class Sandbox {
public:
  virtual ~Sandbox() = default;
  /// The implementation's name ("namespaces", "chroot").
  virtual std::string_view name() const = 0;
  /// One line for the user on what this kind gives up against the
  /// namespace sandbox, or "" (printed once per build).
  virtual std::string notice() const { return {}; }
  /// Runs spec to completion. A non-zero exit status is a RunResult, not an
  /// error; errors are failures to start (unknown user, missing executable,
  /// bad workdir, mount failures) or an interruption of imgbuild.
  virtual Result<RunResult> run(const RunSpec& spec) = 0;
  /// Ok when this sandbox can run binaries of `platform` (natively or
  /// through binfmt_misc and qemu: sandbox/binfmt.hpp); else the error
  /// names the fix.
  virtual Result<void> can_run(const Platform& platform) const { return check_emulation(platform); }
};

/// Creates a sandbox. kind: "auto" (namespaces where this process can make
/// them, else chroot), "namespaces" (root, or root of imgbuild's rootless
/// user namespace) or "chroot" (root: chroot_sandbox.cpp).
Result<std::unique_ptr<Sandbox>> make_sandbox(std::string_view kind = "auto");

/// The chroot sandbox (see chroot_sandbox.cpp), for root where no namespace
/// can be made.
std::unique_ptr<Sandbox> make_chroot_sandbox();

/// Docker's default PATH, used when the environment has none.
inline constexpr std::string_view k_default_path =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

}  // namespace imgbuild::sandbox
