// End-to-end tests of the image commands: the real imgbuild binary on
// temporary stores, checked against real clients (skopeo, umoci, dockerd),
// and hostile archives that must fail cleanly and leave the store untouched.

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "support/require.hpp"
#include "util/hash.hpp"

using namespace imgbuild;
using namespace imgbuild::test;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const k_passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n";
const char* const k_group = "root:x:0:\nnogroup:x:65534:\n";

// The busybox-static rootfs: /bin/busybox, applet links, passwd and group.
std::string small_rootfs_tar() {
  std::vector<LayerEntry> entries = busybox_entries({"cat", "echo", "id", "ls", "sh", "true"});
  entries.push_back(dir("etc"));
  entries.push_back(file("etc/group", k_group));
  entries.push_back(file("etc/passwd", k_passwd));
  entries.push_back(dir("tmp"));
  return make_layer(entries);
}

std::vector<std::string> str_lines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string::npos) {
      nl = s.size();
    }
    out.push_back(s.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::string one_line_error(const RunResult& r) {
  std::string e = r.err;
  while (!e.empty() && e.back() == '\n') {
    e.pop_back();
  }
  return e;
}

// Everything observable about a store: image rows, names, blob files.
std::string store_state(const fs::path& root) {
  RunResult ls = run_imgbuild(root, {"images", "--digests", "--no-trunc", "--format", "json"});
  REQUIRE(ls.status == 0);
  std::string rows;
  for (const auto& line : str_lines(ls.out)) {
    json row = json::parse(line);
    row.erase("CreatedSince");  // moves with the clock
    rows += row.dump() + "\n";
  }
  std::vector<std::string> blobs;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(root / "blobs", ec)) {
    if (e.is_regular_file()) {
      blobs.push_back(e.path().filename().string() + " " + std::to_string(e.file_size()));
    }
  }
  std::sort(blobs.begin(), blobs.end());
  size_t tmp_files = 0;
  for (const auto& e : fs::recursive_directory_iterator(root / "tmp", ec)) {
    (void)e;
    ++tmp_files;
  }
  std::string state = rows;
  for (const auto& b : blobs) {
    state += b + "\n";
  }
  return state + "tmp entries: " + std::to_string(tmp_files) + "\n";
}

json inspect(const fs::path& root, const std::string& ref) {
  RunResult r = run_imgbuild(root, {"image", "inspect", ref});
  REQUIRE(r.status == 0);
  json j = json::parse(r.out);
  REQUIRE(j.size() == 1);
  return j[0];
}

// A store with one imported busybox image named `name`.
void import_busybox(const fs::path& root, const fs::path& work, const std::string& name) {
  import_tar(root, work / "rootfs.tar", small_rootfs_tar(), name, {"--change", "CMD [\"/bin/sh\"]", "-m", "test"});
}


// Layer tar bytes for crafted archives.
std::string small_layer() { return make_layer({dir("etc"), file("etc/hello", "hello\n")}); }

