// The namespace sandbox against a busybox rootfs generated at test time.
// Needs root (namespaces, mounts) and /bin/busybox (busybox-static).

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "sandbox/sandbox.hpp"
#include "support/busybox_rootfs.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using namespace imgbuild;
using namespace imgbuild::sandbox;

namespace {

struct Outcome {
  Result<RunResult> result = fail(Errc::internal, "not run");
  std::vector<std::string> out;
  std::vector<std::string> err;
};

std::string joined(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) {
    s += l + "\n";
  }
  return s;
}

Outcome run_in(const fs::path& root, RunSpec spec) {
  Outcome o;
  spec.rootfs = root;
  spec.on_stdout = [&](std::string_view l) { o.out.emplace_back(l); };
  spec.on_stderr = [&](std::string_view l) { o.err.emplace_back(l); };
  auto sb = make_sandbox();
  REQUIRE(sb);
  o.result = (*sb)->run(spec);
  if (!o.result) {
    UNSCOPED_INFO("run failed: " << o.result.error().message);
  }
  UNSCOPED_INFO("stdout:\n" << joined(o.out) << "stderr:\n" << joined(o.err));
  return o;
}

Outcome sh(const fs::path& root, const std::string& script, RunSpec spec = {}) {
  spec.argv = {"/bin/sh", "-c", script};
  return run_in(root, std::move(spec));
}

std::string read_cmdline(const fs::path& proc_dir) {
  std::ifstream in(proc_dir / "cmdline", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool host_process_with_arg(const std::string& arg) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string cmd = read_cmdline(e.path());
    if (cmd.find(arg) != std::string::npos && cmd.rfind("sleep", 0) == 0) {
      return true;
    }
  }
  return false;
}

pid_t find_host_process(const std::string& arg) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string cmd = read_cmdline(e.path());
    if (cmd == "sleep" + std::string(1, '\0') + arg + std::string(1, '\0')) {
      return static_cast<pid_t>(std::stol(e.path().filename().string()));
    }
  }
  return 0;
}

#define REQUIRE_SANDBOX()                                                        \
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root"); \
  IMGBUILD_REQUIRE_PREREQ(test::have_busybox(), "/bin/busybox (busybox-static) is missing")

}  // namespace

TEST_CASE("the command is pid 1 and sees no host process", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  auto o = sh(t.path(), "echo $$; readlink /proc/self; ls /proc | grep -c '^[0-9][0-9]*$'");
  REQUIRE(o.result);
  CHECK(o.result->exit_code == 0);
  REQUIRE(o.out.size() == 3);
  CHECK(o.out[0] == "1");
  CHECK(std::stoi(o.out[1]) > 1);
  CHECK(std::stoi(o.out[1]) < 10);
  // sh, ls and grep at most: the host's processes are invisible.
  CHECK(std::stoi(o.out[2]) <= 3);
}

TEST_CASE("hostname, /etc files and /dev are the sandbox's own", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  RunSpec spec;
  spec.hostname = "box42";
  spec.extra_hosts = {{"db.local", "10.1.2.3"}};
  spec.resolv_conf = "nameserver 192.0.2.53\n";
  auto o = sh(t.path(),
              "hostname; cat /etc/hostname; grep -c box42 /etc/hosts; grep db.local /etc/hosts; cat /etc/resolv.conf;"
              "for d in null zero full random urandom tty; do test -c /dev/$d || echo missing $d; done;"
              "test -d /dev/pts && test -e /dev/ptmx && test -d /dev/shm || echo missing pts;"
              "echo x > /dev/null && head -c 3 /dev/zero | wc -c;"
              "touch /sys/x 2>/dev/null && echo sys-writable; echo > /etc/hosts && echo hosts-writable;"
              "ls -a /dev | grep imgbuild || true",
              spec);
  REQUIRE(o.result);
  CHECK(o.result->exit_code == 0);
  CHECK(joined(o.out) ==
        "box42\nbox42\n1\n10.1.2.3\tdb.local\nnameserver 192.0.2.53\n3\nhosts-writable\n");
  // Nothing of it was captured into the rootfs.
  CHECK_FALSE(fs::exists(fs::symlink_status(t.path() / "etc" / "hosts")));
  CHECK_FALSE(fs::exists(fs::symlink_status(t.path() / "etc" / "resolv.conf")));
  CHECK_FALSE(fs::exists(fs::symlink_status(t.path() / "etc" / "hostname")));
  CHECK_FALSE(fs::exists(fs::symlink_status(t.path() / "proc")));
  CHECK_FALSE(fs::exists(fs::symlink_status(t.path() / "dev")));
  CHECK_FALSE(fs::exists(fs::symlink_status(t.path() / "sys")));
}

