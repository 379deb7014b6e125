// The chroot sandbox: for root inside a container that has Docker's default
// security profile (no CAP_SYS_ADMIN, no user namespaces, seccomp refusing
// unshare and mount) — where a CI job runs and no namespace can be made.
//
// What it does: the rootfs (a plain directory: the copy snapshotter's view,
// since overlay cannot be mounted there either) gets, for the run only,
// Docker's standard device nodes in /dev (made with mknod: CAP_MKNOD is a
// default capability, and the container's device cgroup already limits what
// opens), empty /proc and /sys directories, /etc/hosts, /etc/resolv.conf and
// (Flavor::container only) /etc/hostname where the image has none, and what RUN --mount asks for,
// laid in by copying (read-only binds, secrets, heredoc scripts), by moving
// (cache mounts: the directory is renamed in and back, or copied in and
// back across filesystems) or as an empty directory (tmpfs); what the image
// has at a mount target is renamed aside for the run, as a mount hides it. The command runs chrooted, as its user, with Docker's
// default capabilities, in a process group of its own that is killed when
// the command ends. Everything laid in is taken out again before the layer
// is diffed, and the parents' times are restored.
//
// What it gives up, said once per build by the caller: no PID, network,
// IPC or UTS isolation (the RUN sees the container's processes, network
// and hostname), no /proc or /sys inside the rootfs, --network=none is
// refused, and a root RUN can leave a chroot (it shares the container's
// root user). The container around it is the boundary.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "sandbox/detail.hpp"
#include "sandbox/process.hpp"
#include "sandbox/sandbox.hpp"
#include "sandbox/user.hpp"
#include "util/fs.hpp"
#include "util/interrupt.hpp"
#include "util/strings.hpp"

