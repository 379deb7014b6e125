// RUN as the builder will do it: a view over layer directories, the command
// in the sandbox, the view's changes as a layer tar, then commit.

#include <unistd.h>

#include <fstream>
#include <set>

#include <catch2/catch.hpp>

#include "sandbox/sandbox.hpp"
#include "snapshot/snapshotter.hpp"
#include "support/busybox_rootfs.hpp"
#include "support/layer_spec.hpp"
#include "support/require.hpp"
#include "util/tar.hpp"

namespace fs = std::filesystem;
using namespace imgbuild;

namespace {

struct Step {
  Result<sandbox::RunResult> result = fail(Errc::internal, "not run");
  std::vector<std::string> out;
};

Step run(const fs::path& root, const std::string& script) {
  Step s;
  sandbox::RunSpec spec;
  spec.rootfs = root;
  spec.argv = {"/bin/sh", "-c", script};
  spec.network = sandbox::NetworkMode::none;
  spec.on_stdout = [&](std::string_view l) { s.out.emplace_back(l); };
  auto sb = sandbox::make_sandbox();
  REQUIRE(sb);
  s.result = (*sb)->run(spec);
  if (!s.result) {
    UNSCOPED_INFO(s.result.error().message);
  }
  return s;
}

// The entry paths of an uncompressed layer tar held in memory.
std::vector<std::string> entries_of(const std::string& tar) {
  auto reader = tar::Reader::open(test::string_reader(tar), "layer");
  REQUIRE(reader);
  std::vector<std::string> paths;
  for (;;) {
    auto e = (*reader)->next();
    REQUIRE(e);
    if (!*e) {
      break;
    }
    paths.push_back((*e)->path);
  }
  return paths;
}

#define REQUIRE_RUN_PREREQS()                                                                 \
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "RUN needs root (namespaces, overlay mounts)"); \
  IMGBUILD_REQUIRE_PREREQ(test::have_busybox(), "/bin/busybox (busybox-static) is missing")

}  // namespace

TEST_CASE("a RUN step yields a layer with its file and a whiteout, and commits", "[integration][run]") {
  REQUIRE_RUN_PREREQS();
  const std::string kind = GENERATE("overlay", "copy");
  INFO(kind);
  test::ScratchDir t;
  const fs::path base = t.path() / "layers" / "base";
  test::make_busybox_rootfs(base);
  snapshot::SnapshotterConfig config{t.path() / "work", t.path() / "run"};
  auto snap = snapshot::make_snapshotter(kind, config);
  REQUIRE(snap);

  auto view = (*snap)->prepare({base});
  REQUIRE(view);
  auto step = run((*view)->root(), "echo hi > /f; rm /etc/group");
  REQUIRE(step.result);
  CHECK(step.result->exit_code == 0);

  std::string tar;
  snapshot::DiffOptions options;
  options.compression = tar::Compression::none;
  auto diff = snapshot::diff_view(**view, [&](const void* data, size_t size) -> Result<void> {
    tar.append(static_cast<const char*>(data), size);
    return ok();
  }, options);
  REQUIRE(diff);
  // Exactly the step's changes: no /proc, /dev, /sys or /etc/hosts stubs.
  CHECK(entries_of(tar) == std::vector<std::string>{"etc/", "etc/.wh.group", "f"});

  // A step that changes nothing gives an empty layer: the mount points and
  // /etc files the sandbox needed are gone, their parents' times restored.
  {
    auto idle = (*snap)->prepare({base});
    REQUIRE(idle);
    REQUIRE(run((*idle)->root(), "true").result);
    auto none = snapshot::diff_view(**idle, [](const void*, size_t) -> Result<void> { return ok(); }, options);
    REQUIRE(none);
    CHECK(none->entries == 0);
  }

  const fs::path layer = t.path() / "layers" / "step1";
  REQUIRE((*view)->commit(layer));
  auto next = (*snap)->prepare({base, layer});
  REQUIRE(next);
  auto check = run((*next)->root(), "cat /f; test -e /etc/group || echo no-group; test -e /etc/passwd && echo passwd");
  REQUIRE(check.result);
  CHECK(check.out == std::vector<std::string>{"hi", "no-group", "passwd"});
}

TEST_CASE("a 300-layer chain mounts and runs a command", "[integration][run]") {
  REQUIRE_RUN_PREREQS();
  test::ScratchDir t;
  std::vector<fs::path> chain;
  chain.push_back(t.path() / "layers" / "base");
  test::make_busybox_rootfs(chain.back());
  for (int i = 1; i < 300; ++i) {
    chain.push_back(t.path() / "layers" / std::to_string(i));
    fs::create_directories(chain.back() / "data");
    std::ofstream(chain.back() / "data" / "n") << i << "\n";
    std::string link_name = "l";  // appended: GCC 12 -O3 -Wrestrict false positive (bug 105329)
    link_name += std::to_string(i);
    std::ofstream(chain.back() / "data" / link_name) << "x";
  }
  auto snap = snapshot::make_snapshotter("overlay", {t.path() / "work", t.path() / "run"});
  REQUIRE(snap);
  auto view = (*snap)->prepare(chain);
  REQUIRE(view);
  auto step = run((*view)->root(), "cat /data/n; ls /data | wc -l");
  REQUIRE(step.result);
  CHECK(step.out == std::vector<std::string>{"299", "300"});
}