TEST_CASE("a build RUN (Flavor::build) sees no /etc/hostname and no /dev/core, in every sandbox kind", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  const std::string script =
      "for f in /etc/hosts /etc/resolv.conf /etc/hostname /dev/core; do "
      "if test -e $f || test -L $f; then echo $f yes; else echo $f no; fi; done";
  for (const char* kind : {"namespaces", "chroot"}) {
    INFO(kind);
    for (Flavor flavor : {Flavor::build, Flavor::container}) {
      test::ScratchDir t;
      test::make_busybox_rootfs(t.path());
      RunSpec spec;
      spec.rootfs = t.path();
      spec.argv = {"/bin/sh", "-c", script};
      spec.flavor = flavor;
      std::vector<std::string> out;
      spec.on_stdout = [&](std::string_view l) { out.emplace_back(l); };
      spec.on_stderr = [](std::string_view) {};
      auto sb = make_sandbox(kind);
      REQUIRE(sb);
      auto r = (*sb)->run(spec);
      REQUIRE(r);
      CHECK(r->exit_code == 0);
      bool build = flavor == Flavor::build;
      // The chroot kind lays in device nodes only (no /dev links at all).
      bool core = !build && std::string(kind) == "namespaces";
      CHECK(joined(out) == std::string("/etc/hosts yes\n/etc/resolv.conf yes\n/etc/hostname ") +
                               (build ? "no" : "yes") + "\n/dev/core " + (core ? "yes" : "no") + "\n");
      CHECK_FALSE(fs::exists(fs::symlink_status(t.path() / "etc" / "hostname")));
    }
  }
}

TEST_CASE("existing /etc/hosts in the rootfs is hidden, not changed", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  std::ofstream(t.path() / "etc" / "hosts") << "image hosts\n";
  fs::create_directories(t.path() / "proc");
  auto o = sh(t.path(), "cat /etc/hosts | head -1; echo changed > /etc/hosts");
  REQUIRE(o.result);
  CHECK(o.out == std::vector<std::string>{"127.0.0.1\tlocalhost imgbuild"});
  std::ifstream in(t.path() / "etc" / "hosts");
  std::string line;
  std::getline(in, line);
  CHECK(line == "image hosts");
  CHECK(fs::is_directory(t.path() / "proc"));  // pre-existing mount points stay
}

TEST_CASE("USER resolves from the rootfs's passwd and group", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  // The primary gid is a supplementary group too (BuildKit v0.22); the
  // kernel keeps the list sorted.
  const std::string script = "id -u; id -g; id -G; echo $HOME; grep '^Groups:' /proc/self/status";
  RunSpec app;
  app.user = "app";
  auto o = sh(t.path(), script, app);
  REQUIRE(o.result);
  CHECK(joined(o.out) == "1000\n1000\n1000 10 29\n/home/app\nGroups:\t10 29 1000 \n");

  RunSpec numeric;
  numeric.user = "1000:1000";
  auto n = sh(t.path(), script, numeric);
  REQUIRE(n.result);
  CHECK(joined(n.out) == "1000\n1000\n1000\n/home/app\nGroups:\t1000 \n");

  RunSpec unknown_uid;
  unknown_uid.user = "4242";
  auto u = sh(t.path(), "id -u; id -g; echo $HOME", unknown_uid);
  REQUIRE(u.result);
  CHECK(joined(u.out) == "4242\n0\n/\n");

  auto root = sh(t.path(), script);
  REQUIRE(root.result);
  CHECK(joined(root.out) == "0\n0\n0 10\n/root\nGroups:\t0 10 \n");

  RunSpec missing;
  missing.user = "nobody";
  auto m = sh(t.path(), "true", missing);
  REQUIRE_FALSE(m.result);
  CHECK(m.result.error().message == "unable to find user nobody: no matching entries in passwd file");
}

