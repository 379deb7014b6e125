// imgbuild pull and push through the real binary against Debian's
// docker-registry started by the test: an imported busybox image goes up,
// comes back into a fresh store with the same digests, a second push to
// another repository mounts its blobs, and skopeo reads what was pushed.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "image/store.hpp"
#include "support/registry_fixture.hpp"
#include "support/require.hpp"
#include "util/strings.hpp"

using namespace imgbuild;
using imgbuild::test::RegistrySpec;
using imgbuild::test::slurp;
using imgbuild::test::TempDir;
using imgbuild::test::TestRegistry;
namespace fs = std::filesystem;

namespace {

bool has_text(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs imgbuild with --root and returns its exit status; output goes to `log`.
int imgbuild_run(const fs::path& root, std::vector<std::string> args, const fs::path& log) {
  std::vector<std::string> argv = {imgbuild::test::imgbuild_binary().string(), "--root", root.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return imgbuild::test::run_command(argv, log);
}

bool have_busybox() { return ::access("/bin/busybox", X_OK) == 0; }

// A store under `root` with the busybox rootfs imported as `name`.
void import_busybox(const fs::path& root, const fs::path& work, const std::string& name) {
  fs::path rootfs = work / "rootfs";
  fs::create_directories(rootfs / "bin");
  fs::copy_file("/bin/busybox", rootfs / "bin" / "busybox");
  for (const char* applet : {"sh", "cat", "echo", "ls", "mkdir"}) {
    fs::create_symlink("busybox", rootfs / "bin" / applet);
  }
  fs::path tarball = work / "rootfs.tar";
  REQUIRE(imgbuild::test::run_command({"tar", "-C", rootfs.string(), "-cf", tarball.string(), "."},
                                      work / "tar.log") == 0);
  int rc = imgbuild_run(root, {"import", tarball.string(), name, "--change", "CMD [\"/bin/sh\"]"},
                        work / "import.log");
  INFO(slurp(work / "import.log"));
  REQUIRE(rc == 0);
}

struct StoredImage {
  std::string manifest;
  std::string config;
  std::vector<std::string> layers;
};

StoredImage stored(const fs::path& root, const std::string& name) {
  auto store = image::ImageStore::open(root);
  REQUIRE(store);
  auto rec = (*store)->resolve(name);
  if (!rec) {
    FAIL("resolve " << name << ": " << rec.error().to_string());
  }
  auto img = (*store)->load(*rec);
  REQUIRE(img);
  StoredImage s{rec->manifest_digest, rec->config_digest, {}};
  for (const auto& l : img->manifest.layers) {
    s.layers.push_back(l.digest);
    CHECK((*store)->content().has(l.digest));
  }
  return s;
}

}  // namespace

TEST_CASE("imgbuild push and pull round-trip an image through a real registry", "[registry][real]") {
  IMGBUILD_REQUIRE_PREREQ(TestRegistry::missing_prerequisite().empty(), TestRegistry::missing_prerequisite());
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  TestRegistry reg(RegistrySpec{});
  TempDir work;
  fs::path src_root = work.path() / "src";
  fs::path dst_root = work.path() / "dst";
  import_busybox(src_root, work.path(), "bb:1");
  StoredImage original = stored(src_root, "bb:1");

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
  TempDir work;
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
  TempDir work;
  fs::path docker_config = work.path() / "docker";
  fs::create_directories(docker_config);
  ::setenv("DOCKER_CONFIG", docker_config.c_str(), 1);
  struct UnsetOnExit {
    ~UnsetOnExit() { ::unsetenv("DOCKER_CONFIG"); }
  } unset_on_exit;
  fs::path src_root = work.path() / "src";
  import_busybox(src_root, work.path(), "bb:1");
  StoredImage original = stored(src_root, "bb:1");
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
