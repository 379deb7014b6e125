// What a RUN step sees of the machine: --network=none leaves only a
// loopback interface, and it is up (as runc's default loopback setup
// leaves it under BuildKit); --security=insecure mounts /sys read-write
// where the default sandbox mounts it read-only, and adds the host's device
// nodes to the sandbox's minimal /dev.

#include <unistd.h>

#include <algorithm>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::RunResult;
using namespace imgbuild::test::build;

namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      nl = text.size();
    }
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

// The interface names of a /proc/net/dev listing.
std::vector<std::string> interfaces(const std::string& netdev) {
  std::vector<std::string> out;
  for (const auto& line : split_lines(netdev)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos || line.find('|') != std::string::npos) {
      continue;  // the two header lines
    }
    size_t start = line.find_first_not_of(' ');
    out.push_back(line.substr(start, colon - start));
  }
  return out;
}

// The mount options (mountinfo's sixth field) of the mount at `point`.
std::string mount_options(const std::string& mountinfo, const std::string& point) {
  std::string found;
  for (const auto& line : split_lines(mountinfo)) {
    std::vector<std::string> f;
    size_t pos = 0;
    while (pos <= line.size() && f.size() < 6) {
      size_t sp = line.find(' ', pos);
      if (sp == std::string::npos) {
        sp = line.size();
      }
      f.push_back(line.substr(pos, sp - pos));
      pos = sp + 1;
    }
    if (f.size() == 6 && f[4] == point) {
      found = f[5];  // the last mount at a point is the visible one
    }
  }
  return found;
}

}  // namespace

