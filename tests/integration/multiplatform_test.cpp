// Multi-platform images through the real binary: two single-platform images
// (the busybox rootfs imported as linux/amd64 and as linux/arm64: enough for
// the store and the registry, which never run them) joined by `imgbuild
// manifest create` into one image index, then listed, inspected, selected
// per platform, removed, pushed to Debian's docker-registry (read back with
// skopeo), pulled for one platform and for all, saved and loaded (also by
// Docker 20.10 when its engine is there) and written as an OCI layout.

#include <sys/utsname.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "builder/platform_outputs.hpp"
#include "harness.hpp"
#include "image/archive.hpp"
#include "image/store.hpp"
#include "util/fd.hpp"
#include "util/output.hpp"
#include "support/registry_fixture.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::busybox_rootfs_tar;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::TempDir;
using imgbuild::test::write_file;
using nlohmann::json;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The host's architecture as OCI names it.
std::string host_arch() {
  utsname u{};
  ::uname(&u);
  std::string m = u.machine;
  return m == "x86_64" ? "amd64" : m == "aarch64" ? "arm64" : m;
}

// Runs imgbuild with SOURCE_DATE_EPOCH=0 (imports are then byte-for-byte
// the same every time).
RunResult run_fixed(const fs::path& root, const std::vector<std::string>& args) {
  std::string cmd = "SOURCE_DATE_EPOCH=0 " + sh_quote(imgbuild::test::imgbuild_binary().string()) + " --root " +
                    sh_quote(root.string());
  for (const auto& a : args) {
    cmd += ' ' + sh_quote(a);
  }
  return run_sh(cmd);
}

RunResult ok(const RunResult& r) {
  INFO(r.out);
  INFO(r.err);
  REQUIRE(r.status == 0);
  return r;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

// Imports the busybox rootfs as base:amd64 and base:arm64 and joins them as
// `name`; returns the index digest `manifest create` printed.
std::string make_multi(const fs::path& root, const fs::path& work, const std::string& name) {
  fs::create_directories(work);
  write_file(work / "rootfs.tar", busybox_rootfs_tar());
  // A fixed message: the default one names the tar's path.
  ok(run_fixed(root, {"import", "-m", "busybox", "--platform", "linux/amd64", (work / "rootfs.tar").string(),
                      "base:amd64"}));
  ok(run_fixed(root, {"import", "-m", "busybox", "--platform", "linux/arm64", (work / "rootfs.tar").string(),
                      "base:arm64"}));
  RunResult r = ok(run_fixed(root, {"manifest", "create", name, "base:amd64", "base:arm64"}));
  std::string digest = trim(r.out);
  REQUIRE(digest.size() == 71);
  return digest;
}

json inspect(const fs::path& root, const std::vector<std::string>& args) {
  std::vector<std::string> full = {"inspect"};
  full.insert(full.end(), args.begin(), args.end());
  RunResult r = ok(run_imgbuild(root, full));
  json j = json::parse(r.out);
  REQUIRE(j.size() == 1);
  return j[0];
}

// Lines of `s` that are not empty.
std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty()) {
      out.push_back(l);
    }
  }
  return out;
}

std::string blob(const fs::path& root, const std::string& digest) {
  return read_file(root / "blobs" / "sha256" / digest.substr(7));
}

}  // namespace

