// The differential suite: every directory under testdata/compat/ is one case
// (one ctest test, "compat: <case>"), a Dockerfile plus its context. The case
// is built by imgbuild and by BuildKit v0.22 (the oracle: buildkitd and
// buildctl built from ../shared/tools/buildkit, started by scripts/services
// buildkit, driven through that directory's `build` script with --no-cache
// and --network none); both images are read back from docker-load tars and
// compared file by file and field by field (image_compare.hpp): layer
// entries, the config fields, and every history entry's created_by text and
// empty_layer flag as written.
//
// A case with an expected.json is compared with it instead: only for
// Dockerfile features the oracle's built-in frontend lacks (COPY --exclude
// and --parents, labs features compiled in only with the dfexcludepatterns
// and dfparents build tags, which ../shared/tools/buildkit/install does not
// set). expected.json: "layers": [[entry line, …], …] (the layers after the
// base, lines as fmt_entry prints them), "history": [created_by, …] (the
// entries after the base's; "  (empty_layer)" suffix as compare prints
// it), "config": {field: value} (the fields to check).
//
// Optional compat.json in a case (not part of the context):
//   "build_args": {"K": "V"}, "target": "stage", "file": "other.Dockerfile",
//   "secrets": {"id": "value"},
//   "platform": "linux/arm64" (--platform for both engines; the base is then
//     Debian's arm64 busybox-static, harness.hpp arm64_busybox_rootfs_tar,
//     imported for that platform; RUN goes through qemu, scripts/binfmt),
//   "platform": "linux/amd64,linux/arm64" (a two-platform build: the base
//     is an image index of both busybox images, `imgbuild manifest create`
//     of the amd64 one imported for linux/amd64 and the arm64 one for
//     linux/arm64; both engines write an OCI layout tar of their index
//     (`-o type=oci`; --oci-output), and each platform's image is read from
//     it (image_compare.hpp read_oci_platform) and compared, the lines of a
//     platform's differences under "platform P:"; the metadata files must
//     both describe an index, without a config digest; oracle cases only),
//   "setup": [ context entries git cannot hold, made at test time:
//     {"hardlink": P, "to": Q}, {"symlink": P, "to": T}, {"mkdir": P},
//     {"chmod": P, "mode": "4755"}, {"chown": P, "uid": U, "gid": G},
//     {"xattr": P, "name": "user.k", "value": V or "hex": H}, {"fifo": P},
//     {"bytes": P, "size": N} (N pseudo-random bytes),
//     {"sh": "command"} (run in the context, e.g. to make a tar) ],
//   "difference": {"name": N, "diff": [line, …]} — a deliberate difference
//     from BuildKit: N is a "## N" section of DIFFERENCES.md (the reason),
//     and the comparison's output must be exactly these lines (as
//     compare_images prints them), no more and no fewer.
//
// Rootless variant ("compat-rootless: <case>", the cases listed in
// testdata/compat/ROOTLESS): the same build run by imgbuild as an
// unprivileged user (scripts/test-user: a user with subordinate ids; the
// context handed to that user) is compared with imgbuild's build as root —
// the same files, owners, modes, config and history. The container variants
// run imgbuild inside dockerd (20.10) containers.
//
// The base image is busybox-static (harness.hpp busybox_rootfs_tar), named
// imgbuild-compat-busybox: `imgbuild import` into each case's own store, and
// that store's `imgbuild save` of it handed to the oracle (`build --image
// imgbuild-compat-busybox=base.tar`, so FROM resolves offline to the very
// same config and layer; a case naming a stage imgbuild-compat-busybox gets
// no --image, since a named context would replace that stage). The save of
// a two-platform base is unpacked and handed over as an OCI layout
// directory: given the tar, the build script's archive-to-oci takes the
// first image of its manifest.json (the host's platform only), and BuildKit
// then builds every platform on that one image without a word.

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "image_compare.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace imgbuild::test {
namespace {

constexpr const char* k_base_name = "imgbuild-compat-busybox";
// 2025-01-01T00:00:00Z: the earliest time either engine's clock gives here.
constexpr int64_t k_build_clock_from = 1735689600;

fs::path compat_dir() { return testdata_dir() / "compat"; }

// The names of the case directories, sorted.
std::vector<std::string> case_names() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(compat_dir(), ec)) {
    if (e.is_directory() && fs::exists(e.path() / "Dockerfile")) {
      out.push_back(e.path().filename().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Applies one setup step of compat.json inside the context.
void apply_setup(const fs::path& ctx, const json& step) {
  INFO("setup step " << step.dump());
  auto at = [&](const char* key) { return ctx / step.at(key).get<std::string>(); };
  if (step.contains("hardlink")) {
    fs::create_hard_link(at("to"), at("hardlink"));
  } else if (step.contains("symlink")) {
    fs::create_symlink(step.at("to").get<std::string>(), at("symlink"));
  } else if (step.contains("mkdir")) {
    fs::create_directories(at("mkdir"));
  } else if (step.contains("chmod")) {
    REQUIRE(::chmod(at("chmod").c_str(), static_cast<mode_t>(std::stoul(step.at("mode").get<std::string>(), nullptr, 8))) ==
            0);
  } else if (step.contains("chown")) {
    REQUIRE(::lchown(at("chown").c_str(), step.at("uid").get<uid_t>(), step.at("gid").get<gid_t>()) == 0);
  } else if (step.contains("xattr")) {
    std::string name = step.at("name").get<std::string>();
    std::string value;
    if (step.contains("hex")) {
      std::string hex = step.at("hex").get<std::string>();
      for (size_t i = 0; i + 1 < hex.size(); i += 2) {
        value += static_cast<char>(std::stoul(hex.substr(i, 2), nullptr, 16));
      }
    } else {
      value = step.at("value").get<std::string>();
    }
    REQUIRE(::lsetxattr(at("xattr").c_str(), name.c_str(), value.data(), value.size(), 0) == 0);
  } else if (step.contains("fifo")) {
    REQUIRE(::mkfifo(at("fifo").c_str(), 0644) == 0);
  } else if (step.contains("sh")) {
    RunResult r = run_sh("cd " + sh_quote(ctx.string()) + " && " + step.at("sh").get<std::string>());
    INFO(r.err);
    REQUIRE(r.status == 0);
  } else if (step.contains("bytes")) {
    std::string body(step.at("size").get<size_t>(), '\0');
    uint32_t x = 2463534242u;
    for (char& c : body) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      c = static_cast<char>(x & 0xff);
    }
    write_file(at("bytes"), body);
  } else {
    FAIL("unknown setup step in compat.json: " << step.dump());
  }
}

// The RUN --mount targets of a Dockerfile, without the leading "/"; a secret
// mount without a target mounts at /run/secrets/<id>.
Ignores mount_ignores(const std::string& dockerfile) {
  Ignores ig;
  static const std::regex k_mount(R"(--mount=(\S+))");
  for (auto it = std::sregex_iterator(dockerfile.begin(), dockerfile.end(), k_mount); it != std::sregex_iterator();
       ++it) {
    std::string spec = (*it)[1].str();
    std::string target;
    std::string id;
    bool secret = false;
    size_t start = 0;
    while (start <= spec.size()) {
      size_t comma = spec.find(',', start);
      std::string kv = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      for (const char* key : {"target=", "dst=", "destination="}) {
        if (kv.starts_with(key)) {
          target = kv.substr(std::strlen(key));
        }
      }
      if (kv.starts_with("id=")) {
        id = kv.substr(3);
      }
      secret = secret || kv == "type=secret";
      if (comma == std::string::npos) {
        break;
      }
      start = comma + 1;
    }
    if (target.empty() && secret) {
      target = "/run/secrets/" + id;
    }
    while (target.starts_with("/")) {
      target = target.substr(1);
    }
    while (target.ends_with("/")) {
      target.pop_back();
    }
    if (!target.empty()) {
      ig.mount_targets.insert(target);
    }
  }
  return ig;
}

// Builds the case with BuildKit v0.22 (buildkit_tools_dir()'s `build`) into
// `out`: a docker-load tar, or with `oci` an OCI layout tar (and the
// metadata file `metadata`, when not empty); `base` is the docker-save tar
// of the base image, or an OCI layout directory. --no-cache: the result
// depends on the context alone, not on what earlier builds left in
// buildkitd's cache.
void oracle_build(const std::string& case_name, const fs::path& ctx, const std::vector<std::string>& flags,
                  const fs::path& base, bool base_is_stage, const fs::path& out, bool oci = false,
                  const fs::path& metadata = {}) {
  std::string cmd = sh_quote((buildkit_tools_dir() / "build").string()) +
                    " --no-cache --network none -t imgbuild-test-compat-" + case_name;
  if (oci) {
    cmd += " --oci-output";
  }
  if (!metadata.empty()) {
    cmd += " --metadata-file " + sh_quote(metadata.string());
  }
  if (!base_is_stage) {
    cmd += " --image " + sh_quote(std::string(k_base_name) + "=" + base.string());
  }
  for (const auto& f : flags) {
    cmd += ' ';
    cmd += sh_quote(f);
  }
  cmd += " -o " + sh_quote(out.string()) + " " + sh_quote(ctx.string());
  RunResult d = run_sh(cmd);
  INFO("BuildKit v0.22 build of " << case_name << ":\n" << d.err);
  REQUIRE(d.status == 0);
}

// The "## " section titles of DIFFERENCES.md.
std::set<std::string> recorded_differences() {
  std::set<std::string> out;
  std::istringstream in(read_file(source_dir() / "DIFFERENCES.md"));
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("## ")) {
      out.insert(line.substr(3));
    }
  }
  return out;
}