TEST_CASE("build isolation: --network=none has only lo, and lo is up", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const char* df =
      "FROM busybox\n"
      "RUN --network=none cat /proc/net/dev > /netdev && ip link show lo > /lo && ping -c 1 -W 2 127.0.0.1 > /ping\n"
      "RUN cat /proc/net/dev > /hostdev\n";
  fs::path out = fx.work.path / "net.tar";
  RunResult r = fx.build("net", df, {}, {"-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles files = merged(read_saved(out, fx.work.path));
  INFO(files.at("netdev").content);
  CHECK(interfaces(files.at("netdev").content) == std::vector<std::string>{"lo"});
  INFO(files.at("lo").content);
  CHECK(files.at("lo").content.find("<LOOPBACK,UP") != std::string::npos);
  CHECK(files.at("ping").content.find("1 packets received") != std::string::npos);
  // The default network is the host's: whatever the host has, as many.
  std::string host = imgbuild::test::read_file("/proc/net/dev");
  CHECK(interfaces(files.at("hostdev").content).size() == interfaces(host).size());
}

TEST_CASE("build isolation: /sys is read-only unless --security=insecure", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const char* df =
      "FROM busybox\n"
      "RUN cat /proc/self/mountinfo > /default && ls /dev > /default-dev\n"
      "RUN --security=insecure cat /proc/self/mountinfo > /insecure && ls /dev > /insecure-dev\n";
  fs::path out = fx.work.path / "sys.tar";
  RunResult r = fx.build("sys", df, {}, {"--allow", "security.insecure", "-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles files = merged(read_saved(out, fx.work.path));
  std::string def = mount_options(files.at("default").content, "/sys");
  std::string insecure = mount_options(files.at("insecure").content, "/sys");
  INFO(files.at("insecure").content);
  CHECK(def.starts_with("ro"));
  CHECK(insecure.starts_with("rw"));

  // The host's device nodes are there under insecure only.
  std::vector<std::string> def_dev = split_lines(files.at("default-dev").content);
  std::vector<std::string> insecure_dev = split_lines(files.at("insecure-dev").content);
  auto has = [](const std::vector<std::string>& v, const std::string& n) {
    return std::find(v.begin(), v.end(), n) != v.end();
  };
  int host_only = 0;
  for (const auto& e : fs::directory_iterator("/dev")) {
    std::error_code ec;
    auto type = fs::symlink_status(e.path(), ec).type();
    if (type != fs::file_type::character && type != fs::file_type::block) {
      continue;
    }
    std::string name = e.path().filename().string();
    INFO(name);
    CHECK(has(insecure_dev, name));
    if (!has(def_dev, name)) {
      ++host_only;
    }
  }
  CHECK(host_only > 0);  // the default /dev is Docker's minimal set
  CHECK(has(def_dev, "null"));
}

TEST_CASE("build isolation: a RUN has Docker's seccomp filter and device policy", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  // A block device made in the rootfs and a char device made in /dev can
  // be created but not opened; no user or mount namespace can be made; the
  // status shows the filter. Under --security=insecure all of that is lifted.
  const char* df =
      "FROM busybox\n"
      "RUN grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status > /status\n"
      "RUN mknod /tmp/loop b 7 0 && (head -c1 /tmp/loop 2> /open-blk >/dev/null || true) && rm /tmp/loop\n"
      "RUN mknod /dev/mem2 c 1 1 && (head -c1 /dev/mem2 2> /open-chr >/dev/null || true)\n"
      "RUN (unshare -U true 2> /unshare-user; echo $? > /unshare-rc)\n"
      "RUN --security=insecure grep -E '^Seccomp:' /proc/self/status > /insecure-status && "
      "mknod /tmp/z c 1 5 && head -c 3 /tmp/z | wc -c > /insecure-open && rm /tmp/z\n";
  fs::path out = fx.work.path / "policy.tar";
  RunResult r = fx.build("policy", df, {}, {"--allow", "security.insecure", "-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles files = merged(read_saved(out, fx.work.path));
  CHECK(files.at("status").content == "NoNewPrivs:\t0\nSeccomp:\t2\n");
  CHECK(files.at("open-blk").content == "head: /tmp/loop: Operation not permitted\n");
  CHECK(files.at("open-chr").content == "head: /dev/mem2: Operation not permitted\n");
  CHECK(files.at("unshare-user").content == "unshare: unshare(0x10000000): Operation not permitted\n");
  CHECK(files.at("unshare-rc").content != "0\n");
  CHECK(files.at("insecure-status").content == "Seccomp:\t0\n");
  CHECK(files.at("insecure-open").content == "3\n");
}

TEST_CASE("build isolation: --isolation chroot gives the layers the namespace sandbox gives", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  // Every kind of mount a chroot has to lay in and take out again, and a
  // heredoc (its script is a file mount too).
  const char* df =
      "FROM busybox\n"
      "RUN --mount=type=cache,target=/cache echo x >> /cache/n && cp /cache/n /n1\n"
      "RUN --mount=type=bind,source=a.txt,target=/mnt/a.txt cat /mnt/a.txt > /copied\n"
      "RUN --mount=type=bind,source=dir,target=/src ls /src > /listed-src\n"
      "RUN --mount=type=tmpfs,target=/scratch echo hi > /scratch/x && ls /scratch > /listed\n"
      "RUN --mount=type=secret,id=s,target=/run/secrets/s wc -c < /run/secrets/s > /secret-len\n"
      "RUN <<EOF\necho heredoc > /h\nid -u > /uid\nEOF\n"
      "USER app\n"
      "RUN id > /tmp/id\n";
  const std::map<std::string, std::string> files = {{"a.txt", "a\n"}, {"dir/one", "1"}, {"dir/two", "2"}};
  fs::path secret = fx.work.path / "secret";
  imgbuild::test::write_file(secret, "s3cr3t");
  auto build = [&](const std::string& isolation) {
    fs::path out = fx.work.path / (isolation + ".tar");
    RunResult r = fx.build(isolation, df, files,
                           {"--no-cache", "--isolation", isolation, "--secret", "id=s,src=" + secret.string(), "-o",
                            "type=docker,dest=" + out.string()});
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK((r.err.find("isolation: chroot") != std::string::npos) == (isolation == "chroot"));
    return read_saved(out, fx.work.path);
  };
  Saved ns = build("namespaces");
  Saved ch = build("chroot");
  REQUIRE(ns.layers.size() == ch.layers.size());
  for (size_t i = 0; i < ns.layers.size(); ++i) {
    std::vector<std::string> a;
    std::vector<std::string> b;
    for (const auto& [p, f] : ns.layers[i]) {
      a.push_back(p + " " + f.type + " " + std::to_string(f.mode) + " " + std::to_string(f.uid));
    }
    for (const auto& [p, f] : ch.layers[i]) {
      b.push_back(p + " " + f.type + " " + std::to_string(f.mode) + " " + std::to_string(f.uid));
    }
    INFO("layer " << i);
    CHECK(a == b);
  }
  LayerFiles merged_ch = merged(ch);
  CHECK(merged_ch.at("copied").content == "a\n");
  CHECK(merged_ch.at("listed-src").content == "one\ntwo\n");
  CHECK(merged_ch.at("listed").content == "x\n");
  CHECK(merged_ch.at("secret-len").content == "6\n");
  CHECK(merged_ch.at("h").content == "heredoc\n");
  CHECK(merged_ch.at("uid").content == "0\n");
  CHECK(merged_ch.at("n1").content == "x\nx\n");  // the cache mount kept the first build's line
  CHECK(merged_ch.at("tmp/id").content == merged(ns).at("tmp/id").content);
  // Nothing laid in stayed behind: no /dev nodes, /proc, /sys, /etc files.
  for (const auto& [p, f] : merged_ch) {
    INFO(p);
    CHECK(p.rfind("dev/", 0) != 0);
    CHECK(p != "proc");
    CHECK(p != "sys");
    CHECK(p != "etc/hosts");
    CHECK(p != "etc/resolv.conf");
    CHECK(p != "etc/hostname");
    CHECK(p.rfind("scratch", 0) != 0);
    CHECK(p.rfind("src", 0) != 0);
    CHECK(p.rfind("cache", 0) != 0);
  }
}
