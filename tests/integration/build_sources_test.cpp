// Where builds get their inputs and where they put their results: ONBUILD
// triggers that use other stages, named contexts (a directory as a base and
// a COPY source, docker-image://, oci-layout://), and the OCI outputs
// (type=oci as a tar and as a directory, checked with skopeo and umoci).

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::have_tool;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::write_file;
using namespace imgbuild::test::build;
using nlohmann::json;

TEST_CASE("build sources: ONBUILD triggers that use other stages", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  // The parent's triggers name `helper`, which the child does not mention.
  const char* df =
      "FROM busybox AS helper\n"
      "RUN echo helped > /helped\n"
      "FROM busybox AS parent\n"
      "ONBUILD COPY --from=helper /helped /copied\n"
      "ONBUILD RUN --mount=from=helper,target=/h cat /h/helped > /mounted\n"
      "FROM parent AS child\n";
  fs::path out = fx.work.path / "child.tar";
  RunResult r = fx.build("onbuild", df, {}, {"--target", "child", "-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("[child 1/2] ONBUILD COPY --from=helper /helped /copied") != std::string::npos);
  LayerFiles files = merged(read_saved(out, fx.work.path));
  CHECK(files.at("copied").content == "helped\n");
  CHECK(files.at("mounted").content == "helped\n");
  CHECK(files.count("helped") == 0);

  // The same triggers in a stored image's config: the plan reads them from
  // the store and builds the helper stage of the new Dockerfile.
  std::string parent_tag = "imgbuild-test-builder-onbuild:" + std::to_string(::getpid());
  RunResult p = fx.build("onbuild", df, {}, {"--target", "parent", "-t", parent_tag});
  INFO(p.err);
  REQUIRE(p.status == 0);
  fs::path out2 = fx.work.path / "from-image.tar";
  RunResult c = fx.build("onbuild-image",
                         "FROM busybox AS helper\nRUN echo other-helper > /helped\nFROM " + parent_tag + "\n", {},
                         {"-o", "type=docker,dest=" + out2.string()});
  INFO(c.err);
  REQUIRE(c.status == 0);
  LayerFiles files2 = merged(read_saved(out2, fx.work.path));
  CHECK(files2.at("copied").content == "other-helper\n");
  CHECK(files2.at("mounted").content == "other-helper\n");
}

TEST_CASE("build sources: named contexts as base and COPY source", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  fs::path extra = fx.work.path / "extra";
  fs::create_directories(extra / "sub");
  write_file(extra / "sub" / "f.txt", "from-extra\n");
  REQUIRE(::chmod((extra / "sub" / "f.txt").c_str(), 0640) == 0);

  // A directory: FROM it (its files are the rootfs) and COPY --from it.
  const char* df =
      "FROM extra AS fromdir\n"
      "FROM base\n"
      "COPY --from=extra sub/f.txt /copied.txt\n"
      "COPY --from=fromdir /sub /fromdir\n"
      "RUN cat /copied.txt > /ran\n";
  fs::path out = fx.work.path / "ctx.tar";
  RunResult r = fx.build("named", df, {},
                         {"--build-context", "extra=" + extra.string(), "--build-context",
                          "base=docker-image://busybox", "-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles files = merged(read_saved(out, fx.work.path));
  CHECK(files.at("copied.txt").content == "from-extra\n");
  CHECK(files.at("fromdir/f.txt").content == "from-extra\n");
  CHECK(files.at("fromdir/f.txt").mode == 0640);
  CHECK(files.at("ran").content == "from-extra\n");
  CHECK(files.count("bin/busybox") == 1);  // docker-image://busybox

  // The directory alone as an image: one layer, an empty config.
  fs::path out2 = fx.work.path / "dirbase.tar";
  RunResult d = fx.build("named", df, {},
                         {"--build-context", "extra=" + extra.string(), "--target", "fromdir", "-o",
                          "type=docker,dest=" + out2.string()});
  INFO(d.err);
  REQUIRE(d.status == 0);
  Saved s = read_saved(out2, fx.work.path);
  REQUIRE(s.layers.size() == 1);
  CHECK(s.layers[0].at("sub/f.txt").content == "from-extra\n");
  CHECK_FALSE(s.config["config"].contains("Cmd"));

  // A missing directory is named.
  RunResult missing = fx.build("named", df, {}, {"--build-context", "extra=" + (fx.work.path / "nope").string(),
                                                 "--target", "fromdir"});
  CHECK(missing.status == 1);
  CHECK(missing.err.find("nope") != std::string::npos);
}

TEST_CASE("build outputs: type=oci tar and directory, oci-layout:// contexts", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const char* df = "FROM busybox\nRUN echo layout > /layout.txt\nCMD [\"cat\", \"/layout.txt\"]\n";
  fs::path tarball = fx.work.path / "img.oci.tar";
  fs::path dir = fx.work.path / "layout";
  std::string name = "imgbuild-test-builder-oci:v1";
  RunResult r = fx.build("oci", df, {},
                         {"-t", name, "-o", "type=oci,dest=" + tarball.string(), "-o",
                          "type=oci,dest=" + dir.string() + ",tar=false"});
  INFO(r.err);
  REQUIRE(r.status == 0);

  // The tar: an OCI layout, no docker-load files.
  RunResult list = run_sh("tar -tf " + sh_quote(tarball.string()));
  REQUIRE(list.status == 0);
  CHECK(list.out.find("oci-layout\n") != std::string::npos);
  CHECK(list.out.find("index.json\n") != std::string::npos);
  CHECK(list.out.find("blobs/sha256/") != std::string::npos);
  CHECK(list.out.find("manifest.json") == std::string::npos);
  CHECK(list.out.find("repositories") == std::string::npos);
  fs::path unpacked = fx.work.path / "unpacked-oci";
  fs::create_directories(unpacked);
  REQUIRE(run_sh("tar -xf " + sh_quote(tarball.string()) + " -C " + sh_quote(unpacked.string())).status == 0);
  json index = json::parse(read_file(unpacked / "index.json"));
  REQUIRE(index["manifests"].size() == 1);
  CHECK(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1");
  CHECK(index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/" + name);

  // The directory: the same layout, unpacked.
  CHECK(fs::exists(dir / "oci-layout"));
  CHECK(json::parse(read_file(dir / "index.json"))["manifests"][0]["digest"] == index["manifests"][0]["digest"]);

  if (have_tool("skopeo")) {
    RunResult cfg = run_sh("skopeo inspect --config oci-archive:" + sh_quote(tarball.string()));
    INFO(cfg.err);
    REQUIRE(cfg.status == 0);
    CHECK(json::parse(cfg.out)["config"]["Cmd"] == json::array({"cat", "/layout.txt"}));
    RunResult raw = run_sh("skopeo inspect --raw oci:" + sh_quote(dir.string() + ":v1"));
    INFO(raw.err);
    CHECK(raw.status == 0);
  } else {
    WARN("skopeo is not installed: the OCI outputs were not read back with it");
  }
  if (have_tool("umoci")) {
    fs::path bundle = fx.work.path / "bundle";
    RunResult u = run_sh("umoci unpack --image " + sh_quote(dir.string() + ":v1") + " " + sh_quote(bundle.string()));
    INFO(u.err);
    REQUIRE(u.status == 0);
    CHECK(read_file(bundle / "rootfs" / "layout.txt") == "layout\n");
  } else {
    WARN("umoci is not installed: the OCI directory was not unpacked with it");
  }

  // Both layouts work as named contexts: FROM and COPY --from.
  fs::path out = fx.work.path / "from-layout.tar";
  RunResult b = fx.build("oci-ctx",
                         "FROM lay\nCOPY --from=laytar /layout.txt /again.txt\nRUN cat /layout.txt /again.txt > /both\n",
                         {},
                         {"--build-context", "lay=oci-layout://" + dir.string() + ":v1", "--build-context",
                          "laytar=oci-layout://" + unpacked.string() + "@" +
                              index["manifests"][0]["digest"].get<std::string>(),
                          "-o", "type=docker,dest=" + out.string()});
  INFO(b.err);
  REQUIRE(b.status == 0);
  Saved s = read_saved(out, fx.work.path);
  LayerFiles files = merged(s);
  CHECK(files.at("both").content == "layout\nlayout\n");
  CHECK(s.config["config"]["Cmd"] == json::array({"cat", "/layout.txt"}));

  RunResult notag = fx.build("oci-ctx", "FROM lay\n", {},
                             {"--build-context", "lay=oci-layout://" + dir.string() + ":nosuchtag"});
  CHECK(notag.status == 1);
  CHECK(notag.err.find("no image tagged \"nosuchtag\"") != std::string::npos);
}
