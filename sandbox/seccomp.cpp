// Docker's default seccomp policy, as a libseccomp filter compiled once.
//
// The rules are Docker's (moby profiles/seccomp/default.json, which BuildKit
// v0.22 applies to every RUN that is not --security=insecure), for a process
// with Docker's default capabilities. The profile is data there; here it is a
// table of the unconditionally allowed calls plus the handful of rules with
// argument conditions, written out by hand. A name this libseccomp does not
// know is skipped, as runc does, so a newer kernel's call falls to the
// default action (EPERM), as under Docker with an older libseccomp.
//
// The program is exported as classic BPF in the parent, before fork: the
// sandboxed child then loads it with one seccomp(2) call and allocates
// nothing.

#include "sandbox/seccomp.hpp"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "util/fd.hpp"

namespace imgbuild::sandbox::detail {

namespace {

// Allowed with any arguments (the profile's first rule), sorted.
constexpr const char* k_allowed[] = {
    "_llseek", "_newselect", "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat",
    "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2",
    "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod",
    "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait",
    "futex_waitv", "futex_wake", "futimesat", "get_robust_list", "get_thread_area", "getcpu", "getcwd",
    "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
    "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "getrusage", "getsid",
    "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy",
    "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "ioprio_get",
    "ioprio_set", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
    "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "lremovexattr",
    "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap",
    "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd",
    "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "open",
    "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg",
    "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto",
    "set_robust_list", "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid",
    "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
    "setsid", "setsockopt", "setuid", "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
    "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice",
    "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
    "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
    "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev"
};

// Allowed with any arguments since kernel 4.8 (every kernel this sandbox
// runs on: it needs the new mount API of 5.2).
constexpr const char* k_allowed_since_4_8[] = {"process_vm_readv", "process_vm_writev", "ptrace"};

// The personas personality(2) may select: PER_LINUX, PER_LINUX32,
// UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query).
constexpr scmp_datum_t k_personas[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

// clone(2) flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS,
// NEWIPC, NEWUSER, NEWPID, NEWNET): clone with any of them needs
// CAP_SYS_ADMIN under Docker's profile.
constexpr scmp_datum_t k_clone_namespace_flags = 0x7E020000;

constexpr int k_af_vsock = 40;

class Filter {
public:
  Filter() : m_ctx(seccomp_init(SCMP_ACT_ERRNO(EPERM))) {}
  ~Filter() {
    if (m_ctx != nullptr) {
      seccomp_release(m_ctx);
    }
  }
  Filter(const Filter&) = delete;
  Filter& operator=(const Filter&) = delete;
  scmp_filter_ctx get() const { return m_ctx; }

private:
  scmp_filter_ctx m_ctx;
};

Result<void> check(int rc, const std::string& what) {
  if (rc < 0) {
    return fail(Errc::internal, "seccomp: " + what + ": " + std::strerror(-rc));
  }
  return ok();
}

// Adds an allow rule for `name` (with conditions), skipping names this
// libseccomp does not know.
Result<void> allow(scmp_filter_ctx ctx, const char* name, std::initializer_list<scmp_arg_cmp> conditions = {}) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) {
    return ok();
  }
  std::vector<scmp_arg_cmp> args(conditions);
  return check(seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, static_cast<unsigned>(args.size()), args.data()),
               std::string("rule for ") + name);
}

Result<SeccompProgram> build_program() {
  Filter filter;
  scmp_filter_ctx ctx = filter.get();
  if (ctx == nullptr) {
    return fail(Errc::internal, "seccomp: cannot create a filter");
  }
  // The compat ABIs of the native architecture, as Docker's profile maps them.
  const uint32_t native = seccomp_arch_native();
  std::vector<uint32_t> extra;
  if (native == SCMP_ARCH_X86_64) {
    extra = {SCMP_ARCH_X86, SCMP_ARCH_X32};
  } else if (native == SCMP_ARCH_AARCH64) {
    extra = {SCMP_ARCH_ARM};
  }
  for (uint32_t arch : extra) {
    int rc = seccomp_arch_add(ctx, arch);
    if (rc < 0 && rc != -EEXIST) {
      TRY_VOID(check(rc, "adding an architecture"));
    }
  }
  for (const char* name : k_allowed) {
    TRY_VOID(allow(ctx, name));
  }
  for (const char* name : k_allowed_since_4_8) {
    TRY_VOID(allow(ctx, name));
  }
  for (scmp_datum_t persona : k_personas) {
    TRY_VOID(allow(ctx, "personality", {SCMP_A0(SCMP_CMP_EQ, persona)}));
  }
  TRY_VOID(allow(ctx, "socket", {SCMP_A0(SCMP_CMP_NE, k_af_vsock)}));
  // clone's flags are its first argument everywhere but s390 (not built here).
  TRY_VOID(allow(ctx, "clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, k_clone_namespace_flags, 0)}));
  // clone3 passes its flags in memory, where no filter can see them: it
  // fails with ENOSYS so that libc falls back to clone.
  TRY_VOID(check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), seccomp_syscall_resolve_name("clone3"), 0),
                 "rule for clone3"));
  // CAP_SYS_CHROOT is one of Docker's default capabilities.
  TRY_VOID(allow(ctx, "chroot"));
  if (native == SCMP_ARCH_X86_64) {
    TRY_VOID(allow(ctx, "arch_prctl"));
    TRY_VOID(allow(ctx, "modify_ldt"));
  } else if (native == SCMP_ARCH_AARCH64) {
    for (const char* name : {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                             "cacheflush", "set_tls"}) {
      TRY_VOID(allow(ctx, name));
    }
  }

  // Export to a memory file and read the program back.
  UniqueFd mem(static_cast<int>(::syscall(SYS_memfd_create, "imgbuild-seccomp", MFD_CLOEXEC)));
  if (!mem) {
    return fail(Errc::io, std::string("seccomp: memfd_create: ") + std::strerror(errno));
  }
  TRY_VOID(check(seccomp_export_bpf(ctx, mem.get()), "exporting the filter"));
  off_t size = ::lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0) {
    return fail(Errc::internal, "seccomp: the exported filter has an odd size");
  }
  SeccompProgram program;
  program.code.resize(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(mem.get(), program.code.data(), static_cast<size_t>(size), 0) != size) {
    return fail(Errc::io, std::string("seccomp: reading the exported filter: ") + std::strerror(errno));
  }
  return program;
}

}  // namespace

Result<const SeccompProgram*> default_seccomp_program() {
  static std::once_flag once;
  static Result<SeccompProgram> built = fail(Errc::internal, "seccomp: not built");
  std::call_once(once, [] { built = build_program(); });
  if (!built) {
    return built.error();
  }
  return &*built;
}

int load_seccomp(const SeccompProgram& program) noexcept {
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(program.code.size());
  prog.filter = const_cast<sock_filter*>(program.code.data());
  return static_cast<int>(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog));
}

}  // namespace imgbuild::sandbox::detail
