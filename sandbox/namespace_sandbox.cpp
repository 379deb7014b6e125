// The namespace sandbox (root): how one run proceeds.
//
//   imgbuild ──fork──▶ monitor ──unshare(mnt,uts,ipc,pid[,net]); fork──▶ init (pid 1)
//
// The parent prepares everything that needs the host or memory allocation up
// front: the user (from the rootfs's passwd/group, read inside the root), the
// environment, the contents of /etc/hosts, /etc/resolv.conf, /etc/hostname
// (Flavor::container only),
// and the mount-point stubs (created in the rootfs only where missing and
// removed after the run). The monitor sits in the host PID namespace, waits
// for init and reports its wait status through a pipe. Init is the user's
// process: it builds its mount tree with the new mount API onto targets
// opened with openat2(RESOLVE_IN_ROOT) (the /etc files are made in its own
// /dev tmpfs, so they vanish with it), pivots into the rootfs, drops
// capabilities outside Docker's default set, switches user, checks that its
// cwd lies inside the root, closes every inherited descriptor and execs.
// When init exits the kernel kills every other process of its PID namespace;
// both children die with SIGKILL when their parent does (PR_SET_PDEATHSIG),
// and SIGINT/SIGTERM of imgbuild kill the monitor (util/interrupt).

#include <fcntl.h>
#include <dirent.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <fstream>
#include <sstream>
#include <thread>

#include "sandbox/detail.hpp"
#include "sandbox/devices.hpp"
#include "sandbox/process.hpp"
#include "sandbox/seccomp.hpp"
#include "sandbox/sandbox.hpp"
#include "sandbox/user.hpp"
#include "sandbox/userns.hpp"
#include "util/fs.hpp"
#include "util/interrupt.hpp"
#include "util/strings.hpp"

namespace imgbuild::sandbox {

namespace {

using detail::UniqueFd;
using detail::child_fail;
using detail::errno_text;

// Files in /proc that are hidden behind /dev/null, directories hidden behind
// an empty read-only tmpfs, and subtrees made read-only (as Docker does).
constexpr const char* k_proc_masked_files[] = {"kcore", "keys", "latency_stats", "timer_list", "timer_stats",
                                               "sched_debug"};
constexpr const char* k_proc_masked_dirs[] = {"acpi", "scsi"};
constexpr const char* k_proc_readonly[] = {"bus", "fs", "irq", "sys", "sysrq-trigger"};

struct Mount {
  std::string source;  // host path; empty for a file made from `content`
  std::string target;  // relative to the rootfs, cleaned
  bool read_only = false;
  bool directory = false;
  std::string content;  // the file's bytes when source is empty
  bool tmpfs = false;   // a new tmpfs instead of source/content
  std::string size;     // tmpfs size= option ("" = default)
};

// Everything init needs, computed before fork so that the children only make
// system calls.
struct Plan {
  std::string rootfs;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string path_env;  // PATH used to find argv[0]
  std::string hostname;
  std::string workdir;
  ExecUser user;
  int unshare_flags = 0;
  std::vector<Mount> mounts;  // extra binds, then hosts/resolv/hostname
  bool capture = true;
  bool privileged = false;  // keep every capability; /sys rw, host devices, /proc unmasked
  // The system-call filter loaded before exec; null under --security=insecure.
  const detail::SeccompProgram* seccomp = nullptr;
  // cgroup.procs of the run's device cgroup (-1: none); the monitor joins it.
  int cgroup_procs_fd = -1;
  // No device cgroup could be made (and not insecure): every mount is nodev
  // and /dev's nodes are bind mounts of the host's (devices.hpp).
  bool nodev = false;
  // False in a rootless namespace that maps only the user's id, where the
  // kernel refuses setgroups.
  bool set_groups = true;
  // Flavor::container: /dev/core -> /proc/kcore as docker run has it.
  bool dev_core = true;
};

// ---- child side -----------------------------------------------------------

int fs_mount(const char* fstype, const std::vector<std::pair<const char*, const char*>>& options,
             unsigned int attrs) {
  UniqueFd fs(::fsopen(fstype, FSOPEN_CLOEXEC));
  if (!fs) {
    return -1;
  }
  for (const auto& [key, value] : options) {
    if (value == nullptr) {
      if (::fsconfig(fs.get(), FSCONFIG_SET_FLAG, key, nullptr, 0) != 0) {
        return -1;
      }
    } else if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, key, value, 0) != 0) {
      return -1;
    }
  }
  if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return -1;
  }
  return ::fsmount(fs.get(), FSMOUNT_CLOEXEC, attrs);
}

