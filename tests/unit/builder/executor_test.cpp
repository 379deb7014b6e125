// GCC 12 reports a false maybe-uninitialized for std::optional<std::string>
// members assigned in a default-constructed aggregate (BuildOptions).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The executor on fakes (tests/support/fake_snapshotter.hpp,
// fake_sandbox.hpp): no root, no mounts, no network, no daemon. Builds are
// on scratch, so no base image is unpacked; the store is a real one in a
// scratch directory.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "builder/context.hpp"
#include "builder/executor.hpp"
#include "builder/plan.hpp"
#include "support/fake_sandbox.hpp"
#include "support/fake_snapshotter.hpp"
#include "image/lease.hpp"
#include "image/store.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;
namespace fsys = std::filesystem;

namespace {

// Progress events as "started|cached|finished|failed <name>" lines.
class RecordingProgress final : public ProgressSink {
public:
  void started(const StepInfo& s) override { add("started " + s.name); }
  void output(const StepInfo& s, OutputStream, std::string_view line) override {
    add("output " + s.name + ": " + std::string(line));
  }
  void note(const StepInfo& s, std::string_view text) override { add("note " + s.name + ": " + std::string(text)); }
  void cached(const StepInfo& s) override { add("cached " + s.name); }
  void finished(const StepInfo& s, double) override { add("finished " + s.name); }
  void failed(const StepInfo& s, double, std::string_view message) override {
    add("failed " + s.name + ": " + std::string(message));
  }
  std::vector<std::string> events() const {
    std::lock_guard lock(m_mu);
    return m_events;
  }

private:
  void add(std::string e) {
    std::lock_guard lock(m_mu);
    m_events.push_back(std::move(e));
  }
  mutable std::mutex m_mu;
  std::vector<std::string> m_events;
};

struct Fixture {
  test::ScratchDir dir;
  test::FakeSnapshotter snapshotter{dir / "views"};
  test::FakeSandbox sandbox;
  RecordingProgress progress;
  std::unique_ptr<image::ImageStore> store;
  std::map<std::string, SecretSource> secrets;
  int jobs = 2;

  Fixture() {
    auto s = image::ImageStore::open(dir / "store");
    REQUIRE(s);
    store = std::move(s).value();
    fsys::create_directories(dir / "ctx");
    fsys::create_directories(dir / "keys");
  }

  Result<BuiltImage> build(const std::string& dockerfile,
                           std::vector<std::pair<std::string, std::string>> build_args = {}) {
    BuildOptions bo;
    bo.build_args = std::move(build_args);
    auto plan = make_plan(dockerfile, bo);
    REQUIRE(plan);
    auto context = BuildContext::from_dir((dir / "ctx").string());
    REQUIRE(context);
    ExecuteOptions options = fake_services(*context);
    options.jobs = jobs;
    options.cache_keys_dir = (dir / "keys").string();
    options.secrets = secrets;
    auto resolver = make_store_resolver(*store);
    auto built = execute(*plan, *store, *resolver, options, progress);
    if (!built) {
      UNSCOPED_INFO("build failed: " << built.error().message);
    }
    return built;
  }

  // Options that build `context` through the fake snapshotter and sandbox,
  // at a fixed time.
  ExecuteOptions fake_services(const BuildContext& context) {
    ExecuteOptions options;
    options.context = &context;
    options.services.snapshotter = &snapshotter;
    options.services.sandbox = &sandbox;
    options.now_sec = 1700000000;
    return options;
  }

  // One plan of `dockerfile` per platform.
  static std::vector<Plan> plans_for(const std::string& dockerfile, const std::vector<std::string>& platforms) {
    std::vector<Plan> plans;
    for (const auto& p : platforms) {
      BuildOptions bo;
      bo.platform = p;
      auto plan = make_plan(dockerfile, bo);
      REQUIRE(plan);
      plans.push_back(std::move(plan).value());
    }
    return plans;
  }