std::string config_for(const std::vector<std::string>& diff_ids) {
  json cfg = {{"architecture", "amd64"}, {"os", "linux"}, {"created", "2024-01-01T00:00:00Z"},
              {"config", {{"Cmd", {"/bin/sh"}}}},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  return cfg.dump();
}

std::string hex(const std::string& data) { return sha256(data).hex(); }

// A Docker-25-style archive with the given pieces; fields can be overridden
// to make it wrong in one way.
struct CraftedArchive {
  std::string layer = small_layer();
  std::string config;
  std::string layer_name;   // default: blobs/sha256/<hex(layer)>
  std::string config_name;  // default: blobs/sha256/<hex(config)>
  json manifest;            // default: from the names
  std::vector<LayerEntry> extra;

  std::string build() {
    if (config.empty()) {
      config = config_for({sha256(layer).str()});
    }
    if (layer_name.empty()) {
      layer_name = "blobs/sha256/" + hex(layer);
    }
    if (config_name.empty()) {
      config_name = "blobs/sha256/" + hex(config);
    }
    if (manifest.is_null()) {
      manifest = json::array({{{"Config", config_name}, {"RepoTags", {"crafted:1"}}, {"Layers", {layer_name}}}});
    }
    std::vector<LayerEntry> entries = {file(layer_name, layer), file(config_name, config),
                                      file("manifest.json", manifest.dump())};
    for (auto& e : extra) {
      entries.push_back(e);
    }
    return make_layer(entries);
  }
};

// A 512-byte ustar header claiming `size` bytes for `name` (for archives
// whose declared sizes are absurd; no body follows).
std::string ustar_header(const std::string& name, uint64_t size) {
  std::string h(512, '\0');
  std::copy(name.begin(), name.end(), h.begin());
  auto put_octal = [&h](size_t off, size_t len, uint64_t v) {
    std::string s(len - 1, '0');
    for (size_t i = len - 1; i-- > 0 && v > 0; v >>= 3) {
      s[i] = static_cast<char>('0' + (v & 7));
    }
    std::copy(s.begin(), s.end(), h.begin() + static_cast<std::ptrdiff_t>(off));
  };
  put_octal(100, 8, 0644);
  put_octal(108, 8, 0);
  put_octal(116, 8, 0);
  put_octal(124, 12, size);
  put_octal(136, 12, 0);
  h[156] = '0';
  std::string magic = "ustar";
  std::copy(magic.begin(), magic.end(), h.begin() + 257);
  h[263] = '0';
  h[264] = '0';
  std::fill(h.begin() + 148, h.begin() + 156, ' ');
  unsigned sum = 0;
  for (unsigned char c : h) {
    sum += c;
  }
  std::string chk(6, '0');
  for (size_t i = 6; i-- > 0; sum >>= 3) {
    chk[i] = static_cast<char>('0' + (sum & 7));
  }
  std::copy(chk.begin(), chk.end(), h.begin() + 148);
  h[154] = '\0';
  h[155] = ' ';
  return h;
}

// Runs `args` expecting failure with one error line containing `needle`,
// and the store exactly as before.
void expect_clean_failure(const fs::path& root, const std::vector<std::string>& args, const std::string& needle) {
  std::string before = store_state(root);
  RunResult r = run_imgbuild(root, args);
  INFO("stderr: " << r.err);
  CHECK(r.status != 0);
  std::string e = one_line_error(r);
  CHECK(e.rfind("imgbuild: error: ", 0) == 0);
  CHECK(e.find('\n') == std::string::npos);
  CHECK(e.find(needle) != std::string::npos);
  CHECK(store_state(root) == before);
}

}  // namespace

TEST_CASE("import, images, history, inspect, tag, rmi and prune", "[integration]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  TempDir work;
  fs::path root = work.path / "store";
  import_busybox(root, work.path, "bb:1");

  RunResult ls = run_imgbuild(root, {"images"});
  REQUIRE(ls.status == 0);
  CHECK(ls.out.rfind("REPOSITORY   TAG       IMAGE ID       CREATED", 0) == 0);
  CHECK(ls.out.find("bb           1") != std::string::npos);

  json j = inspect(root, "bb:1");
  CHECK(j["RepoTags"] == json::array({"bb:1"}));
  CHECK(j["Config"]["Cmd"] == json::array({"/bin/sh"}));
  CHECK(j["Os"] == "linux");
  CHECK(j["RootFS"]["Type"] == "layers");
  REQUIRE(j["RootFS"]["Layers"].size() == 1);
  std::string id = j["Id"];

  RunResult hist = run_imgbuild(root, {"history", "--no-trunc", "bb:1"});
  REQUIRE(hist.status == 0);
  CHECK(hist.out.find("IMAGE") == 0);
  CHECK(hist.out.find(id) != std::string::npos);
  CHECK(hist.out.find("test") != std::string::npos);

  REQUIRE(run_imgbuild(root, {"tag", "bb:1", "example.com:5000/team/bb:2"}).status == 0);
  RunResult q = run_imgbuild(root, {"images", "-q"});
  CHECK(q.out == id.substr(7, 12) + "\n" + id.substr(7, 12) + "\n");
  RunResult js = run_imgbuild(root, {"images", "--format", "json"});
  CHECK(js.out.find("\"Repository\":\"example.com:5000/team/bb\"") != std::string::npos);

  RunResult conflict = run_imgbuild(root, {"rmi", id.substr(7, 12)});
  CHECK(conflict.status != 0);
  CHECK(conflict.err.find("must be forced") != std::string::npos);
  RunResult untag = run_imgbuild(root, {"rmi", "bb:1"});
  CHECK(untag.out == "Untagged: bb:1\n");
  RunResult del = run_imgbuild(root, {"image", "rm", "example.com:5000/team/bb:2"});
  CHECK(del.out == "Untagged: example.com:5000/team/bb:2\nDeleted: " + id + "\n");
  RunResult none = run_imgbuild(root, {"images", "-q"});
  CHECK(none.out.empty());
  RunResult blobs = run_sh("ls " + sh_quote((root / "blobs" / "sha256").string()) + " | wc -l");
  CHECK(blobs.out == "0\n");

  // Dangling images go with prune; prune -a takes the rest.
  REQUIRE(run_imgbuild(root, {"import", (work.path / "rootfs.tar").string(), "-m", "dangling"}).status == 0);
  import_busybox(root, work.path, "keep:1");
  RunResult dangling = run_imgbuild(root, {"images", "-f", "dangling=true", "-q"});
  CHECK(dangling.out.size() == 13);
  CHECK(dangling.out != run_imgbuild(root, {"images", "-f", "dangling=false", "-q"}).out);
  CHECK(run_imgbuild(root, {"images", "-f", "reference=kee*"}).out.find("keep") != std::string::npos);
  RunResult pr = run_imgbuild(root, {"image", "prune"});
  REQUIRE(pr.status == 0);
  CHECK(pr.out.find("deleted: sha256:") != std::string::npos);
  CHECK(pr.out.find("Total reclaimed space: ") != std::string::npos);
  CHECK(run_imgbuild(root, {"images", "-q"}).out.size() == 13);
  RunResult pra = run_imgbuild(root, {"image", "prune", "-a"});
  CHECK(pra.out.find("untagged: keep:1") != std::string::npos);
  CHECK(run_imgbuild(root, {"images", "-q"}).out.empty());
}

