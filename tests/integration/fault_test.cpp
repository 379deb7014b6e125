// Fault injection: build, save, load, pull and push are SIGKILL'ed at many
// points (util/fault.hpp: IMGBUILD_FAULT_KILL_AT=*:N kills the process at
// the N-th passage through any kill point); after each kill `system check
// --repair` leaves a store that `system check` finds clean, and the command
// run again succeeds. The points are spread over all the passages a command
// makes (counted first with *:0), at least 20 per command.

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "harness.hpp"
#include "support/registry_fixture.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using namespace imgbuild::test;

namespace {

constexpr int k_points = 22;

// A store with a busybox base and "fat": busybox plus a 4 MB random file (32
// tar chunks, many blob writes) and a RUN layer.
struct FaultFixture {
  TempDir work;
  fs::path root;
  fs::path ctx;

  FaultFixture() {
    root = work.path / "store";
    ctx = work.path / "ctx";
    fs::create_directories(ctx);
    import_tar(root, work.path / "busybox.tar", busybox_rootfs_tar(), "busybox");
    REQUIRE(run_sh("head -c 4000000 /dev/urandom > " + sh_quote((ctx / "big").string())).status == 0);
    write_file(ctx / "Dockerfile", "FROM busybox\nCOPY big /big\nRUN echo ran > /ran\n");
    RunResult r = run({"build", "-q", "-t", "fat", ctx.string()});
    INFO(r.err);
    REQUIRE(r.status == 0);
  }

  // imgbuild with `args`, the kill point plan in the environment.
  RunResult run(const std::vector<std::string>& args, const std::string& fault = "") {
    std::string cmd = fault.empty() ? "" : "IMGBUILD_FAULT_KILL_AT=" + sh_quote(fault) + " ";
    cmd += sh_quote(imgbuild_binary().string()) + " --root " + sh_quote(root.string());
    for (const auto& a : args) {
      cmd += ' ';
      cmd += sh_quote(a);
    }
    // "; exit $?": the shell that reports the kill ("Killed") is the one
    // whose stderr run_sh captures.
    return run_sh(cmd + "; exit $?");
  }

  using Args = std::function<std::vector<std::string>()>;

  // How many kill-point passages the command makes (after `reset`).
  long passages(const Args& args, const std::function<void()>& reset) {
    reset();
    RunResult r = run(args(), "*:0");
    INFO(r.err);
    REQUIRE(r.status == 0);
    auto at = r.err.rfind("imgbuild-fault: ");
    REQUIRE(at != std::string::npos);
    return std::stol(r.err.substr(at + 16));
  }

  // Kills `args` at k_points passages spread over all of them; after each:
  // repair, a clean check, and the command again.
  void kill_everywhere(const Args& args, const std::function<void()>& reset, const std::function<void()>& verify) {
    long total = passages(args, reset);
    INFO("passages: " << total);
    REQUIRE(total >= k_points);
    int killed = 0;
    for (int i = 0; i < k_points; ++i) {
      long at = 1 + static_cast<long>(i) * (total - 1) / (k_points - 1);
      INFO("killed at passage " << at);
      reset();
      std::vector<std::string> argv = args();
      RunResult r = run(argv, "*:" + std::to_string(at));
      if (r.status == 137) {
        ++killed;
      } else {
        INFO(r.err);
        CHECK(r.status == 0);  // fewer passages this time: it ran through
      }
      RunResult repair = run({"system", "check", "--repair"});
      RunResult check = run({"system", "check"});
      INFO(repair.out << repair.err << check.out << check.err);
      CHECK(check.status == 0);
      CHECK(check.out.find("No problems found") != std::string::npos);
      RunResult again = run(argv);
      INFO(again.err);
      REQUIRE(again.status == 0);
      verify();
    }
    CHECK(killed >= 20);
  }
};

}  // namespace

TEST_CASE("fault: build killed at 22 points", "[fault]") {
  FaultFixture f;
  f.kill_everywhere(
      [&] { return std::vector<std::string>{"build", "-q", "--no-cache", "-t", "rebuilt", f.ctx.string()}; }, [] {},
      [&] {
        RunResult r = f.run({"run", "--rm", "rebuilt", "cat", "/ran"});
        CHECK(r.out == "ran\n");
      });
}

TEST_CASE("fault: save killed at 22 points", "[fault]") {
  FaultFixture f;
  fs::path out = f.work.path / "fat.tar";
  f.kill_everywhere(
      [&] { return std::vector<std::string>{"save", "-o", out.string(), "fat"}; }, [&] { fs::remove(out); },
      [&] {
        SavedArchive saved = unpack_saved(out, f.work.path / std::string("x").append(std::to_string(std::rand())));
        CHECK(saved.layers.size() == 3);
      });
}

TEST_CASE("fault: load killed at 22 points", "[fault]") {
  FaultFixture f;
  fs::path tar = f.work.path / "fat.tar";
  REQUIRE(f.run({"save", "-o", tar.string(), "fat"}).status == 0);
  REQUIRE(f.run({"tag", "fat", "keep"}).status == 0);
  // Loading into an emptied store writes every blob again.
  auto reset = [&] {
    (void)f.run({"rmi", "fat"});
    (void)f.run({"rmi", "keep"});
    (void)f.run({"image", "prune", "-a"});
    (void)f.run({"cache", "prune", "--all"});
  };
  f.kill_everywhere([&] { return std::vector<std::string>{"load", "-i", tar.string()}; }, reset, [&] {
    RunResult r = f.run({"run", "--rm", "fat", "cat", "/ran"});
    CHECK(r.out == "ran\n");
  });
}

TEST_CASE("fault: pull and push killed at 22 points each", "[fault]") {
  std::string missing = TestRegistry::missing_prerequisite();
  IMGBUILD_REQUIRE_PREREQ(missing.empty(), missing);
  TestRegistry registry({});
  FaultFixture f;
  int repo = 0;
  // push: a new repository each time (args() is called once per run), so
  // that every run uploads everything.
  f.kill_everywhere(
      [&] {
        return std::vector<std::string>{"push", "fat", registry.host() + "/fault/push" + std::to_string(++repo) + ":1"};
      },
      // The gzip'd layers a push makes are kept for the next push: pruned,
      // so that every run compresses (and can be killed compressing) again.
      [&] { (void)f.run({"image", "prune"}); }, [] {});
  std::string ref = registry.host() + "/fault/pulled:1";
  REQUIRE(f.run({"push", "fat", ref}).status == 0);
  auto reset = [&] {
    (void)f.run({"rmi", ref});
    (void)f.run({"rmi", "fat"});
    (void)f.run({"image", "prune", "-a"});
    (void)f.run({"cache", "prune", "--all"});
  };
  f.kill_everywhere([&] { return std::vector<std::string>{"pull", ref}; }, reset, [&] {
    RunResult r = f.run({"run", "--rm", ref, "cat", "/ran"});
    CHECK(r.out == "ran\n");
  });
}
