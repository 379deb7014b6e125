// Entering the rootless user namespace (see userns.hpp for the design).
//
//   imgbuild (user) ──fork──▶ child: unshare(USER) ─ tells parent ─┐
//        │ newuidmap/newgidmap child (or writes the one-id maps) ◀─┘
//        │ tells child "go" ──▶ child: root in the namespace, unshare(NS),
//        │                      mounts private, goes on with the command
//        └ waits; forwards SIGTERM/SIGHUP; exits with the child's status
//
// The parent must not touch anything else: it returns only to report an
// error before the child could start.

#include "sandbox/userns.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/fd.hpp"
#include "util/io.hpp"
#include "util/rootless.hpp"
#include "util/strings.hpp"

extern char** environ;

namespace imgbuild::sandbox {

namespace {

// A file's text; "" when it cannot be read.
std::string read_text(const char* path) {
  auto text = io::read_all(path);
  return text ? std::move(*text) : std::string();
}

// The first of `names` found in PATH or the usual sbin/bin directories.
std::string find_program(const std::string& name) {
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  path += ":/usr/bin:/bin:/usr/sbin:/sbin";
  for (const std::string& dir : str::split(path, ':')) {
    if (dir.empty()) {
      continue;
    }
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return {};
}

// Runs argv, waiting for it; its stderr goes to ours. Returns "" or what went wrong.
std::string run_program(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, args[0], nullptr, nullptr, args.data(), environ);
  if (rc != 0) {
    return argv[0] + ": " + std::strerror(rc);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return argv[0] + ": " + std::strerror(errno);
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return str::join(argv, " ") + " failed (exit status " +
           std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) + ")";
  }
  return {};
}

bool write_proc(pid_t pid, const char* file, const std::string& text) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd && ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

// Why unshare(CLONE_NEWUSER) failed with `err`, and the fix.
std::string explain_unshare_failure(int err) {
  std::string base = std::string("cannot create a user namespace for rootless mode: ") + std::strerror(err);
  std::string clone(str::trim(read_text("/proc/sys/kernel/unprivileged_userns_clone")));
  if (clone == "0") {
    return base + "; user namespaces are disabled: kernel.unprivileged_userns_clone=0 "
                  "(enable with `sysctl -w kernel.unprivileged_userns_clone=1`, or run imgbuild as root)";
  }
  std::string max(str::trim(read_text("/proc/sys/user/max_user_namespaces")));
  if (max == "0") {
    return base + "; user namespaces are disabled: user.max_user_namespaces=0 "
                  "(enable with `sysctl -w user.max_user_namespaces=15000`, or run imgbuild as root)";
  }
  std::string status = read_text("/proc/self/status");
  if (err == EPERM && status.find("Seccomp:\t2") != std::string::npos) {
    return base + "; this process runs under a seccomp filter that refuses unshare (a container with Docker's "
                  "default profile): run the container with `--security-opt seccomp=unconfined`, or as root";
  }
  return base;
}

struct Ids {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string user;   // name, or the id in decimal
  std::string group;  // likewise
};

Ids current_ids() {
  Ids ids;
  ids.uid = ::getuid();
  ids.gid = ::getgid();
  ids.user = std::to_string(ids.uid);
  ids.group = std::to_string(ids.gid);
  char buf[4096];
  struct passwd pw {};
  struct passwd* pwp = nullptr;
  if (::getpwuid_r(ids.uid, &pw, buf, sizeof buf, &pwp) == 0 && pwp != nullptr) {
    ids.user = pw.pw_name;
  }
  struct group gr {};
  struct group* grp = nullptr;
  if (::getgrgid_r(ids.gid, &gr, buf, sizeof buf, &grp) == 0 && grp != nullptr) {
    ids.group = gr.gr_name;
  }
  return ids;
}

std::vector<std::string> map_args(const std::string& program, pid_t pid, const std::vector<IdMapping>& maps) {
  std::vector<std::string> args = {program, std::to_string(pid)};
  for (const IdMapping& m : maps) {
    args.push_back(std::to_string(m.inside));
    args.push_back(std::to_string(m.outside));
    args.push_back(std::to_string(m.count));
  }
  return args;
}

std::string map_text(const std::vector<IdMapping>& maps) {
  std::string out;
  for (const IdMapping& m : maps) {
    out += std::to_string(m.inside) + " " + std::to_string(m.outside) + " " + std::to_string(m.count) + "\n";
  }
  return out;
}

volatile sig_atomic_t g_child = 0;

void forward_signal(int sig) {
  if (g_child > 0) {
    ::kill(static_cast<pid_t>(g_child), sig);
  }
}

// The parent's life after the child is under way: wait, forward, exit alike.
[[noreturn]] void wait_and_exit(pid_t child) {
  g_child = child;
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  // A terminal's ^C and ^\ reach the child as well (same process group).
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGQUIT, SIG_IGN);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      ::_exit(127);
    }
  }
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    ::signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    ::raise(sig);
    ::_exit(128 + sig);
  }
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 127);
}

}  // namespace

