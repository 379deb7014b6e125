// The pieces every sandbox kind shares (see process.hpp).

#include "sandbox/process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild::sandbox::detail {

namespace {

// Docker's default capability set; everything else leaves the bounding set.
constexpr int k_default_caps[] = {
    CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_FOWNER,           CAP_FSETID,  CAP_KILL,  CAP_SETGID,       CAP_SETUID,
    CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_SYS_CHROOT, CAP_MKNOD, CAP_AUDIT_WRITE, CAP_SETFCAP,
};

bool is_default_cap(int cap) {
  for (int k : k_default_caps) {
    if (k == cap) {
      return true;
    }
  }
  return false;
}

// Splits a byte stream into lines for a sink.
class LineSplitter {
public:
  explicit LineSplitter(const LineSink& sink) : m_sink(sink) {}
  void feed(const char* data, size_t n) {
    m_buf.append(data, n);
    size_t start = 0;
    for (size_t nl; (nl = m_buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      emit(std::string_view(m_buf).substr(start, nl - start));
    }
    m_buf.erase(0, start);
  }
  void finish() {
    if (!m_buf.empty()) {
      emit(m_buf);
      m_buf.clear();
    }
  }

private:
  void emit(std::string_view line) {
    if (m_sink) {
      m_sink(line);
    }
  }
  const LineSink& m_sink;
  std::string m_buf;
};

}  // namespace

void child_start(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) {
    ::_exit(127);
  }
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) {
      ::signal(sig, SIG_DFL);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

[[noreturn]] void child_fail(int err_fd, const std::string& message) {
  std::string m = message;
  ssize_t ignored = ::write(err_fd, m.data(), m.size());
  (void)ignored;
  ::_exit(127);
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// Leaves init with Docker's default capabilities and nothing else: the
// bounding set is cut, the ambient set cleared, and the effective,
// permitted and inheritable sets become the default set (inheritable empty,
// as Docker 20.10.14+ gives a container: CVE-2022-24769).
void drop_capabilities(int err_fd) {
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    child_fail(err_fd, errno_text("cannot clear the ambient capabilities"));
  }
  struct __user_cap_header_struct header {};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  struct __user_cap_data_struct data[2] = {};
  for (int cap : k_default_caps) {
    data[cap / 32].effective |= 1U << (cap % 32);
    data[cap / 32].permitted |= 1U << (cap % 32);
  }
  if (::syscall(SYS_capset, &header, data) != 0) {
    child_fail(err_fd, errno_text("cannot set the capabilities"));
  }
  for (int cap = 0; cap <= 63; ++cap) {
    if (is_default_cap(cap)) {
      continue;
    }
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL) {
        break;  // past the kernel's last capability
      }
      child_fail(err_fd, errno_text("cannot drop capability " + std::to_string(cap)));
    }
  }
}

void switch_user(int err_fd, const ExecUser& user, bool set_groups) {
  std::vector<gid_t> groups(user.groups.begin(), user.groups.end());
  if (set_groups && ::setgroups(groups.size(), groups.data()) != 0) {
    child_fail(err_fd, errno_text("setgroups"));
  }
  if (::setresgid(user.gid, user.gid, user.gid) != 0) {
    child_fail(err_fd, errno_text("setgid " + std::to_string(user.gid)));
  }
  if (::setresuid(user.uid, user.uid, user.uid) != 0) {
    child_fail(err_fd, errno_text("setuid " + std::to_string(user.uid)));
  }
}

void make_workdir(int err_fd, const std::string& workdir) {
  std::string path;
  for (const std::string& part : str::split(workdir, '/')) {
    if (part.empty()) {
      continue;
    }
    path += "/" + part;
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      child_fail(err_fd, errno_text("cannot create workdir " + workdir));
    }
  }
  if (::chdir(workdir.c_str()) != 0) {
    child_fail(err_fd, errno_text("cannot change to workdir " + workdir));
  }
  // runc CVE-2024-21626: a cwd reached through a leaked descriptor lies
  // outside the root, and getcwd() then does not return an absolute path.
  char buf[4096];
  if (::getcwd(buf, sizeof buf) == nullptr || buf[0] != '/') {
    child_fail(err_fd, "workdir " + workdir + " is outside the container root");
  }
}

[[noreturn]] void exec_command(int err_fd, const std::vector<std::string>& args, const std::vector<std::string>& env,
                               const std::string& path_env) {
  std::vector<char*> argv;
  for (const std::string& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& e : env) {
    envp.push_back(const_cast<char*>(e.c_str()));
  }
  envp.push_back(nullptr);
  const std::string& cmd = args[0];
  if (cmd.find('/') != std::string::npos) {
    ::execve(cmd.c_str(), argv.data(), envp.data());
    if (errno == ENOENT) {
      child_fail(err_fd, "exec: \"" + cmd + "\": stat " + cmd + ": no such file or directory");
    }
    child_fail(err_fd, errno_text("exec: \"" + cmd + "\""));
  }
  int saved = ENOENT;
  for (const std::string& dir : str::split(path_env, ':')) {
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + cmd;
    ::execve(candidate.c_str(), argv.data(), envp.data());
    if (errno != ENOENT && errno != ENOTDIR) {
      saved = errno;
    }
  }
  if (saved == ENOENT) {
    child_fail(err_fd, "exec: \"" + cmd + "\": executable file not found in $PATH");
  }
  errno = saved;
  child_fail(err_fd, errno_text("exec: \"" + cmd + "\""));
}