TEST_CASE("saved archives are read by skopeo and umoci with the same digests", "[integration]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed");
  IMGBUILD_REQUIRE_PREREQ(have_tool("skopeo") && have_tool("umoci"), "skopeo and umoci are not installed");
  TempDir work;
  fs::path root = work.path / "store";
  import_busybox(root, work.path, "bb:1");
  json j = inspect(root, "bb:1");
  fs::path archive = work.path / "bb.tar";
  REQUIRE(run_imgbuild(root, {"save", "-o", archive.string(), "bb:1"}).status == 0);

  RunResult si = run_sh("skopeo inspect docker-archive:" + sh_quote(archive.string()));
  INFO(si.err);
  REQUIRE(si.status == 0);
  json sj = json::parse(si.out);
  CHECK(sj["Layers"] == j["RootFS"]["Layers"]);
  CHECK(sj["Os"] == "linux");

  // The same tar is an OCI layout.
  RunResult so = run_sh("skopeo inspect oci-archive:" + sh_quote(archive.string()) + ":1");
  INFO(so.err);
  REQUIRE(so.status == 0);
  CHECK(json::parse(so.out)["Layers"] == j["RootFS"]["Layers"]);

  fs::path oci = work.path / "oci";
  RunResult copy = run_sh("skopeo copy -q docker-archive:" + sh_quote(archive.string()) + " oci:" +
                          sh_quote(oci.string()) + ":bb");
  INFO(copy.err);
  REQUIRE(copy.status == 0);
  RunResult unpack = run_sh("cd " + sh_quote(work.path.string()) + " && umoci unpack --image oci:bb bundle");
  INFO(unpack.err);
  REQUIRE(unpack.status == 0);
  CHECK(read_file(work.path / "bundle" / "rootfs" / "etc" / "passwd") == k_passwd);
  CHECK(fs::is_symlink(work.path / "bundle" / "rootfs" / "bin" / "sh"));

  // --format oci-dir is a layout umoci reads directly.
  fs::path dir = work.path / "layout";
  REQUIRE(run_imgbuild(root, {"save", "--format", "oci-dir", "-o", dir.string(), "bb:1"}).status == 0);
  RunResult unpack2 = run_sh("cd " + sh_quote(work.path.string()) + " && umoci unpack --image layout:1 bundle2");
  INFO(unpack2.err);
  REQUIRE(unpack2.status == 0);
  CHECK(read_file(work.path / "bundle2" / "rootfs" / "etc" / "group") == k_group);
}