// imgbuild's image against a hand-written expected.json (the cases the
// oracle cannot build, see the file comment).
std::string compare_expected(const Saved& ours, const json& expected, size_t base_layers, size_t base_history) {
  std::string out;
  const json fields = expected.value("config", json::object());
  for (const auto& [field, value] : fields.items()) {
    json va = config_field(ours.config, field);
    json vb = value;
    if ((vb.is_array() || vb.is_object() || vb.is_string()) && vb.empty()) {
      vb = nullptr;
    }
    if (va != vb) {
      out += "config " + field + ":\n  - " + va.dump() + "\n  + " + vb.dump() + "\n";
    }
  }
  if (expected.contains("history")) {
    std::vector<std::string> ha;
    const json hist = ours.config.value("history", json::array());
    for (size_t i = base_history; i < hist.size(); ++i) {
      ha.push_back(hist[i].value("created_by", "") + (hist[i].value("empty_layer", false) ? "  (empty_layer)" : ""));
    }
    std::vector<std::string> hb = expected["history"].get<std::vector<std::string>>();
    for (size_t i = 0; i < std::max(ha.size(), hb.size()); ++i) {
      std::string a = i < ha.size() ? ha[i] : "(none)";
      std::string b = i < hb.size() ? hb[i] : "(none)";
      if (a != b) {
        out += "history[base+" + std::to_string(i) + "]:\n  - " + a + "\n  + " + b + "\n";
      }
    }
  }
  const json& layers = expected.at("layers");
  if (ours.layers.size() != base_layers + layers.size()) {
    out += "layer count: - " + std::to_string(ours.layers.size()) + " + " +
           std::to_string(base_layers + layers.size()) + "\n";
    return out;
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    std::string d = diff_lines(describe_layer(ours.layers[base_layers + i], {}, false, nullptr),
                               layers[i].get<std::vector<std::string>>());
    if (!d.empty()) {
      out += "layer base+" + std::to_string(i) + ":\n" + d;
    }
  }
  return out;
}