  // `plans` run as one multi-platform build; `seen` gets its steps.
  Result<std::vector<BuiltImage>> build_platforms(const std::vector<Plan>& plans,
                                                  std::vector<StepRecord>* seen = nullptr) {
    auto context = BuildContext::from_dir((dir / "ctx").string());
    REQUIRE(context);
    ExecuteOptions options = fake_services(*context);
    options.steps_seen = seen;
    auto resolver = make_store_resolver(*store);
    return execute_platforms(plans, *store, *resolver, options, progress);
  }

  // The files of the built image's root filesystem.
  fsys::path rootfs(const BuiltImage& built, const std::string& name) {
    fsys::path dest = dir / name;
    REQUIRE(export_rootfs(*store, built, dest));
    return dest;
  }

  // The store's blobs, layers and images, one line each: what a failed
  // build must leave as it found it.
  std::vector<std::string> store_listing() {
    std::vector<std::string> out;
    auto blobs = store->content().list();
    REQUIRE(blobs);
    for (const auto& b : *blobs) {
      out.push_back("blob " + b);
    }
    auto layers = store->db().layers();
    REQUIRE(layers);
    for (const auto& l : *layers) {
      out.push_back("layer " + l.diff_id);
    }
    auto images = store->db().images();
    REQUIRE(images);
    for (const auto& i : *images) {
      out.push_back("image " + i.manifest_digest);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Lease files left under the store (image/lease.hpp), the lock file aside.
  size_t lease_files() {
    std::error_code ec;
    size_t n = 0;
    for (auto it = fsys::directory_iterator(image::lease_dir(dir / "store"), ec);
         !ec && it != fsys::directory_iterator(); it.increment(ec)) {
      n += it->path().filename() == "lock" ? 0 : 1;
    }
    return n;
  }

  // Entries left in the store's tmp/ directory.
  size_t temp_entries() {
    std::error_code ec;
    size_t n = 0;
    for (auto it = fsys::directory_iterator(dir / "store" / "tmp", ec); !ec && it != fsys::directory_iterator();
         it.increment(ec)) {
      ++n;
    }
    return n;
  }
};

std::string command_of(const sandbox::RunSpec& spec) { return spec.argv.empty() ? "" : spec.argv.back(); }

}  // namespace

TEST_CASE("executor: a stage runs after the stages it mounts, and sees their files", "[builder][executor]") {
  Fixture f;
  auto built = f.build(
      "FROM scratch AS a\nRUN write /a.txt from-a\n"
      "FROM scratch AS b\nRUN write /b.txt from-b\n"
      "FROM scratch\n"
      "RUN --mount=type=bind,from=a,target=/ma --mount=type=bind,from=b,target=/mb "
      "copy /ma/a.txt /out-a && copy /mb/b.txt /out-b\n");
  REQUIRE(built);
  auto runs = f.sandbox.runs();
  REQUIRE(runs.size() == 3);
  CHECK(command_of(runs[2]).starts_with("copy /ma/a.txt"));
  std::vector<std::string> first{command_of(runs[0]), command_of(runs[1])};
  std::sort(first.begin(), first.end());
  CHECK(first == std::vector<std::string>{"write /a.txt from-a", "write /b.txt from-b"});
  REQUIRE(runs[2].mounts.size() == 2);
  CHECK(runs[2].mounts[0].target == "/ma");
  CHECK(runs[2].mounts[1].target == "/mb");

  CHECK(built->layers.size() == 1);
  fsys::path root = f.rootfs(*built, "out");
  CHECK(test::read_text(root / "out-a") == "from-a");
  CHECK(test::read_text(root / "out-b") == "from-b");
  CHECK_FALSE(fsys::exists(root / "a.txt"));
  CHECK(f.snapshotter.live() == 0);
  CHECK(f.temp_entries() == 0);
}

TEST_CASE("executor: a cache hit/miss chain", "[builder][executor]") {
  Fixture f;
  const std::string df = "FROM scratch\nRUN write /1 one\nRUN write /2 two\nRUN write /3 three\n";
  auto first = f.build(df);
  REQUIRE(first);
  CHECK(f.sandbox.runs().size() == 3);
  REQUIRE(first->steps.size() == 3);
  for (const auto& s : first->steps) {
    CHECK_FALSE(s.cached);
  }

  auto again = f.build(df);
  REQUIRE(again);
  CHECK(f.sandbox.runs().size() == 3);  // nothing ran
  REQUIRE(again->steps.size() == 3);
  for (const auto& s : again->steps) {
    CHECK(s.cached);
  }
  CHECK(again->manifest_digest == first->manifest_digest);

  auto changed = f.build("FROM scratch\nRUN write /1 one\nRUN write /2 TWO\nRUN write /3 three\n");
  REQUIRE(changed);
  auto runs = f.sandbox.runs();
  REQUIRE(runs.size() == 5);
  CHECK(command_of(runs[3]) == "write /2 TWO");
  CHECK(command_of(runs[4]) == "write /3 three");
  REQUIRE(changed->steps.size() == 3);
  CHECK(changed->steps[0].cached);
  CHECK_FALSE(changed->steps[1].cached);
  CHECK_FALSE(changed->steps[1].cache_reason.empty());
  CHECK(changed->steps[2].cache_reason == "a previous step changed");
  CHECK(changed->manifest_digest != first->manifest_digest);
  CHECK(test::read_text(f.rootfs(*changed, "out") / "2") == "TWO");
}

TEST_CASE("executor: the cache key and the run see the same resolved bind mount", "[builder][executor]") {
  Fixture f;
  fsys::create_directories(f.dir / "ctx" / "lib");
  fsys::create_directories(f.dir / "ctx" / "lib2");
  test::write_text(f.dir / "ctx" / "lib" / "x.txt", "v1");
  test::write_text(f.dir / "ctx" / "lib2" / "x.txt", "w1");
  test::write_text(f.dir / "ctx" / "other.txt", "o1");
  const std::string df = "FROM scratch\nARG DIR=lib\nRUN --mount=source=$DIR,target=/mnt copy /mnt/x.txt /x\n";

  auto first = f.build(df);
  REQUIRE(first);
  auto runs = f.sandbox.runs();
  REQUIRE(runs.size() == 1);
  REQUIRE(runs[0].mounts.size() == 1);
  CHECK(runs[0].mounts[0].target == "/mnt");
  CHECK(runs[0].mounts[0].source == f.dir / "ctx" / "lib");
  // The key's inputs name exactly the mounted files.
  std::string keys;
  for (const auto& e : fsys::directory_iterator(f.dir / "keys")) {
    std::string text = test::read_text(e.path());
    if (text.find("RUN --mount") != std::string::npos) {
      keys = text;
    }
  }
  CHECK(keys.find("x.txt") != std::string::npos);
  CHECK(keys.find("other.txt") == std::string::npos);

  test::write_text(f.dir / "ctx" / "other.txt", "o2");  // not mounted: a hit
  auto hit = f.build(df);
  REQUIRE(hit);
  CHECK(f.sandbox.runs().size() == 1);

  test::write_text(f.dir / "ctx" / "lib" / "x.txt", "v2");  // mounted: a miss
  auto miss = f.build(df);
  REQUIRE(miss);
  REQUIRE(f.sandbox.runs().size() == 2);
  CHECK(test::read_text(f.rootfs(*miss, "out-v2") / "x") == "v2");

  auto other_dir = f.build(df, {{"DIR", "lib2"}});  // the expanded source changes both
  REQUIRE(other_dir);
  runs = f.sandbox.runs();
  REQUIRE(runs.size() == 3);
  CHECK(runs[2].mounts[0].source == f.dir / "ctx" / "lib2");
  CHECK(test::read_text(f.rootfs(*other_dir, "out-w1") / "x") == "w1");
}

TEST_CASE("executor: a failing RUN ends its views and temporaries and commits nothing", "[builder][executor]") {
  Fixture f;
  fsys::create_directories(f.dir / "ctx" / "src");
  test::write_text(f.dir / "ctx" / "src" / "f", "data");
  auto failed = f.build("FROM scratch\nRUN write /a x\nRUN --mount=source=src,target=/s,rw write /b y && exit 3\n");
  REQUIRE_FALSE(failed);
  CHECK(failed.error().message.find("did not complete successfully: exit code: 3") != std::string::npos);
  REQUIRE(failed.error().location);
  CHECK(failed.error().location->line == 3);
  CHECK(f.sandbox.runs().size() == 2);
  CHECK(f.snapshotter.live() == 0);
  CHECK(f.temp_entries() == 0);  // the rw mount's copy is gone
  auto images = f.store->db().images();
  REQUIRE(images);
  CHECK(images->empty());
  auto events = f.progress.events();
  CHECK(std::any_of(events.begin(), events.end(),
                    [](const std::string& e) { return e.starts_with("failed ") && e.find("exit code: 3") != e.npos; }));

  auto no_secret = f.build("FROM scratch\nRUN --mount=type=secret,id=tok,required write /a x\n");
  REQUIRE_FALSE(no_secret);
  CHECK(no_secret.error().message == "secret tok: not found");
  CHECK(f.sandbox.runs().size() == 2);  // never started
  CHECK(f.snapshotter.live() == 0);
  CHECK(f.temp_entries() == 0);
}

TEST_CASE("executor: COPY's key and copy read the same resolved request and sources", "[builder][executor]") {
  Fixture f;
  test::write_text(f.dir / "ctx" / "a.txt", "a1");
  test::write_text(f.dir / "ctx" / "b.txt", "b1");
  // Owned by the user running the test: chown to 0:0 needs root.
  const std::string df =
      "FROM scratch AS gen\nRUN write /made.txt made\n"
      "FROM scratch\nARG F=a.txt OWNER\nCOPY --chown=$OWNER $F /dst/\nCOPY --chown=$OWNER --from=gen /made.txt /dst/\n";
  const std::pair<std::string, std::string> owner{"OWNER", fmt::format("{}:{}", ::getuid(), ::getgid())};
  auto first = f.build(df, {owner});
  REQUIRE(first);
  REQUIRE(first->steps.size() == 3);
  fsys::path root = f.rootfs(*first, "out1");
  CHECK(test::read_text(root / "dst" / "a.txt") == "a1");
  CHECK(test::read_text(root / "dst" / "made.txt") == "made");
  CHECK_FALSE(fsys::exists(root / "dst" / "b.txt"));

  test::write_text(f.dir / "ctx" / "b.txt", "b2");  // not copied: a hit
  auto hit = f.build(df, {owner});
  REQUIRE(hit);
  CHECK(hit->manifest_digest == first->manifest_digest);

  test::write_text(f.dir / "ctx" / "a.txt", "a2");  // copied: a miss
  auto miss = f.build(df, {owner});
  REQUIRE(miss);
  CHECK(miss->manifest_digest != first->manifest_digest);
  CHECK(test::read_text(f.rootfs(*miss, "out2") / "dst" / "a.txt") == "a2");

  auto other = f.build(df, {owner, {"F", "b.txt"}});  // the expanded source changes both
  REQUIRE(other);
  fsys::path root3 = f.rootfs(*other, "out3");
  CHECK(test::read_text(root3 / "dst" / "b.txt") == "b2");
  CHECK_FALSE(fsys::exists(root3 / "dst" / "a.txt"));
  CHECK(f.snapshotter.live() == 0);
}

TEST_CASE("executor: RUN mounts on fakes - a cache mount outlives the step, a secret is masked", "[builder][executor]") {
  Fixture f;
  // Owned by the user running the test: chown to 0:0 needs root.
  const std::vector<std::pair<std::string, std::string>> owner{{"U", std::to_string(::getuid())},
                                                                {"G", std::to_string(::getgid())}};
  auto fill = f.build("FROM scratch\nARG U G\nRUN --mount=type=cache,id=c1,target=/cache,uid=$U,gid=$G write /cache/seen yes\n",
                      owner);
  REQUIRE(fill);
  CHECK_FALSE(fsys::exists(f.rootfs(*fill, "out1") / "cache" / "seen"));  // not in the layer
  auto read = f.build("FROM scratch\nARG U G\nRUN --mount=type=cache,id=c1,target=/c,uid=$U,gid=$G copy /c/seen /got\n",
                      owner);
  REQUIRE(read);
  CHECK(test::read_text(f.rootfs(*read, "out2") / "got") == "yes");

  test::write_text(f.dir / "token", "s3cret-value");
  f.secrets["tok"] = SecretSource{"tok", (f.dir / "token").string(), std::nullopt};
  auto secret = f.build(
      "FROM scratch\nARG U G\n"
      "RUN --mount=type=secret,id=tok,env=TOKEN --mount=type=secret,id=tok,target=/s,uid=$U,gid=$G show /s && write /done 1\n",
      owner);
  REQUIRE(secret);
  auto runs = f.sandbox.runs();
  const auto& env = runs.back().env;
  CHECK(std::find(env.begin(), env.end(), "TOKEN=s3cret-value") != env.end());
  auto events = f.progress.events();
  bool masked = false;
  for (const auto& e : events) {
    CHECK(e.find("s3cret-value") == std::string::npos);
    masked = masked || (e.starts_with("output ") && e.ends_with(": ****"));
  }
  CHECK(masked);
  fsys::path root = f.rootfs(*secret, "out3");
  CHECK(fsys::exists(root / "done"));
  CHECK_FALSE(fsys::exists(root / "s"));
  CHECK(f.temp_entries() == 0);  // the secret file is gone
}

TEST_CASE("executor: a failing stage stops the build before the stages that need it", "[builder][executor]") {
  Fixture f;
  auto built = f.build(
      "FROM scratch AS bad\nRUN exit 5\n"
      "FROM scratch AS good\nRUN write /g g\n"
      "FROM scratch\nRUN --mount=from=bad,target=/b --mount=from=good,target=/g write /never x\n");
  REQUIRE_FALSE(built);
  CHECK(built.error().message.find("exit code: 5") != std::string::npos);
  REQUIRE(built.error().location);
  CHECK(built.error().location->line == 2);
  for (const auto& run : f.sandbox.runs()) {
    CHECK(command_of(run) != "write /never x");
  }
  CHECK(f.snapshotter.live() == 0);
  CHECK(f.temp_entries() == 0);
  auto images = f.store->db().images();
  REQUIRE(images);
  CHECK(images->empty());
}

TEST_CASE("executor: RUN --security=insecure needs the entitlement, also in an ONBUILD trigger", "[builder][executor]") {
  Fixture f;
  auto direct = f.build("FROM scratch\nRUN write /a 1\nRUN --security=insecure write /b 2\n");
  REQUIRE_FALSE(direct);
  CHECK(direct.error().code == Errc::permission);
  REQUIRE(direct.error().location);
  CHECK(direct.error().location->line == 3);
  CHECK(f.sandbox.runs().empty());  // checked before anything runs

  auto trigger = f.build(
      "FROM scratch AS base\nONBUILD RUN --security=insecure write /x 1\n"
      "FROM base\nRUN write /y 2\n");
  REQUIRE_FALSE(trigger);
  CHECK(trigger.error().code == Errc::permission);
  CHECK(trigger.error().message.find("--allow security.insecure") != std::string::npos);
  REQUIRE(trigger.error().location);
  CHECK(trigger.error().location->line == 3);  // a trigger fails at its FROM
  CHECK(f.sandbox.runs().empty());
  CHECK(f.snapshotter.live() == 0);
}

TEST_CASE("executor: independent stages run at the same time, a stage on another stage waits for it",
          "[builder][executor]") {
  Fixture f;
  // a and b only meet when they run in parallel; c is FROM a and must see
  // a's file; the last stage needs b and c.
  const std::string df =
      "FROM scratch AS a\nRUN meet 2 20 && write /a.txt from-a\n"
      "FROM scratch AS b\nRUN meet 2 20 && write /b.txt from-b\n"
      "FROM a AS c\nRUN copy /a.txt /c.txt\n"
      "FROM scratch\nRUN --mount=from=b,target=/mb --mount=from=c,target=/mc copy /mc/c.txt /c && copy /mb/b.txt /b\n";
  auto built = f.build(df);
  REQUIRE(built);
  auto runs = f.sandbox.runs();
  REQUIRE(runs.size() == 4);
  std::vector<std::string> first{command_of(runs[0]), command_of(runs[1])};
  std::sort(first.begin(), first.end());
  CHECK(first[0].find("write /a.txt") != std::string::npos);
  CHECK(first[1].find("write /b.txt") != std::string::npos);
  CHECK(command_of(runs[2]) == "copy /a.txt /c.txt");
  CHECK(command_of(runs[3]).starts_with("copy /mc/c.txt"));
  fsys::path root = f.rootfs(*built, "out");
  CHECK(test::read_text(root / "c") == "from-a");
  CHECK(test::read_text(root / "b") == "from-b");
  CHECK(f.snapshotter.live() == 0);
}

TEST_CASE("executor: --jobs 1 runs one stage at a time", "[builder][executor]") {
  Fixture f;
  f.jobs = 1;
  // With one slot the second stage cannot start while the first waits.
  auto built = f.build(
      "FROM scratch AS a\nRUN meet 2 1\n"
      "FROM scratch AS b\nRUN meet 2 1\n"
      "FROM scratch\nRUN --mount=from=a,target=/a --mount=from=b,target=/b write /x 1\n");
  REQUIRE_FALSE(built);
  CHECK(built.error().message.find("exit code: 1") != std::string::npos);
  CHECK(f.sandbox.runs().size() == 1);
  CHECK(f.snapshotter.live() == 0);
}

TEST_CASE("executor: a cache hit reuses the layer blob, a miss in one stage leaves the other's hits",
          "[builder][executor]") {
  Fixture f;
  auto dockerfile = [](const std::string& v) {
    return "FROM scratch AS dep\nRUN write /dep " + v +
           "\nFROM scratch\nRUN write /own own\nRUN --mount=from=dep,target=/d copy /d/dep /dep\n";
  };
  const std::string df = dockerfile("1");
  auto first = f.build(df);
  REQUIRE(first);
  REQUIRE(first->steps.size() == 3);
  auto blobs_before = f.store_listing();

  auto again = f.build(df);
  REQUIRE(again);
  CHECK(f.sandbox.runs().size() == 3);
  CHECK(f.store_listing() == blobs_before);  // a hit writes no blob, layer or image
  REQUIRE(again->layers.size() == first->layers.size());
  for (size_t i = 0; i < again->layers.size(); ++i) {
    CHECK(again->layers[i].blob_digest == first->layers[i].blob_digest);
  }

  // The dependency changes: its step and the step mounting it run again;
  // the final stage's own first step is still a hit.
  auto changed = f.build(dockerfile("2"));
  REQUIRE(changed);
  auto runs = f.sandbox.runs();
  REQUIRE(runs.size() == 5);
  CHECK(command_of(runs[3]) == "write /dep 2");
  CHECK(command_of(runs[4]) == "copy /d/dep /dep");
  REQUIRE(changed->layers.size() == 2);
  CHECK(changed->layers[0].blob_digest == first->layers[0].blob_digest);
  CHECK(changed->layers[1].blob_digest != first->layers[1].blob_digest);
  CHECK(test::read_text(f.rootfs(*changed, "out") / "dep") == "2");
}

TEST_CASE("executor: tmpfs and cache mounts reach the sandbox resolved, and stay out of the layer",
          "[builder][executor]") {
  Fixture f;
  const std::vector<std::pair<std::string, std::string>> owner{{"U", std::to_string(::getuid())},
                                                                {"G", std::to_string(::getgid())}};
  auto built = f.build(
      "FROM scratch\nARG U G SIZE=64k\n"
      "RUN --mount=type=tmpfs,target=/scratch,size=$SIZE --mount=type=cache,target=/var/c,uid=$U,gid=$G "
      "write /scratch/t tmp && copy /scratch/t /kept && write /var/c/entry c\n",
      owner);
  REQUIRE(built);
  auto runs = f.sandbox.runs();
  REQUIRE(runs.size() == 1);
  REQUIRE(runs[0].tmpfs.size() == 1);
  CHECK(runs[0].tmpfs[0].target == "/scratch");
  REQUIRE(runs[0].tmpfs[0].size);
  CHECK(*runs[0].tmpfs[0].size == 64 * 1024);
  REQUIRE(runs[0].mounts.size() == 1);
  CHECK(runs[0].mounts[0].target == "/var/c");
  CHECK(runs[0].mounts[0].access == sandbox::Access::read_write);
  CHECK(test::read_text(runs[0].mounts[0].source / "entry") == "c");  // the cache directory outlives the run
  fsys::path root = f.rootfs(*built, "out");
  CHECK(test::read_text(root / "kept") == "tmp");
  CHECK_FALSE(fsys::exists(root / "scratch" / "t"));
  CHECK_FALSE(fsys::exists(root / "var" / "c" / "entry"));
  CHECK(f.temp_entries() == 0);
}

TEST_CASE("executor: a failing RUN after a hit leaves the store, its leases and tmp/ as they were",
          "[builder][executor]") {
  Fixture f;
  auto base = f.build("FROM scratch\nRUN write /a x\n");
  REQUIRE(base);
  auto before = f.store_listing();
  auto failed = f.build("FROM scratch\nRUN write /a x\nRUN --mount=type=tmpfs,target=/t write /b y && exit 4\n");
  REQUIRE_FALSE(failed);
  CHECK(failed.error().message.find("exit code: 4") != std::string::npos);
  CHECK(f.sandbox.runs().size() == 2);  // the first step was a hit
  CHECK(f.store_listing() == before);
  CHECK(f.snapshotter.live() == 0);
  CHECK(f.temp_entries() == 0);
  CHECK(f.lease_files() == 1);  // held while the store is open
  f.store.reset();  // the process's lease ends with its store
  CHECK(f.lease_files() == 0);
}

TEST_CASE("executor: several platforms - a $BUILDPLATFORM stage runs once and serves every target",
          "[builder][executor][platform]") {
  Fixture f;
  const std::string df =
      "FROM --platform=$BUILDPLATFORM scratch AS cross\n"
      "RUN write /tool built-once\n"
      "FROM scratch\n"
      "ARG TARGETARCH\n"
      "RUN --mount=type=bind,from=cross,target=/c copy /c/tool /tool && write /target per-platform\n";
  std::vector<Plan> plans = Fixture::plans_for(df, {"linux/amd64", "linux/arm64"});
  // The cross stage builds the same for both targets, the final one does not.
  CHECK(plans[0].stages[0].share_key == plans[1].stages[0].share_key);
  CHECK(plans[0].stages[1].share_key != plans[1].stages[1].share_key);

  std::vector<StepRecord> seen;
  auto built = f.build_platforms(plans, &seen);
  REQUIRE(built);
  REQUIRE(built->size() == 2);
  CHECK((*built)[0].platform.str() == "linux/amd64");
  CHECK((*built)[1].platform.str() == "linux/arm64");
  CHECK((*built)[0].config.architecture == "amd64");
  CHECK((*built)[1].config.architecture == "arm64");
  CHECK((*built)[0].manifest_digest != (*built)[1].manifest_digest);

  // Three RUNs: the cross stage's once, the final stage's once per platform.
  auto runs = f.sandbox.runs();
  REQUIRE(runs.size() == 3);
  size_t cross_runs = 0;
  for (const auto& r : runs) {
    cross_runs += command_of(r) == "write /tool built-once" ? 1 : 0;
  }
  CHECK(cross_runs == 1);
  std::vector<std::string> asked = f.sandbox.platforms_asked();
  std::sort(asked.begin(), asked.end());
  CHECK(asked == std::vector<std::string>{"linux/amd64", "linux/amd64", "linux/arm64"});
  CHECK(seen.size() == 3);
  // Progress names each step with its stage's platform, the shared one once.
  size_t cross_started = 0;
  INFO(fmt::format("{}", fmt::join(f.progress.events(), "\n")));
  for (const auto& e : f.progress.events()) {
    cross_started += e == "started [linux/amd64 cross 1/1] RUN write /tool built-once" ? 1 : 0;
  }
  CHECK(cross_started == 1);
  // Both images have the tool from the one cross build.
  for (size_t i = 0; i < 2; ++i) {
    fsys::path root = f.rootfs((*built)[i], "out" + std::to_string(i));
    CHECK(test::read_text(root / "tool") == "built-once");
    CHECK(test::read_text(root / "target") == "per-platform");
  }
  CHECK(f.snapshotter.live() == 0);
  CHECK(f.temp_entries() == 0);
}

TEST_CASE("executor: several platforms - a $BUILDPLATFORM stage reading TARGETPLATFORM names its target in progress",
          "[builder][executor][platform]") {
  Fixture f;
  // The cross stage runs once per target (it reads TARGETPLATFORM); BuildKit
  // names the steps after the ARG "linux/amd64->arm64" for the arm64 target
  // and keeps "linux/amd64" where the target is the build platform. The
  // steps before the ARG have no TARGETPLATFORM and no arrow.
  const std::string df =
      "FROM --platform=linux/amd64 scratch AS cross\n"
      "RUN write /before x\n"
      "ARG TARGETPLATFORM\n"
      "RUN write /tool $TARGETPLATFORM\n"
      "FROM scratch\n"
      "RUN --mount=type=bind,from=cross,target=/c copy /c/tool /tool\n";
  auto built = f.build_platforms(Fixture::plans_for(df, {"linux/amd64", "linux/arm64", "windows/amd64"}));
  INFO((built ? "" : built.error().message));
  REQUIRE(built);
  std::vector<std::string> started;
  for (const auto& e : f.progress.events()) {
    if (e.starts_with("started [linux/amd64") && e.find(" cross ") != std::string::npos) {
      started.push_back(e);
    }
  }
  // (Stages are shared whole: the step before the ARG runs once per target
  // here, where BuildKit's solver merges the three into one.)
  std::sort(started.begin(), started.end());
  started.erase(std::unique(started.begin(), started.end()), started.end());
  INFO(fmt::format("{}", fmt::join(f.progress.events(), "\n")));
  CHECK(started == std::vector<std::string>{
                       "started [linux/amd64 cross 1/2] RUN write /before x",
                       "started [linux/amd64 cross 2/2] RUN write /tool linux/amd64",
                       "started [linux/amd64->arm64 cross 2/2] RUN write /tool linux/arm64",
                       "started [linux/amd64->windows/amd64 cross 2/2] RUN write /tool windows/amd64",
                   });
}
