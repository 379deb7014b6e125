// RUN mounts and security through the real binary: tmpfs size limits, cache
// mounts (seeding from a stage, mode/uid/gid, sharing=private and locked
// across concurrent builds), and --security=insecure against the default
// capability set.

#include <unistd.h>

#include <chrono>
#include <thread>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::read_file;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::write_file;
using namespace imgbuild::test::build;

namespace {

// The bounding capability set a RUN step printed ("CapBnd:\t…").
std::string cap_bnd(const std::string& log, const std::string& step) {
  size_t at = log.find(step);
  REQUIRE(at != std::string::npos);
  size_t cap = log.find("CapBnd:", at);
  REQUIRE(cap != std::string::npos);
  size_t start = log.find_first_of("0123456789abcdef", cap + 7);
  return log.substr(start, 16);
}

// Waits (up to a minute) for a file to appear; false if it never does.
bool wait_for(const fs::path& p) {
  for (int i = 0; i < 600; ++i) {
    if (fs::exists(p)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace

TEST_CASE("build mounts: tmpfs size, cache seeding and ownership", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const char* df =
      "FROM busybox AS seed\n"
      "RUN mkdir -p /seed/sub && echo seeded > /seed/sub/s.txt\n"
      "FROM busybox\n"
      "RUN --mount=type=tmpfs,target=/t,size=1m (dd if=/dev/zero of=/t/big bs=1k count=2048 || echo dd-failed) "
      "&& echo tmpfs-kb=$(du -k /t/big | cut -f1)\n"
      "RUN --mount=type=tmpfs,target=/t2 echo keep > /t2/gone && echo no-limit-ok\n"
      "RUN --mount=type=cache,target=/c,from=seed,source=/seed,id=seeded cat /c/sub/s.txt && echo more > /c/more\n"
      "RUN --mount=type=cache,target=/c,id=seeded cat /c/more\n"
      "RUN --mount=type=cache,target=/c2,mode=0700,uid=1000,gid=1000 stat -c 'cache2 %a %u:%g' /c2\n";
  fs::path out = fx.work.path / "mounts.tar";
  RunResult r = fx.build("mounts", df, {}, {"-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("dd-failed") != std::string::npos);   // 2 MiB do not fit in size=1m
  CHECK(r.err.find("tmpfs-kb=1024") != std::string::npos);
  CHECK(r.err.find("no-limit-ok") != std::string::npos);
  CHECK(r.err.find(" seeded\n") != std::string::npos);
  CHECK(r.err.find(" more\n") != std::string::npos);       // the seeded cache persists between steps
  CHECK(r.err.find("cache2 700 1000:1000") != std::string::npos);
  // A seed path through a symlink is refused (it could lead out of the stage).
  RunResult evil = fx.build("mounts-evil",
                            "FROM busybox AS seed\nRUN ln -s /etc /link\nFROM busybox\n"
                            "RUN --mount=type=cache,target=/c,from=seed,source=/link,id=evil ls /c\n",
                            {});
  CHECK(evil.status == 1);
  CHECK(evil.err.find("goes through the symlink \"/link\"") != std::string::npos);

  Saved s = read_saved(out, fx.work.path);
  for (const auto& layer : s.layers) {
    CHECK(layer.count("t/big") == 0);
    CHECK(layer.count("t2/gone") == 0);
    CHECK(layer.count("c/more") == 0);
  }
}

TEST_CASE("build mounts: cache sharing=private and locked across concurrent builds", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  fs::path caches = fx.root / "cache-mounts";
  auto start_bg = [&](const std::string& name, const std::string& df, const fs::path& log) {
    fs::path ctx = fx.work.path / ("ctx-" + name);
    fs::create_directories(ctx);
    write_file(ctx / "Dockerfile", df);
    std::string cmd = sh_quote(imgbuild::test::imgbuild_binary().string()) + " --root " + sh_quote(fx.root.string()) +
                      " build --progress plain " + sh_quote(ctx.string()) + " >" + sh_quote(log.string()) +
                      " 2>&1; echo $? > " + sh_quote(log.string() + ".rc");
    REQUIRE(std::system(("(" + cmd + ") &").c_str()) == 0);
  };
  auto cache_file = [&](const std::string& name) -> fs::path {
    if (!fs::exists(caches)) {
      return {};
    }
    for (const auto& e : fs::directory_iterator(caches)) {
      if (e.is_directory() && fs::exists(e.path() / name)) {
        return e.path() / name;
      }
    }
    return {};
  };
  auto wait_cache_file = [&](const std::string& name) -> fs::path {
    for (int i = 0; i < 600; ++i) {
      if (fs::path p = cache_file(name); !p.empty()) {
        return p;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return {};
  };

  // A holds the cache (it waits for a release file the test writes into it).
  const char* holder =
      "FROM busybox\n"
      "RUN --mount=type=cache,id=shared-test,target=/c,sharing=private echo A > /c/owner-a && "
      "while [ ! -e /c/release ]; do sleep 0.1; done\n";
  fs::path log_a = fx.work.path / "a.log";
  start_bg("a", holder, log_a);
  fs::path owner = wait_cache_file("owner-a");
  REQUIRE_FALSE(owner.empty());

  // private while A holds it: a fresh, empty directory.
  RunResult b = fx.build("b", "FROM busybox\nRUN --mount=type=cache,id=shared-test,target=/c,sharing=private "
                              "ls -A /c | wc -l | sed 's/^/entries=/'\n", {});
  INFO(b.err);
  CHECK(b.status == 0);
  CHECK(b.err.find("entries=0") != std::string::npos);

  // locked while A holds it: C waits until A is done (it needs the release
  // file, which only appears once the test writes it).
  fs::path log_c = fx.work.path / "c.log";
  start_bg("c", "FROM busybox\nRUN --mount=type=cache,id=shared-test,target=/c,sharing=locked "
                "test -e /c/release && echo C-after-A\n", log_c);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // gives a broken lock the chance to let C in early
  write_file(owner.parent_path() / "release", "");
  REQUIRE(wait_for(log_a.string() + ".rc"));
  REQUIRE(wait_for(log_c.string() + ".rc"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  INFO(read_file(log_a));
  INFO(read_file(log_c));
  CHECK(read_file(log_a.string() + ".rc") == "0\n");
  CHECK(read_file(log_c.string() + ".rc") == "0\n");
  CHECK(read_file(log_c).find("C-after-A") != std::string::npos);
}

TEST_CASE("build security: insecure needs --allow and keeps every capability", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const char* df =
      "FROM busybox\n"
      "RUN echo default && grep CapBnd /proc/self/status\n"
      "RUN --security=insecure echo insecure && grep CapBnd /proc/self/status\n";
  RunResult refused = fx.build("sec", df, {});
  CHECK(refused.status == 1);
  CHECK(refused.err.find("security.insecure is not allowed") != std::string::npos);
  CHECK(refused.err.find("[2/3] RUN echo default") == std::string::npos);  // refused before any step runs

  RunResult r = fx.build("sec", df, {}, {"--allow", "security.insecure"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::string host = read_file("/proc/self/status");
  std::string def = cap_bnd(r.err, "RUN echo default");
  std::string insecure = cap_bnd(r.err, "RUN --security=insecure");
  // Docker's default set: chown dac_override fowner fsetid kill setgid setuid
  // setpcap net_bind_service net_raw sys_chroot mknod audit_write setfcap.
  CHECK(def == "00000000a80425fb");
  CHECK(insecure == host.substr(host.find("CapBnd:") + 8, 16));
  CHECK(insecure != def);
}
