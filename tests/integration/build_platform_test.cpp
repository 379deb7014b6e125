// Builds for another platform (--platform linux/arm64 on an amd64 host):
// the platform ARGs, the base chosen for the stage's platform, the image's
// architecture, RUN of aarch64 binaries through binfmt_misc and qemu
// (scripts/binfmt), the error when no emulator is registered, the cache
// key per platform, and the end to end: a cross-compiling
// Dockerfile built for linux/amd64 and linux/arm64, pushed to a registry in
// the same build, pulled per platform into fresh stores and run (`run` of a
// foreign platform's image goes through qemu too, `run --platform` selects
// one). The arm64 base is Debian's busybox-static:arm64 (harness.hpp
// arm64_busybox_rootfs_tar), imported as "busybox-arm64".

#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "build_fixture.hpp"
#include "support/registry_fixture.hpp"
#include "support/require.hpp"
#include "util/hash.hpp"
#include "util/platform.hpp"

namespace imgbuild::test::build {

namespace {

nlohmann::json inspect(const fs::path& root, const std::string& name) {
  RunResult r = run_imgbuild(root, {"image", "inspect", name});
  INFO(r.err);
  REQUIRE(r.status == 0);
  nlohmann::json j = nlohmann::json::parse(r.out);
  return j.is_array() ? j.at(0) : j;
}

// The amd64 busybox imported as linux/ARCH's image "foreign" (an image of a
// platform no emulator is registered for).
void import_foreign(const Fixture& fx, const std::string& arch) {
  fs::path tarball = fx.work.path / "foreign.tar";
  write_file(tarball, busybox_rootfs_tar());
  RunResult imp = run_imgbuild(fx.root, {"import", "--platform", "linux/" + arch, tarball.string(), "foreign"});
  INFO(imp.err);
  REQUIRE(imp.status == 0);
}

bool host_is_amd64() { return imgbuild::host_platform().architecture == "amd64"; }

// An architecture whose qemu entry is not registered here (scripts/binfmt
// registers aarch64 and arm only), or "" when every candidate is.
std::string unregistered_arch() {
  for (const char* candidate : {"s390x", "ppc64le", "riscv64", "mips64le"}) {
    std::string qemu = std::string(candidate) == "mips64le" ? "mips64el" : candidate;
    if (!fs::exists("/proc/sys/fs/binfmt_misc/qemu-" + qemu)) {
      return candidate;
    }
  }
  return "";
}

RunResult ok_run(const RunResult& r) {
  INFO(r.out);
  INFO(r.err);
  REQUIRE(r.status == 0);
  return r;
}

}  // namespace

TEST_CASE("build --platform linux/arm64 runs aarch64 binaries and sets the platform ARGs", "[build][platform]") {
  REQUIRE(host_is_amd64());
  PlatformFixture fx;
  fs::path out = fx.work.path / "out";
  std::string df =
      "FROM busybox-arm64\n"
      "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT\n"
      "RUN uname -m > /arch && echo \"$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT|"
      "$BUILDPLATFORM|$BUILDOS|$BUILDARCH|$BUILDVARIANT\" > /args\n";
  RunResult r = fx.build("arm", df, {},
                         {"--platform", "linux/arm64", "-t", "arm:1", "-o", "type=local,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(read_file(out / "arch") == "aarch64\n");
  CHECK(read_file(out / "args") == "linux/arm64|linux|arm64||linux/amd64|linux|amd64|\n");
  nlohmann::json img = inspect(fx.root, "arm:1");
  INFO(img.dump());
  CHECK(img.dump().find("\"arm64\"") != std::string::npos);

  // Global scope: FROM expands TARGETARCH; a stage FROM --platform=$BUILDPLATFORM
  // runs natively and sees the target in its ARGs.
  fs::path out2 = fx.work.path / "out2";
  std::string df2 =
      "ARG TARGETARCH\n"
      "FROM --platform=$BUILDPLATFORM busybox AS cross\n"
      "ARG TARGETARCH\n"
      "COPY --from=busybox /bin/busybox /tool/busybox\n"  // resolved for the stage's platform (amd64)
      "RUN uname -m > /build-arch && echo \"$TARGETARCH\" > /for && /tool/busybox true\n"
      "FROM busybox-${TARGETARCH}\n"
      "COPY --from=cross /build-arch /for /\n"
      "RUN uname -m > /arch\n";
  RunResult r2 = fx.build("cross", df2, {},
                          {"--platform", "linux/arm64", "-o", "type=local,dest=" + out2.string()});
  INFO(r2.err);
  REQUIRE(r2.status == 0);
  CHECK(read_file(out2 / "build-arch") == "x86_64\n");
  CHECK(read_file(out2 / "for") == "arm64\n");
  CHECK(read_file(out2 / "arch") == "aarch64\n");
}

TEST_CASE("build --platform linux/arm64: RUN under qemu in the chroot sandbox too", "[build][platform]") {
  REQUIRE(host_is_amd64());
  PlatformFixture fx;
  fs::path out = fx.work.path / "out";
  RunResult r = fx.build("chroot", "FROM busybox-arm64\nRUN uname -m > /arch && ls /bin/busybox > /seen\n", {},
                         {"--platform", "linux/arm64", "--isolation", "chroot", "--snapshotter", "copy", "-o",
                          "type=local,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(read_file(out / "arch") == "aarch64\n");
  CHECK(read_file(out / "seen") == "/bin/busybox\n");
}

TEST_CASE("build --platform: the image config names the target platform", "[build][platform]") {
  REQUIRE(host_is_amd64());
  PlatformFixture fx;
  fs::path tar = fx.work.path / "img.tar";
  RunResult r = fx.build("cfg", "FROM busybox-arm64\nENV A=1\n", {},
                         {"--platform", "linux/aarch64", "-o", "type=docker,dest=" + tar.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  Saved s = read_saved(tar, fx.work.path);
  CHECK(s.config["architecture"] == "arm64");
  CHECK(s.config["os"] == "linux");
  CHECK_FALSE(s.config.contains("variant"));

  // A scratch stage for linux/arm/v7 gets that platform; no RUN, no emulator.
  fs::path tar2 = fx.work.path / "img2.tar";
  RunResult r2 = fx.build("scratch", "FROM scratch\nCOPY f /f\n", {{"f", "x"}},
                          {"--platform", "linux/arm", "-o", "type=docker,dest=" + tar2.string()});
  INFO(r2.err);
  REQUIRE(r2.status == 0);
  Saved s2 = read_saved(tar2, fx.work.path);
  CHECK(s2.config["architecture"] == "arm");
  CHECK(s2.config["variant"] == "v7");
}

TEST_CASE("build --platform: a base stored for another platform only is an error naming both", "[build][platform]") {
  REQUIRE(host_is_amd64());
  PlatformFixture fx;
  RunResult r = fx.build("wrong", "FROM busybox\nRUN true\n", {}, {"--platform", "linux/arm64"});
  CHECK(r.status != 0);
  CHECK(r.err.find("base image \"busybox\" in the local store is for linux/amd64, not linux/arm64") !=
        std::string::npos);
}

TEST_CASE("build --platform: no binfmt registration for the platform is a clear error", "[build][platform]") {
  REQUIRE(host_is_amd64());
  std::string arch = unregistered_arch();
  REQUIRE(!arch.empty());
  Fixture fx;
  import_foreign(fx, arch);
  RunResult r = fx.build("nobinfmt", "FROM foreign\nRUN true\n", {}, {"--platform", "linux/" + arch});
  CHECK(r.status != 0);
  INFO(r.err);
  CHECK(r.err.find("cannot run linux/" + arch + " binaries") != std::string::npos);
  CHECK(r.err.find("install qemu-user-static") != std::string::npos);
  CHECK(r.err.find("scripts/binfmt") != std::string::npos);
}

TEST_CASE("run of an image of a platform no emulator is registered for is a clear error", "[build][platform]") {
  REQUIRE(host_is_amd64());
  std::string arch = unregistered_arch();
  REQUIRE(!arch.empty());
  Fixture fx;
  import_foreign(fx, arch);
  for (const auto& extra : std::vector<std::vector<std::string>>{{}, {"--name", "keep"}}) {
    std::vector<std::string> args = {"run"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"foreign", "true"});
    RunResult r = run_imgbuild(fx.root, args);
    INFO(r.err);
    CHECK(r.status == 125);
    CHECK(r.err.find("image foreign: cannot run linux/" + arch + " binaries") != std::string::npos);
    CHECK(r.err.find("install qemu-user-static") != std::string::npos);
  }
  // Nothing was kept of the container that could not start.
  CHECK(ok_run(run_imgbuild(fx.root, {"ps", "-a"})).out.find("keep") == std::string::npos);
}

TEST_CASE("build --platform: the cache key includes the platform", "[build][platform]") {
  REQUIRE(host_is_amd64());
  PlatformFixture fx;
  // The same Dockerfile on a scratch base for two platforms: the second
  // build must not hit the first one's records.
  std::string df = "FROM scratch\nCOPY f /f\n";
  RunResult a = fx.build("key", df, {{"f", "x"}}, {"--platform", "linux/amd64"});
  INFO(a.err);
  REQUIRE(a.status == 0);
  RunResult again = fx.build("key", df, {{"f", "x"}}, {"--platform", "linux/amd64"});
  REQUIRE(again.status == 0);
  CHECK(again.err.find("CACHED") != std::string::npos);
  RunResult b = fx.build("key", df, {{"f", "x"}}, {"--platform", "linux/arm64"});
  INFO(b.err);
  REQUIRE(b.status == 0);
  CHECK(b.err.find("CACHED") == std::string::npos);
}

TEST_CASE("build --platform linux/amd64,linux/arm64 builds both and a $BUILDPLATFORM stage once", "[build][platform]") {
  REQUIRE(host_is_amd64());
  PlatformFixture fx;
  std::string df =
      "ARG TARGETARCH\n"
      "FROM --platform=$BUILDPLATFORM busybox AS cross\n"
      "RUN uname -m > /built-on && echo cross-once\n"
      "FROM busybox-${TARGETARCH}\n"
      "ARG TARGETPLATFORM\n"
      "COPY --from=cross /built-on /\n"
      "RUN uname -m > /arch && echo \"$TARGETPLATFORM\" > /target\n";
  // busybox-amd64: the amd64 base under the name the FROM expands to.
  RunResult tag = run_imgbuild(fx.root, {"tag", "busybox", "busybox-amd64"});
  INFO(tag.err);
  REQUIRE(tag.status == 0);
  const fs::path local = fx.work.path / "out-local";
  const fs::path iid = fx.work.path / "iid";
  RunResult r = fx.build("multi", df, {},
                         {"--platform", "linux/amd64,linux/arm64", "-t", "multi", "--iidfile", iid.string(), "-o",
                          "type=local,dest=" + local.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  // One directory per platform, as buildx writes them, each its platform's
  // files: the RUN ran natively or under qemu.
  CHECK(read_file(local / "linux_amd64" / "arch") == "x86_64\n");
  CHECK(read_file(local / "linux_arm64" / "arch") == "aarch64\n");
  CHECK(read_file(local / "linux_arm64" / "target") == "linux/arm64\n");
  CHECK(read_file(local / "linux_arm64" / "built-on") == "x86_64\n");  // the cross stage ran natively
  // The name holds an index of both; the image ID is the index digest.
  nlohmann::json arm = nlohmann::json::parse(
      run_imgbuild(fx.root, {"image", "inspect", "--platform", "linux/arm64", "multi"}).out);
  arm = arm.is_array() ? arm.at(0) : arm;
  CHECK(arm.value("Architecture", "") == "arm64");
  CHECK(arm.value("Id", "") == read_file(iid));
  nlohmann::json amd = inspect(fx.root, "multi");
  CHECK(amd.value("Architecture", "") == "amd64");
  // -o type=oci: index.json names one image index with both manifests.
  const fs::path oci = fx.work.path / "multi-oci.tar";
  RunResult o = fx.build("multi", df, {}, {"--platform", "linux/amd64,linux/arm64", "-o", "type=oci,dest=" + oci.string()});
  INFO(o.err);
  REQUIRE(o.status == 0);
  RunResult listing = run_sh("tar -xOf " + sh_quote(oci.string()) + " index.json");
  nlohmann::json index_json = nlohmann::json::parse(listing.out);
  REQUIRE(index_json["manifests"].size() == 1);
  const std::string index_digest = index_json["manifests"][0]["digest"].get<std::string>();
  // The archive's layers are gzip'd (buildx's oci exporter), so its index is
  // not the stored one; writing it again gives the same bytes.
  const fs::path oci2 = fx.work.path / "multi-oci2.tar";
  RunResult o2 =
      fx.build("multi", df, {}, {"--platform", "linux/amd64,linux/arm64", "-o", "type=oci,dest=" + oci2.string()});
  REQUIRE(o2.status == 0);
  CHECK(run_sh("tar -xOf " + sh_quote(oci2.string()) + " index.json").out == listing.out);
  nlohmann::json index_doc = nlohmann::json::parse(
      run_sh("tar -xOf " + sh_quote(oci.string()) + " blobs/sha256/" + index_digest.substr(7)).out);
  REQUIRE(index_doc["manifests"].size() == 2);
  CHECK(index_doc["manifests"][0]["platform"]["architecture"] == "amd64");
  CHECK(index_doc["manifests"][1]["platform"]["architecture"] == "arm64");
  // type=docker cannot hold several platforms: refused before building.
  RunResult d = fx.build("multi", df, {}, {"--platform", "linux/amd64,linux/arm64", "-o",
                                           "type=docker,dest=" + (fx.work.path / "d.tar").string()});
  CHECK(d.status == 1);
  CHECK(d.err.find("docker exporter does not currently support exporting manifest lists") != std::string::npos);
  CHECK(d.err.find("RUN") == std::string::npos);
  // The cross stage ran once (its RUN printed once), each target's RUN once,
  // with BuildKit's platform-prefixed step names.
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = r.err.find(needle); at != std::string::npos; at = r.err.find(needle, at + 1)) {
      ++n;
    }
    return n;
  };
  CHECK(count("cross-once") == 2);  // the step's name and its output line
  // The summary counts every platform's steps: the cross RUN once, a COPY
  // and a RUN per target.
  CHECK(r.err.find(", 5 steps run, 0 cached,") != std::string::npos);
  CHECK(count("[linux/amd64 cross 2/2] RUN uname -m > /built-on") == 1);
  CHECK(count("[linux/arm64 stage-1 3/3] RUN uname -m > /arch") == 1);
  CHECK(count("[linux/amd64 stage-1 3/3] RUN uname -m > /arch") == 1);
}

TEST_CASE("build --platform: a bad entry of the list is a usage error", "[build][platform]") {
  Fixture fx;
  RunResult r = fx.build("badlist", "FROM busybox\n", {}, {"--platform", "linux/amd64,linux/a*b"});
  CHECK(r.status == 2);
  CHECK(r.err.find("--platform: invalid platform \"linux/a*b\": wildcards are not supported") != std::string::npos);
}


TEST_CASE("build --platform linux/amd64,linux/arm64 --push: the index in a registry, pulled and run per platform",
          "[build][platform][registry]") {
  REQUIRE(host_is_amd64());
  std::string missing = TestRegistry::missing_prerequisite();
  IMGBUILD_REQUIRE_PREREQ(missing.empty(), missing);
  TestRegistry registry({});
  PlatformFixture fx;
  // The base: one name for both platforms, as a registry image would be.
  ok_run(run_imgbuild(fx.root, {"manifest", "create", "mpbase", "busybox", "busybox-arm64"}));
  const std::string df =
      "FROM --platform=$BUILDPLATFORM mpbase AS cross\n"
      "ARG BUILDPLATFORM TARGETPLATFORM TARGETARCH\n"
      "WORKDIR /out\n"
      "RUN echo \"$BUILDPLATFORM -> $TARGETPLATFORM\" > built-for && uname -m > built-on && "
      "echo \"tool for $TARGETARCH\" > tool\n"
      "FROM mpbase\n"
      "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM\n"
      "COPY --from=cross /out /opt/cross\n"
      "RUN uname -m > /arch && echo \"$TARGETPLATFORM $TARGETOS $TARGETARCH $TARGETVARIANT $BUILDPLATFORM\" > "
      "/platform\n"
      "LABEL org.example.arch=$TARGETARCH\n"
      "CMD [\"cat\", \"/platform\"]\n";
  const std::string dest = registry.host() + "/imgbuild-test/cross:1";
  const fs::path md = fx.work.path / "metadata.json";
  RunResult built = ok_run(fx.build(
      "push", df, {}, {"--platform", "linux/amd64,linux/arm64", "--push", "-t", dest, "--metadata-file", md.string()}));
  // The cross stage ran natively for each target, named as BuildKit names it.
  CHECK(built.err.find("[linux/amd64->arm64 cross 3/3] RUN echo \"linux/amd64 -> linux/arm64\"") !=
        std::string::npos);
  CHECK(built.err.find("[linux/amd64 cross 3/3] RUN echo \"linux/amd64 -> linux/amd64\"") != std::string::npos);

  // The registry holds an index of both platforms' manifests; the metadata
  // file names it as pushed.
  RunResult raw = ok_run(run_sh("skopeo inspect --raw --tls-verify=false docker://" + sh_quote(dest)));
  nlohmann::json index = nlohmann::json::parse(raw.out);
  CHECK(index["mediaType"] == "application/vnd.oci.image.index.v1+json");
  REQUIRE(index["manifests"].size() == 2);
  CHECK(index["manifests"][0]["platform"] == nlohmann::json({{"os", "linux"}, {"architecture", "amd64"}}));
  CHECK(index["manifests"][1]["platform"]["os"] == "linux");
  CHECK(index["manifests"][1]["platform"]["architecture"] == "arm64");
  for (const auto& m : index["manifests"]) {
    CHECK(m["mediaType"] == "application/vnd.oci.image.manifest.v1+json");
  }
  const std::string index_digest = imgbuild::sha256(raw.out).str();
  nlohmann::json meta = nlohmann::json::parse(read_file(md));
  CHECK(meta["containerimage.digest"] == index_digest);
  CHECK(meta["containerimage.descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json");
  CHECK(meta["containerimage.descriptor"]["size"] == raw.out.size());
  CHECK_FALSE(meta.contains("containerimage.config.digest"));
  RunResult cfg = ok_run(run_sh("skopeo --override-arch arm64 inspect --config --tls-verify=false docker://" +
                            sh_quote(dest)));
  CHECK(nlohmann::json::parse(cfg.out)["config"]["Labels"]["org.example.arch"] == "arm64");

  // Each platform pulled into a fresh store and run: its own binaries (the
  // arm64 ones under qemu), its platform ARGs, the cross stage's output
  // made natively for it.
  struct Expect {
    std::string platform;
    std::string machine;
    std::string args;
  };
  for (const Expect& e : {Expect{"linux/arm64", "aarch64", "linux/arm64 linux arm64  linux/amd64"},
                          Expect{"linux/amd64", "x86_64", "linux/amd64 linux amd64  linux/amd64"}}) {
    INFO(e.platform);
    fs::path store = fx.work.path / ("pulled-" + e.platform.substr(6));
    RunResult pull = ok_run(run_imgbuild(store, {"pull", "--platform", e.platform, dest}));
    CHECK(pull.out.find("Digest: " + index_digest) != std::string::npos);
    CHECK(ok_run(run_imgbuild(store, {"run", "--rm", dest, "uname", "-m"})).out == e.machine + "\n");
    CHECK(ok_run(run_imgbuild(store, {"run", "--rm", dest})).out == e.args + "\n");  // CMD cat /platform
    CHECK(ok_run(run_imgbuild(store, {"run", "--rm", dest, "cat", "/arch", "/opt/cross/built-for",
                                  "/opt/cross/built-on"})).out ==
          e.machine + "\nlinux/amd64 -> " + e.platform + "\nx86_64\n");
  }

  // The build's own store holds both under the name: run takes the host's
  // unless --platform selects the other.
  CHECK(ok_run(run_imgbuild(fx.root, {"run", "--rm", dest, "uname", "-m"})).out == "x86_64\n");
  CHECK(ok_run(run_imgbuild(fx.root, {"run", "--rm", "--platform", "linux/arm64", dest, "uname", "-m"})).out ==
        "aarch64\n");
  RunResult absent = run_imgbuild(fx.root, {"run", "--rm", "--platform", "linux/arm/v7", dest, "true"});
  CHECK(absent.status == 1);
  CHECK(absent.err.find("has no image for platform linux/arm/v7") != std::string::npos);
}

}  // namespace imgbuild::test::build