int attach(int mount_fd, int target_fd) {
  return ::move_mount(mount_fd, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

int set_readonly(int tree_fd) {
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  return ::mount_setattr(tree_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
}

// Makes every mount of a tree nodev, so that no device node in it can be
// opened (the sandbox's device policy, devices.hpp).
int set_nodev(int tree_fd) {
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_NODEV;
  return ::mount_setattr(tree_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr);
}

// Creates a missing mount target inside an earlier bind mount (the parent
// created every stub that lies in the rootfs itself).
int open_or_create_target(int root_fd, const Mount& m) {
  int fd = detail::open_in_root(root_fd, m.target, O_PATH);
  if (fd >= 0 || errno != ENOENT) {
    return fd;
  }
  auto slash = m.target.rfind('/');
  std::string parent = slash == std::string::npos ? std::string() : m.target.substr(0, slash);
  std::string name = slash == std::string::npos ? m.target : m.target.substr(slash + 1);
  UniqueFd pfd(detail::open_in_root(root_fd, parent, O_PATH | O_DIRECTORY));
  if (!pfd && errno == ENOENT) {
    // Missing parents can only be inside the sandbox's own tmpfs (the
    // rootfs stubs were made before): /dev/pipes for RUN heredoc scripts.
    std::string cur;
    size_t start = 0;
    while (start < parent.size()) {
      size_t next = parent.find('/', start);
      std::string comp = parent.substr(start, next == std::string::npos ? std::string::npos : next - start);
      start = next == std::string::npos ? parent.size() : next + 1;
      UniqueFd at(detail::open_in_root(root_fd, cur, O_PATH | O_DIRECTORY));
      if (!at || (::mkdirat(at.get(), comp.c_str(), 0755) != 0 && errno != EEXIST)) {
        return -1;
      }
      cur = cur.empty() ? comp : cur + "/" + comp;
    }
    pfd.reset(detail::open_in_root(root_fd, parent, O_PATH | O_DIRECTORY));
  }
  if (!pfd) {
    return -1;
  }
  if (m.directory) {
    if (::mkdirat(pfd.get(), name.c_str(), 0755) != 0) {
      return -1;
    }
  } else {
    int f = ::openat(pfd.get(), name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (f < 0) {
      return -1;
    }
    ::close(f);
  }
  return detail::open_in_root(root_fd, m.target, O_PATH);
}

// The host's device nodes below host_dir (/dev) made again in dev_fd, for
// --security=insecure (BuildKit gives that mode the host's devices). Names
// the sandbox already has, the pts/shm/mqueue mounts and anything that is not
// a device or a directory are skipped.
void copy_host_devices(int err_fd, int host_fd, int dev_fd, int depth) {
  DIR* d = ::fdopendir(::dup(host_fd));
  if (d == nullptr) {
    return;
  }
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == ".." || (depth == 0 && (name == "pts" || name == "shm" || name == "mqueue"))) {
      continue;
    }
    struct stat st {};
    if (::fstatat(host_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      continue;
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      if (::mknodat(dev_fd, e->d_name, st.st_mode & (S_IFMT | 07777), st.st_rdev) == 0) {
        (void)::fchownat(dev_fd, e->d_name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW);
        (void)::fchmodat(dev_fd, e->d_name, st.st_mode & 07777, 0);
      } else if (errno != EEXIST) {
        child_fail(err_fd, errno_text(std::string("cannot create host device /dev/") + e->d_name));
      }
    } else if (S_ISDIR(st.st_mode) && depth < 4) {
      if (::mkdirat(dev_fd, e->d_name, st.st_mode & 07777) != 0 && errno != EEXIST) {
        continue;
      }
      UniqueFd sub_host(::openat(host_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      UniqueFd sub_dev(::openat(dev_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub_host && sub_dev) {
        copy_host_devices(err_fd, sub_host.get(), sub_dev.get(), depth + 1);
      }
    }
  }
  ::closedir(d);
}

struct DevNode {
  const char* name;
  unsigned major;
  unsigned minor;
};

// The nodes of a default /dev, as Docker gives a container.
constexpr DevNode k_dev_nodes[] = {{"null", 1, 3},    {"zero", 1, 5},    {"full", 1, 7},
                                   {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};

// Binds the host's own /dev/NAME onto the stub file of the same name in the
// (nodev) /dev tmpfs, after checking that it is the expected node: the only
// device nodes a default sandbox can open are these bind mounts.
void bind_host_node(int err_fd, int dev_fd, const DevNode& n) {
  const std::string host = std::string("/dev/") + n.name;
  UniqueFd tree(::open_tree(AT_FDCWD, host.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  struct stat st {};
  if (!tree || ::fstat(tree.get(), &st) != 0) {
    child_fail(err_fd, errno_text("cannot bind " + host + " from the host"));
  }
  if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(n.major, n.minor)) {
    child_fail(err_fd, "cannot bind " + host + " from the host: it is not the character device " +
                           std::to_string(n.major) + ":" + std::to_string(n.minor));
  }
  UniqueFd target(::openat(dev_fd, n.name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!target || attach(tree.get(), target.get()) != 0) {
    child_fail(err_fd, errno_text("cannot mount " + host));
  }
}

// The sandbox's /dev: a tmpfs with Docker's standard nodes, made with mknod
// as runc does (the device cgroup decides what opens). With `nodev` (no
// device cgroup) the tmpfs is nodev and the standard nodes are bind mounts of
// the host's, so nothing made with mknod there can be opened.
// `host_devices` (--security=insecure) adds the host's other nodes, as
// BuildKit's insecure mode gives them. `dev_core` adds docker run's
// /dev/core -> /proc/kcore link (BuildKit v0.22's RUN has none).
UniqueFd setup_dev(int err_fd, int root_fd, bool host_devices, bool nodev, bool dev_core) {
  const unsigned attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME | (nodev ? MOUNT_ATTR_NODEV : 0U);
  UniqueFd dev(fs_mount("tmpfs", {{"mode", "755"}, {"size", "65536k"}}, attrs));
  if (!dev) {
    child_fail(err_fd, errno_text("cannot mount tmpfs on /dev"));
  }
  for (const DevNode& n : k_dev_nodes) {
    int rc = 0;
    if (!nodev) {
      rc = ::mknodat(dev.get(), n.name, S_IFCHR | 0666, makedev(n.major, n.minor));
    } else {
      int f = ::openat(dev.get(), n.name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0666);
      rc = f < 0 ? -1 : ::close(f);
    }
    if (rc != 0 || ::fchmodat(dev.get(), n.name, 0666, 0) != 0) {
      child_fail(err_fd, errno_text(std::string("cannot create /dev/") + n.name));
    }
  }
  if (::mkdirat(dev.get(), "pts", 0755) != 0 || ::mkdirat(dev.get(), "shm", 01777) != 0 ||
      ::fchmodat(dev.get(), "shm", 01777, 0) != 0 || ::mkdirat(dev.get(), "mqueue", 0755) != 0) {
    child_fail(err_fd, errno_text("cannot populate /dev"));
  }
  const std::pair<const char*, const char*> links[] = {
      {"pts/ptmx", "ptmx"},          {"/proc/self/fd", "fd"},         {"/proc/self/fd/0", "stdin"},
      {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"}};
  for (const auto& [target, name] : links) {
    if (!dev_core && std::strcmp(name, "core") == 0) {
      continue;  // BuildKit v0.22's RUN has no /dev/core
    }
    if (::symlinkat(target, dev.get(), name) != 0) {
      child_fail(err_fd, errno_text(std::string("cannot create /dev/") + name));
    }
  }
  if (host_devices) {
    UniqueFd host(::open("/dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (host) {
      copy_host_devices(err_fd, host.get(), dev.get(), 0);
    }
  }
  UniqueFd target(detail::open_in_root(root_fd, "dev", O_PATH | O_DIRECTORY));
  if (!target || attach(dev.get(), target.get()) != 0) {
    child_fail(err_fd, errno_text("cannot mount /dev"));
  }
  if (nodev) {
    for (const DevNode& n : k_dev_nodes) {
      bind_host_node(err_fd, dev.get(), n);
    }
  }
  UniqueFd pts(fs_mount("devpts", {{"newinstance", nullptr}, {"ptmxmode", "0666"}, {"mode", "0620"}, {"gid", "5"}},
                        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
  if (!pts && errno == EINVAL) {
    // gid 5 (tty) is not mapped in a rootless namespace without subordinate ids.
    pts.reset(fs_mount("devpts", {{"newinstance", nullptr}, {"ptmxmode", "0666"}, {"mode", "0620"}},
                       MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
  }
  UniqueFd pts_target(::openat(dev.get(), "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!pts || !pts_target || attach(pts.get(), pts_target.get()) != 0) {
    child_fail(err_fd, errno_text("cannot mount /dev/pts"));
  }
  UniqueFd shm(fs_mount("tmpfs", {{"mode", "1777"}, {"size", "65536k"}},
                        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  UniqueFd shm_target(::openat(dev.get(), "shm", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!shm || !shm_target || attach(shm.get(), shm_target.get()) != 0) {
    child_fail(err_fd, errno_text("cannot mount /dev/shm"));
  }
  // mqueue is a nicety; kernels without it still run.
  UniqueFd mq(fs_mount("mqueue", {}, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  UniqueFd mq_target(::openat(dev.get(), "mqueue", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (mq && mq_target) {
    (void)attach(mq.get(), mq_target.get());
  }
  return dev;
}

// The name in the sandbox's /dev of the file made for m.
std::string content_name(const Mount& m) { return ".imgbuild-" + std::to_string(reinterpret_cast<uintptr_t>(&m)); }

// A file with the given bytes, made in the sandbox's own /dev tmpfs (and
// unlinked once bind-mounted): it lives only as long as the mount namespace,
// so nothing is left on disk however imgbuild ends.
int content_tree(int err_fd, int dev_fd, const Mount& m) {
  const std::string name = content_name(m);
  UniqueFd f(::openat(dev_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!f || ::fchmod(f.get(), 0644) != 0) {
    child_fail(err_fd, errno_text("cannot create the file for /" + m.target));
  }
  for (size_t off = 0; off < m.content.size();) {
    ssize_t n = ::write(f.get(), m.content.data() + off, m.content.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      child_fail(err_fd, errno_text("cannot write the file for /" + m.target));
    }
    off += static_cast<size_t>(n);
  }
  int tree = ::open_tree(dev_fd, name.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) {
    child_fail(err_fd, errno_text("cannot bind the file for /" + m.target));
  }
  return tree;
}

void setup_proc(int err_fd, int root_fd, bool unmasked) {
  UniqueFd proc(fs_mount("proc", {}, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  bool outer = false;
  if (!proc && errno == EPERM) {
    // A container's /proc with masked paths forbids a fresh proc mount in a
    // user namespace (the kernel will not reveal what the mask hides): the
    // existing one is bound instead, masks and all, as rootless BuildKit
    // does there. It shows the container's processes.
    proc.reset(::open_tree(AT_FDCWD, "/proc", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
    outer = true;
  }
  UniqueFd target(detail::open_in_root(root_fd, "proc", O_PATH | O_DIRECTORY));
  if (!proc || !target || attach(proc.get(), target.get()) != 0) {
    child_fail(err_fd, errno_text("cannot mount /proc"));
  }
  if (unmasked || outer) {
    return;  // --security=insecure: no masked or read-only paths
  }
  UniqueFd devnull(::open_tree(root_fd, "dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  for (const char* name : k_proc_masked_files) {
    UniqueFd t(::openat(proc.get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!t) {
      continue;
    }
    UniqueFd null_clone(::open_tree(root_fd, "dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    if (!null_clone || attach(null_clone.get(), t.get()) != 0) {
      child_fail(err_fd, errno_text(std::string("cannot mask /proc/") + name));
    }
  }
  for (const char* name : k_proc_masked_dirs) {
    UniqueFd t(::openat(proc.get(), name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!t) {
      continue;
    }
    UniqueFd empty(fs_mount("tmpfs", {{"size", "0"}}, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                                           MOUNT_ATTR_NOEXEC));
    if (!empty || attach(empty.get(), t.get()) != 0) {
      child_fail(err_fd, errno_text(std::string("cannot mask /proc/") + name));
    }
  }
  for (const char* name : k_proc_readonly) {
    UniqueFd t(::openat(proc.get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!t) {
      continue;
    }
    UniqueFd tree(::open_tree(proc.get(), name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
    if (!tree || set_readonly(tree.get()) != 0 || attach(tree.get(), t.get()) != 0) {
      child_fail(err_fd, errno_text(std::string("cannot make /proc/") + name + " read-only"));
    }
  }
}

// /sys, read-only unless `writable` (--security=insecure, as BuildKit's
// insecure mode mounts it; then /sys/firmware is not masked either).
void setup_sys(int err_fd, int root_fd, bool writable) {
  const unsigned attrs =
      (writable ? 0U : static_cast<unsigned>(MOUNT_ATTR_RDONLY)) | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  UniqueFd sys(fs_mount("sysfs", {}, attrs));
  if (!sys) {
    // Some environments refuse a new sysfs; a read-only view of the host's will do.
    sys.reset(::open_tree(AT_FDCWD, "/sys", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
    if (!sys || set_readonly(sys.get()) != 0) {
      child_fail(err_fd, errno_text("cannot mount /sys"));
    }
  }
  UniqueFd target(detail::open_in_root(root_fd, "sys", O_PATH | O_DIRECTORY));
  if (!target || attach(sys.get(), target.get()) != 0) {
    child_fail(err_fd, errno_text("cannot mount /sys"));
  }
  if (writable) {
    return;
  }
  UniqueFd fw(::openat(sys.get(), "firmware", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fw) {
    UniqueFd empty(fs_mount("tmpfs", {{"size", "0"}}, attrs));
    if (!empty || attach(empty.get(), fw.get()) != 0) {
      child_fail(err_fd, errno_text("cannot mask /sys/firmware"));
    }
  }
}

[[noreturn]] void run_init(const Plan& plan, int err_fd, int alive_fd, int out_fd, int errout_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  struct pollfd pfd {alive_fd, 0, 0};
  if (::poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR)) != 0) {
    ::_exit(127);  // the monitor died before we armed PDEATHSIG
  }
  if (plan.capture) {
    // stdin becomes the sandbox's /dev/null once it exists (see below).
    if (::dup2(out_fd, 1) < 0 || ::dup2(errout_fd, 2) < 0) {
      child_fail(err_fd, errno_text("cannot set up stdio"));
    }
  }
  // Keep only stdio and the error pipe (moved to 3, close-on-exec).
  if (err_fd != 3) {
    if (::dup3(err_fd, 3, O_CLOEXEC) < 0) {
      ::_exit(127);
    }
    err_fd = 3;
  }
  ::close_range(4, ~0U, 0);

  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    child_fail(err_fd, errno_text("cannot make the mount tree private"));
  }
  {
    UniqueFd tree(::open_tree(AT_FDCWD, plan.rootfs.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
    if (!tree || (plan.nodev && set_nodev(tree.get()) != 0) ||
        ::move_mount(tree.get(), "", AT_FDCWD, plan.rootfs.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
      child_fail(err_fd, errno_text("cannot bind the rootfs " + plan.rootfs));
    }
  }
  UniqueFd root(::open(plan.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    child_fail(err_fd, errno_text("cannot open the rootfs " + plan.rootfs));
  }
  UniqueFd dev = setup_dev(err_fd, root.get(), plan.privileged, plan.nodev, plan.dev_core);
  for (const Mount& m : plan.mounts) {
    std::vector<std::pair<const char*, const char*>> tmpfs_options;
    if (!m.size.empty()) {
      tmpfs_options.emplace_back("size", m.size.c_str());
    }
    UniqueFd tree(m.tmpfs            ? fs_mount("tmpfs", tmpfs_options, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
                  : m.source.empty() ? content_tree(err_fd, dev.get(), m)
                                     : ::open_tree(AT_FDCWD, m.source.c_str(),
                                                   OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
    if (!tree) {
      child_fail(err_fd, errno_text("cannot open mount source " + m.source));
    }
    if (m.read_only && set_readonly(tree.get()) != 0) {
      child_fail(err_fd, errno_text("cannot make mount /" + m.target + " read-only"));
    }
    if (!m.source.empty() && plan.nodev && set_nodev(tree.get()) != 0) {
      child_fail(err_fd, errno_text("cannot make mount /" + m.target + " nodev"));
    }
    UniqueFd target(open_or_create_target(root.get(), m));
    if (!target || attach(tree.get(), target.get()) != 0) {
      child_fail(err_fd, errno_text("cannot mount " + (m.source.empty() ? std::string("a file") : m.source) +
                                    " on /" + m.target));
    }
    if (m.source.empty() && !m.tmpfs && ::unlinkat(dev.get(), content_name(m).c_str(), 0) != 0) {
      child_fail(err_fd, errno_text("cannot unlink the file for /" + m.target));
    }
  }
  dev.reset();
  setup_proc(err_fd, root.get(), plan.privileged);
  setup_sys(err_fd, root.get(), plan.privileged);

  if (::fchdir(root.get()) != 0 || ::syscall(SYS_pivot_root, ".", ".") != 0 ||
      ::umount2(".", MNT_DETACH) != 0 || ::chdir("/") != 0) {
    child_fail(err_fd, errno_text("cannot pivot into the rootfs"));
  }
  root.reset();
  if (plan.capture) {
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::close(null_fd) != 0) {
      child_fail(err_fd, errno_text("cannot open /dev/null"));
    }
  }
  if (::sethostname(plan.hostname.data(), plan.hostname.size()) != 0) {
    child_fail(err_fd, errno_text("cannot set the hostname"));
  }
  ::umask(022);
  detail::make_workdir(err_fd, plan.workdir);
  // Without no_new_privs (Docker and BuildKit leave it off) loading a filter
  // needs CAP_SYS_ADMIN: load it while init still has every capability, as
  // late as possible before exec (as runc does).
  if (plan.seccomp != nullptr && detail::load_seccomp(*plan.seccomp) != 0) {
    child_fail(err_fd, errno_text("cannot load the seccomp filter"));
  }
  if (!plan.privileged) {
    detail::drop_capabilities(err_fd);
  }
  detail::switch_user(err_fd, plan.user, plan.set_groups);
  detail::exec_command(err_fd, plan.argv, plan.env, plan.path_env);
}

// A new network namespace starts with lo down; runc's default loopback
// setup (and so BuildKit's --network=none) brings it up.
bool loopback_up() {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) {
    return false;
  }
  struct ifreq ifr {};
  std::memcpy(ifr.ifr_name, "lo", 3);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) {
    return false;
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  return ::ioctl(s.get(), SIOCSIFFLAGS, &ifr) == 0;
}

[[noreturn]] void run_monitor(const Plan& plan, pid_t parent, int err_fd, int status_fd, int out_fd,
                              int errout_fd) {
  // Children start with default signal handling and nothing blocked.
  detail::child_start(parent);

  // Join the run's device cgroup; init and everything it starts follow.
  // It is the device policy when there is one (no nodev mounts then), so
  // failing to join is fatal.
  if (plan.cgroup_procs_fd >= 0 && ::write(plan.cgroup_procs_fd, "0", 1) != 1) {
    child_fail(err_fd, errno_text("cannot join the run's device cgroup"));
  }
  if (::unshare(plan.unshare_flags) != 0) {
    child_fail(err_fd, errno_text("cannot create namespaces"));
  }
  if ((plan.unshare_flags & CLONE_NEWNET) != 0 && !loopback_up()) {
    child_fail(err_fd, errno_text("cannot bring up the loopback interface"));
  }
  int alive[2];
  if (::pipe2(alive, O_CLOEXEC) != 0) {
    child_fail(err_fd, errno_text("pipe"));
  }
  pid_t init = ::fork();
  if (init < 0) {
    child_fail(err_fd, errno_text("fork"));
  }
  if (init == 0) {
    ::close(alive[1]);
    ::close(status_fd);
    run_init(plan, err_fd, alive[0], out_fd, errout_fd);
  }
  // Keep only the status pipe and the write end that tells init we live.
  ::close(alive[0]);
  ::close(err_fd);
  ::close(out_fd);
  ::close(errout_fd);
  int status = 0;
  while (::waitpid(init, &status, 0) < 0) {
    if (errno != EINTR) {
      ::_exit(127);
    }
  }
  ssize_t ignored = ::write(status_fd, &status, sizeof status);
  (void)ignored;
  ::_exit(0);
}

// ---- parent side ----------------------------------------------------------

class NamespaceSandbox final : public Sandbox {
public:
  // The seccomp program takes libseccomp some 40 ms to compile: begun here,
  // beside the build's other start-up work, not in the first RUN's path
  // (the first run waits for it if it is not done; an error shows there).
  NamespaceSandbox() : m_warm_up([] { (void)detail::default_seccomp_program(); }) {}
  ~NamespaceSandbox() override { m_warm_up.join(); }
  NamespaceSandbox(const NamespaceSandbox&) = delete;
  NamespaceSandbox& operator=(const NamespaceSandbox&) = delete;

  std::string_view name() const override { return "namespaces"; }
  Result<RunResult> run(const RunSpec& spec) override;

private:
  std::thread m_warm_up;
};

Result<RunResult> NamespaceSandbox::run(const RunSpec& spec) {
  TRY_VOID(detail::validate(spec));
  interrupt::install_handlers();

  UniqueFd root_fd(::open(spec.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) {
    return fail(Errc::not_found, "cannot open rootfs " + spec.rootfs.string() + ": " + std::strerror(errno));
  }
  TRY(auto passwd, fs::read_file_at(root_fd.get(), "etc/passwd", k_max_user_db_file, "/etc/passwd in the rootfs"));
  TRY(auto group, fs::read_file_at(root_fd.get(), "etc/group", k_max_user_db_file, "/etc/group in the rootfs"));
  TRY(ExecUser user, resolve_user(spec.user, passwd, group));

  Plan plan;
  plan.rootfs = spec.rootfs.string();
  plan.argv = spec.argv;
  plan.env = detail::build_env(spec, user, plan.path_env);
  plan.hostname = spec.hostname;
  plan.workdir = spec.workdir;
  plan.user = user;
  plan.capture = spec.stdio == Stdio::capture;
  plan.unshare_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID;
  if (spec.network == NetworkMode::none) {
    plan.unshare_flags |= CLONE_NEWNET;
  }


  detail::MountStubs stubs;
  for (const char* dir : {"proc", "dev", "sys"}) {
    TRY_VOID(stubs.ensure(root_fd.get(), dir, detail::StubKind::directory));
  }
  for (const BindMount& b : spec.mounts) {
    Mount m;
    m.source = b.source.string();
    m.target = fs::clean_path(b.target);
    m.read_only = b.access == Access::read_only;
    std::error_code ec;
    m.directory = std::filesystem::is_directory(b.source, ec);
    if (!std::filesystem::exists(b.source, ec)) {
      return fail(Errc::not_found, "mount source " + b.source.string() + " does not exist");
    }
    if (m.target.empty()) {
      return fail(Errc::invalid_argument, "cannot mount over the root directory");
    }
    TRY_VOID(stubs.ensure(root_fd.get(), m.target,
                          m.directory ? detail::StubKind::directory : detail::StubKind::file));
    plan.mounts.push_back(std::move(m));
  }
  for (const TmpfsMount& t : spec.tmpfs) {
    Mount m;
    m.tmpfs = true;
    m.directory = true;
    m.target = fs::clean_path(t.target);
    if (t.size) {
      m.size = std::to_string(*t.size);
    }
    if (m.target.empty()) {
      return fail(Errc::invalid_argument, "cannot mount a tmpfs over the root directory");
    }
    TRY_VOID(stubs.ensure(root_fd.get(), m.target, detail::StubKind::directory));
    plan.mounts.push_back(std::move(m));
  }
  plan.privileged = spec.privileged;
  plan.set_groups = !rootless_single_id();
  if (rootless_single_id() && (user.uid != 0 || user.gid != 0)) {
    return fail(Errc::permission,
                "cannot run as uid " + std::to_string(user.uid) + " gid " + std::to_string(user.gid) +
                    ": rootless mode without subordinate ids maps only root (add a range for your user: "
                    "`usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`)");
  }
  // Docker's default seccomp profile and device policy, unless insecure.
  std::optional<detail::DeviceCgroup> device_cgroup;
  if (!spec.privileged) {
    TRY(plan.seccomp, detail::default_seccomp_program());
    device_cgroup = detail::DeviceCgroup::create();
    if (device_cgroup) {
      plan.cgroup_procs_fd = device_cgroup->procs_fd();
    }
    plan.nodev = !device_cgroup;
  }
  plan.dev_core = spec.flavor == Flavor::container;
  const std::pair<const char*, std::string> etc_files[] = {
      {"hosts", detail::hosts_file(spec)},
      {"resolv.conf", spec.resolv_conf ? *spec.resolv_conf : detail::host_resolv_conf()},
      {"hostname", spec.hostname + "\n"}};
  for (const auto& [name, content] : etc_files) {
    if (spec.flavor == Flavor::build && std::strcmp(name, "hostname") == 0) {
      continue;  // BuildKit v0.22's RUN has no /etc/hostname
    }
    Mount m;
    m.content = content;
    m.target = std::string("etc/") + name;
    TRY_VOID(stubs.ensure(root_fd.get(), m.target, detail::StubKind::file));
    plan.mounts.push_back(std::move(m));
  }

  TRY(detail::RunPipes pipes, detail::RunPipes::create());
  int status_pipe[2] = {-1, -1};
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return fail(Errc::io, std::string("cannot create pipes: ") + std::strerror(errno));
  }
  UniqueFd status_r(status_pipe[0]), status_w(status_pipe[1]);

  const pid_t self = ::getpid();
  pid_t monitor = ::fork();
  if (monitor < 0) {
    return fail(Errc::io, std::string("fork: ") + std::strerror(errno));
  }
  if (monitor == 0) {
    run_monitor(plan, self, pipes.msg_w.get(), status_w.get(), pipes.out_w.get(), pipes.err_w.get());
  }
  interrupt::Registration kill_reg = interrupt::kill_on_interrupt(monitor);
  // Should anything below throw (a sink, say), the sandbox must not outlive
  // this call: kill and reap the monitor (init follows by PDEATHSIG).
  struct MonitorGuard {
    pid_t pid;
    ~MonitorGuard() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
    }
  } guard{monitor};
  pipes.close_write_ends();
  status_w.reset();

  std::string message = detail::pump_output(pipes.out_r, pipes.err_r, pipes.msg_r, spec);

  int wstatus = 0;
  while (::waitpid(monitor, &wstatus, 0) < 0 && errno == EINTR) {
  }
  guard.pid = 0;
  kill_reg.release();
  int init_status = 0;
  ssize_t got = ::read(status_r.get(), &init_status, sizeof init_status);
  stubs.remove_all();

  if (!message.empty()) {
    return fail(Errc::invalid_argument, message);
  }
  if (got != static_cast<ssize_t>(sizeof init_status)) {
    return fail(Errc::internal, "the sandbox monitor died unexpectedly");
  }
  return detail::run_result(init_status);
}

}  // namespace

namespace {

// Whether this process may make the namespaces a run needs: a child tries.
bool namespaces_work() {
  static std::once_flag once;
  static bool works = false;
  std::call_once(once, [] {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::_exit(::unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID) == 0 ? 0 : 1);
    }
    int status = 0;
    while (pid > 0 && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    works = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  });
  return works;
}

}  // namespace

Result<std::unique_ptr<Sandbox>> make_sandbox(std::string_view kind) {
  if (kind != "auto" && kind != "namespaces" && kind != "chroot") {
    return fail(Errc::invalid_argument, "unknown isolation " + str::go_quote(kind) + " (known: auto, namespaces, chroot)");
  }
  if (::geteuid() != 0) {
    return fail(Errc::permission,
                "the sandbox needs root, or the root of a rootless user namespace (sandbox::enter_rootless)");
  }
  if (kind == "chroot" || (kind == "auto" && !namespaces_work())) {
    return make_chroot_sandbox();
  }
  return std::unique_ptr<Sandbox>(new NamespaceSandbox());
}

}  // namespace imgbuild::sandbox