std::optional<IdMapping> find_subordinate_range(const std::string& file_text, const std::string& name, uint32_t id) {
  const std::string id_text = std::to_string(id);
  for (const std::string& raw : str::split(file_text, '\n')) {
    std::string line(str::trim(raw));
    if (line.empty() || line[0] == '#') {
      continue;
    }
    std::vector<std::string> f = str::split(line, ':');
    if (f.size() != 3 || (f[0] != name && f[0] != id_text)) {
      continue;
    }
    char* end = nullptr;
    errno = 0;
    unsigned long start = std::strtoul(f[1].c_str(), &end, 10);
    bool start_ok = errno == 0 && end != f[1].c_str() && *end == '\0';
    unsigned long count = std::strtoul(f[2].c_str(), &end, 10);
    bool count_ok = errno == 0 && end != f[2].c_str() && *end == '\0';
    if (!start_ok || !count_ok || count == 0 || start > 0xffffffffUL || count > 0xffffffffUL - start) {
      continue;
    }
    return IdMapping{1, static_cast<uint32_t>(start), static_cast<uint32_t>(count)};
  }
  return std::nullopt;
}

std::vector<IdMapping> rootless_mappings(uint32_t id, const std::optional<IdMapping>& range) {
  std::vector<IdMapping> maps = {{0, id, 1}};
  if (range) {
    maps.push_back(IdMapping{1, range->outside, range->count});
  }
  return maps;
}

bool in_rootless_namespace() { return rootless::active(); }

std::optional<uint32_t> rootless_real_uid() {
  if (!rootless::active()) {
    return std::nullopt;
  }
  return static_cast<uint32_t>(std::strtoul(std::getenv(rootless::k_uid_env), nullptr, 10));
}

bool rootless_single_id() {
  const char* v = std::getenv(rootless::k_single_env);
  return rootless::active() && v != nullptr && std::string_view(v) == "1";
}