TEST_CASE("saved archives load into dockerd and run", "[integration]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed");
  IMGBUILD_REQUIRE_PREREQ(docker_available(), "no Docker engine (docker.io) could be reached or started");
  TempDir work;
  fs::path root = work.path / "store";
  std::string name = "imgbuild-it/busybox:" + std::to_string(::getpid());
  import_busybox(root, work.path, name);
  fs::path archive = work.path / "bb.tar";
  REQUIRE(run_imgbuild(root, {"save", "-o", archive.string(), name}).status == 0);
  RunResult load = run_sh("/usr/bin/docker load -i " + sh_quote(archive.string()));
  INFO(load.err);
  REQUIRE(load.status == 0);
  CHECK(load.out.find("Loaded image: " + name) != std::string::npos);
  RunResult run = run_sh("/usr/bin/docker run --rm --network none " + name + " /bin/busybox cat /etc/passwd");
  INFO(run.err);
  CHECK(run.status == 0);
  CHECK(run.out == k_passwd);

  // The other way: docker save → imgbuild load keeps the diff_ids.
  fs::path dsave = work.path / "dsave.tar";
  REQUIRE(run_sh("/usr/bin/docker save -o " + sh_quote(dsave.string()) + " " + name).status == 0);
  RunResult di = run_sh("/usr/bin/docker image inspect " + name);
  json dj = json::parse(di.out)[0];
  fs::path root2 = work.path / "store2";
  RunResult l2 = run_imgbuild(root2, {"load", "-i", dsave.string()});
  INFO(l2.err);
  REQUIRE(l2.status == 0);
  CHECK(l2.out == "Loaded image: " + name + "\n");
  CHECK(inspect(root2, name)["RootFS"]["Layers"] == dj["RootFS"]["Layers"]);
  CHECK(inspect(root2, name)["Id"] == dj["Id"]);
  run_sh("/usr/bin/docker rmi " + name);
}

TEST_CASE("skopeo outputs load with the same diff_ids and round-trip byte-identically", "[integration]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed");
  IMGBUILD_REQUIRE_PREREQ(have_tool("skopeo"), "skopeo is not installed");
  TempDir work;
  fs::path root = work.path / "store";
  import_busybox(root, work.path, "bb:1");
  json layers = inspect(root, "bb:1")["RootFS"]["Layers"];
  fs::path archive = work.path / "bb.tar";
  REQUIRE(run_imgbuild(root, {"save", "-o", archive.string(), "bb:1"}).status == 0);

  fs::path da = work.path / "da.tar";
  fs::path oa = work.path / "oa.tar";
  REQUIRE(run_sh("skopeo copy -q docker-archive:" + sh_quote(archive.string()) + " docker-archive:" +
                 sh_quote(da.string()) + ":skopeo/da:1").status == 0);
  REQUIRE(run_sh("skopeo copy -q docker-archive:" + sh_quote(archive.string()) + " oci-archive:" +
                 sh_quote(oa.string()) + ":skopeo/oa:1").status == 0);
  fs::path root2 = work.path / "store2";
  RunResult l1 = run_imgbuild(root2, {"load", "-i", da.string()});
  INFO(l1.err);
  REQUIRE(l1.status == 0);
  CHECK(l1.out == "Loaded image: skopeo/da:1\n");
  RunResult l2 = run_sh("gzip -c " + sh_quote(oa.string()) + " | " + sh_quote(imgbuild_binary().string()) +
                        " --root " + sh_quote(root2.string()) + " load");
  INFO(l2.err);
  REQUIRE(l2.status == 0);
  CHECK(l2.out == "Loaded image: skopeo/oa:1\n");
  CHECK(inspect(root2, "skopeo/da:1")["RootFS"]["Layers"] == layers);
  CHECK(inspect(root2, "skopeo/oa:1")["RootFS"]["Layers"] == layers);

  // Our own archive is canonical: load it elsewhere and save again, byte for byte.
  fs::path root3 = work.path / "store3";
  REQUIRE(run_imgbuild(root3, {"load", "-i", archive.string()}).status == 0);
  fs::path again = work.path / "again.tar";
  REQUIRE(run_imgbuild(root3, {"save", "-o", again.string(), "bb:1"}).status == 0);
  CHECK(read_file(again) == read_file(archive));
}

