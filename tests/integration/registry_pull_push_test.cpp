// imgbuild pull and push through the real binary against Debian's
// docker-registry started by the test: an imported busybox image goes up,
// comes back into a fresh store with the same digests, a second push to
// another repository mounts its blobs, and skopeo reads what was pushed.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "image/store.hpp"
#include "registry/client.hpp"
#include "registry/platform.hpp"
#include "support/registry_fixture.hpp"
#include "support/registry_images.hpp"
#include "support/require.hpp"
#include "util/strings.hpp"

using namespace imgbuild;
using imgbuild::test::RegistrySpec;
using imgbuild::test::slurp;
using imgbuild::test::ScratchDir;
using imgbuild::test::TestRegistry;
namespace fs = std::filesystem;
using imgbuild::test::images::have_busybox;
using imgbuild::test::images::import_busybox;
using imgbuild::test::images::imgbuild_run;
using imgbuild::test::images::pushed_form;
using imgbuild::test::images::stored;
using imgbuild::test::images::StoredImage;

namespace {

bool has_text(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("imgbuild push and pull round-trip an image through a real registry", "[registry][real]") {
  IMGBUILD_REQUIRE_PREREQ(TestRegistry::missing_prerequisite().empty(), TestRegistry::missing_prerequisite());
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  TestRegistry reg(RegistrySpec{});
  ScratchDir work;
  fs::path src_root = work.path() / "src";
  fs::path dst_root = work.path() / "dst";
  import_busybox(src_root, work.path(), "bb:1");
  StoredImage original = pushed_form(src_root, "bb:1");  // as the push sends it (gzip layers)

  std::string base = reg.host() + "/base";
  fs::path push_log = work.path() / "push.log";
  int rc = imgbuild_run(src_root, {"push", "bb:1", base}, push_log);
  std::string pushed = slurp(push_log);
  INFO(pushed);
  REQUIRE(rc == 0);
  CHECK(has_text(pushed, "latest: digest: " + original.manifest + " size: "));
  CHECK(has_text(pushed, original.layers.at(0).substr(7, 12) + ": Pushed"));

  // Pushing again finds every blob there.
  rc = imgbuild_run(src_root, {"push", "bb:1", base}, work.path() / "push2.log");
  CHECK(rc == 0);
  CHECK(has_text(slurp(work.path() / "push2.log"), ": Layer already exists"));

  // Pull into a fresh store: same digests, named with its RepoDigest.
  fs::path pull_log = work.path() / "pull.log";
  rc = imgbuild_run(dst_root, {"pull", base}, pull_log);
  std::string pulled_text = slurp(pull_log);
  INFO(pulled_text);
  REQUIRE(rc == 0);
  CHECK(has_text(pulled_text, "Digest: " + original.manifest));
  CHECK(has_text(pulled_text, "Downloaded newer image"));
  CHECK(has_text(pulled_text, original.layers.at(0).substr(7, 12) + ": Pull complete"));
  StoredImage copy = stored(dst_root, base);
  CHECK(copy.manifest == original.manifest);
  CHECK(copy.config == original.config);
  CHECK(copy.layers == original.layers);

  fs::path inspect_log = work.path() / "inspect.log";
  REQUIRE(imgbuild_run(dst_root, {"image", "inspect", base}, inspect_log) == 0);
  auto inspect = nlohmann::json::parse(slurp(inspect_log));
  CHECK(inspect.at(0).at("RepoDigests").at(0) == base + "@" + original.manifest);

  // Pulled twice: nothing is downloaded again.
  rc = imgbuild_run(dst_root, {"pull", base}, work.path() / "pull2.log");
  std::string again = slurp(work.path() / "pull2.log");
  CHECK(rc == 0);
  CHECK(has_text(again, "Image is up to date"));
  CHECK_FALSE(has_text(again, "Pull complete"));

  // From the pulled store, a push to another repository of the same
  // registry mounts the blobs from base.
  std::string other = reg.host() + "/other:v2";
  rc = imgbuild_run(dst_root, {"push", base, other}, work.path() / "push3.log");
  std::string mounted = slurp(work.path() / "push3.log");
  INFO(mounted);
  REQUIRE(rc == 0);
  CHECK(has_text(mounted, ": Mounted from base"));
  CHECK(has_text(mounted, "v2: digest: " + original.manifest));

  // A build FROM the registry image with an empty store pulls it.
  fs::path build_root = work.path() / "build-root";
  fs::path ctx = work.path() / "ctx";
  fs::create_directories(ctx);
  imgbuild::test::spit(ctx / "Dockerfile", "FROM " + base + "\nCOPY hello.txt /hello.txt\nENV GREETING=hi\n");
  imgbuild::test::spit(ctx / "hello.txt", "hello\n");
  fs::path build_log = work.path() / "build.log";
  rc = imgbuild_run(build_root, {"build", "-t", "derived:1", ctx.string()}, build_log);
  {
    INFO(slurp(build_log));
    REQUIRE(rc == 0);
  }
  StoredImage from_registry = stored(build_root, base);
  CHECK(from_registry.manifest == original.manifest);
  StoredImage derived = stored(build_root, "derived:1");
  REQUIRE(derived.layers.size() == original.layers.size() + 1);
  CHECK(derived.layers.at(0) == original.layers.at(0));
  CHECK(has_text(slurp(build_log), "pulling " + base));

  // --pull checks the registry even though the base is stored now.
  fs::path repull_log = work.path() / "build-pull.log";
  rc = imgbuild_run(build_root, {"build", "--pull", "-t", "derived:2", ctx.string()}, repull_log);
  std::string repull = slurp(repull_log);
  CHECK(rc == 0);
  CHECK(has_text(repull, "pulling " + base));
  CHECK_FALSE(has_text(repull, "Pull complete"));
  // Without --pull the stored base is used as is.
  fs::path local_log = work.path() / "build-local.log";
  rc = imgbuild_run(build_root, {"build", "-t", "derived:3", ctx.string()}, local_log);
  CHECK(rc == 0);
  CHECK_FALSE(has_text(slurp(local_log), "pulling "));

  // skopeo reads what imgbuild pushed.
  if (::access("/usr/bin/skopeo", X_OK) == 0 || imgbuild::test::in_ci()) {
    fs::path skopeo_log = work.path() / "skopeo.log";
    rc = imgbuild::test::run_command(
        {"skopeo", "inspect", "--tls-verify=false", "docker://" + other}, skopeo_log);
    INFO(slurp(skopeo_log));
    REQUIRE(rc == 0);
    auto info = nlohmann::json::parse(slurp(skopeo_log));
    CHECK(info.at("Digest") == original.manifest);
    CHECK(info.at("Layers").size() == original.layers.size());
  } else {
    IMGBUILD_REQUIRE_PREREQ(false, "skopeo is not installed");
  }
}

TEST_CASE("imgbuild pull names missing images and repositories clearly", "[registry][real]") {
  IMGBUILD_REQUIRE_PREREQ(TestRegistry::missing_prerequisite().empty(), TestRegistry::missing_prerequisite());
  TestRegistry reg(RegistrySpec{});
  ScratchDir work;
  fs::path log = work.path() / "pull.log";
  int rc = imgbuild_run(work.path() / "root", {"pull", reg.host() + "/nothing:here"}, log);
  std::string text = slurp(log);
  INFO(text);
  CHECK(rc != 0);
  CHECK(has_text(text, "imgbuild: error:"));
  CHECK(has_text(text, "nothing"));
  auto store = image::ImageStore::open(work.path() / "root");
  REQUIRE(store);
  auto images = (*store)->db().images();
  REQUIRE(images);
  CHECK(images->empty());
}

TEST_CASE("imgbuild push and pull over TLS with htpasswd use the login and --cert-dir", "[registry][real]") {
  IMGBUILD_REQUIRE_PREREQ(TestRegistry::missing_prerequisite().empty(), TestRegistry::missing_prerequisite());
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  TestRegistry reg(RegistrySpec{true, "alice", "wonderland"});
  ScratchDir work;
  fs::path docker_config = work.path() / "docker";
  fs::create_directories(docker_config);
  ::setenv("DOCKER_CONFIG", docker_config.c_str(), 1);
  struct UnsetOnExit {
    ~UnsetOnExit() { ::unsetenv("DOCKER_CONFIG"); }
  } unset_on_exit;
  fs::path src_root = work.path() / "src";
  import_busybox(src_root, work.path(), "bb:1");
  StoredImage original = pushed_form(src_root, "bb:1");  // as the push sends it (gzip layers)
  std::string dest = reg.host() + "/secure/bb:1";
  std::string certs = reg.certs_dir().string();

  // Not logged in: refused, naming the registry.
  fs::path refused_log = work.path() / "refused.log";
  CHECK(imgbuild_run(src_root, {"push", "--cert-dir", certs, "bb:1", dest}, refused_log) != 0);
  CHECK(has_text(slurp(refused_log), reg.host()));

  int rc = imgbuild::test::run_command(
      {"sh", "-c", "printf %s wonderland | \"$0\" login -u alice --password-stdin --cert-dir \"$1\" \"$2\"",
       imgbuild::test::imgbuild_binary().string(), certs, reg.host()},
      work.path() / "login.log");
  REQUIRE(rc == 0);
  fs::path push_log = work.path() / "push.log";
  rc = imgbuild_run(src_root, {"push", "--cert-dir", certs, "bb:1", dest}, push_log);
  {
    INFO(slurp(push_log));
    REQUIRE(rc == 0);
  }
  CHECK(has_text(slurp(push_log), "1: digest: " + original.manifest));

  fs::path dst_root = work.path() / "dst";
  fs::path pull_log = work.path() / "pull.log";
  rc = imgbuild_run(dst_root, {"pull", "--cert-dir", certs, dest}, pull_log);
  {
    INFO(slurp(pull_log));
    REQUIRE(rc == 0);
  }
  StoredImage copy = stored(dst_root, dest);
  CHECK(copy.manifest == original.manifest);
  CHECK(copy.config == original.config);
  CHECK(copy.layers == original.layers);
}

TEST_CASE("an image pulled through an index records the index digest as its RepoDigest", "[registry][real]") {
  IMGBUILD_REQUIRE_PREREQ(TestRegistry::missing_prerequisite().empty(), TestRegistry::missing_prerequisite());
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  TestRegistry reg(RegistrySpec{});
  ScratchDir work;
  fs::path src_root = work.path() / "src";
  import_busybox(src_root, work.path(), "bb:1");
  StoredImage original = pushed_form(src_root, "bb:1");  // as the push sends it (gzip layers)
  std::string single = reg.host() + "/multi:single";
  REQUIRE(imgbuild_run(src_root, {"push", "bb:1", single}, work.path() / "push.log") == 0);

  // An index with a foreign platform first and the host's second.
  registry::Client client;
  registry::Repository repo{reg.host(), "multi"};
  auto fetched = client.get_manifest(repo, "single");
  REQUIRE(fetched);
  Platform host = host_platform();
  nlohmann::json host_json = {{"os", host.os}, {"architecture", host.architecture}};
  if (!host.variant.empty()) {
    host_json["variant"] = host.variant;
  }
  std::string index = nlohmann::json{
      {"schemaVersion", 2},
      {"mediaType", registry::media_type::oci_index},
      {"manifests",
       {{{"mediaType", fetched->media_type}, {"digest", fetched->digest.str()}, {"size", fetched->bytes.size()},
         {"platform", {{"os", "linux"}, {"architecture", "s390x"}}}},
        {{"mediaType", fetched->media_type}, {"digest", fetched->digest.str()}, {"size", fetched->bytes.size()},
         {"platform", host_json}}}}}.dump();
  auto index_digest = client.put_manifest(repo, "latest", index, std::string(registry::media_type::oci_index));
  REQUIRE(index_digest);
  REQUIRE(index_digest->str() != original.manifest);

  fs::path dst_root = work.path() / "dst";
  std::string multi = reg.host() + "/multi";
  fs::path pull_log = work.path() / "pull.log";
  REQUIRE(imgbuild_run(dst_root, {"pull", multi}, pull_log) == 0);
  CHECK(has_text(slurp(pull_log), "Digest: " + index_digest->str()));
  StoredImage copy = stored(dst_root, multi);
  CHECK(copy.manifest == original.manifest);

  fs::path inspect_log = work.path() / "inspect.log";
  REQUIRE(imgbuild_run(dst_root, {"image", "inspect", multi}, inspect_log) == 0);
  auto inspect = nlohmann::json::parse(slurp(inspect_log));
  CHECK(inspect.at(0).at("RepoDigests") == nlohmann::json::array({multi + "@" + index_digest->str()}));
  CHECK(inspect.at(0).at("RepoTags") == nlohmann::json::array({multi + ":latest"}));
  // The digest name resolves, and is a name of the same image.
  CHECK(stored(dst_root, multi + "@" + index_digest->str()).manifest == original.manifest);

  // Pulling by the index digest stores that name too and finds the image there.
  fs::path by_digest_root = work.path() / "by-digest";
  REQUIRE(imgbuild_run(by_digest_root, {"pull", multi + "@" + index_digest->str()}, work.path() / "pd.log") == 0);
  CHECK(stored(by_digest_root, multi + "@" + index_digest->str()).manifest == original.manifest);

  // Removing the last tag removes the digest name and the image, as docker does.
  fs::path rmi_log = work.path() / "rmi.log";
  REQUIRE(imgbuild_run(dst_root, {"rmi", multi + ":latest"}, rmi_log) == 0);
  std::string rmi = slurp(rmi_log);
  INFO(rmi);
  CHECK(has_text(rmi, "Untagged: " + multi + ":latest"));
  CHECK(has_text(rmi, "Untagged: " + multi + "@" + index_digest->str()));
  CHECK(has_text(rmi, "Deleted: " + original.config));
  auto store = image::ImageStore::open(dst_root);
  REQUIRE(store);
  auto images = (*store)->db().images();
  REQUIRE(images);
  CHECK(images->empty());
}
