#pragma once
// What every sandbox kind shares: the parent's preparation of a run (checks,
// environment, /etc contents), the child's last steps before exec (user,
// workdir, capabilities, PATH lookup), and the parent's pump of the
// child's output into the line sinks. Internal to sandbox/.

#include <string>
#include <vector>

#include "sandbox/sandbox.hpp"
#include "sandbox/user.hpp"
#include "util/fd.hpp"
#include "util/result.hpp"

namespace imgbuild::sandbox::detail {

// ---- child side (after fork: system calls, and child_fail on error) -------

/// Dies with the parent (PR_SET_PDEATHSIG; exits at once when the parent
/// is already gone), with default signal handling and nothing blocked.
void child_start(pid_t parent);
/// Writes `message` to the error pipe and exits with 127.
[[noreturn]] void child_fail(int err_fd, const std::string& message);
/// "what: <strerror(errno)>".
std::string errno_text(const std::string& what);
/// Leaves the process with Docker's default capabilities and nothing else:
/// bounding set cut, ambient cleared, effective = permitted = the default
/// set, inheritable empty.
void drop_capabilities(int err_fd);
/// setgroups (unless !set_groups), setresgid, setresuid.
void switch_user(int err_fd, const ExecUser& user, bool set_groups);
/// Creates the absolute workdir when missing and changes into it; refuses a
/// cwd outside the root (runc CVE-2024-21626).
void make_workdir(int err_fd, const std::string& workdir);
/// execve of args[0], looked up in path_env when it has no slash, with
/// Docker's error words.
[[noreturn]] void exec_command(int err_fd, const std::vector<std::string>& args, const std::vector<std::string>& env,
                               const std::string& path_env);

// ---- parent side ----------------------------------------------------------

/// Checks a RunSpec (command, absolute rootfs and workdir, hostname, hosts).
Result<void> validate(const RunSpec& spec);
/// The process environment: spec.env, with Docker's default PATH first when
/// it has none and HOME from the user when it has none. *path_env gets PATH.
std::vector<std::string> build_env(const RunSpec& spec, const ExecUser& user, std::string& path_env);
/// The sandbox's /etc/hosts.
std::string hosts_file(const RunSpec& spec);
/// The host's /etc/resolv.conf (Docker's fallback servers when unreadable).
std::string host_resolv_conf();

/// The pipes of one run: the child's stdout, stderr and error messages
/// (read ends here, write ends for the child; all close-on-exec).
struct RunPipes {
  UniqueFd out_r, out_w, err_r, err_w, msg_r, msg_w;
  /// Creates the three pipes.
  static Result<RunPipes> create();
  /// Closes the write ends (in the parent, once the child has them).
  void close_write_ends();
};

/// A wait status as RunResult (exit status, or 128 + the signal).
RunResult run_result(int wait_status);

/// Reads the child's stdout and stderr into spec's line sinks and its error
/// pipe (msg_r) into the returned text (at most 64 KiB) until all three are
/// closed.
std::string pump_output(UniqueFd& out_r, UniqueFd& err_r, UniqueFd& msg_r, const RunSpec& spec);

}  // namespace imgbuild::sandbox::detail