TEST_CASE("non-root users have no capabilities and root keeps Docker's set", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  auto o = sh(t.path(), "grep -E '^Cap(Eff|Bnd):' /proc/self/status");
  REQUIRE(o.result);
  CHECK(joined(o.out) == "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n");
  RunSpec app;
  app.user = "app";
  auto a = sh(t.path(), "grep '^CapEff:' /proc/self/status; mount -t tmpfs none /tmp 2>/dev/null || echo denied", app);
  REQUIRE(a.result);
  CHECK(joined(a.out) == "CapEff:\t0000000000000000\ndenied\n");
}

TEST_CASE("root's capability sets are Docker's: nothing inheritable or ambient", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  auto o = sh(t.path(), "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status");
  REQUIRE(o.result);
  CHECK(joined(o.out) ==
        "CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n"
        "CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\n");
}

TEST_CASE("a sandboxed root cannot open the device nodes it makes, nor make namespaces", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  // Block 7:0 is a loop device, char 1:1 is /dev/mem: mknod is allowed (as
  // under Docker), opening is not, wherever the node is made — in the
  // rootfs, in /dev, in a tmpfs. unshare and mount are refused by seccomp.
  auto o = sh(t.path(),
              "mkdir -p /tmp && mknod /tmp/loop b 7 0 && echo made;"
              "head -c1 /tmp/loop >/dev/null 2>/tmp/err1; cat /tmp/err1;"
              "mknod /dev/mem c 1 1 && echo made;"
              "head -c1 /dev/mem >/dev/null 2>/tmp/err2; cat /tmp/err2;"
              "unshare -U true 2>&1 || echo unshare-failed;"
              "unshare -m true 2>&1 || echo unshare-failed;"
              "head -c 4 /dev/zero | wc -c; echo ok > /dev/null && echo null-ok",
              {});
  REQUIRE(o.result);
  std::string out = joined(o.out);
  CHECK(out.find("made\nhead: /tmp/loop: Operation not permitted\n") != std::string::npos);
  CHECK(out.find("made\nhead: /dev/mem: Operation not permitted\n") != std::string::npos);
  CHECK(out.find("unshare(0x10000000): Operation not permitted\nunshare-failed\n") != std::string::npos);
  CHECK(out.find("unshare(0x20000): Operation not permitted\nunshare-failed\n") != std::string::npos);
  CHECK(out.find("4\nnull-ok\n") != std::string::npos);
  // The run's device cgroup is gone with the run.
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  std::string rel;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) == 0) {
      rel = line.substr(3);
    }
  }
  for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(std::string(root) + rel, ec)) {
      CHECK(e.path().filename().string().rfind("imgbuild-run-" + std::to_string(::getpid()) + "-", 0) ==
            std::string::npos);
    }
  }
}

TEST_CASE("without a device cgroup, nodev mounts still keep made nodes closed", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  ::setenv("IMGBUILD_DEVICE_CGROUP", "off", 1);
  auto o = sh(t.path(),
              "mkdir -p /tmp && mknod /tmp/loop b 7 0 && head -c1 /tmp/loop 2>&1 >/dev/null;"
              "mknod /dev/mem c 1 1 && head -c1 /dev/mem 2>&1 >/dev/null;"
              "for d in null zero full random urandom; do head -c 1 /dev/$d > /dev/null 2>&1 || echo fail $d; done;"
              "echo x > /dev/null && echo null-ok");
  ::unsetenv("IMGBUILD_DEVICE_CGROUP");
  REQUIRE(o.result);
  CHECK(joined(o.out) ==
        "head: /tmp/loop: Permission denied\nhead: /dev/mem: Permission denied\nnull-ok\n");
}

TEST_CASE("privileged runs have no seccomp filter and may open host devices", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  RunSpec spec;
  spec.privileged = true;
  auto o = sh(t.path(),
              "grep -E '^Seccomp:' /proc/self/status; mkdir -p /tmp && mknod /tmp/z c 1 5 && head -c 2 /tmp/z | wc -c",
              spec);
  REQUIRE(o.result);
  CHECK(joined(o.out) == "Seccomp:\t0\n2\n");
}

