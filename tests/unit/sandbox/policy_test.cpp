// The sandbox's security policy as data and programs, without a sandbox: the
// device allow-list decides as runc's default does, and the seccomp program
// refuses what Docker's default profile refuses. The filter is loaded into a
// forked child under no_new_privs, so no privilege is needed.

#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <catch2/catch.hpp>

#include "sandbox/devices.hpp"
#include "sandbox/seccomp.hpp"

using namespace imgbuild::sandbox::detail;

TEST_CASE("device rules: any node may be made, only the standard ones opened", "[sandbox][policy]") {
  const auto& rules = default_device_rules();
  const unsigned rw = k_dev_read | k_dev_write;
  CHECK(device_allowed(rules, 'b', 8, 0, k_dev_mknod));
  CHECK(device_allowed(rules, 'c', 4, 1, k_dev_mknod));
  CHECK_FALSE(device_allowed(rules, 'b', 8, 0, k_dev_read));   // a disk
  CHECK_FALSE(device_allowed(rules, 'b', 7, 0, k_dev_write));  // a loop device
  CHECK_FALSE(device_allowed(rules, 'c', 1, 1, k_dev_read));   // /dev/mem
  CHECK_FALSE(device_allowed(rules, 'c', 1, 11, rw));          // /dev/kmsg
  CHECK_FALSE(device_allowed(rules, 'c', 10, 200, rw));        // /dev/net/tun
  for (long minor : {3, 5, 7, 8, 9}) {
    CHECK(device_allowed(rules, 'c', 1, minor, rw | k_dev_mknod));
  }
  for (long minor : {0, 1, 2}) {
    CHECK(device_allowed(rules, 'c', 5, minor, rw));
  }
  CHECK(device_allowed(rules, 'c', 136, 7, rw));  // a pts terminal
  CHECK_FALSE(device_allowed(rules, 'b', 1, 3, k_dev_read));  // 1:3 as a block device is not null
  CHECK_FALSE(device_allowed(rules, 'b', 8, 0, k_dev_mknod | k_dev_read));
}

namespace {

// What each probe returned in the filtered child: 0 (allowed) or the errno.
struct Probe {
  const char* what;
  int expected;  // 0: allowed
};

int probe(int index) {
  errno = 0;
  long rc = -1;
  switch (index) {
    case 0: rc = ::unshare(CLONE_NEWUSER); break;
    case 1: rc = ::unshare(CLONE_NEWNS); break;
    case 2: rc = ::mount("none", "/", nullptr, MS_REMOUNT, nullptr); break;
    case 3: rc = ::syscall(SYS_clone3, nullptr, 0); break;
    case 4: rc = ::socket(40 /* AF_VSOCK */, SOCK_STREAM, 0); break;
    case 5: rc = ::personality(0xffffffff); break;
    case 6: rc = ::personality(0x0040000 /* ADDR_NO_RANDOMIZE */); break;
    case 7: rc = ::syscall(SYS_keyctl, 0, 0, 0, 0, 0); break;
    case 8: rc = ::getpid(); break;
    case 9: {
      int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      rc = fd;
      if (fd >= 0) {
        ::close(fd);
      }
      break;
    }
    case 10: {
      // fork is clone without namespace flags: allowed.
      pid_t pid = ::fork();
      if (pid == 0) {
        ::_exit(0);
      }
      rc = pid;
      if (pid > 0) {
        ::waitpid(pid, nullptr, 0);
      }
      break;
    }
    case 11: rc = ::syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, nullptr, nullptr, nullptr, 0); break;
    case 12: rc = ::sethostname("x", 1); break;
    default: return -1;
  }
  if (rc >= 0) {
    if (index == 11 && rc == 0) {
      ::_exit(0);
    }
    return 0;
  }
  return errno;
}

}  // namespace

TEST_CASE("seccomp: Docker's default profile refuses namespaces, mounts and keyrings", "[sandbox][policy]") {
  auto program = default_seccomp_program();
  REQUIRE(program);
  CHECK((*program)->code.size() > 100);
  // The same program object every time (compiled once).
  CHECK(*default_seccomp_program() == *program);

  const Probe probes[] = {
      {"unshare(CLONE_NEWUSER)", EPERM}, {"unshare(CLONE_NEWNS)", EPERM},
      {"mount", EPERM},                  {"clone3", ENOSYS},
      {"socket(AF_VSOCK)", EPERM},       {"personality(query)", 0},
      {"personality(ADDR_NO_RANDOMIZE)", EPERM},
      {"keyctl", EPERM},                 {"getpid", 0},
      {"socket(AF_UNIX)", 0},            {"fork", 0},
      {"clone(CLONE_NEWPID)", EPERM},    {"sethostname", EPERM},
  };
  constexpr int n = static_cast<int>(sizeof probes / sizeof probes[0]);
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(pipefd[0]);
    int results[n];
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || load_seccomp(**program) != 0) {
      ::_exit(2);
    }
    for (int i = 0; i < n; ++i) {
      results[i] = probe(i);
    }
    ssize_t w = ::write(pipefd[1], results, sizeof results);
    ::_exit(w == static_cast<ssize_t>(sizeof results) ? 0 : 3);
  }
  ::close(pipefd[1]);
  int results[n] = {};
  ssize_t got = ::read(pipefd[0], results, sizeof results);
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(got == static_cast<ssize_t>(sizeof results));
  for (int i = 0; i < n; ++i) {
    INFO(probes[i].what);
    CHECK(results[i] == probes[i].expected);
  }
}