TEST_CASE("manifest create: one index of two platforms, listed once, selected per platform, removed whole",
          "[integration][multiplatform]") {
  TempDir t;
  fs::path root = t.path / "store";
  std::string digest = make_multi(root, t.path / "work", "multi:1");

  // The index: OCI, both manifests in the given order with their platforms.
  json index = json::parse(blob(root, digest));
  CHECK(index["mediaType"] == "application/vnd.oci.image.index.v1+json");
  REQUIRE(index["manifests"].size() == 2);
  CHECK(index["manifests"][0]["platform"] == json({{"os", "linux"}, {"architecture", "amd64"}}));
  CHECK(index["manifests"][1]["platform"] == json({{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}}));

  // Deterministic: the same inputs in another store give the same digest.
  TempDir t2;
  CHECK(make_multi(t2.path / "store", t2.path / "work", "other:2") == digest);

  // images: one row for the multi-platform image, its ID the index digest.
  RunResult ls = ok(run_imgbuild(root, {"images", "multi"}));
  std::vector<std::string> rows = lines(ls.out);
  REQUIRE(rows.size() == 2);
  CHECK(contains(rows[1], "multi"));
  CHECK(contains(rows[1], digest.substr(7, 12)));
  // --tree: the platforms below it, with their manifest digests.
  RunResult tree = ok(run_imgbuild(root, {"images", "--tree", "multi"}));
  std::vector<std::string> tree_rows = lines(tree.out);
  REQUIRE(tree_rows.size() == 4);
  CHECK(tree_rows[0].rfind("IMAGE", 0) == 0);
  CHECK(tree_rows[1].rfind("multi:1 ", 0) == 0);
  CHECK(tree_rows[2].rfind("├─ linux/amd64 ", 0) == 0);
  CHECK(contains(tree_rows[2], index["manifests"][0]["digest"].get<std::string>().substr(7, 12)));
  CHECK(tree_rows[3].rfind("└─ linux/arm64/v8 ", 0) == 0);
  CHECK_FALSE(contains(tree.out, "not in the store"));

  // inspect: the ID is the index's; --platform selects, the host's by default.
  json arm = inspect(root, {"--platform", "linux/arm64", "multi:1"});
  CHECK(arm["Architecture"] == "arm64");
  CHECK(arm["Id"] == digest);
  json amd = inspect(root, {"--platform", "linux/amd64", "multi:1"});
  CHECK(amd["Architecture"] == "amd64");
  json def = inspect(root, {"multi:1"});
  CHECK(def["Architecture"] == (host_arch() == "arm64" ? "arm64" : "amd64"));
  RunResult missing = run_imgbuild(root, {"inspect", "--platform", "linux/s390x", "multi:1"});
  CHECK(missing.status == 1);
  CHECK(contains(missing.err, "has no image for platform linux/s390x (it has: linux/amd64, linux/arm64/v8)"));

  // history --platform: the selected platform's image.
  std::string arm_id = trim(ok(run_imgbuild(root, {"inspect", "--format", "{{.Id}}", "base:arm64"})).out);
  RunResult hist = ok(run_imgbuild(root, {"history", "--platform", "linux/arm64", "--no-trunc", "multi:1"}));
  CHECK(contains(hist.out, arm_id));
  CHECK(contains(hist.out, "imgbuild import"));
  CHECK(contains(hist.out, "busybox"));

  // The base names go; prune keeps the platform images the index holds.
  RunResult untag = ok(run_imgbuild(root, {"rmi", "base:amd64", "base:arm64"}));
  CHECK(contains(untag.out, "Untagged: base:amd64"));
  CHECK_FALSE(contains(untag.out, "Deleted"));
  ok(run_imgbuild(root, {"image", "prune", "-f"}));
  CHECK(inspect(root, {"--platform", "linux/arm64", "multi:1"})["Architecture"] == "arm64");
  ok(run_imgbuild(root, {"system", "check"}));
  // A platform image cannot be removed by itself.
  RunResult child = run_imgbuild(root, {"rmi", "-f", arm_id});
  CHECK(child.status == 1);
  CHECK(contains(child.err, "platform image of multi-platform image multi:1"));

  // tag names the whole index; rmi of the last name removes it all.
  ok(run_imgbuild(root, {"tag", "multi:1", "multi:again"}));
  CHECK(inspect(root, {"--platform", "linux/arm64", "multi:again"})["Architecture"] == "arm64");
  ok(run_imgbuild(root, {"rmi", "multi:again"}));
  RunResult rmi = ok(run_imgbuild(root, {"rmi", "multi:1"}));
  CHECK(contains(rmi.out, "Deleted: " + digest));
  CHECK(trim(ok(run_imgbuild(root, {"images", "-q"})).out).empty());
  CHECK(fs::is_empty(root / "blobs" / "sha256"));
}