enum class Variant { oracle, rootless, container_user, container_root };

// The unprivileged user of the rootless variant (scripts/test-user).
struct TestUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

TestUser test_user() {
  RunResult r = run_sh(sh_quote((source_dir() / "scripts" / "test-user").string()));
  INFO("scripts/test-user: " << r.err);
  REQUIRE(r.status == 0);
  std::istringstream in(r.out);
  TestUser u;
  in >> u.name >> u.uid >> u.gid;
  REQUIRE(!u.name.empty());
  REQUIRE(u.uid != 0);
  return u;
}

// Hands dir and everything below it to the user, keeping every mode
// (chown clears set-id bits, so the mode is set again).
void give_to(const fs::path& dir, const TestUser& u) {
  auto one = [&](const fs::path& p) {
    struct stat st {};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    REQUIRE(::lchown(p.c_str(), u.uid, u.gid) == 0);
    if (!S_ISLNK(st.st_mode)) {
      REQUIRE(::chmod(p.c_str(), st.st_mode & 07777) == 0);
    }
  };
  one(dir);
  if (fs::is_directory(fs::symlink_status(dir))) {
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      one(e.path());
    }
  }
}

// run_imgbuild, as the test user.
RunResult run_imgbuild_as(const TestUser& u, const fs::path& home, const fs::path& root,
                          const std::vector<std::string>& args) {
  std::string cmd = "setpriv --reuid=" + std::to_string(u.uid) + " --regid=" + std::to_string(u.gid) +
                    " --clear-groups env HOME=" + sh_quote(home.string()) + " " +
                    sh_quote(imgbuild_binary_for(u.uid, u.gid).string()) + " --root " + sh_quote(root.string());
  for (const auto& a : args) {
    cmd += ' ';
    cmd += sh_quote(a);
  }
  return run_sh(cmd);
}