Result<void> enter_rootless() {
  if (::geteuid() == 0) {
    return ok();  // root, or already root of the namespace
  }
  const Ids ids = current_ids();
  std::optional<IdMapping> uid_range = find_subordinate_range(read_text("/etc/subuid"), ids.user, ids.uid);
  std::optional<IdMapping> gid_range = find_subordinate_range(read_text("/etc/subgid"), ids.user, ids.uid);
  const bool ranges = uid_range.has_value() && gid_range.has_value();
  std::string newuidmap;
  std::string newgidmap;
  if (ranges) {
    newuidmap = find_program("newuidmap");
    newgidmap = find_program("newgidmap");
    if (newuidmap.empty() || newgidmap.empty()) {
      return fail(Errc::permission,
                  "rootless mode needs newuidmap and newgidmap to map the subordinate ids of " + ids.user +
                      ": install them (`apt-get install uidmap`)");
    }
  }
  ::setenv(rootless::k_uid_env, std::to_string(ids.uid).c_str(), 1);
  ::setenv(rootless::k_single_env, ranges ? "0" : "1", 1);

  int to_parent[2];
  int to_child[2];
  if (::pipe2(to_parent, O_CLOEXEC) != 0 || ::pipe2(to_child, O_CLOEXEC) != 0) {
    return fail(Errc::io, std::string("rootless mode: pipe: ") + std::strerror(errno));
  }
  UniqueFd parent_r(to_parent[0]), parent_w(to_parent[1]), child_r(to_child[0]), child_w(to_child[1]);
  const pid_t parent_pid = ::getpid();
  pid_t child = ::fork();
  if (child < 0) {
    return fail(Errc::io, std::string("rootless mode: fork: ") + std::strerror(errno));
  }
  if (child == 0) {
    parent_r.reset();
    child_w.reset();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent_pid) {
      ::_exit(127);
    }
    int err = ::unshare(CLONE_NEWUSER) == 0 ? 0 : errno;
    if (::write(parent_w.get(), &err, sizeof err) != static_cast<ssize_t>(sizeof err) || err != 0) {
      ::_exit(127);
    }
    char go = 0;
    if (::read(child_r.get(), &go, 1) != 1 || go != 'g') {
      ::_exit(127);  // the parent failed to map us and reports why
    }
    // Root of the namespace from here on; drop the supplementary groups the
    // user had (they show as nobody inside) where setgroups is allowed.
    if (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0) {
      std::fprintf(stderr, "imgbuild: error: rootless mode: cannot become root of the user namespace: %s\n",
                   std::strerror(errno));
      ::_exit(1);
    }
    if (ranges) {
      (void)::setgroups(0, nullptr);
    }
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      std::fprintf(stderr, "imgbuild: error: rootless mode: cannot create a mount namespace: %s\n",
                   std::strerror(errno));
      ::_exit(1);
    }
    return ok();
  }
  parent_w.reset();
  child_r.reset();
  auto give_up = [&](std::string message) -> Result<void> {
    ::kill(child, SIGKILL);
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
    ::unsetenv(rootless::k_uid_env);
    ::unsetenv(rootless::k_single_env);
    return fail(Errc::permission, std::move(message));
  };
  int err = 0;
  if (::read(parent_r.get(), &err, sizeof err) != static_cast<ssize_t>(sizeof err)) {
    return give_up("rootless mode: the namespace child died before it started");
  }
  if (err != 0) {
    return give_up(explain_unshare_failure(err));
  }
  std::string problem;
  if (ranges) {
    problem = run_program(map_args(newuidmap, child, rootless_mappings(ids.uid, uid_range)));
    if (problem.empty()) {
      problem = run_program(map_args(newgidmap, child, rootless_mappings(ids.gid, gid_range)));
    }
    if (!problem.empty()) {
      problem = "rootless mode: cannot map the subordinate ids of " + ids.user + " (/etc/subuid, /etc/subgid): " +
                problem;
    }
  } else if (!write_proc(child, "setgroups", "deny") ||
             !write_proc(child, "uid_map", map_text(rootless_mappings(ids.uid, std::nullopt))) ||
             !write_proc(child, "gid_map", map_text(rootless_mappings(ids.gid, std::nullopt)))) {
    problem = std::string("rootless mode: cannot write the user namespace's id maps: ") + std::strerror(errno);
  }
  if (!problem.empty()) {
    return give_up(problem);
  }
  if (::write(child_w.get(), "g", 1) != 1) {
    return give_up(std::string("rootless mode: cannot start the namespace child: ") + std::strerror(errno));
  }
  child_w.reset();
  wait_and_exit(child);
}

}  // namespace imgbuild::sandbox
