#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>

#include "snapshot/apply.hpp"
#include "support/layer_spec.hpp"
#include "support/require.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild;
using namespace imgbuild::test;
namespace stdfs = std::filesystem;

namespace {

// base/dest is the target; base/outside and base/dest-evil must never change.
struct Sandbox {
  ScratchDir base;
  stdfs::path dest = base / "dest";
  std::map<std::string, std::string> before;

  Sandbox() {
    stdfs::create_directories(dest);
    stdfs::create_directories(base / "outside" / "dir");
    stdfs::create_directories(base / "dest-evil");
    write_text(base / "outside" / "victim", "original");
    write_text(base / "outside" / "dir" / "keep", "keep");
    write_text(base / "dest-evil" / "x", "sibling");
    before = outside_listing();
  }
  std::map<std::string, std::string> outside_listing() const {
    auto all = snapshot_listing(base.path());
    std::map<std::string, std::string> out;
    for (auto& [k, v] : all) {
      if (k.rfind("dest/", 0) != 0 && k != "dest") {
        out[k] = v;
      }
    }
    return out;
  }
  bool outside_unchanged() const {
    auto now = outside_listing();
    for (auto& [k, v] : now) {
      if (before.count(k) == 0 || before.at(k) != v) {
        UNSCOPED_INFO("changed outside: " << k << " = " << v);
      }
    }
    for (auto& [k, v] : before) {
      if (now.count(k) == 0) {
        UNSCOPED_INFO("removed outside: " << k);
      }
    }
    return now == before;
  }

  Result<snapshot::ApplyResult> apply(const std::string& tar_bytes,
                                      snapshot::ApplyMode mode = snapshot::ApplyMode::merged) {
    TRY(auto root, fs::Root::open(dest));
    TRY(auto reader, tar::Reader::open(string_reader(tar_bytes), "layer.tar"));
    return snapshot::apply_layer(root, *reader, {.mode = mode});
  }
};

struct EvilCase {
  const char* name;
  std::vector<LayerEntry> entries;
  bool must_reject;  // false: rejecting or containing are both fine
};

std::vector<EvilCase> evil_cases() {
  return {
      {"parent escape ../x", {file("../outside/victim", "evil")}, true},
      {"rooted parent escape /../x", {file("/../outside/victim", "evil")}, true},
      {"bare ..", {dir("..")}, true},
      {"bare .. as a file", {file("..", "evil")}, true},
      {"nested escape a/../../x", {file("a/../../outside/victim", "evil")}, true},
      {"sibling prefix ../dest-evil/x", {file("../dest-evil/x", "evil")}, true},
      {"symlink then write through it", {symlink_to("l", "../outside"), file("l/victim", "evil")}, false},
      {"absolute symlink then write", {symlink_to("l", "/"), file("l/victim", "contained")}, false},
      {"host-absolute symlink then write",
       {symlink_to("l", "/tmp"), file("l/imgbuild-apply-escape-probe", "contained")},
       false},
      {"two-hop symlink",
       {dir("a"), symlink_to("a/up", ".."), symlink_to("a/up/esc", "../outside"), file("a/up/esc/victim", "evil")},
       false},
      {"two-hop symlink via dirs",
       {dir("a"), dir("a/b"), symlink_to("a/b/up", "../.."), symlink_to("a/b/up/esc", "../../outside"),
        file("a/b/up/esc/dir/keep", "evil")},
       false},
      {"hardlink to ../x", {hardlink_to("h", "../outside/victim")}, true},
      {"hardlink to /../x", {hardlink_to("h", "/../outside/victim")}, true},
      {"hardlink to a directory", {dir("d"), hardlink_to("h", "d")}, true},
      {"hardlink to the root", {hardlink_to("h", "/")}, true},
      {"hardlink through an escaping symlink", {symlink_to("l", "../outside"), hardlink_to("h", "l/victim")}, true},
      {"dir replaced by symlink later",
       {dir("d"), file("d/f", "x"), symlink_to("d", "../outside"), file("d/victim", "evil")},
       false},
      {"dir replaced by host-absolute symlink",
       {dir("d"), symlink_to("d", stdfs::temp_directory_path().string()), file("d/imgbuild-escape-probe", "x")},
       false},
      {"symlink replaced by a file is not followed", {symlink_to("s", "../outside/victim"), file("s", "evil")}, false},
      {"whiteout .wh.", {file(".wh.", "")}, true},
      {"whiteout .wh..", {file("d/.wh..", "")}, true},
      {"whiteout .wh...", {file(".wh...", "")}, true},
      {"whiteout under a symlinked parent", {symlink_to("l", "../outside"), whiteout("l/victim")}, true},
      {"whiteout under an in-root symlinked parent", {dir("real"), symlink_to("l", "/real"), whiteout("l/x")}, true},
      {"opaque under a symlinked parent", {symlink_to("l", "../outside/dir"), file("l/.wh..wh..opq")}, true},
      {"whiteout of .. via name", {dir("d"), file("d/.wh...", "")}, true},
  };
}

}  // namespace

