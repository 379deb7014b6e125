// Build-cache export and import end to end (--cache-to / --cache-from): the
// real binary builds on a busybox base in one store, exports, and a fresh
// store at another path (the same base loaded from a saved tar) imports;
// hits are counted in the metadata file, never timed. The registry form
// runs against Debian's docker-registry on 127.0.0.1.

#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "support/registry_fixture.hpp"
#include "support/require.hpp"
#include "util/hash.hpp"

namespace fs = std::filesystem;
using imgbuild::test::busybox_rootfs_tar;
using imgbuild::test::import_tar;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::TempDir;
using imgbuild::test::write_file;
using nlohmann::json;

namespace {

bool prerequisites() { return fs::exists("/bin/busybox") && ::geteuid() == 0; }

struct Step {
  std::string name;
  bool cached = false;
  std::string source;
};

struct Built {
  RunResult run;
  std::vector<Step> steps;
  std::string digest;
};

// Stores sharing one busybox base image (saved from the first, loaded into
// the others), one context directory and a counter for file names.
struct Stores {
  TempDir work;
  fs::path ctx;
  fs::path base_tar;
  int n = 0;

  Stores() {
    ctx = work.path / "ctx";
    fs::create_directories(ctx);
    fs::path first = work.path / "seed-store";
    import_tar(first, work.path / "busybox.tar", busybox_rootfs_tar(), "busybox");
    base_tar = work.path / "base.tar";
    RunResult r = run_imgbuild(first, {"save", "busybox", "-o", base_tar.string()});
    INFO(r.err);
    REQUIRE(r.status == 0);
  }

  // A fresh store at its own path holding the base image.
  fs::path store(const std::string& name) {
    fs::path root = work.path / "stores" / name;
    RunResult r = run_imgbuild(root, {"load", "-i", base_tar.string()});
    INFO(r.err);
    REQUIRE(r.status == 0);
    return root;
  }

  void put(const std::string& rel, const std::string& body) {
    fs::create_directories((ctx / rel).parent_path());
    write_file(ctx / rel, body);
  }

  // Builds the context in `root`; the run, its steps and image digest.
  Built build(const fs::path& root, const std::vector<std::string>& extra, bool must_succeed = true) {
    fs::path md = work.path / ("md-" + std::to_string(++n) + ".json");
    std::string cmd = "SOURCE_DATE_EPOCH=1700000000 " + sh_quote(imgbuild::test::imgbuild_binary().string()) +
                      " --root " + sh_quote(root.string()) + " build --progress plain --metadata-file " +
                      sh_quote(md.string());
    for (const auto& e : extra) {
      cmd += ' ';
      cmd += sh_quote(e);
    }
    cmd += ' ';
    cmd += sh_quote(ctx.string());
    Built b;
    b.run = run_sh(cmd);
    if (must_succeed) {
      INFO(b.run.err);
      REQUIRE(b.run.status == 0);
    }
    if (b.run.status != 0) {
      return b;
    }
    json meta = json::parse(read_file(md));
    b.digest = meta.value("containerimage.digest", "");
    for (const auto& s : meta["imgbuild.steps"]) {
      b.steps.push_back({s["name"].get<std::string>(), s["cached"].get<bool>(), s.value("cache_source", "")});
    }
    return b;
  }
};

size_t cached_count(const std::vector<Step>& steps) {
  size_t n = 0;
  for (const auto& s : steps) {
    n += s.cached ? 1 : 0;
  }
  return n;
}

std::string describe(const Built& b) {
  std::string out;
  for (const auto& s : b.steps) {
    out += s.name + (s.cached ? " CACHED from " + s.source : " RAN") + "\n";
  }
  return out + b.run.err;
}

// The cache manifest and config of a cache dir.
struct CacheDoc {
  json manifest;
  json config;
};

CacheDoc read_cache(const fs::path& dir) {
  json index = json::parse(read_file(dir / "index.json"));
  REQUIRE(index["manifests"].size() == 1);
  std::string md = index["manifests"][0]["digest"].get<std::string>();
  CacheDoc doc;
  doc.manifest = json::parse(read_file(dir / "blobs" / "sha256" / md.substr(7)));
  std::string cd = doc.manifest["config"]["digest"].get<std::string>();
  doc.config = json::parse(read_file(dir / "blobs" / "sha256" / cd.substr(7)));
  return doc;
}

std::map<std::string, int64_t> blob_mtimes(const fs::path& dir) {
  std::map<std::string, int64_t> out;
  for (const auto& e : fs::directory_iterator(dir / "blobs" / "sha256")) {
    struct stat st {};
    REQUIRE(::stat(e.path().c_str(), &st) == 0);
    out[e.path().filename().string()] = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  }
  return out;
}

// Every blob of a store hashes to its name.
void check_store_verified(const fs::path& root) {
  for (const auto& e : fs::directory_iterator(root / "blobs" / "sha256")) {
    INFO(e.path().string());
    CHECK(imgbuild::sha256(read_file(e.path())).hex() == e.path().filename().string());
  }
}

const char* const k_dockerfile =
    "FROM busybox\n"
    "COPY a.txt /a.txt\n"
    "RUN cat /a.txt > /copy && echo ran >> /copy\n"
    "ENV MODE=test\n"
    "COPY b.txt /b.txt\n"
    "RUN cat /a.txt /b.txt > /both\n";

}  // namespace