std::string hosts_file(const RunSpec& spec) {
  std::string out = "127.0.0.1\tlocalhost " + spec.hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  for (const HostEntry& h : spec.extra_hosts) {
    out += h.address + "\t" + h.name + "\n";
  }
  return out;
}

std::string host_resolv_conf() {
  auto text = io::read_all("/etc/resolv.conf");
  if (!text) {
    return "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";
  }
  return std::move(*text);
}


Result<void> validate(const RunSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return fail(Errc::invalid_argument, "no command to run");
  }
  if (!spec.rootfs.is_absolute()) {
    return fail(Errc::invalid_argument, "rootfs " + spec.rootfs.string() + " is not an absolute path");
  }
  if (spec.workdir.empty() || spec.workdir[0] != '/') {
    return fail(Errc::invalid_argument, "workdir " + str::go_quote(spec.workdir) + " is not an absolute path");
  }
  if (spec.hostname.empty() || spec.hostname.size() > 64 || spec.hostname.find_first_of("\n\t /") != std::string::npos) {
    return fail(Errc::invalid_argument, "invalid hostname " + str::go_quote(spec.hostname));
  }
  for (const std::string& a : spec.argv) {
    if (a.find('\0') != std::string::npos) {
      return fail(Errc::invalid_argument, "a command argument contains a NUL byte");
    }
  }
  for (const HostEntry& h : spec.extra_hosts) {
    if (h.name.empty() || h.address.empty() || h.name.find_first_of(" \t\n") != std::string::npos ||
        h.address.find_first_of(" \t\n") != std::string::npos) {
      return fail(Errc::invalid_argument, "invalid host entry " + str::go_quote(h.name + ":" + h.address));
    }
  }
  return ok();
}

std::vector<std::string> build_env(const RunSpec& spec, const ExecUser& user, std::string& path_env) {
  auto named = [&](std::string_view prefix) {
    return std::any_of(spec.env.begin(), spec.env.end(), [&](const std::string& e) { return e.starts_with(prefix); });
  };
  // The default PATH goes first; appended, not inserted at the front (GCC 12
  // at -O3 sees a null dereference in vector::insert's move of a string).
  std::vector<std::string> env;
  env.reserve(spec.env.size() + 2);
  if (!named("PATH=")) {
    path_env = std::string(k_default_path);
    env.push_back("PATH=" + path_env);
  }
  for (const std::string& e : spec.env) {
    if (e.starts_with("PATH=")) {
      path_env = e.substr(5);
    }
    env.push_back(e);
  }
  if (!named("HOME=")) {
    env.push_back("HOME=" + user.home);
  }
  return env;
}

Result<RunPipes> RunPipes::create() {
  RunPipes p;
  int fds[2];
  for (auto [r, w] : {std::pair{&p.out_r, &p.out_w}, std::pair{&p.err_r, &p.err_w}, std::pair{&p.msg_r, &p.msg_w}}) {
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      return fail(Errc::io, std::string("cannot create pipes: ") + std::strerror(errno));
    }
    r->reset(fds[0]);
    w->reset(fds[1]);
  }
  return p;
}

void RunPipes::close_write_ends() {
  out_w.reset();
  err_w.reset();
  msg_w.reset();
}

RunResult run_result(int wait_status) {
  RunResult result;
  if (WIFEXITED(wait_status)) {
    result.exit_code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    result.signal = WTERMSIG(wait_status);
    result.exit_code = 128 + *result.signal;
  }
  return result;
}

std::string pump_output(UniqueFd& out_r, UniqueFd& err_r, UniqueFd& msg_r, const RunSpec& spec) {
  std::string message;
  LineSplitter out_lines(spec.on_stdout);
  LineSplitter err_lines(spec.on_stderr);
  struct Stream {
    UniqueFd* fd;
    LineSplitter* lines;
  };
  Stream streams[] = {{&out_r, &out_lines}, {&err_r, &err_lines}, {&msg_r, nullptr}};
  char buf[65536];
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Stream*> which;
    for (Stream& s : streams) {
      if (*s.fd) {
        fds.push_back(pollfd{s.fd->get(), POLLIN, 0});
        which.push_back(&s);
      }
    }
    if (fds.empty()) {
      break;
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) {
        continue;
      }
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        continue;
      }
      if (n <= 0) {
        which[i]->fd->reset();
        continue;
      }
      if (which[i]->lines != nullptr) {
        which[i]->lines->feed(buf, static_cast<size_t>(n));
      } else if (message.size() < 65536) {
        message.append(buf, static_cast<size_t>(n));
      }
    }
  }
  out_lines.finish();
  err_lines.finish();
  return message;
}

}  // namespace imgbuild::sandbox::detail