TEST_CASE("legacy docker-save archives with symlinked duplicate layers load", "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  std::string layer = small_layer();
  std::string diff = sha256(layer).str();
  std::string cfg = config_for({diff, diff});
  std::string id1(64, '1');
  std::string id2(64, '2');
  json manifest = json::array({{{"Config", hex(cfg) + ".json"},
                                {"RepoTags", {"legacy:1"}},
                                {"Layers", {id1 + "/layer.tar", id2 + "/layer.tar"}}}});
  std::string tarball = make_layer({dir(id1), file(id1 + "/VERSION", "1.0"), file(id1 + "/json", "{}"),
                                  file(id1 + "/layer.tar", layer), dir(id2), file(id2 + "/VERSION", "1.0"),
                                  symlink_to(id2 + "/layer.tar", "../" + id1 + "/layer.tar"),
                                  file(hex(cfg) + ".json", cfg), file("manifest.json", manifest.dump()),
                                  file("repositories", "{}")});
  write_file(work.path / "legacy.tar", tarball);
  RunResult r = run_imgbuild(root, {"load", "-i", (work.path / "legacy.tar").string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out == "Loaded image: legacy:1\n");
  json j = inspect(root, "legacy:1");
  CHECK(j["Id"] == sha256(cfg).str());
  CHECK(j["RootFS"]["Layers"] == json::array({diff, diff}));
  // Only the config, the manifest and the one layer are stored.
  RunResult count = run_sh("ls " + sh_quote((root / "blobs" / "sha256").string()) + " | wc -l");
  CHECK(count.out == "3\n");
}

TEST_CASE("bad archives fail with one line and leave the store as it was", "[integration]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed");
  TempDir work;
  fs::path root = work.path / "store";
  import_busybox(root, work.path, "bb:1");
  fs::path good = work.path / "good.tar";
  REQUIRE(run_imgbuild(root, {"save", "-o", good.string(), "bb:1"}).status == 0);
  auto load = [&](const std::string& name, const std::string& bytes, const std::string& needle) {
    fs::path p = work.path / name;
    write_file(p, bytes);
    INFO("archive " << name);
    expect_clean_failure(root, {"load", "-i", p.string()}, needle);
  };

  SECTION("truncated tar") {
    std::string bytes = read_file(good);
    load("truncated.tar", bytes.substr(0, bytes.size() / 2), "truncated");
  }
  SECTION("truncated gzip") {
    RunResult gz = run_sh("gzip -c " + sh_quote(good.string()) + " | head -c 100000");
    load("truncated.tar.gz", gz.out, "truncated.tar.gz");
  }
  SECTION("wrong digest") {
    CraftedArchive a;
    a.layer_name = "blobs/sha256/" + std::string(64, 'e');
    a.config = config_for({sha256(a.layer).str()});
    load("wrong-digest.tar", a.build(), "digest mismatch");
  }
  SECTION("diff_id mismatch") {
    CraftedArchive a;
    a.config = config_for({"sha256:" + std::string(64, 'd')});
    load("diffid.tar", a.build(), "invalid diffID for layer 0");
  }
  SECTION("layer count differs from diff_ids") {
    CraftedArchive a;
    a.config = config_for({});
    load("count.tar", a.build(), "diff_ids");
  }
  SECTION("manifest.json pointing outside the archive") {
    CraftedArchive a;
    a.build();
    a.manifest = json::array({{{"Config", "../../etc/passwd"}, {"RepoTags", {"x:1"}}, {"Layers", json::array()}}});
    load("outside.tar", a.build(), "points outside the archive");
  }
  SECTION("manifest.json naming a missing layer") {
    CraftedArchive a;
    a.build();
    a.manifest[0]["Layers"] = {"nothere/layer.tar"};
    load("missing.tar", a.build(), "is not in the archive");
  }
  SECTION("archive entries with ../ or absolute paths") {
    CraftedArchive a;
    a.extra.push_back(file("../escape", "x"));
    load("dotdot.tar", a.build(), "points outside the archive");
    CraftedArchive b;
    b.extra.push_back(symlink_to("evil", "../../etc/passwd"));
    load("symlink-out.tar", b.build(), "points outside the archive");
  }
  SECTION("layers with entries that leave the root") {
    CraftedArchive a;
    a.layer = make_layer({file("../evil", "x")});
    load("layer-dotdot.tar", a.build(), "contains \"..\"");
    CraftedArchive b;
    b.layer = make_layer({symlink_to("l", "../victim"), file("l/file", "x")});
    load("layer-symlink.tar", b.build(), "leaves the root");
    CraftedArchive c;
    c.layer = make_layer({hardlink_to("h", "../../etc/shadow")}, tar::Compression::gzip);
    load("layer-hardlink.tar", c.build(), "points outside the root");
  }
  SECTION("a 1 GB JSON document") {
    load("huge-json.tar", ustar_header("manifest.json", uint64_t{1} << 30) + std::string(1024, '\0'),
         "exceeds the limit");
  }
  SECTION("an oversized config") {
    CraftedArchive a;
    json cfg = json::parse(config_for({sha256(a.layer).str()}));
    cfg["padding"] = std::string(21 * 1024 * 1024, 'x');
    a.config = cfg.dump();
    load("big-config.tar", a.build(), "exceeds the limit");
  }
  SECTION("an unknown media type") {
    std::string layer = small_layer();
    std::string cfg = config_for({sha256(layer).str()});
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                 {"digest", sha256(cfg).str()}, {"size", cfg.size()}}},
                     {"layers", {{{"mediaType", "application/x-unknown-layer"},
                                  {"digest", sha256(layer).str()}, {"size", layer.size()}}}}};
    std::string m = manifest.dump();
    json index = {{"schemaVersion", 2},
                  {"manifests", {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                  {"digest", sha256(m).str()}, {"size", m.size()},
                                  {"annotations", {{"io.containerd.image.name", "docker.io/library/u:1"}}}}}}};
    load("media.tar",
         make_layer({file("blobs/sha256/" + hex(layer), layer), file("blobs/sha256/" + hex(cfg), cfg),
                   file("blobs/sha256/" + hex(m), m), file("index.json", index.dump()),
                   file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})")}),
         "unknown media type");
  }
  SECTION("not an image archive") {
    load("plain.tar", make_layer({file("hello", "world")}), "neither index.json nor manifest.json");
  }
  SECTION("a reference with bad characters") {
    expect_clean_failure(root, {"tag", "bb:1", "bad$name:1"}, "invalid reference \"bad$name:1\"");
    expect_clean_failure(root, {"import", (work.path / "rootfs.tar").string(), "UPPER:1"}, "must be lowercase");
    expect_clean_failure(root, {"inspect", "nothere:1"}, "No such image: nothere:1");
  }
}