namespace imgbuild::sandbox {

namespace {

using detail::StubKind;
using detail::UniqueFd;

struct DevNode {
  const char* name;
  unsigned major;
  unsigned minor;
};
constexpr DevNode k_nodes[] = {{"null", 1, 3},    {"zero", 1, 5},    {"full", 1, 7},
                               {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};

// One RUN --mount laid into the rootfs, and how to take it out again.
struct Laid {
  explicit Laid(std::string rel) : target(std::move(rel)) {}
  std::string target;          // relative to the rootfs
  std::string moved_from;      // a host directory renamed in (cache mount), to rename back
  std::string copied_back_to;  // a host directory copied in (cache mount on another filesystem), to copy back
  std::string aside;           // the name the image's own entry at target was renamed to, or ""
  struct timespec parent_times[2] = {};  // of target's parent before anything was laid in
};

// The parent directory of rel inside the root (O_PATH) and rel's last name.
Result<std::pair<UniqueFd, std::string>> parent_in_root(int root_fd, const std::string& rel) {
  size_t slash = rel.rfind('/');
  std::string parent = slash == std::string::npos ? std::string() : rel.substr(0, slash);
  UniqueFd fd(detail::open_in_root(root_fd, parent, O_PATH | O_DIRECTORY));
  if (!fd) {
    return fail(Errc::io, "cannot open /" + parent + ": " + std::strerror(errno));
  }
  return std::make_pair(std::move(fd), slash == std::string::npos ? rel : rel.substr(slash + 1));
}

Result<void> write_in_root(int root_fd, const std::string& rel, const std::string& content) {
  UniqueFd f(detail::open_in_root(root_fd, rel, O_WRONLY | O_TRUNC | O_NOFOLLOW));
  if (!f) {
    return fail(Errc::io, "cannot write /" + rel + ": " + std::strerror(errno));
  }
  for (size_t off = 0; off < content.size();) {
    ssize_t n = ::write(f.get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return fail(Errc::io, "cannot write /" + rel + ": " + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  return ok();
}

// Takes what was laid in at l.target out again (the stub itself goes with
// MountStubs): a moved cache directory back to the host, a copied one
// copied back, anything else deleted.
void take_out(int root, const Laid& l) {
  if (!l.moved_from.empty()) {
    auto at = parent_in_root(root, l.target);
    if (at) {
      ::renameat(at->first.get(), at->second.c_str(), AT_FDCWD, l.moved_from.c_str());
    }
    return;
  }
  UniqueFd d(detail::open_in_root(root, l.target, O_RDONLY | O_DIRECTORY));
  if (!d) {
    return;
  }
  if (!l.copied_back_to.empty()) {
    auto host = fs::Root::open(l.copied_back_to);
    UniqueFd host_dir(host ? ::openat(host->fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1);
    if (host_dir && fs::clear_dir(host_dir.get())) {
      UniqueFd again(detail::open_in_root(root, l.target, O_PATH | O_DIRECTORY));
      if (again) {
        (void)fs::copy_tree(fs::Root::from_fd(std::move(again), "/" + l.target), *host);
      }
    }
  }
  (void)fs::clear_dir(d.get());
}

// Renames the image's own entry back over the (removed) target and restores
// the parent's times.
void put_back(int root, const Laid& l) {
  if (l.aside.empty()) {
    return;
  }
  auto at = parent_in_root(root, l.target);
  if (!at) {
    return;
  }
  ::renameat(at->first.get(), l.aside.c_str(), at->first.get(), at->second.c_str());
  UniqueFd dir(::openat(at->first.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) {
    ::futimens(dir.get(), l.parent_times);
  }
}

// Sets the image's own entry at rel aside (renamed in its directory) so that
// a mount can be laid in there, as a mount would hide it.
Result<void> set_aside(int root, detail::MountStubs& stubs, Laid& l) {
  size_t slash = l.target.rfind('/');
  if (slash != std::string::npos) {
    TRY_VOID(stubs.ensure(root, l.target.substr(0, slash), StubKind::directory));
  }
  TRY(auto at, parent_in_root(root, l.target));
  struct stat st {};
  if (::fstatat(at.first.get(), at.second.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return ok();  // nothing there
  }
  struct stat pst {};
  if (::fstatat(at.first.get(), "", &pst, AT_EMPTY_PATH) != 0) {
    return fail(Errc::io, "cannot stat the parent of /" + l.target + ": " + std::strerror(errno));
  }
  l.parent_times[0] = pst.st_atim;
  l.parent_times[1] = pst.st_mtim;
  std::string aside = ".imgbuild-aside-" + at.second;
  if (::renameat(at.first.get(), at.second.c_str(), at.first.get(), aside.c_str()) != 0) {
    return fail(Errc::io, "RUN --mount at /" + l.target + ": cannot set the image's entry aside: " +
                              std::strerror(errno));
  }
  l.aside = aside;
  return ok();
}

class ChrootSandbox final : public Sandbox {
public:
  std::string_view name() const override { return "chroot"; }
  std::string notice() const override {
    return "isolation: chroot (root without CAP_SYS_ADMIN or user namespaces, e.g. a container with Docker's "
           "default profile): RUN steps share the container's processes, network and hostname, and see no /proc "
           "or /sys";
  }
  Result<RunResult> run(const RunSpec& spec) override;
};

Result<RunResult> ChrootSandbox::run(const RunSpec& spec) {
  TRY_VOID(detail::validate(spec));
  if (spec.network == NetworkMode::none) {
    return fail(Errc::unsupported,
                "--network=none needs a network namespace, which chroot isolation cannot make (root in a container "
                "without CAP_SYS_ADMIN); run the build where namespaces work, or without --network=none");
  }
  interrupt::install_handlers();
  UniqueFd root_fd(::open(spec.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) {
    return fail(Errc::not_found, "cannot open rootfs " + spec.rootfs.string() + ": " + std::strerror(errno));
  }
  TRY(auto passwd, fs::read_file_at(root_fd.get(), "etc/passwd", k_max_user_db_file, "/etc/passwd in the rootfs"));
  TRY(auto group, fs::read_file_at(root_fd.get(), "etc/group", k_max_user_db_file, "/etc/group in the rootfs"));
  TRY(ExecUser user, resolve_user(spec.user, passwd, group));
  std::string path_env;
  std::vector<std::string> env = detail::build_env(spec, user, path_env);

  // Everything laid in is recorded here and in `laid`; the guard takes it
  // out whatever happens below.
  detail::MountStubs stubs;
  std::vector<Laid> laid;
  struct Cleanup {
    int root;
    std::vector<Laid>& laid;
    detail::MountStubs& stubs;
    ~Cleanup() {
      // Contents out, then the stubs, then the image's own entries back.
      for (auto it = laid.rbegin(); it != laid.rend(); ++it) {
        take_out(root, *it);
      }
      stubs.remove_all();
      for (auto it = laid.rbegin(); it != laid.rend(); ++it) {
        put_back(root, *it);
      }
    }
  } cleanup{root_fd.get(), laid, stubs};

  for (const char* dir : {"proc", "sys", "dev"}) {
    TRY_VOID(stubs.ensure(root_fd.get(), dir, StubKind::directory));
  }
  for (const DevNode& n : k_nodes) {
    std::string rel = std::string("dev/") + n.name;
    UniqueFd existing(detail::open_in_root(root_fd.get(), rel, O_PATH));
    if (!existing) {
      TRY_VOID(stubs.ensure(root_fd.get(), rel, StubKind::char_device, makedev(n.major, n.minor)));
    }
  }
  const std::pair<const char*, std::string> etc_files[] = {
      {"etc/hosts", detail::hosts_file(spec)},
      {"etc/resolv.conf", spec.resolv_conf ? *spec.resolv_conf : detail::host_resolv_conf()},
      {"etc/hostname", spec.hostname + "\n"}};
  for (const auto& [rel, content] : etc_files) {
    if (spec.flavor == Flavor::build && std::strcmp(rel, "etc/hostname") == 0) {
      continue;  // BuildKit v0.22's RUN has no /etc/hostname
    }
    UniqueFd existing(detail::open_in_root(root_fd.get(), rel, O_PATH));
    if (!existing) {
      TRY_VOID(stubs.ensure(root_fd.get(), rel, StubKind::file));
      TRY_VOID(write_in_root(root_fd.get(), rel, content));
    }
  }

  // RUN --mount, laid in where the image's own entry (if any) was set aside.
  for (const BindMount& b : spec.mounts) {
    std::string rel = fs::clean_path(b.target);
    if (rel.empty()) {
      return fail(Errc::invalid_argument, "cannot mount over the root directory");
    }
    struct stat st {};
    if (::stat(b.source.c_str(), &st) != 0) {
      return fail(Errc::not_found, "mount source " + b.source.string() + " does not exist");
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
      return fail(Errc::unsupported, "RUN --mount at /" + rel + ": chroot isolation cannot lay in " +
                                         b.source.string() + " (not a file or directory: an ssh socket?)");
    }
    laid.emplace_back(rel);
    Laid& l = laid.back();
    TRY_VOID(set_aside(root_fd.get(), stubs, l));
    if (S_ISREG(st.st_mode)) {
      TRY_VOID(stubs.ensure(root_fd.get(), rel, StubKind::file));
      UniqueFd in(::open(b.source.c_str(), O_RDONLY | O_CLOEXEC));
      UniqueFd out(detail::open_in_root(root_fd.get(), rel, O_WRONLY | O_TRUNC | O_NOFOLLOW));
      if (!in || !out) {
        return fail(Errc::io, "RUN --mount at /" + rel + ": cannot copy " + b.source.string() + ": " +
                                  std::strerror(errno));
      }
      TRY_VOID(fs::copy_data(in.get(), out.get(), b.source.string()));
      ::fchmod(out.get(), st.st_mode & 07777);
      continue;
    }
    if (b.access == Access::read_write) {
      // A cache mount: the directory itself moves in, and back out after
      // (copied in and back where the rootfs is another filesystem).
      TRY(auto at, parent_in_root(root_fd.get(), rel));
      if (::renameat(AT_FDCWD, b.source.c_str(), at.first.get(), at.second.c_str()) == 0) {
        l.moved_from = b.source.string();
        continue;
      }
      if (errno != EXDEV) {
        return fail(Errc::io, "RUN --mount at /" + rel + ": cannot move " + b.source.string() + " in: " +
                                  std::strerror(errno));
      }
      l.copied_back_to = b.source.string();
    }
    TRY_VOID(stubs.ensure(root_fd.get(), rel, StubKind::directory));
    TRY(fs::Root src, fs::Root::open(b.source.string()));
    UniqueFd dst_fd(detail::open_in_root(root_fd.get(), rel, O_PATH | O_DIRECTORY));
    if (!dst_fd) {
      return fail(Errc::io, "cannot open /" + rel + ": " + std::strerror(errno));
    }
    TRY_VOID(fs::copy_tree(src, fs::Root::from_fd(std::move(dst_fd), "/" + rel)));
  }
  for (const TmpfsMount& t : spec.tmpfs) {
    std::string rel = fs::clean_path(t.target);
    if (rel.empty()) {
      return fail(Errc::invalid_argument, "cannot mount a tmpfs over the root directory");
    }
    laid.emplace_back(rel);
    TRY_VOID(set_aside(root_fd.get(), stubs, laid.back()));
    TRY_VOID(stubs.ensure(root_fd.get(), rel, StubKind::directory));
  }

  TRY(detail::RunPipes pipes, detail::RunPipes::create());
  const bool capture = spec.stdio == Stdio::capture;
  const std::string rootfs = spec.rootfs.string();
  const pid_t self = ::getpid();
  pid_t child = ::fork();
  if (child < 0) {
    return fail(Errc::io, std::string("fork: ") + std::strerror(errno));
  }
  if (child == 0) {
    int err_fd = pipes.msg_w.get();
    detail::child_start(self);
    // A process group of its own, killed whole when the command ends.
    ::setpgid(0, 0);
    if (capture) {
      int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(pipes.out_w.get(), 1) < 0 ||
          ::dup2(pipes.err_w.get(), 2) < 0) {
        detail::child_fail(err_fd, detail::errno_text("cannot set up stdio"));
      }
    }
    if (::chroot(rootfs.c_str()) != 0 || ::chdir("/") != 0) {
      detail::child_fail(err_fd, detail::errno_text("cannot chroot into " + rootfs));
    }
    ::umask(022);
    detail::make_workdir(err_fd, spec.workdir);
    detail::drop_capabilities(err_fd);
    detail::switch_user(err_fd, user, true);
    detail::exec_command(err_fd, spec.argv, env, path_env);
  }
  interrupt::Registration kill_reg = interrupt::kill_on_interrupt(child);
  struct ChildGuard {
    pid_t pid;
    ~ChildGuard() {
      if (pid > 0) {
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
    }
  } guard{child};
  pipes.close_write_ends();
  std::string message = detail::pump_output(pipes.out_r, pipes.err_r, pipes.msg_r, spec);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  // Whatever the command left running in its group goes with it.
  ::kill(-child, SIGKILL);
  guard.pid = 0;
  kill_reg.release();
  if (!message.empty()) {
    return fail(Errc::invalid_argument, message);
  }
  return detail::run_result(status);
}

}  // namespace

std::unique_ptr<Sandbox> make_chroot_sandbox() { return std::unique_ptr<Sandbox>(new ChrootSandbox()); }

}  // namespace imgbuild::sandbox