void run_case(const std::string& name, Variant variant) {
  IMGBUILD_REQUIRE_PREREQ(fs::exists("/bin/busybox"), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  fs::path src = compat_dir() / name;
  json spec = fs::exists(src / "compat.json") ? json::parse(read_file(src / "compat.json")) : json::object();
  const bool hand_written = fs::exists(src / "expected.json");
  if (variant == Variant::oracle && !hand_written) {
    IMGBUILD_REQUIRE_PREREQ(buildkit_available(),
                            "BuildKit v0.22 does not start (scripts/services buildkit; tools: " +
                                buildkit_tools_dir().string() + ")");
  }
  TempDir work;
  fs::path ctx = work.path / "ctx";
  fs::create_directories(ctx);
  for (const auto& e : fs::directory_iterator(src)) {
    std::string fname = e.path().filename().string();
    if (fname != "compat.json" && fname != "expected.json") {
      fs::copy(e.path(), ctx / fname, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    }
  }
  const json setup = spec.value("setup", json::array());
  for (const auto& step : setup) {
    apply_setup(ctx, step);
  }

  // Flags common to both engines.
  std::vector<std::string> flags;
  std::string dockerfile_name = spec.value("file", "Dockerfile");
  if (spec.contains("file")) {
    flags.insert(flags.end(), {"-f", (ctx / dockerfile_name).string()});
  }
  const json build_args = spec.value("build_args", json::object());
  const json secrets = spec.value("secrets", json::object());
  for (const auto& [k, v] : build_args.items()) {
    flags.insert(flags.end(), {"--build-arg", k + "=" + v.get<std::string>()});
  }
  if (spec.contains("target")) {
    flags.insert(flags.end(), {"--target", spec["target"].get<std::string>()});
  }
  const std::string platform = spec.value("platform", "");
  if (!platform.empty()) {
    flags.insert(flags.end(), {"--platform", platform});
  }
  for (const auto& [id, value] : secrets.items()) {
    fs::path f = work.path / ("secret-" + id);
    write_file(f, value.get<std::string>());
    flags.insert(flags.end(), {"--secret", "id=" + id + ",src=" + f.string()});
  }

  // A two-platform build: its platforms, in the order given.
  std::vector<std::string> platforms;
  for (size_t start = 0; !platform.empty();) {
    size_t comma = platform.find(',', start);
    platforms.push_back(platform.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) {
      break;
    }
    start = comma + 1;
  }
  const bool multi = platforms.size() > 1;
  if (multi) {
    INFO("compat.json: a multi-platform case must be linux/amd64,linux/arm64 (the bases there are), compared "
         "with BuildKit (no expected.json, not in ROOTLESS)");
    REQUIRE(platforms == std::vector<std::string>{"linux/amd64", "linux/arm64"});
    REQUIRE(variant == Variant::oracle);
    REQUIRE_FALSE(hand_written);
  }

  fs::path tarball = work.path / "busybox.tar";
  fs::path store = work.path / "store";
  if (multi) {
    // One index of both bases: each imported for its platform, then joined.
    fs::path arm_tarball = work.path / "busybox-arm64.tar";
    write_file(tarball, busybox_rootfs_tar());
    write_file(arm_tarball, imgbuild::test::arm64_busybox_rootfs_tar(work.path));
    const std::string amd_name = std::string(k_base_name) + "-amd64";
    const std::string arm_name = std::string(k_base_name) + "-arm64";
    for (const auto& cmd : std::vector<std::vector<std::string>>{
             {"import", "--platform", "linux/amd64", tarball.string(), amd_name},
             {"import", "--platform", "linux/arm64", arm_tarball.string(), arm_name},
             {"manifest", "create", k_base_name, amd_name, arm_name}}) {
      RunResult step = run_imgbuild(store, cmd);
      INFO(step.err);
      REQUIRE(step.status == 0);
    }
  } else {
    std::string base_tar;
    std::vector<std::string> import_args = {"import"};
    if (platform == "linux/arm64") {
      base_tar = imgbuild::test::arm64_busybox_rootfs_tar(work.path);
      import_args.insert(import_args.end(), {"--platform", platform});
    } else {
      REQUIRE(platform.empty());  // no base image for other platforms yet
      base_tar = busybox_rootfs_tar();
    }
    write_file(tarball, base_tar);
    import_args.insert(import_args.end(), {tarball.string(), k_base_name});
    RunResult imp = run_imgbuild(store, import_args);
    INFO(imp.err);
    REQUIRE(imp.status == 0);
  }

  // imgbuild's build: a docker-load tar, or for several platforms (which
  // type=docker refuses) an OCI layout tar of the index.
  fs::path ours = work.path / "ours.tar";
  fs::path metadata = work.path / "ours.json";
  fs::path iidfile = work.path / "ours.iid";
  std::vector<std::string> args = {"build", "--progress", "plain", "-o",
                                   (multi ? "type=oci,dest=" : "type=docker,dest=") + ours.string(), "--report",
                                   (work.path / "report.html").string(), "--metadata-file", metadata.string(),
                                   "--iidfile", iidfile.string()};
  args.insert(args.end(), flags.begin(), flags.end());
  args.push_back(ctx.string());
  RunResult r = run_imgbuild(store, args);
  INFO("imgbuild build of " << name << ":\n" << r.err);
  REQUIRE(r.status == 0);
  // The image of each platform ("" for a single-platform build).
  std::vector<std::pair<std::string, Saved>> ours_images;
  if (multi) {
    for (const auto& p : platforms) {
      ours_images.emplace_back(p, read_oci_platform(ours, p, work.path));
    }
  } else {
    ours_images.emplace_back("", read_saved(ours, work.path));
  }
  const json ours_md = json::parse(read_file(metadata));
  if (multi) {
    // The metadata names the index (the image ID), as buildx's does: an
    // index descriptor and no config digest.
    CHECK(ours_md["containerimage.descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json");
    CHECK(ours_md["containerimage.digest"] == read_file(iidfile));
    CHECK(ours_md["containerimage.descriptor"]["digest"] == ours_md["containerimage.digest"]);
    CHECK_FALSE(ours_md.contains("containerimage.config.digest"));
  }
  {
    // The layer report's wasted bytes, layer by layer, against a count
    // made the slow way from the saved layer tars, for the image the
    // report is of (a multi-platform build's: one platform's, by config).
    json report = ours_md["imgbuild.report"];
    const Saved* reported_image = nullptr;
    for (const auto& [p, img] : ours_images) {
      Sha256 h;
      h.update(img.config_bytes);
      if (!multi || h.finish().str() == report["image"].get<std::string>()) {
        reported_image = &img;
      }
    }
    INFO("the report is of " << report["image"].dump() << ", not an image of the build");
    REQUIRE(reported_image != nullptr);
    std::vector<int64_t> expected = brute_force_wasted(reported_image->layers);
    std::vector<int64_t> reported;
    int64_t total = 0;
    for (const auto& l : report["layers"]) {
      reported.push_back(l["wasted"].get<int64_t>());
      total += l["wasted"].get<int64_t>();
    }
    CHECK(reported == expected);
    CHECK(report["wasted"].get<int64_t>() == total);
    CHECK(report["total"].get<int64_t>() - report["visible"].get<int64_t>() == total);
  }
  if (const char* show = std::getenv("IMGBUILD_COMPAT_SHOW"); show != nullptr && *show != '\0') {
    // Prints imgbuild's layers in compare_images's (and expected.json's) line format.
    for (const auto& [p, a] : ours_images) {
      for (size_t i = 0; i < a.layers.size(); ++i) {
        json lines = describe_layer(a.layers[i], {}, false, nullptr);
        WARN(p << " layer " << i << ": "
               << (lines.size() > 50 ? json("(" + std::to_string(lines.size()) + " entries)") : lines).dump(2));
      }
      WARN(p << " history: " << a.config["history"].dump(2) << "\nconfig: " << a.config["config"].dump(2));
    }
  }
  const Saved& a = ours_images.front().second;

  if (variant != Variant::oracle) {
    // The same build by an unprivileged user, in a store of its own: the
    // test user on the host, or "builder" (1000) in a container; or by root
    // in a container with Docker's default profile.
    const bool in_container = variant != Variant::rootless;
    const bool as_root = variant == Variant::container_root;
    if (in_container) {
      IMGBUILD_REQUIRE_PREREQ(docker_available(), "no Docker engine (/usr/bin/docker, dockerd) is available");
    }
    TestUser user = as_root ? TestUser{"root", 0, 0} : in_container ? TestUser{"builder", 1000, 1000} : test_user();
    std::string image = in_container ? container_image() : std::string();
    fs::path home = work.path / "home";
    fs::path user_store = work.path / "user-store";
    fs::path mine = work.path / "out" / "rootless.tar";
    fs::create_directories(home);
    fs::create_directories(user_store);
    fs::create_directories(mine.parent_path());
    fs::permissions(work.path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                   fs::perms::others_read | fs::perms::others_exec);
    for (const fs::path& p : {ctx, home, user_store, mine.parent_path()}) {
      give_to(p, user);
    }
    for (const auto& e : fs::directory_iterator(work.path)) {
      if (e.path().filename().string().rfind("secret-", 0) == 0 || e.path() == tarball) {
        give_to(e.path(), user);
      }
    }
    auto run_user = [&](const std::vector<std::string>& user_args) {
      return in_container ? run_imgbuild_in_container(image, work.path, home, user_store, user_args, as_root)
                          : run_imgbuild_as(user, home, user_store, user_args);
    };
    RunResult uimp = run_user({"import", tarball.string(), k_base_name});
    INFO(uimp.err);
    REQUIRE(uimp.status == 0);
    std::vector<std::string> uargs = {"build", "--progress", "plain", "-o", "type=docker,dest=" + mine.string()};
    uargs.insert(uargs.end(), flags.begin(), flags.end());
    uargs.push_back(ctx.string());
    RunResult ur = run_user(uargs);
    INFO("rootless imgbuild build of " << name << (in_container ? " in a container" : "") << ":\n" << ur.err);
    REQUIRE(ur.status == 0);
    Saved b = read_saved(mine, work.path);
    std::string diff = compare_images(b, a, mount_ignores(read_file(ctx / dockerfile_name)));
    INFO(name << ": - imgbuild rootless, + imgbuild as root\n" << diff);
    CHECK(diff.empty());
    return;
  }
  if (hand_written) {
    json expected = json::parse(read_file(src / "expected.json"));
    bool from_scratch = expected.value("from_scratch", false);
    std::string diff = compare_expected(a, expected, from_scratch ? 0 : 1, from_scratch ? 0 : 1);
    INFO(name << ": - imgbuild, + expected.json\n" << diff);
    CHECK(diff.empty());
    return;
  }
  fs::path base = work.path / "base.tar";
  RunResult saved = run_imgbuild(store, {"save", "-o", base.string(), k_base_name});
  INFO(saved.err);
  REQUIRE(saved.status == 0);
  if (multi) {
    // The index whole, as an OCI layout directory (see the file comment).
    fs::path layout = work.path / "base-layout";
    fs::create_directories(layout);
    RunResult x = run_sh("tar -xf " + sh_quote(base.string()) + " -C " + sh_quote(layout.string()));
    INFO(x.err);
    REQUIRE(x.status == 0);
    base = layout;
  }
  const std::string dockerfile = read_file(ctx / dockerfile_name);
  static const std::regex k_stage_named_base(std::string(R"((^|\n)\s*FROM\s[^\n]*\s[Aa][Ss]\s+)") + k_base_name +
                                             R"(\s*(\n|$))");
  fs::path theirs = work.path / "theirs.tar";
  fs::path theirs_md = work.path / "theirs.json";
  oracle_build(name, ctx, flags, base, std::regex_search(dockerfile, k_stage_named_base), theirs, multi,
               multi ? theirs_md : fs::path());
  if (multi) {
    // Both metadata files describe an index, neither names a config.
    json md = json::parse(read_file(theirs_md));
    CHECK(md["containerimage.descriptor"]["mediaType"] == ours_md["containerimage.descriptor"]["mediaType"]);
    CHECK(md.contains("containerimage.config.digest") == ours_md.contains("containerimage.config.digest"));
  }
  // Times since 2025 (up to a day ahead) are the builds' own clock, not
  // compared: BuildKit reuses the result of a WORKDIR's or a heredoc's file
  // operation from any earlier build on the machine, --no-cache or not.
  // Cases that check times use earlier or later ones (archives, the base).
  Ignores ignores = mount_ignores(dockerfile);
  ignores.build_from = k_build_clock_from;
  ignores.build_to = static_cast<int64_t>(std::time(nullptr)) + 86400;
  std::string diff;
  for (const auto& [p, img] : ours_images) {
    std::string d = multi ? compare_images(img, read_oci_platform(theirs, p, work.path), ignores)
                          : compare_images(img, read_saved(theirs, work.path), ignores);
    if (multi && !d.empty()) {
      d = "platform " + p + ":\n" + d;
    }
    diff += d;
  }
  INFO(name << ": - imgbuild, + BuildKit v0.22\n" << diff);
  if (spec.contains("difference")) {
    // A deliberate difference: recorded with its reason, and exactly the
    // lines it accounts for.
    const json& d = spec["difference"];
    const std::string what = d.at("name").get<std::string>();
    INFO("compat.json names the deliberate difference \"" << what << "\"");
    CHECK(recorded_differences().count(what) == 1);
    std::string want;
    for (const auto& line : d.at("diff")) {
      want += line.get<std::string>() + "\n";
    }
    CHECK(diff == want);
    return;
  }
  CHECK(diff.empty());
}

// One Catch2 test per case directory, registered before main runs.
class CaseInvoker : public Catch::ITestInvoker {
public:
  CaseInvoker(std::string name, Variant variant) : m_name(std::move(name)), m_variant(variant) {}
  void invoke() const override { run_case(m_name, m_variant); }

private:
  std::string m_name;
  Variant m_variant;
};

// The cases of testdata/compat/ROOTLESS: a name a line, then "-VARIANT"
// words for the variants it leaves out; # starts a comment.
struct RootlessCase {
  std::string name;
  std::vector<std::string> without;
};

std::vector<RootlessCase> rootless_cases() {
  std::vector<RootlessCase> out;
  std::istringstream in(read_file(compat_dir() / "ROOTLESS"));
  std::string line;
  while (std::getline(in, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    RootlessCase c;
    if (!(words >> c.name)) {
      continue;
    }
    for (std::string w; words >> w;) {
      c.without.push_back(w.substr(1));
    }
    out.push_back(std::move(c));
  }
  return out;
}

struct Registrar {
  Registrar() {
    static std::vector<std::string> names;
    static std::vector<RootlessCase> rootless;
    static std::vector<std::string> test_names;
    names = case_names();
    rootless = rootless_cases();
    test_names.reserve(names.size() + 3 * rootless.size());
    for (const auto& n : names) {
      test_names.push_back("compat: " + n);
      // AutoReg keeps the invoker for the program's lifetime.
      Catch::AutoReg reg(new CaseInvoker(n, Variant::oracle), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                         Catch::NameAndTags{Catch::StringRef(test_names.back()), "[integration][compat][buildkit]"});
    }
    const std::pair<const char*, Variant> variants[] = {{"compat-rootless", Variant::rootless},
                                                         {"compat-container-user", Variant::container_user},
                                                         {"compat-container-root", Variant::container_root}};
    for (const auto& c : rootless) {
      for (const auto& [prefix, variant] : variants) {
        if (std::find(c.without.begin(), c.without.end(), prefix) != c.without.end()) {
          continue;
        }
        test_names.push_back(std::string(prefix) + ": " + c.name);
        Catch::AutoReg reg(new CaseInvoker(c.name, variant), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                           Catch::NameAndTags{Catch::StringRef(test_names.back()), "[integration][compat][rootless]"});
      }
    }
  }
};

const Registrar k_registrar;

}  // namespace
}  // namespace imgbuild::test