TEST_CASE("hostile rootfs tars are refused by import", "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  // Something in the store, so that "unchanged" means something.
  write_file(work.path / "ok.tar", make_layer({dir("etc"), file("etc/ok", "ok")}));
  REQUIRE(run_imgbuild(root, {"import", (work.path / "ok.tar").string(), "ok:1"}).status == 0);
  auto import = [&](const std::string& name, const std::vector<LayerEntry>& entries, const std::string& needle) {
    fs::path p = work.path / name;
    write_file(p, make_layer(entries));
    INFO("rootfs " << name);
    expect_clean_failure(root, {"import", p.string(), "evil:1"}, needle);
  };
  import("dotdot.tar", {file("../x", "x")}, "contains \"..\"");
  import("rootdotdot.tar", {file("/../x", "x")}, "contains \"..\"");
  import("symlink-write.tar", {symlink_to("l", "../victim"), file("l/file", "x")}, "leaves the root");
  import("two-hop.tar",
         {dir("a"), symlink_to("a/up", ".."), symlink_to("a/up/esc", "../victim"), file("a/up/esc/f", "x")},
         "leaves the root");
  import("hardlink-out.tar", {hardlink_to("h", "../x")}, "points outside the root");
  import("hardlink-abs-out.tar", {hardlink_to("h", "/../x")}, "points outside the root");
  import("hardlink-dir.tar", {dir("d"), hardlink_to("h", "d")}, "is a directory");
  import("sibling.tar", {file("../dest-evil/x", "x")}, "contains \"..\"");
  import("dir-then-symlink.tar", {dir("d"), symlink_to("d", "../.."), file("d/x", "x")}, "appears twice");
  import("symlink-dir-write.tar", {symlink_to("d", "../.."), file("d/x", "x")}, "leaves the root");
  import("bare-whiteout.tar", {file(".wh.", "")}, "invalid whiteout");

  // Absolute in-image symlinks and root-relative hardlinks stay accepted.
  write_file(work.path / "fine.tar",
             make_layer({dir("run"), dir("var"), symlink_to("var/run", "/run"), file("var/run/pid", "1"),
                       dir("usr"), dir("usr/bin"), file("usr/bin/x", "x"), hardlink_to("usr/bin/y", "/usr/bin/x")}));
  RunResult r = run_imgbuild(root, {"import", (work.path / "fine.tar").string(), "fine:1"});
  INFO(r.err);
  CHECK(r.status == 0);
}