TEST_CASE("exit status and signals pass through", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  auto three = sh(t.path(), "exit 3");
  REQUIRE(three.result);
  CHECK(three.result->exit_code == 3);
  CHECK_FALSE(three.result->signal);

  // A signal from inside cannot kill pid 1, so kill it from the host.
  const std::string marker = "987651";
  Outcome killed;
  std::thread runner([&] {
    RunSpec spec;
    spec.argv = {"sleep", marker};
    killed = run_in(t.path(), spec);
  });
  pid_t pid = 0;
  for (int i = 0; i < 2000 && pid == 0; ++i) {
    pid = find_host_process(marker);
    if (pid == 0) {
      ::usleep(5000);
    }
  }
  CHECK(pid != 0);
  if (pid != 0) {
    ::kill(pid, SIGKILL);
  }
  runner.join();
  REQUIRE(killed.result);
  CHECK(killed.result->signal == SIGKILL);
  CHECK(killed.result->exit_code == 137);
}

TEST_CASE("missing executables and bad workdirs fail to start with clear errors", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  RunSpec spec;
  spec.argv = {"no-such-tool", "x"};
  auto o = run_in(t.path(), spec);
  REQUIRE_FALSE(o.result);
  CHECK(o.result.error().message == "exec: \"no-such-tool\": executable file not found in $PATH");
  spec.argv = {"/bin/nope"};
  auto p = run_in(t.path(), spec);
  REQUIRE_FALSE(p.result);
  CHECK(p.result.error().message == "exec: \"/bin/nope\": stat /bin/nope: no such file or directory");
}