TEST_CASE("save and load of a multi-platform image keep every platform and the index digest",
          "[integration][multiplatform]") {
  TempDir t;
  fs::path root = t.path / "store";
  std::string digest = make_multi(root, t.path / "work", "multi:1");
  fs::path tarball = t.path / "multi.tar";
  ok(run_imgbuild(root, {"save", "-o", tarball.string(), "multi:1"}));

  fs::path x = t.path / "x";
  fs::create_directories(x);
  ok(run_sh("tar -xf " + sh_quote(tarball.string()) + " -C " + sh_quote(x.string())));
  json index = json::parse(read_file(x / "index.json"));
  REQUIRE(index["manifests"].size() == 1);
  CHECK(index["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json");
  CHECK(index["manifests"][0]["digest"] == digest);
  CHECK(index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/multi:1");
  // manifest.json: the host's platform only, named (what Docker 20.10 loads).
  json manifest = json::parse(read_file(x / "manifest.json"));
  if (host_arch() == "amd64" || host_arch() == "arm64") {
    REQUIRE(manifest.size() == 1);
    CHECK(manifest[0]["RepoTags"] == json::array({"multi:1"}));
    json cfg = json::parse(read_file(x / manifest[0]["Config"].get<std::string>()));
    CHECK(cfg["architecture"] == host_arch());
  }

  fs::path fresh = t.path / "fresh";
  RunResult load = ok(run_imgbuild(fresh, {"load", "-i", tarball.string()}));
  CHECK(contains(load.out, "Loaded image: multi:1"));
  CHECK(inspect(fresh, {"multi:1"})["Id"] == digest);
  CHECK(inspect(fresh, {"--platform", "linux/arm64", "multi:1"})["Architecture"] == "arm64");
  CHECK(inspect(fresh, {"--platform", "linux/amd64", "multi:1"})["Architecture"] == "amd64");
  // Saved again from the loaded store: the same archive.
  fs::path again = t.path / "again.tar";
  ok(run_imgbuild(fresh, {"save", "-o", again.string(), "multi:1"}));
  CHECK(read_file(again) == read_file(tarball));

  // An OCI layout directory of the index, read back by skopeo.
  if (imgbuild::test::have_tool("skopeo")) {
    fs::path layout = t.path / "layout";
    ok(run_imgbuild(root, {"save", "--format", "oci-dir", "-o", layout.string(), "multi:1"}));
    RunResult raw = ok(run_sh("skopeo inspect --raw oci:" + sh_quote(layout.string() + ":1")));
    CHECK(raw.out == blob(root, digest));
    RunResult arch = ok(run_sh("skopeo --override-arch arm64 inspect --config oci-archive:" +
                                sh_quote(tarball.string())));
    CHECK(json::parse(arch.out)["architecture"] == "arm64");
  } else {
    WARN("skopeo is not installed: the OCI layout was not read back with it");
  }

  // Docker 20.10 (classic store) loads the host's platform from manifest.json.
  if (imgbuild::test::docker_available() && host_arch() == "amd64") {
    RunResult dl = run_sh("docker load -i " + sh_quote(tarball.string()));
    INFO(dl.err);
    CHECK(dl.status == 0);
    CHECK(contains(dl.out, "multi:1"));
    RunResult da = run_sh("docker image inspect --format '{{.Architecture}}' multi:1");
    CHECK(trim(da.out) == "amd64");
    run_sh("docker rmi multi:1");
  }
}

TEST_CASE("push of a multi-platform image, pull --platform and --all-platforms, partial push refused",
          "[integration][multiplatform][registry]") {
  std::string missing = imgbuild::test::TestRegistry::missing_prerequisite();
  IMGBUILD_REQUIRE_PREREQ(missing.empty(), missing);
  imgbuild::test::TestRegistry registry({});
  TempDir t;
  fs::path root = t.path / "store";
  make_multi(root, t.path / "work", "multi:1");
  std::string dest = registry.host() + "/imgbuild-test/multi:1";
  RunResult push = ok(run_imgbuild(root, {"push", "multi:1", dest}));
  std::string pushed = push.out.substr(push.out.find("digest: ") + 8, 71);
  // Pushed twice: the same index (its layers compressed the same way).
  RunResult push2 = ok(run_imgbuild(root, {"push", "multi:1", dest}));
  CHECK(contains(push2.out, "digest: " + pushed));

  RunResult raw = ok(run_sh("skopeo inspect --raw --tls-verify=false docker://" + sh_quote(dest)));
  json index = json::parse(raw.out);
  CHECK(index["mediaType"] == "application/vnd.oci.image.index.v1+json");
  REQUIRE(index["manifests"].size() == 2);
  CHECK(index["manifests"][0]["platform"]["architecture"] == "amd64");
  CHECK(index["manifests"][1]["platform"]["architecture"] == "arm64");
  RunResult cfg = ok(run_sh("skopeo --override-arch arm64 inspect --config --tls-verify=false docker://" +
                            sh_quote(dest)));
  CHECK(json::parse(cfg.out)["architecture"] == "arm64");

  // One platform into a fresh store: the index is kept, naming what is there.
  fs::path one = t.path / "one";
  RunResult pull = ok(run_imgbuild(one, {"pull", "--platform", "linux/arm64", dest}));
  CHECK(contains(pull.out, "Digest: " + pushed));
  json arm = inspect(one, {dest});
  CHECK(arm["Architecture"] == "arm64");  // the host's is not there: the one that is
  CHECK(arm["Id"] == pushed);
  CHECK(arm["RepoDigests"] == json::array({registry.host() + "/imgbuild-test/multi@" + pushed}));
  RunResult one_tree = ok(run_imgbuild(one, {"images", "--tree"}));
  CHECK(contains(one_tree.out, "├─ linux/amd64"));
  CHECK(contains(one_tree.out, "not in the store"));
  CHECK(lines(one_tree.out).size() == 4);
  RunResult absent = run_imgbuild(one, {"inspect", "--platform", "linux/amd64", dest});
  CHECK(absent.status == 1);
  CHECK(contains(absent.err, "platform linux/amd64 is listed in its index but not in the store"));
  // Pushing it elsewhere needs the absent platform; back to its own repository it goes.
  RunResult partial = run_imgbuild(one, {"push", dest, registry.host() + "/imgbuild-test/other:1"});
  CHECK(partial.status == 1);
  CHECK(contains(partial.err, "platform linux/amd64"));
  CHECK(contains(partial.err, "pull --all-platforms"));
  ok(run_imgbuild(one, {"push", dest, registry.host() + "/imgbuild-test/multi:again"}));
  // The other platform later: both recorded under the same index.
  ok(run_imgbuild(one, {"pull", "--platform", "linux/amd64", dest}));
  CHECK(inspect(one, {"--platform", "linux/amd64", dest})["Architecture"] == "amd64");
  CHECK(inspect(one, {"--platform", "linux/arm64", dest})["Architecture"] == "arm64");

  // Every platform at once.
  fs::path all = t.path / "all";
  ok(run_imgbuild(all, {"pull", "--all-platforms", dest}));
  CHECK(inspect(all, {"--platform", "linux/arm64", dest})["Architecture"] == "arm64");
  CHECK(inspect(all, {"--platform", "linux/amd64", dest})["Architecture"] == "amd64");
  CHECK(lines(ok(run_imgbuild(all, {"images", "-q"})).out).size() == 1);
  ok(run_imgbuild(all, {"system", "check"}));
  // To another repository of the same registry: the layers are mounted.
  RunResult copy_push = ok(run_imgbuild(all, {"push", dest, registry.host() + "/imgbuild-test/copy:1"}));
  CHECK(contains(copy_push.out, "Mounted from imgbuild-test/multi"));
  CHECK_FALSE(contains(copy_push.out, ": Pushed"));
  RunResult copy = ok(run_sh("skopeo inspect --raw --tls-verify=false docker://" +
                             sh_quote(registry.host() + "/imgbuild-test/copy:1")));
  CHECK(copy.out == raw.out);
  RunResult rmi = ok(run_imgbuild(all, {"rmi", dest}));
  CHECK(contains(rmi.out, "Deleted: " + pushed));
  CHECK(fs::is_empty(all / "blobs" / "sha256"));
}

TEST_CASE("outputs of a multi-platform image: oci tar of the index, local and tar per platform, docker refused",
          "[integration][multiplatform][outputs]") {
  using namespace imgbuild;
  TempDir t;
  fs::path root = t.path / "store";
  std::string digest = make_multi(root, t.path / "work", "multi:1");
  auto store = image::ImageStore::open(root);
  REQUIRE(store);
  auto rec = (*store)->resolve_target("multi:1");
  REQUIRE(rec);
  REQUIRE(rec->is_index());

  // type=oci: one OCI layout tar naming the index; layers gzip'ed, so the
  // platform manifests and the index are rewritten; the same twice.
  auto write_oci = [&](const fs::path& dest) {
    auto out = output::File::open(dest.string());
    REQUIRE(out);
    image::SaveOptions opts;
    opts.format = image::SaveFormat::oci;
    opts.compression = image::LayerCompression{};
    auto saved = image::save_archive(**store, {image::SaveItem{*rec, *image::parse_reference("multi:1")}}, out->fd(),
                                     opts);
    INFO((saved ? "" : saved.error().message));
    REQUIRE(saved);
    REQUIRE(out->commit());
  };
  fs::path oci = t.path / "oci.tar";
  write_oci(oci);
  write_oci(t.path / "oci2.tar");
  CHECK(read_file(oci) == read_file(t.path / "oci2.tar"));
  fs::path x = t.path / "x";
  fs::create_directories(x);
  ok(run_sh("tar -xf " + sh_quote(oci.string()) + " -C " + sh_quote(x.string())));
  CHECK_FALSE(fs::exists(x / "manifest.json"));
  json layout_index = json::parse(read_file(x / "index.json"));
  REQUIRE(layout_index["manifests"].size() == 1);
  CHECK(layout_index["manifests"][0]["mediaType"] == "application/vnd.oci.image.index.v1+json");
  std::string oci_digest = layout_index["manifests"][0]["digest"];
  CHECK(oci_digest != digest);  // its manifests name gzip'ed layers
  json index = json::parse(read_file(x / "blobs" / "sha256" / oci_digest.substr(7)));
  REQUIRE(index["manifests"].size() == 2);
  for (const auto& m : index["manifests"]) {
    json manifest = json::parse(read_file(x / "blobs" / "sha256" / m["digest"].get<std::string>().substr(7)));
    CHECK(manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip");
  }
  CHECK(index["manifests"][1]["platform"]["architecture"] == "arm64");
  if (imgbuild::test::have_tool("skopeo")) {
    RunResult raw = ok(run_sh("skopeo inspect --raw oci-archive:" + sh_quote(oci.string())));
    CHECK(json::parse(raw.out) == index);
    RunResult cfg = ok(run_sh("skopeo --override-arch arm64 inspect --config oci-archive:" + sh_quote(oci.string())));
    CHECK(json::parse(cfg.out)["architecture"] == "arm64");
  }

  // type=local: one directory per platform, named as buildx names them.
  fs::path local = t.path / "local";
  auto exported = builder::export_index_rootfs(**store, *rec, local);
  INFO((exported ? "" : exported.error().message));
  REQUIRE(exported);
  CHECK(fs::is_regular_file(local / "linux_amd64" / "bin" / "busybox"));
  CHECK(fs::is_regular_file(local / "linux_arm64" / "etc" / "passwd"));
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator(local)) {
    dirs.push_back(e.path().filename().string());
  }
  std::sort(dirs.begin(), dirs.end());
  CHECK(dirs == std::vector<std::string>{"linux_amd64", "linux_arm64"});

  // type=tar: the same tree as one tar.
  fs::path tarball = t.path / "rootfs.tar";
  {
    auto out = output::File::open(tarball.string());
    REQUIRE(out);
    int fd = out->fd();
    auto written = builder::export_index_tar(**store, *rec, t.path / "scratch", [fd, &tarball](const void* d, size_t n) {
      return output::write_all(fd, d, n, tarball.string());
    });
    INFO((written ? "" : written.error().message));
    REQUIRE(written);
    REQUIRE(out->commit());
  }
  CHECK_FALSE(fs::exists(t.path / "scratch"));
  RunResult list = ok(run_sh("tar -tf " + sh_quote(tarball.string())));
  CHECK(contains(list.out, "linux_amd64/bin/busybox\n"));
  CHECK(contains(list.out, "linux_arm64/etc/passwd\n"));

  // type=docker with two platforms: buildx's error; one platform is fine.
  auto docker = builder::check_docker_output(2);
  REQUIRE_FALSE(docker);
  CHECK(docker.error().message == "docker exporter does not currently support exporting manifest lists");
  CHECK(builder::check_docker_output(1));

  image::Platform arm;
  arm.os = "linux";
  arm.architecture = "arm";
  CHECK(builder::platform_dir_name(arm) == "linux_arm_v7");
  arm.architecture = "arm64";
  arm.variant = "v8";
  CHECK(builder::platform_dir_name(arm) == "linux_arm64");
}