TEST_CASE("two processes sharing one store both succeed", "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  std::string a = make_layer({dir("a"), file("a/f", "a")});
  std::string b = make_layer({dir("b"), file("b/f", "b")});
  write_file(work.path / "a.tar", a);
  write_file(work.path / "b.tar", b);
  REQUIRE(run_imgbuild(root, {"import", (work.path / "a.tar").string(), "base:a"}).status == 0);
  fs::path saved = work.path / "base.tar";
  REQUIRE(run_imgbuild(root, {"save", "-o", saved.string(), "base:a"}).status == 0);
  std::string bin = sh_quote(imgbuild_binary().string());
  std::string r = " --root " + sh_quote(root.string());
  // Writer 1 loads and tags in a loop; writer 2 imports, tags and prunes.
  std::string loop1 = "for i in 1 2 3 4 5 6 7 8; do " + bin + r + " load -i " + sh_quote(saved.string()) +
                      " >/dev/null || exit 1; " + bin + r + " tag base:a one:$i || exit 1; done";
  std::string loop2 = "for i in 1 2 3 4 5 6 7 8; do " + bin + r + " import " +
                      sh_quote((work.path / "b.tar").string()) + " two:$i >/dev/null || exit 1; " + bin + r +
                      " image prune >/dev/null || exit 1; done";
  RunResult both = run_sh("(" + loop1 + ") & p1=$!; (" + loop2 + ") & p2=$!; wait $p1 || exit 1; wait $p2 || exit 2");
  INFO(both.err);
  REQUIRE(both.status == 0);
  RunResult ls = run_imgbuild(root, {"images"});
  for (int i = 1; i <= 8; ++i) {
    CHECK(ls.out.find("one          " + std::to_string(i)) != std::string::npos);
    CHECK(ls.out.find("two          " + std::to_string(i)) != std::string::npos);
  }
  // Every image still has all its blobs.
  RunResult save = run_imgbuild(root, {"save", "-o", (work.path / "all.tar").string(), "one:8", "two:8", "base:a"});
  INFO(save.err);
  CHECK(save.status == 0);
}