TEST_CASE("apply rejects or contains every malicious archive", "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root to apply owners");
  auto tmp_before = snapshot_listing(stdfs::temp_directory_path() / "imgbuild-apply-escape-probe");
  for (auto mode : {snapshot::ApplyMode::merged, snapshot::ApplyMode::overlay_lower}) {
    for (const auto& c : evil_cases()) {
      INFO("case: " << c.name << (mode == snapshot::ApplyMode::merged ? " (merged)" : " (overlay)"));
      Sandbox sb;
      auto r = sb.apply(make_layer(c.entries), mode);
      if (c.must_reject) {
        CHECK_FALSE(r);
      }
      if (!r) {
        // The error names the archive and the entry.
        INFO("error: " << r.error().to_string());
        CHECK(r.error().to_string().find("layer.tar: entry \"") != std::string::npos);
      }
      CHECK(sb.outside_unchanged());
      CHECK_FALSE(stdfs::exists(stdfs::temp_directory_path() / "imgbuild-apply-escape-probe"));
      CHECK_FALSE(stdfs::exists(stdfs::temp_directory_path() / "imgbuild-escape-probe"));
    }
  }
}

TEST_CASE("apply error messages say what is wrong", "[snapshot][integration]") {
  Sandbox sb;
  auto r = sb.apply(make_layer({file("../outside/victim", "evil")}));
  REQUIRE_FALSE(r);
  CHECK(r.error().to_string() ==
        "layer.tar: entry \"../outside/victim\": path \"../outside/victim\" contains \"..\" (would leave the root)");
  r = sb.apply(make_layer({dir("d"), hardlink_to("h", "d")}));
  REQUIRE_FALSE(r);
  CHECK(r.error().to_string() == "layer.tar: entry \"h\": hardlink target \"d\" is a directory");
  r = sb.apply(make_layer({file(".wh.")}));
  REQUIRE_FALSE(r);
  CHECK(r.error().to_string() == "layer.tar: entry \".wh.\": invalid whiteout \".wh.\"");
}

TEST_CASE("apply accepts absolute hardlinks and in-image absolute symlinks", "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root to apply owners");
  Sandbox sb;
  auto r = sb.apply(make_layer({
      dir("usr"), dir("usr/bin"), file("usr/bin/x", "binary", 0755), hardlink_to("usr/bin/y", "/usr/bin/x"),
      hardlink_to("./usr/bin/z", "./usr/bin/x"), dir("run"), dir("var"), symlink_to("var/run", "/run"),
      file("var/run/pid", "1"), dir("var/run/lock"), file("/var/run/lock/f", "2"),
      symlink_to("usr/bin/sh", "busybox"), hardlink_to("usr/bin/sh2", "usr/bin/sh"),
  }));
  INFO((r ? "" : r.error().to_string()));
  REQUIRE(r);
  struct stat a {};
  struct stat b {};
  REQUIRE(::lstat((sb.dest / "usr/bin/x").c_str(), &a) == 0);
  REQUIRE(::lstat((sb.dest / "usr/bin/y").c_str(), &b) == 0);
  CHECK(a.st_ino == b.st_ino);
  CHECK(a.st_nlink == 3);
  CHECK(read_text(sb.dest / "run/pid") == "1");
  CHECK(read_text(sb.dest / "run/lock/f") == "2");
  CHECK(stdfs::is_symlink(sb.dest / "var/run"));
  CHECK(stdfs::is_symlink(sb.dest / "usr/bin/sh2"));
  CHECK(stdfs::read_symlink(sb.dest / "usr/bin/sh2") == "busybox");
  CHECK(sb.outside_unchanged());
}