TEST_CASE("cache export: a local cache dir imported into a fresh store at another path is all cached, same image",
          "[integration][cache][cache-io]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  Stores s;
  s.put("Dockerfile", k_dockerfile);
  s.put("a.txt", "alpha\n");
  s.put("b.txt", "beta\n");
  fs::path a = s.store("a");
  fs::path dir = s.work.path / "cache";
  Built first = s.build(a, {"--cache-to", "type=local,dest=" + dir.string()});
  INFO(describe(first));
  REQUIRE(first.steps.size() == 4);
  CHECK(cached_count(first.steps) == 0);
  CHECK(first.run.err.find("exported cache to") != std::string::npos);

  // The layout: oci-layout, an index naming one OCI manifest "latest",
  // the config with the records sorted by key.
  CHECK(fs::exists(dir / "oci-layout"));
  json index = json::parse(read_file(dir / "index.json"));
  CHECK(index["manifests"][0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json");
  CHECK(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "latest");
  CacheDoc doc = read_cache(dir);
  CHECK(doc.manifest["config"]["mediaType"] == "application/vnd.imgbuild.cache.config.v1+json");
  CHECK(doc.manifest["layers"].size() == 4);
  std::vector<std::string> keys;
  for (const auto& r : doc.config["records"]) {
    keys.push_back(r["key"].get<std::string>());
  }
  CHECK(std::is_sorted(keys.begin(), keys.end()));
  CHECK(keys.size() == 6);  // FROM, COPY, RUN, ENV, COPY, RUN

  fs::path b = s.store("b");
  Built second = s.build(b, {"--cache-from", "type=local,src=" + dir.string()});
  INFO(describe(second));
  REQUIRE(second.steps.size() == 4);
  CHECK(cached_count(second.steps) == 4);
  for (const auto& st : second.steps) {
    CHECK(st.source.find(dir.string()) != std::string::npos);
  }
  CHECK(second.digest == first.digest);
  check_store_verified(b);

  // The records are now local: a third build in B needs no import.
  Built third = s.build(b, {});
  CHECK(cached_count(third.steps) == 4);
  CHECK(third.steps[0].source == "local");

  // The same records exported again give the same bytes.
  fs::path again = s.work.path / "cache-again";
  s.build(b, {"--cache-to", "type=local,dest=" + again.string()});
  CHECK(read_file(again / "index.json") == read_file(dir / "index.json"));
}

TEST_CASE("cache export: mode=max carries the intermediate stage, mode=min only the target's chain",
          "[integration][cache][cache-io]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  Stores s;
  s.put("Dockerfile",
        "FROM busybox AS builder\n"
        "RUN echo built > /artifact\n"
        "RUN echo more >> /artifact\n"
        "FROM busybox\n"
        "COPY --from=builder /artifact /artifact\n"
        "RUN cat /artifact > /x\n");
  fs::path a = s.store("a");
  fs::path min_dir = s.work.path / "min";
  fs::path max_dir = s.work.path / "max";
  s.build(a, {"--cache-to", "type=local,dest=" + min_dir.string(), "--cache-to",
              "type=local,dest=" + max_dir.string() + ",mode=max"});
  CacheDoc min = read_cache(min_dir);
  CacheDoc max = read_cache(max_dir);
  // min: FROM + COPY + RUN of the target; max adds the builder's two RUNs.
  CHECK(min.config["records"].size() == 3);
  CHECK(max.config["records"].size() == 5);
  CHECK(min.manifest["layers"].size() == 2);
  // The builder's last layer and the COPY's are the same blob (one /artifact).
  CHECK(max.manifest["layers"].size() == 3);
  std::set<std::string> min_keys;
  for (const auto& r : min.config["records"]) {
    min_keys.insert(r["key"].get<std::string>());
  }
  for (const auto& r : max.config["records"]) {
    if (r["created_by"].get<std::string>().find("echo built") != std::string::npos) {
      CHECK(min_keys.count(r["key"].get<std::string>()) == 0);
    }
  }

  // max imported: everything cached; min imported: the builder runs again,
  // the target's steps (same keys) come from the cache.
  fs::path b = s.store("b");
  Built from_max = s.build(b, {"--cache-from", "type=local,src=" + max_dir.string()});
  INFO(describe(from_max));
  CHECK(cached_count(from_max.steps) == 4);
  fs::path c = s.store("c");
  Built from_min = s.build(c, {"--cache-from", "type=local,src=" + min_dir.string()});
  INFO(describe(from_min));
  REQUIRE(from_min.steps.size() == 4);
  size_t builder_cached = 0;
  size_t target_cached = 0;
  for (const auto& st : from_min.steps) {
    (st.name.starts_with("[builder") ? builder_cached : target_cached) += st.cached ? 1 : 0;
  }
  CHECK(builder_cached == 0);
  CHECK(target_cached == 2);
}

namespace {

// The plain-progress step whose header contains `header`: whether it was
// CACHED (its "#N CACHED" line).
bool step_cached(const std::string& log, const std::string& header) {
  size_t at = log.find(header);
  INFO(header);
  REQUIRE(at != std::string::npos);
  size_t hash = log.rfind('#', at);
  REQUIRE(hash != std::string::npos);
  std::string id = log.substr(hash, log.find(' ', hash) - hash);
  return log.find("\n" + id + " CACHED\n") != std::string::npos;
}

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// Two target platforms: a native tools stage both share (built once), a
// native cross stage per target (it reads TARGETARCH), and the target stage
// on busybox-amd64 / busybox-arm64 (the aarch64 busybox runs under qemu).
const char* const k_two_platforms =
    "ARG TARGETARCH\n"
    "FROM --platform=$BUILDPLATFORM busybox AS tools\n"
    "RUN uname -m > /built-on && echo tools-ran\n"
    "FROM --platform=$BUILDPLATFORM busybox AS cross\n"
    "ARG TARGETARCH\n"
    "COPY --from=tools /built-on /\n"
    "RUN echo \"$(cat /built-on) for $TARGETARCH\" > /for\n"
    "FROM busybox-${TARGETARCH}\n"
    "COPY --from=cross /for /\n"
    "RUN uname -m > /arch && cat /for >> /arch\n";

// Every RUN of k_two_platforms, as plain progress names it.
const std::vector<std::string> k_two_platform_runs = {
    "[linux/amd64 tools 2/2] RUN uname -m > /built-on",
    "cross 3/3] RUN echo \"$(cat /built-on) for amd64\"",
    "cross 3/3] RUN echo \"$(cat /built-on) for arm64\"",
    "[linux/amd64 stage-2 3/3] RUN uname -m > /arch",
    "[linux/arm64 stage-2 3/3] RUN uname -m > /arch",
};

// A fresh store of `s` that also holds the amd64 base as busybox-amd64 and
// the arm64 one (`arm_tar`, imported with a fixed SOURCE_DATE_EPOCH: the
// same image in every store) as busybox-arm64.
fs::path two_platform_store(Stores& s, const std::string& name, const fs::path& arm_tar) {
  fs::path root = s.store(name);
  RunResult tag = run_imgbuild(root, {"tag", "busybox", "busybox-amd64"});
  INFO(tag.err);
  REQUIRE(tag.status == 0);
  RunResult imp = run_sh("SOURCE_DATE_EPOCH=0 " + sh_quote(imgbuild::test::imgbuild_binary().string()) +
                         " --root " + sh_quote(root.string()) + " import --platform linux/arm64 " +
                         sh_quote(arm_tar.string()) + " busybox-arm64");
  INFO(imp.err);
  REQUIRE(imp.status == 0);
  return root;
}

// How many records of a cache config were made by a step whose created_by
// contains `text`.
size_t records_made_by(const CacheDoc& doc, const std::string& text) {
  size_t n = 0;
  for (const auto& r : doc.config["records"]) {
    n += r["created_by"].get<std::string>().find(text) != std::string::npos ? 1 : 0;
  }
  return n;
}

}  // namespace

TEST_CASE("cache export: a two-platform build exports every platform's records, a fresh store hits for both",
          "[integration][cache][cache-io][platform]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  Stores s;
  fs::path arm_tar = s.work.path / "busybox-arm64.tar";
  write_file(arm_tar, imgbuild::test::arm64_busybox_rootfs_tar(s.work.path));
  s.put("Dockerfile", k_two_platforms);
  const std::string platforms = "linux/amd64,linux/arm64";
  fs::path a = two_platform_store(s, "a", arm_tar);
  fs::path min_dir = s.work.path / "min";
  fs::path max_dir = s.work.path / "max";
  Built first = s.build(a, {"--platform", platforms, "--cache-to", "type=local,dest=" + min_dir.string(),
                            "--cache-to", "type=local,dest=" + max_dir.string() + ",mode=max"});
  INFO(describe(first));
  REQUIRE(first.digest.starts_with("sha256:"));
  for (const auto& run : k_two_platform_runs) {
    CHECK_FALSE(step_cached(first.run.err, run));
  }
  CHECK(occurrences(first.run.err, "tools-ran") == 2);  // its name and its output: built once

  // max: every step of both platforms; the shared tools stage once.
  CacheDoc max = read_cache(max_dir);
  CHECK(records_made_by(max, "tools-ran") == 1);
  CHECK(records_made_by(max, "for $TARGETARCH") == 2);
  CHECK(records_made_by(max, "uname -m > /arch") == 2);
  CHECK(records_made_by(max, "COPY /for /") == 2);
  // min: each platform's final image chain (its FROM, COPY and RUN), not
  // the stages it copies from.
  CacheDoc min = read_cache(min_dir);
  CHECK(min.config["records"].size() == 6);
  CHECK(records_made_by(min, "uname -m > /arch") == 2);
  CHECK(records_made_by(min, "COPY /for /") == 2);
  CHECK(records_made_by(min, "tools-ran") == 0);
  CHECK(records_made_by(min, "for $TARGETARCH") == 0);
  for (const CacheDoc* doc : {&min, &max}) {
    std::set<std::string> digests;
    for (const auto& l : doc->manifest["layers"]) {
      CHECK(digests.insert(l["digest"].get<std::string>()).second);
    }
  }

  SECTION("mode=max: every RUN of both platforms is cached, the same index") {
    fs::path b = two_platform_store(s, "b", arm_tar);
    Built second = s.build(b, {"--platform", platforms, "--cache-from", "type=local,src=" + max_dir.string()});
    INFO(describe(second));
    for (const auto& run : k_two_platform_runs) {
      CHECK(step_cached(second.run.err, run));
    }
    CHECK(cached_count(second.steps) == second.steps.size());
    CHECK(occurrences(second.run.err, "tools-ran") == 1);  // the step's name, no output: it did not run
    CHECK(second.digest == first.digest);
    check_store_verified(b);
  }
  SECTION("mode=min: both platforms' target steps are cached (the cross stages run again), the same index") {
    fs::path c = two_platform_store(s, "c", arm_tar);
    Built second = s.build(c, {"--platform", platforms, "--cache-from", "type=local,src=" + min_dir.string()});
    INFO(describe(second));
    CHECK(step_cached(second.run.err, "[linux/amd64 stage-2 3/3] RUN uname -m > /arch"));
    CHECK(step_cached(second.run.err, "[linux/arm64 stage-2 3/3] RUN uname -m > /arch"));
    CHECK(step_cached(second.run.err, "[linux/amd64 stage-2 2/3] COPY --from=cross"));
    CHECK(step_cached(second.run.err, "[linux/arm64 stage-2 2/3] COPY --from=cross"));
    CHECK_FALSE(step_cached(second.run.err, "[linux/amd64 tools 2/2] RUN uname -m > /built-on"));
    CHECK(second.digest == first.digest);
    check_store_verified(c);
  }
}

TEST_CASE("cache export: a two-platform build's registry cache (mode=min) hits for both platforms",
          "[integration][cache][cache-io][platform][registry]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  std::string missing = imgbuild::test::TestRegistry::missing_prerequisite();
  IMGBUILD_REQUIRE_PREREQ(missing.empty(), missing);
  imgbuild::test::TestRegistry registry({});
  Stores s;
  fs::path arm_tar = s.work.path / "busybox-arm64.tar";
  write_file(arm_tar, imgbuild::test::arm64_busybox_rootfs_tar(s.work.path));
  s.put("Dockerfile", k_two_platforms);
  const std::string platforms = "linux/amd64,linux/arm64";
  const std::string ref = registry.host() + "/imgbuild-test-cacheio/multi:v1";
  Built first = s.build(two_platform_store(s, "a", arm_tar),
                        {"--platform", platforms, "--cache-to", "type=registry,ref=" + ref});
  INFO(describe(first));
  INFO(registry.log());
  // Per platform: the FROM, COPY and RUN of its image.
  CHECK(first.run.err.find("exported cache to " + ref + ": 6 records") != std::string::npos);

  fs::path b = two_platform_store(s, "b", arm_tar);
  Built second = s.build(b, {"--platform", platforms, "--cache-from", "type=registry,ref=" + ref});
  INFO(describe(second));
  CHECK(step_cached(second.run.err, "[linux/amd64 stage-2 3/3] RUN uname -m > /arch"));
  CHECK(step_cached(second.run.err, "[linux/arm64 stage-2 3/3] RUN uname -m > /arch"));
  CHECK(second.digest == first.digest);
  check_store_verified(b);
}

TEST_CASE("cache export: a second export writes no blob when nothing changed, only the new ones after a change",
          "[integration][cache][cache-io]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  Stores s;
  s.put("Dockerfile", k_dockerfile);
  s.put("a.txt", "alpha\n");
  s.put("b.txt", "beta\n");
  fs::path a = s.store("a");
  fs::path dir = s.work.path / "cache";
  std::string to = "type=local,dest=" + dir.string();
  s.build(a, {"--cache-to", to});
  auto before = blob_mtimes(dir);

  Built same = s.build(a, {"--cache-to", to});
  CHECK(same.run.err.find("(0 new)") != std::string::npos);
  CHECK(blob_mtimes(dir) == before);

  // b.txt changed: the last COPY and RUN give two new layers; with the new
  // config and manifest, four new files, the old ones untouched (kept).
  s.put("b.txt", "beta, changed\n");
  Built changed = s.build(a, {"--cache-to", to});
  INFO(changed.run.err);
  CHECK(changed.run.err.find("(2 new)") != std::string::npos);
  auto after = blob_mtimes(dir);
  CHECK(after.size() == before.size() + 4);
  for (const auto& [name, mtime] : before) {
    REQUIRE(after.count(name) == 1);
    CHECK(after[name] == mtime);
  }
  CHECK(read_cache(dir).config["records"].size() == 6);

  // The CI pattern: a fresh runner imports and exports the same dir.
  fs::path b = s.store("b");
  Built ci = s.build(b, {"--cache-from", "type=local,src=" + dir.string(), "--cache-to", to});
  INFO(describe(ci));
  CHECK(cached_count(ci.steps) == 4);
  CHECK(ci.run.err.find("(0 new)") != std::string::npos);
}

TEST_CASE("cache export: mounts=true carries a cache mount's files to a fresh store, without it they stay behind",
          "[integration][cache][cache-io]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  Stores s;
  s.put("Dockerfile",
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/c mkdir -p /c/sub && echo from-build-a > /c/f && chmod 0600 /c/f && "
        "ln -sf f /c/link && echo x > /marker\n");
  fs::path a = s.store("a");
  fs::path with = s.work.path / "with-mounts";
  fs::path without = s.work.path / "without-mounts";
  Built exported = s.build(a, {"--cache-to", "type=local,dest=" + with.string() + ",mounts=true", "--cache-to",
                               "type=local,dest=" + without.string()});
  INFO(exported.run.err);
  CacheDoc doc = read_cache(with);
  REQUIRE(doc.config["mounts"].size() == 1);
  CHECK(doc.config["mounts"][0]["id"] == "c");  // the default id: the target, cleaned
  bool annotated = false;
  for (const auto& l : doc.manifest["layers"]) {
    annotated = annotated || l.value("annotations", json::object()).value("org.imgbuild.cache.mount.id", "") == "c";
  }
  CHECK(annotated);
  CHECK(read_cache(without).config["mounts"].empty());

  // A bound too small for the mount: warned and skipped.
  fs::path tiny = s.work.path / "tiny";
  Built bounded = s.build(a, {"--cache-to", "type=local,dest=" + tiny.string() + ",mounts=true,mounts-max-size=4"});
  CHECK(bounded.run.err.find("larger than mounts-max-size") != std::string::npos);
  CHECK(read_cache(tiny).config["mounts"].empty());

  // Another Dockerfile in fresh stores reads the mount.
  s.put("Dockerfile",
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/c (cat /c/f && stat -c %a /c/f && readlink /c/link || echo missing) > /out\n");
  fs::path b = s.store("b");
  fs::path out_b = s.work.path / "out-b";
  s.build(b, {"--cache-from", "type=local,src=" + with.string(), "-o", "type=local,dest=" + out_b.string()});
  CHECK(read_file(out_b / "out") == "from-build-a\n600\nf\n");
  fs::path c = s.store("c");
  fs::path out_c = s.work.path / "out-c";
  s.build(c, {"--cache-from", "type=local,src=" + without.string(), "-o", "type=local,dest=" + out_c.string()});
  CHECK(read_file(out_c / "out") == "missing\n");

  // c has the mount dir now, empty: an import still seeds it.
  s.put("Dockerfile",
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/c (cat /c/f || echo missing) > /out2\n");
  fs::path out_c2 = s.work.path / "out-c2";
  s.build(c, {"--cache-from", "type=local,src=" + with.string(), "-o", "type=local,dest=" + out_c2.string()});
  CHECK(read_file(out_c2 / "out2") == "from-build-a\n");

  // An import bounded below the mount's size: warned, the mount stays empty
  // (nothing half-unpacked).
  fs::path d = s.store("d");
  fs::path out_d = s.work.path / "out-d";
  Built small = s.build(d, {"--cache-from", "type=local,src=" + with.string() + ",mounts-max-size=4", "-o",
                            "type=local,dest=" + out_d.string()});
  CHECK(small.run.err.find("cache mount \"c\" not imported") != std::string::npos);
  CHECK(small.run.err.find("exceed the limit of 4 bytes") != std::string::npos);
  CHECK(read_file(out_d / "out2") == "missing\n");
}

TEST_CASE("cache import: corrupt or partial cache dirs are warned about, never trusted, never fatal",
          "[integration][cache][cache-io]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  Stores s;
  s.put("Dockerfile", k_dockerfile);
  s.put("a.txt", "alpha\n");
  s.put("b.txt", "beta\n");
  fs::path a = s.store("a");
  fs::path good = s.work.path / "good";
  s.build(a, {"--cache-to", "type=local,dest=" + good.string()});
  CacheDoc doc = read_cache(good);
  // The layer of the first RUN (created_by names it).
  std::string run_layer;
  for (const auto& r : doc.config["records"]) {
    if (r["created_by"].get<std::string>().find("echo ran") != std::string::npos) {
      run_layer = r["layer"]["digest"].get<std::string>();
    }
  }
  REQUIRE(!run_layer.empty());

  auto copy_of = [&](const std::string& name) {
    fs::path d = s.work.path / name;
    fs::copy(good, d, fs::copy_options::recursive);
    return d;
  };
  int stores = 0;
  auto import_from = [&](const fs::path& d) {
    fs::path root = s.store("b" + std::to_string(++stores));
    Built b = s.build(root, {"--cache-from", "type=local,src=" + d.string()});
    check_store_verified(root);
    return b;
  };

  SECTION("a flipped byte in a layer blob: that step runs, the others come from the cache") {
    fs::path d = copy_of("flipped");
    fs::path blob = d / "blobs" / "sha256" / run_layer.substr(7);
    std::string bytes = read_file(blob);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
    write_file(blob, bytes);
    Built b = import_from(d);
    INFO(describe(b));
    REQUIRE(b.steps.size() == 4);
    CHECK_FALSE(b.steps[1].cached);
    CHECK(cached_count(b.steps) == 3);
    CHECK(b.run.err.find("WARNING: cache dir") != std::string::npos);
    CHECK(b.run.err.find(d.string()) != std::string::npos);
    CHECK(b.run.err.find(run_layer) != std::string::npos);
    CHECK(b.run.err.find("failed verification") != std::string::npos);
  }
  SECTION("a missing layer blob: that step runs") {
    fs::path d = copy_of("missing");
    fs::remove(d / "blobs" / "sha256" / run_layer.substr(7));
    Built b = import_from(d);
    INFO(describe(b));
    REQUIRE(b.steps.size() == 4);
    CHECK_FALSE(b.steps[1].cached);
    CHECK(cached_count(b.steps) == 3);
    CHECK(b.run.err.find(run_layer) != std::string::npos);
  }
  SECTION("garbage index.json: every step runs") {
    fs::path d = copy_of("garbage");
    write_file(d / "index.json", "{\"manifests\": [ {\"digest\": \"../../../etc/passwd\"");
    Built b = import_from(d);
    INFO(describe(b));
    CHECK(cached_count(b.steps) == 0);
    CHECK(b.run.err.find("WARNING: ignoring cache dir") != std::string::npos);
  }
  SECTION("a path-traversing digest in index.json: every step runs") {
    fs::path d = copy_of("traversal");
    json index = json::parse(read_file(d / "index.json"));
    index["manifests"][0]["digest"] = "sha256:../../../../../../etc/passwd";
    write_file(d / "index.json", index.dump());
    Built b = import_from(d);
    INFO(describe(b));
    CHECK(cached_count(b.steps) == 0);
    CHECK(b.run.err.find("invalid digest") != std::string::npos);
  }
  SECTION("a manifest that does not match its digest: every step runs") {
    fs::path d = copy_of("mismatch");
    json index = json::parse(read_file(d / "index.json"));
    std::string md = index["manifests"][0]["digest"].get<std::string>();
    fs::path mpath = d / "blobs" / "sha256" / md.substr(7);
    write_file(mpath, read_file(mpath) + " ");
    Built b = import_from(d);
    INFO(describe(b));
    CHECK(cached_count(b.steps) == 0);
    CHECK(b.run.err.find("does not match its digest") != std::string::npos);
  }
  SECTION("a missing dir: a warning, a cold build") {
    Built b = import_from(s.work.path / "nowhere");
    CHECK(cached_count(b.steps) == 0);
    CHECK(b.run.err.find("WARNING:") != std::string::npos);
  }
}

TEST_CASE("cache export: bad --cache-to and --cache-from values are refused with the key named",
          "[integration][cache][cache-io]") {
  TempDir work;
  fs::path ctx = work.path / "ctx";
  fs::create_directories(ctx);
  write_file(ctx / "Dockerfile", "FROM scratch\n");
  auto refused = [&](const std::vector<std::string>& args, const std::string& text) {
    std::vector<std::string> all = {"build", "--progress", "plain"};
    all.insert(all.end(), args.begin(), args.end());
    all.push_back(ctx.string());
    RunResult r = run_imgbuild(work.path / "store", all);
    INFO(r.err);
    CHECK(r.status == 2);
    CHECK(r.err.find(text) != std::string::npos);
  };
  refused({"--cache-to", "type=local"}, "type=local needs dest=DIR");
  refused({"--cache-to", "type=local,dest=x,mode=all"}, "mode must be min or max");
  refused({"--cache-to", "type=gha"}, "unsupported type \"gha\"");
  refused({"--cache-from", "type=local,src=x,colour=blue"}, "unknown key \"colour\"");
  refused({"--cache-to", "type=local,dest=x,mounts-max-size=lots"}, "mounts-max-size");
}

TEST_CASE("cache export: a registry cache round trip gives an all-cached build in a fresh store",
          "[integration][cache][cache-io][registry]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  std::string missing = imgbuild::test::TestRegistry::missing_prerequisite();
  IMGBUILD_REQUIRE_PREREQ(missing.empty(), missing);
  imgbuild::test::TestRegistry registry({});
  Stores s;
  s.put("Dockerfile", k_dockerfile);
  s.put("a.txt", "alpha\n");
  s.put("b.txt", "beta\n");
  std::string ref = registry.host() + "/imgbuild-test-cacheio/cache:v1";

  fs::path a = s.store("a");
  Built first = s.build(a, {"--cache-to", "type=registry,ref=" + ref + ",mode=max"});
  INFO(describe(first));
  INFO(registry.log());
  CHECK(cached_count(first.steps) == 0);
  // A second export of the same records sends nothing new.
  Built again = s.build(a, {"--cache-to", "type=registry,ref=" + ref + ",mode=max"});
  CHECK(again.run.err.find("(0 new)") != std::string::npos);

  fs::path b = s.store("b");
  Built second = s.build(b, {"--cache-from", "type=registry,ref=" + ref});
  INFO(describe(second));
  REQUIRE(second.steps.size() == 4);
  CHECK(cached_count(second.steps) == 4);
  CHECK(second.steps[0].source.find(ref.substr(0, ref.find(':', registry.host().size()))) != std::string::npos);
  CHECK(second.digest == first.digest);
  check_store_verified(b);

  // The bare form is a registry reference too.
  fs::path c = s.store("c");
  Built bare = s.build(c, {"--cache-from", ref});
  CHECK(cached_count(bare.steps) == 4);

  // A tag that does not exist, and a registry nobody listens on: warnings.
  fs::path d = s.store("d");
  Built absent = s.build(d, {"--cache-from", "type=registry,ref=" + registry.host() + "/imgbuild-test-cacheio/none:x"});
  CHECK(cached_count(absent.steps) == 0);
  CHECK(absent.run.err.find("WARNING:") != std::string::npos);
  fs::path e = s.store("e");
  std::string dead = "127.0.0.1:" + std::to_string(imgbuild::test::free_port()) + "/imgbuild-test-cacheio/x:y";
  Built unreachable = s.build(e, {"--cache-from", "type=registry,ref=" + dead});
  CHECK(cached_count(unreachable.steps) == 0);
  CHECK(unreachable.run.err.find("WARNING:") != std::string::npos);
  CHECK(unreachable.run.err.find(dead.substr(0, dead.find('/'))) != std::string::npos);

  // A failing export is an error.
  Built failed = s.build(e, {"--cache-to", "type=registry,ref=" + dead}, false);
  CHECK(failed.run.status != 0);
  CHECK(failed.run.err.find("failed to export cache") != std::string::npos);

  // mounts=true through the registry.
  std::string mref = registry.host() + "/imgbuild-test-cacheio/mounts:latest";
  s.put("Dockerfile", "FROM busybox\nRUN --mount=type=cache,target=/c echo via-registry > /c/f\n");
  s.build(s.store("f"), {"--cache-to", "type=registry,ref=" + mref + ",mounts=true"});
  s.put("Dockerfile", "FROM busybox\nRUN --mount=type=cache,target=/c (cat /c/f || echo missing) > /out\n");
  fs::path out_g = s.work.path / "out-g";
  s.build(s.store("g"), {"--cache-from", mref, "-o", "type=local,dest=" + out_g.string()});
  CHECK(read_file(out_g / "out") == "via-registry\n");
}