TEST_CASE("import keeps the tar byte for byte as the layer - the diff_id docker import gives", "[integration]") {
  IMGBUILD_REQUIRE_PREREQ(docker_available(), "no Docker engine (docker.io) could be reached or started");
  TempDir work;
  // GNU tar's own layout: a "./" root entry, "./"-prefixed names, a
  // hardlink, a symlink, and the end-of-archive padding to 10 KiB.
  std::string make = "set -e; d=" + sh_quote((work.path / "root").string()) +
                     "; mkdir -p $d/etc $d/usr/bin; printf 'ID=test\\n' > $d/etc/os-release; "
                     "printf abc > $d/usr/bin/tool; ln $d/usr/bin/tool $d/usr/bin/tool2; ln -s tool $d/usr/bin/t; "
                     "tar --numeric-owner -C $d -cf " + sh_quote((work.path / "r.tar").string()) + " .; "
                     "gzip -k " + sh_quote((work.path / "r.tar").string());
  REQUIRE(run_sh(make).status == 0);
  std::string bytes = read_file(work.path / "r.tar");
  std::string own = imgbuild::sha256(bytes).str();
  std::string name = "imgbuild-it/import:" + std::to_string(::getpid());
  RunResult d = run_sh("/usr/bin/docker import " + sh_quote((work.path / "r.tar").string()) + " " + name);
  INFO(d.err);
  REQUIRE(d.status == 0);
  RunResult di = run_sh("/usr/bin/docker image inspect " + name);
  REQUIRE(di.status == 0);
  json docker_layers = json::parse(di.out)[0]["RootFS"]["Layers"];
  run_sh("/usr/bin/docker rmi " + name);
  CHECK(docker_layers == json::array({own}));

  fs::path root = work.path / "store";
  RunResult plain = run_imgbuild(root, {"import", (work.path / "r.tar").string(), "plain:1"});
  INFO(plain.err);
  REQUIRE(plain.status == 0);
  CHECK(plain.err.empty());
  CHECK(inspect(root, "plain:1")["RootFS"]["Layers"] == docker_layers);
  // The blob is the tar itself, stored uncompressed.
  CHECK(read_file(root / "blobs" / "sha256" / own.substr(7)) == bytes);
  fs::path saved = work.path / "saved";
  REQUIRE(run_imgbuild(root, {"save", "--format", "oci-dir", "-o", saved.string(), "plain:1"}).status == 0);
  json index = json::parse(read_file(saved / "index.json"));
  std::string mdigest = index["manifests"][0]["digest"];
  json manifest = json::parse(read_file(saved / "blobs" / "sha256" / mdigest.substr(7)));
  CHECK(manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar");
  CHECK(manifest["layers"][0]["digest"] == own);
  CHECK(manifest["layers"][0]["size"] == bytes.size());

  // gzip'd: stored decompressed (the same layer), and import says so.
  RunResult gz = run_imgbuild(root, {"import", (work.path / "r.tar.gz").string(), "gz:1"});
  INFO(gz.err);
  REQUIRE(gz.status == 0);
  CHECK(gz.err.find("gzip input decompressed") != std::string::npos);
  CHECK(inspect(root, "gz:1")["RootFS"]["Layers"] == docker_layers);
}

TEST_CASE("import is reproducible under SOURCE_DATE_EPOCH", "[integration]") {
  TempDir work;
  write_file(work.path / "r.tar", make_layer({dir("etc"), file("etc/os-release", "ID=test\n")}));
  std::string ids;
  for (const char* store : {"s1", "s2"}) {
    RunResult r = run_sh("SOURCE_DATE_EPOCH=1700000000 " + sh_quote(imgbuild_binary().string()) + " --root " +
                         sh_quote((work.path / store).string()) + " import " +
                         sh_quote((work.path / "r.tar").string()) + " repro:1 -c 'ENV A=1'");
    INFO(r.err);
    REQUIRE(r.status == 0);
    ids += r.out;
  }
  CHECK(ids.substr(0, ids.size() / 2) == ids.substr(ids.size() / 2));
  json j = inspect(work.path / "s1", "repro:1");
  CHECK(j["Created"] == "2023-11-14T22:13:20Z");
  // Filtering the listing by repository.
  REQUIRE(run_imgbuild(work.path / "s1", {"tag", "repro:1", "other:2"}).status == 0);
  RunResult only = run_imgbuild(work.path / "s1", {"images", "other"});
  CHECK(only.out.find("other") != std::string::npos);
  CHECK(only.out.find("repro") == std::string::npos);
}

TEST_CASE("OCI archives with a nested multi-platform index keep the index with the image they hold", "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  std::string layer = small_layer();
  std::string cfg = config_for({sha256(layer).str()});
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                               {"digest", sha256(cfg).str()}, {"size", cfg.size()}}},
                   {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                {"digest", sha256(layer).str()}, {"size", layer.size()}}}}};
  std::string m = manifest.dump();
  // The arm64 manifest is listed but absent, as in a single-platform export.
  json nested = {{"schemaVersion", 2},
                 {"mediaType", "application/vnd.oci.image.index.v1+json"},
                 {"manifests", {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                 {"digest", "sha256:" + std::string(64, 'a')}, {"size", 100},
                                 {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}},
                                {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                 {"digest", sha256(m).str()}, {"size", m.size()},
                                 {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
  std::string n = nested.dump();
  json index = {{"schemaVersion", 2},
                {"manifests", {{{"mediaType", "application/vnd.oci.image.index.v1+json"},
                                {"digest", sha256(n).str()}, {"size", n.size()},
                                {"annotations", {{"org.opencontainers.image.ref.name", "multi/arch:1"}}}}}}};
  write_file(work.path / "multi.tar",
             make_layer({file("oci-layout", R"({"imageLayoutVersion":"1.0.0"})"), file("index.json", index.dump()),
                       file("blobs/sha256/" + hex(n), n), file("blobs/sha256/" + hex(m), m),
                       file("blobs/sha256/" + hex(cfg), cfg), file("blobs/sha256/" + hex(layer), layer)},
                      tar::Compression::gzip));
  RunResult r = run_imgbuild(root, {"load", "-i", (work.path / "multi.tar").string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out == "Loaded image: multi/arch:1\n");
  // The name points at the index (its ID, as docker's containerd store
  // shows it); the image is the amd64 one the archive holds.
  json j = inspect(root, "multi/arch:1");
  CHECK(j["Id"] == sha256(n).str());
  CHECK(j["Architecture"] == "amd64");
  CHECK(j["RootFS"]["Layers"] == json::array({sha256(layer).str()}));
  // arm64 is listed but was not in the archive.
  RunResult arm = run_imgbuild(root, {"inspect", "--platform", "linux/arm64", "multi/arch:1"});
  CHECK(arm.status == 1);
  CHECK(arm.err.find("platform linux/arm64 is listed in its index but not in the store") != std::string::npos);
}