TEST_CASE("apply keeps metadata and returns the diff_id", "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root to apply owners and devices");
  Sandbox sb;
  std::string cap("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  auto layer = make_layer({
      dir("bin", 0711).mtime(1500000000, 42),
      file("bin/ping", "p", 04755).owner(0, 0).xattr("security.capability", cap).mtime(1400000000, 7),
      file("bin/own", "o", 0640).owner(1000, 2000).xattr("user.note", "n"),
      chardev("dev/null", 1, 3),
      symlink_to("bin/link", "ping").owner(5, 6),
      make_entry("fifo", tar::EntryType::fifo, 0600),
      file("drop", "x").xattr("trusted.overlay.redirect", "/etc"),
  });
  for (auto c : {tar::Compression::none, tar::Compression::gzip}) {
    Sandbox fresh;
    std::string bytes = c == tar::Compression::none ? layer : [&] {
      std::string gz;
      auto w = tar::Writer::open(
          [&gz](const void* d, size_t n) -> Result<void> {
            gz.append(static_cast<const char*>(d), n);
            return ok();
          },
          {.compression = tar::Compression::gzip});
      REQUIRE(w);
      // Re-create the same entries gzip'ed via the reader of the plain layer.
      auto rd = tar::Reader::open(string_reader(layer), "plain");
      REQUIRE(rd);
      while (true) {
        auto e = (*rd)->next();
        REQUIRE(e);
        if (!*e) {
          break;
        }
        REQUIRE((*w)->add(**e));
        char buf[4096];
        while (true) {
          auto n = (*rd)->read_data(buf, sizeof buf);
          REQUIRE(n);
          if (*n == 0) {
            break;
          }
          REQUIRE((*w)->write_data(buf, *n));
        }
      }
      REQUIRE((*w)->finish());
      return gz;
    }();
    auto r = fresh.apply(bytes);
    INFO((r ? "" : r.error().to_string()));
    REQUIRE(r);
    CHECK(r->diff_id == sha256(layer));
    CHECK(r->compression == c);
    CHECK(r->entries == 7);
    struct stat st {};
    REQUIRE(::lstat((fresh.dest / "bin").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0711);
    CHECK(st.st_mtim.tv_sec == 1500000000);
    CHECK(st.st_mtim.tv_nsec == 42);
    REQUIRE(::lstat((fresh.dest / "bin/ping").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 04755);
    CHECK(st.st_mtim.tv_sec == 1400000000);
    char buf[64];
    ssize_t n = ::lgetxattr((fresh.dest / "bin/ping").c_str(), "security.capability", buf, sizeof buf);
    CHECK(n == 20);
    REQUIRE(::lstat((fresh.dest / "bin/own").c_str(), &st) == 0);
    CHECK(st.st_uid == 1000);
    CHECK(st.st_gid == 2000);
    REQUIRE(::lstat((fresh.dest / "bin/link").c_str(), &st) == 0);
    CHECK(S_ISLNK(st.st_mode));
    CHECK(st.st_uid == 5);
    REQUIRE(::lstat((fresh.dest / "dev/null").c_str(), &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_rdev == makedev(1, 3));
    REQUIRE(::lstat((fresh.dest / "fifo").c_str(), &st) == 0);
    CHECK(S_ISFIFO(st.st_mode));
    CHECK(::lgetxattr((fresh.dest / "drop").c_str(), "trusted.overlay.redirect", buf, sizeof buf) < 0);
  }
}

TEST_CASE("apply merged mode deletes whited-out and opaque entries", "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root to apply owners");
  Sandbox sb;
  REQUIRE(sb.apply(make_layer({dir("etc"), file("etc/passwd", "p"), file("etc/group", "g"), dir("opq"),
                               file("opq/a", "a"), dir("opq/sub"), file("opq/sub/b", "b"), dir("gone"),
                               file("gone/x", "x")})));
  auto r = sb.apply(make_layer({whiteout("etc/passwd"), dir("opq"), file("opq/new", "n"), file("opq/.wh..wh..opq"),
                                whiteout("gone"), whiteout("never/existed")}));
  INFO((r ? "" : r.error().to_string()));
  REQUIRE(r);
  CHECK_FALSE(stdfs::exists(sb.dest / "etc/passwd"));
  CHECK(stdfs::exists(sb.dest / "etc/group"));
  CHECK_FALSE(stdfs::exists(sb.dest / "opq/a"));
  CHECK_FALSE(stdfs::exists(sb.dest / "opq/sub"));
  CHECK(read_text(sb.dest / "opq/new") == "n");  // same-layer entry survives its opaque marker
  CHECK_FALSE(stdfs::exists(sb.dest / "gone"));
  CHECK_FALSE(stdfs::exists(sb.dest / "never"));
  // Replacing: a file over a directory and a directory over a file.
  REQUIRE(sb.apply(make_layer({file("etc", "now a file"), dir("opq/new")})));
  CHECK(read_text(sb.dest / "etc") == "now a file");
  CHECK(stdfs::is_directory(sb.dest / "opq/new"));
  CHECK(sb.outside_unchanged());
}

TEST_CASE("apply overlay-lower mode writes whiteout devices and opaque xattrs", "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root for mknod and trusted xattrs");
  Sandbox sb;
  auto r = sb.apply(make_layer({dir("etc"), whiteout("etc/passwd"), dir("opq"), file("opq/.wh..wh..opq"),
                                file("opq/keep", "k"), whiteout("deep/er/x"), file("same", "s"), whiteout("same")}),
                    snapshot::ApplyMode::overlay_lower);
  INFO((r ? "" : r.error().to_string()));
  REQUIRE(r);
  struct stat st {};
  REQUIRE(::lstat((sb.dest / "etc/passwd").c_str(), &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(0, 0));
  REQUIRE(::lstat((sb.dest / "deep/er/x").c_str(), &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  char v[8] = {};
  CHECK(::lgetxattr((sb.dest / "opq").c_str(), "trusted.overlay.opaque", v, sizeof v) == 1);
  CHECK(v[0] == 'y');
  CHECK(read_text(sb.dest / "opq/keep") == "k");
  CHECK(read_text(sb.dest / "same") == "s");
  CHECK_FALSE(stdfs::exists(sb.dest / ".wh.same"));
}

TEST_CASE("apply reports truncated archives", "[snapshot]") {
  Sandbox sb;
  std::string layer = make_layer({file("a", std::string(10000, 'a')), file("b", "b")});
  auto r = sb.apply(layer.substr(0, 3000));
  REQUIRE_FALSE(r);
  CHECK(r.error().to_string().find("layer.tar") != std::string::npos);
}
