// Multi-platform builds share a COPY's layer between platforms only when it
// is the layer each platform's own copy gives (builder/copy_share.hpp):
// the same COPY --from a `FROM --platform=$BUILDPLATFORM` stage into
// parents that agree gives one layer in every platform's image; parents
// that differ on the destination path each get their own.

#include <sys/stat.h>

#include <filesystem>
#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "build_fixture.hpp"
#include "util/platform.hpp"

namespace imgbuild::test::build {

namespace {

// PlatformFixture, with the amd64 busybox also named "busybox-amd64".
struct TwoPlatformFixture : PlatformFixture {
  TwoPlatformFixture() {
    RunResult tag = run_imgbuild(root, {"tag", "busybox", "busybox-amd64"});
    INFO(tag.err);
    REQUIRE(tag.status == 0);
  }
};

// The layers (by architecture) of the index an OCI layout tar names, each
// layer's digest and its entries as `tar -tv` prints them (mode, owner,
// path; no sizes or times).
struct PlatformLayers {
  std::vector<std::string> digests;
  std::vector<std::vector<std::string>> entries;
};

std::map<std::string, PlatformLayers> read_index_layers(const fs::path& oci_tar, const fs::path& dir) {
  fs::create_directories(dir);
  RunResult x = run_sh("tar -xf " + sh_quote(oci_tar.string()) + " -C " + sh_quote(dir.string()));
  REQUIRE(x.status == 0);
  auto blob = [&](const std::string& digest) { return dir / "blobs" / "sha256" / digest.substr(7); };
  nlohmann::json top = nlohmann::json::parse(read_file(dir / "index.json"));
  nlohmann::json index = nlohmann::json::parse(read_file(blob(top["manifests"][0]["digest"].get<std::string>())));
  std::map<std::string, PlatformLayers> out;
  for (const auto& m : index["manifests"]) {
    nlohmann::json manifest = nlohmann::json::parse(read_file(blob(m["digest"].get<std::string>())));
    PlatformLayers& pl = out[m["platform"]["architecture"].get<std::string>()];
    for (const auto& l : manifest["layers"]) {
      const std::string d = l["digest"].get<std::string>();
      pl.digests.push_back(d);
      RunResult t = run_sh("tar -tvzf " + sh_quote(blob(d).string()) + " | awk '{print $1, $2, $6}'");
      REQUIRE(t.status == 0);
      std::vector<std::string> lines;
      std::istringstream in(t.out);
      for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
      }
      pl.entries.push_back(lines);
    }
  }
  return out;
}

bool contains(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

}  // namespace

TEST_CASE("build --platform two: a COPY's layer is shared only where the parents agree", "[build][platform]") {
  REQUIRE(imgbuild::host_platform().architecture == "amd64");
  TwoPlatformFixture fx;
  // base: /app is 0700 for amd64 and 0755 for arm64 (a COPY into it keeps
  // the directory's mode, so the two COPY layers differ); /gen and /fresh
  // are absent in both (the COPY layers are the same).
  const std::string df =
      "ARG TARGETARCH\n"
      "FROM --platform=$BUILDPLATFORM busybox AS gen\n"
      "RUN mkdir -p /gen/sub && echo a > /gen/a && echo b > /gen/sub/b && chown -R 7:8 /gen/sub\n"
      "FROM busybox-${TARGETARCH} AS base\n"
      "ARG TARGETARCH\n"
      "RUN mkdir /app && if [ \"$TARGETARCH\" = amd64 ]; then chmod 700 /app; fi\n"
      "FROM base\n"
      "COPY --from=gen /gen/a /app/\n"
      "COPY --from=gen /gen /gen\n"
      "COPY --chown=3:4 --from=gen /gen /fresh\n"
      "RUN uname -m > /arch\n";
  const fs::path oci = fx.work.path / "share.tar";
  RunResult r = fx.build("share", df, {}, {"--platform", "linux/amd64,linux/arm64", "-o", "type=oci,dest=" + oci.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  auto layers = read_index_layers(oci, fx.work.path / "share-oci");
  REQUIRE(layers.count("amd64") == 1);
  REQUIRE(layers.count("arm64") == 1);
  const PlatformLayers& amd = layers["amd64"];
  const PlatformLayers& arm = layers["arm64"];
  // busybox, RUN mkdir /app, three COPYs, RUN uname.
  REQUIRE(amd.digests.size() == 6);
  REQUIRE(arm.digests.size() == 6);
  // COPY into /app: each platform's own directory mode.
  CHECK(contains(amd.entries[2], "drwx------ 0/0 app/"));
  CHECK(contains(arm.entries[2], "drwxr-xr-x 0/0 app/"));
  CHECK(contains(amd.entries[2], "-rw-r--r-- 0/0 app/a"));
  CHECK(contains(arm.entries[2], "-rw-r--r-- 0/0 app/a"));
  CHECK(amd.digests[2] != arm.digests[2]);
  // COPY to paths neither parent has: one layer, the stage's owners kept or
  // --chown's.
  CHECK(amd.digests[3] == arm.digests[3]);
  CHECK(amd.digests[4] == arm.digests[4]);
  CHECK(contains(amd.entries[3], "drwxr-xr-x 7/8 gen/sub/"));
  CHECK(contains(amd.entries[3], "-rw-r--r-- 7/8 gen/sub/b"));
  CHECK(contains(arm.entries[4], "drwxr-xr-x 3/4 fresh/sub/"));
  CHECK(contains(arm.entries[4], "-rw-r--r-- 3/4 fresh/a"));
  // The RUNs after them ran on each platform's own rootfs.
  CHECK(amd.digests[5] != arm.digests[5]);
}

}  // namespace imgbuild::test::build