TEST_CASE("workdir is created when missing and env reaches the process", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  RunSpec spec;
  spec.workdir = "/a/b/c";
  spec.env = {"FOO=bar baz"};
  auto o = sh(t.path(), "pwd; echo \"$FOO\"; echo $PATH", spec);
  REQUIRE(o.result);
  CHECK(joined(o.out) == "/a/b/c\nbar baz\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
  CHECK(fs::is_directory(t.path() / "a" / "b" / "c"));
}

TEST_CASE("network none has only the loopback interface", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  RunSpec spec;
  spec.network = NetworkMode::none;
  auto o = sh(t.path(), "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ls /sys/class/net", spec);
  REQUIRE(o.result);
  CHECK(joined(o.out) == "lo\nlo\n");
}

TEST_CASE("no host descriptor leaks into the sandbox", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  // A descriptor deliberately left without O_CLOEXEC.
  int leaky = ::open(t.path().c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(leaky >= 0);
  RunSpec spec;
  spec.argv = {"ls", "-l", "/proc/self/fd/"};
  auto o = run_in(t.path(), spec);
  ::close(leaky);
  REQUIRE(o.result);
  std::map<std::string, std::string> fds;
  for (const std::string& l : o.out) {
    auto arrow = l.find(" -> ");
    if (arrow == std::string::npos) {
      continue;
    }
    auto space = l.rfind(' ', arrow - 1);
    fds[l.substr(space + 1, arrow - space - 1)] = l.substr(arrow + 4);
  }
  // stdio, plus at most the directory ls itself is reading.
  CHECK(fds["0"] == "/dev/null");
  CHECK(fds["1"].rfind("pipe:", 0) == 0);
  CHECK(fds["2"].rfind("pipe:", 0) == 0);
  fds.erase("0");
  fds.erase("1");
  fds.erase("2");
  for (const auto& [fd, target] : fds) {
    INFO("fd " << fd << " -> " << target);
    CHECK(target.rfind("/proc/", 0) == 0);
  }
  CHECK(fds.size() <= 1);
}

TEST_CASE("background processes die with the main process", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  const std::string marker = "987652";
  auto o = sh(t.path(), "sleep " + marker + " >/dev/null 2>&1 & sleep " + marker + " & echo started");
  REQUIRE(o.result);
  CHECK(o.out == std::vector<std::string>{"started"});
  CHECK_FALSE(host_process_with_arg(marker));
}

TEST_CASE("stdout and stderr arrive line by line, in order per stream", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  auto o = sh(t.path(), "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; printf partial");
  REQUIRE(o.result);
  CHECK(o.out == std::vector<std::string>{"out1", "out2", "out3", "out4", "out5", "partial"});
  CHECK(o.err == std::vector<std::string>{"err1", "err2", "err3", "err4", "err5"});
}

TEST_CASE("bind mounts are read-only unless asked and leave no stub", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  test::ScratchDir src;
  std::ofstream(src.path() / "file") << "from host\n";
  RunSpec spec;
  spec.mounts = {{src.path(), "/mnt/../mnt/src", Access::read_only}};
  auto o = sh(t.path(), "cat /mnt/src/file; touch /mnt/src/x 2>/dev/null || echo read-only", spec);
  REQUIRE(o.result);
  CHECK(joined(o.out) == "from host\nread-only\n");
  CHECK_FALSE(fs::exists(t.path() / "mnt"));
  spec.mounts[0].access = Access::read_write;
  auto w = sh(t.path(), "touch /mnt/src/x && echo ok", spec);
  REQUIRE(w.result);
  CHECK(fs::exists(src.path() / "x"));
}

TEST_CASE("an absolute symlink in the rootfs cannot steer mounts to the host", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  test::ScratchDir host;
  fs::create_directories(host.path() / "etc");
  fs::remove_all(t.path() / "etc");
  fs::create_symlink(host.path() / "etc", t.path() / "etc");
  auto o = sh(t.path(), "echo x");
  // Either refused or contained; the host directory stays untouched.
  CHECK(fs::is_empty(host.path() / "etc"));
  if (!o.result) {
    CHECK(o.result.error().message.find("etc") != std::string::npos);
  }
}

TEST_CASE("the sandbox dies with imgbuild (SIGINT, SIGTERM, SIGKILL)", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  const int sig = GENERATE(SIGINT, SIGTERM, SIGKILL);
  const std::string marker = "98765" + std::to_string(sig);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Catch's own fatal-signal report of this child would only be noise.
    int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    // Behave like a plain imgbuild process, not one under Catch's handlers.
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    auto sb = make_sandbox();
    if (!sb) {
      ::_exit(1);
    }
    RunSpec spec;
    spec.rootfs = t.path();
    spec.argv = {"sh", "-c", "sleep " + marker + " & sleep " + marker};
    auto r = (*sb)->run(spec);
    ::_exit(r ? 0 : 2);
  }
  bool started = false;
  for (int i = 0; i < 2000 && !started; ++i) {
    started = find_host_process(marker) != 0;
    if (!started) {
      ::usleep(5000);
    }
  }
  CHECK(started);
  ::kill(child, sig);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status));
  if (WIFSIGNALED(status)) {
    CHECK(WTERMSIG(status) == sig);
  }
  // The kernel tears the namespace down asynchronously; wait (bounded) for it.
  bool gone = false;
  for (int i = 0; i < 2000 && !gone; ++i) {
    gone = !host_process_with_arg(marker);
    if (!gone) {
      ::usleep(5000);
    }
  }
  CHECK(gone);
}

TEST_CASE("a throwing sink ends the run without leaving the sandbox behind", "[sandbox][integration]") {
  REQUIRE_SANDBOX();
  test::ScratchDir t;
  test::make_busybox_rootfs(t.path());
  const std::string marker = "987653";
  RunSpec spec;
  spec.rootfs = t.path();
  spec.argv = {"sh", "-c", "echo boom; exec sleep " + marker};
  spec.on_stdout = [](std::string_view) { throw std::runtime_error("sink failed"); };
  auto sb = make_sandbox();
  REQUIRE(sb);
  CHECK_THROWS_AS((*sb)->run(spec), std::runtime_error);
  bool gone = false;
  for (int i = 0; i < 2000 && !gone; ++i) {
    gone = !host_process_with_arg(marker);
    if (!gone) {
      ::usleep(5000);
    }
  }
  CHECK(gone);
  CHECK_FALSE(fs::exists(fs::symlink_status(t.path() / "etc" / "hosts")));
}
