// A built image goes to a real registry: `build --push` and
// `-o type=image,name=…,push=true` push the result; it comes back into a
// fresh store with the same digests, skopeo inspects it, and Debian's docker
// (dockerd treats 127.0.0.0/8 registries as insecure-allowed) pulls and runs it.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "image/store.hpp"
#include "integration/harness.hpp"
#include "support/registry_fixture.hpp"
#include "support/registry_images.hpp"
#include "support/require.hpp"

using namespace imgbuild;
using imgbuild::test::RegistrySpec;
using imgbuild::test::ScratchDir;
using imgbuild::test::slurp;
using imgbuild::test::spit;
using imgbuild::test::TestRegistry;
namespace fs = std::filesystem;
namespace ti = imgbuild::test::images;

namespace {

bool has_text(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A context whose image prints a greeting and has a RUN layer and a COPY layer.
fs::path greeting_context(const fs::path& work, const std::string& greeting) {
  fs::path ctx = work / "ctx";
  fs::create_directories(ctx);
  spit(ctx / "Dockerfile",
       "FROM bb:1\nCOPY greeting.txt /greeting\nRUN echo built >> /greeting\nCMD [\"cat\", \"/greeting\"]\n");
  spit(ctx / "greeting.txt", greeting + "\n");
  return ctx;
}

}  // namespace

TEST_CASE("build --push and -o type=image,push=true push the result to a real registry", "[registry][real]") {
  IMGBUILD_REQUIRE_PREREQ(TestRegistry::missing_prerequisite().empty(), TestRegistry::missing_prerequisite());
  IMGBUILD_REQUIRE_PREREQ(ti::have_busybox(), "busybox-static is not installed (/bin/busybox)");
  TestRegistry reg(RegistrySpec{});
  ScratchDir work;
  fs::path src_root = work.path() / "src";
  ti::import_busybox(src_root, work.path(), "bb:1");
  fs::path ctx = greeting_context(work.path(), "hello from imgbuild");

  // --push: the -t names are pushed.
  std::string app = reg.host() + "/built/app:v1";
  fs::path log = work.path() / "build-push.log";
  int rc = ti::imgbuild_run(src_root, {"build", "--push", "-t", app, ctx.string()}, log);
  {
    INFO(slurp(log));
    REQUIRE(rc == 0);
  }
  // What went out: the built image with its layers gzip'd (a build keeps
  // them uncompressed; the push compresses them).
  ti::StoredImage built = ti::pushed_form(src_root, app);
  CHECK(built.layers.size() == 3);
  CHECK(built.config == ti::stored(src_root, app).config);
  CHECK(has_text(slurp(log), "pushing manifest for " + app + "@" + built.manifest + " done"));

  fs::path dst_root = work.path() / "dst";
  rc = ti::imgbuild_run(dst_root, {"pull", app}, work.path() / "pull.log");
  {
    INFO(slurp(work.path() / "pull.log"));
    REQUIRE(rc == 0);
  }
  ti::StoredImage pulled = ti::stored(dst_root, app);
  CHECK(pulled.manifest == built.manifest);
  CHECK(pulled.config == built.config);
  CHECK(pulled.layers == built.layers);

  // -o type=image,name=…,push=true without -t: named in the store and pushed.
  std::string other = reg.host() + "/built/other:v2";
  fs::path log2 = work.path() / "build-output.log";
  rc = ti::imgbuild_run(src_root, {"build", "-o", "type=image,name=" + other + ",push=true", ctx.string()}, log2);
  {
    INFO(slurp(log2));
    REQUIRE(rc == 0);
  }
  ti::StoredImage named = ti::pushed_form(src_root, other);
  // The base and COPY layers are the same (RUN layers may differ in mtimes).
  REQUIRE(named.layers.size() == 3);
  CHECK(named.layers.at(1) == built.layers.at(1));
  // The store knows built/app holds those blobs: they are mounted, not sent.
  CHECK(has_text(slurp(log2), built.layers.at(1).substr(7, 12) + ": Mounted from built/app"));
  rc = ti::imgbuild_run(work.path() / "dst2", {"pull", other}, work.path() / "pull2.log");
  REQUIRE(rc == 0);
  CHECK(ti::stored(work.path() / "dst2", other).manifest == named.manifest);

  // type=registry is the same as type=image,push=true.
  std::string third = reg.host() + "/built/third:v3";
  rc = ti::imgbuild_run(src_root, {"build", "-o", "type=registry,name=" + third, ctx.string()},
                        work.path() / "build-registry.log");
  REQUIRE(rc == 0);
  rc = ti::imgbuild_run(work.path() / "dst3", {"pull", third}, work.path() / "pull3.log");
  REQUIRE(rc == 0);

  // -o type=image without push=true only names the image.
  std::string local_only = reg.host() + "/built/local:v4";
  rc = ti::imgbuild_run(src_root, {"build", "-o", "type=image,name=" + local_only, ctx.string()},
                        work.path() / "build-local.log");
  REQUIRE(rc == 0);
  CHECK(ti::stored(src_root, local_only).layers.at(1) == ti::stored(src_root, app).layers.at(1));
  rc = ti::imgbuild_run(work.path() / "dst4", {"pull", local_only}, work.path() / "pull4.log");
  CHECK(rc != 0);
  CHECK(has_text(slurp(work.path() / "pull4.log"), "MANIFEST_UNKNOWN"));

  // --push needs a name.
  fs::path nameless = work.path() / "nameless.log";
  rc = ti::imgbuild_run(src_root, {"build", "--push", ctx.string()}, nameless);
  CHECK(rc != 0);
  CHECK(has_text(slurp(nameless), "tag is needed when pushing to registry"));

  // A push that fails names the destination and fails the build.
  std::string closed = "127.0.0.1:" + std::to_string(imgbuild::test::free_port()) + "/nowhere:v1";
  fs::path closed_log = work.path() / "closed.log";
  rc = ti::imgbuild_run(src_root, {"build", "--push", "-t", closed, ctx.string()}, closed_log);
  CHECK(rc != 0);
  CHECK(has_text(slurp(closed_log), "failed to push " + closed));

  // skopeo reads what the build pushed.
  if (::access("/usr/bin/skopeo", X_OK) == 0 || imgbuild::test::in_ci()) {
    fs::path skopeo_log = work.path() / "skopeo.log";
    rc = imgbuild::test::run_command({"skopeo", "inspect", "--tls-verify=false", "docker://" + app}, skopeo_log);
    INFO(slurp(skopeo_log));
    REQUIRE(rc == 0);
    auto info = nlohmann::json::parse(slurp(skopeo_log));
    CHECK(info.at("Digest") == built.manifest);
    CHECK(info.at("Layers").size() == built.layers.size());
    CHECK(info.at("Layers") == nlohmann::json(built.layers));
  } else {
    IMGBUILD_REQUIRE_PREREQ(false, "skopeo is not installed");
  }
}

TEST_CASE("docker pulls and runs an image imgbuild built and pushed", "[registry][real][docker]") {
  IMGBUILD_REQUIRE_PREREQ(TestRegistry::missing_prerequisite().empty(), TestRegistry::missing_prerequisite());
  IMGBUILD_REQUIRE_PREREQ(ti::have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(imgbuild::test::docker_available(),
                          "no Docker engine (docker.io) could be reached or started");
  TestRegistry reg(RegistrySpec{});
  ScratchDir work;
  fs::path root = work.path() / "root";
  ti::import_busybox(root, work.path(), "bb:1");
  fs::path ctx = greeting_context(work.path(), "hello docker");
  std::string name = reg.host() + "/imgbuild-test-registry/greeter:v1";
  fs::path log = work.path() / "build.log";
  int rc = ti::imgbuild_run(root, {"build", "--push", "-t", name, ctx.string()}, log);
  {
    INFO(slurp(log));
    REQUIRE(rc == 0);
  }
  ti::StoredImage built = ti::pushed_form(root, name);

  using imgbuild::test::run_sh;
  using imgbuild::test::sh_quote;
  struct RemoveOnExit {
    std::string name;
    ~RemoveOnExit() { run_sh("/usr/bin/docker rmi -f " + sh_quote(name)); }
  } remove_on_exit{name};
  auto pull = run_sh("/usr/bin/docker pull " + sh_quote(name));
  INFO(pull.out << pull.err);
  REQUIRE(pull.status == 0);
  CHECK(has_text(pull.out, "Digest: " + built.manifest));
  auto inspect = run_sh("/usr/bin/docker image inspect " + sh_quote(name));
  REQUIRE(inspect.status == 0);
  auto info = nlohmann::json::parse(inspect.out);
  CHECK(info.at(0).at("Id") == built.config);
  auto run = run_sh("/usr/bin/docker run --rm --network none " + sh_quote(name));
  INFO(run.err);
  REQUIRE(run.status == 0);
  CHECK(run.out == "hello docker\nbuilt\n");
}
