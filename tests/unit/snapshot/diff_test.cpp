#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <set>

#include "snapshot/apply.hpp"
#include "snapshot/diff.hpp"
#include "support/layer_spec.hpp"
#include "support/require.hpp"
#include "support/scratch_dir.hpp"
#include "util/fs.hpp"

using namespace imgbuild;
using namespace imgbuild::test;
namespace stdfs = std::filesystem;

namespace {

const std::string k_cap("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
constexpr int64_t k_epoch = 1700000000;  // later than the base layer, earlier than now

// The parent image every test starts from.
std::string base_layer() {
  return make_layer({
      dir("bin"), file("bin/tool", "tool", 0755), file("bin/keep", "keep", 0755), dir("etc"),
      file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), file("etc/group", "root:x:0:\n"), dir("opq"),
      file("opq/a", "a"), dir("opq/sub"), file("opq/sub/b", "b"), dir("gone"), file("gone/x", "x"),
      dir("usr"), file("usr/x", "linked"), hardlink_to("usr/y", "usr/x"), dir("keepdir"), file("keepdir/k", "k"),
      dir("busy"), file("busy/one", "1"), file("busy/two", "2"),
  });
}

// Applies changes the way a RUN step would, through ordinary file calls.
void make_changes(const stdfs::path& m) {
  write_text(m / "bin/new", "new file");                                  // add
  write_text(m / "etc/group", "root:x:0:\nwheel:x:10:\n");              // modify
  stdfs::remove(m / "etc/passwd");                                       // delete
  stdfs::remove_all(m / "opq");                                          // replace dir
  stdfs::create_directories(m / "opq");
  write_text(m / "opq/fresh", "fresh");
  stdfs::remove_all(m / "gone");                                         // delete dir
  REQUIRE(::chmod((m / "bin/tool").c_str(), 04711) == 0);              // chmod
  stdfs::create_directories(m / "newdir/deeper");                        // new tree
  write_text(m / "newdir/deeper/c", "c");
  stdfs::create_hard_link(m / "newdir/deeper/c", m / "newdir/d");      // hardlink pair
  stdfs::create_symlink("/bin/tool", m / "newdir/link");
  REQUIRE(::setxattr((m / "bin/keep").c_str(), "user.note", "hi", 2, 0) == 0);  // xattr: not a change
  write_text(m / "newdir/capped", "cap");
  REQUIRE(::setxattr((m / "newdir/capped").c_str(), "security.capability", k_cap.data(), k_cap.size(), 0) == 0);
  stdfs::remove(m / "busy/two");                                         // partial delete: explicit whiteout
}

struct Listed {
  std::string path;
  tar::EntryType type;
  std::string link;
};

std::vector<Listed> list_layer(const std::string& bytes) {
  std::vector<Listed> out;
  auto r = tar::Reader::open(string_reader(bytes), "diff");
  REQUIRE(r);
  while (true) {
    auto e = (*r)->next();
    REQUIRE(e);
    if (!*e) {
      break;
    }
    std::string p = (*e)->path;
    if (!p.empty() && p.back() == '/') {
      p.pop_back();
    }
    out.push_back({p, (*e)->type, (*e)->link_target});
  }
  return out;
}

tar::WriteFn to_string(std::string& out) {
  return [&out](const void* d, size_t n) -> Result<void> {
    out.append(static_cast<const char*>(d), n);
    return ok();
  };
}

struct OverlayMount {
  std::string target;
  bool mounted = false;
  ~OverlayMount() {
    if (mounted) {
      ::umount2(target.c_str(), MNT_DETACH);
    }
  }
};

bool overlay_available() {
  return ::geteuid() == 0 && read_text("/proc/filesystems").find("overlay") != std::string::npos;
}

}  // namespace

TEST_CASE("overlay upper dir and tree diff give the same layer", "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(overlay_available(), "needs root and overlayfs");
  ScratchDir t;
  for (auto d : {"lower", "upper", "work", "merged", "old", "new"}) {
    stdfs::create_directories(t / d);
  }
  std::string base = base_layer();
  auto lower = fs::Root::open(t / "lower");
  auto old_root = fs::Root::open(t / "old");
  REQUIRE(lower);
  REQUIRE(old_root);
  {
    auto r1 = tar::Reader::open(string_reader(base), "base");
    REQUIRE(r1);
    REQUIRE(snapshot::apply_layer(*lower, **r1, {.mode = snapshot::ApplyMode::overlay_lower}));
    auto r2 = tar::Reader::open(string_reader(base), "base");
    REQUIRE(r2);
    REQUIRE(snapshot::apply_layer(*old_root, **r2, {.mode = snapshot::ApplyMode::merged}));
  }
  // A whiteout with nothing beneath it is dropped.
  REQUIRE(::mknod((t / "upper/ghost").c_str(), S_IFCHR | 0, makedev(0, 0)) == 0);

  OverlayMount mnt{(t / "merged").string()};
  std::string opts = "lowerdir=" + (t / "lower").string() + ",upperdir=" + (t / "upper").string() +
                     ",workdir=" + (t / "work").string() + ",index=off,redirect_dir=off,metacopy=off";
  REQUIRE(::mount("overlay", mnt.target.c_str(), "overlay", 0, opts.c_str()) == 0);
  mnt.mounted = true;
  make_changes(t / "merged");
  REQUIRE(::umount2(mnt.target.c_str(), 0) == 0);
  mnt.mounted = false;

  // The copy snapshotter's way: a copy of the parent, the same changes.
  auto new_root = fs::Root::open(t / "new");
  REQUIRE(new_root);
  REQUIRE(fs::copy_tree(*old_root, *new_root));
  make_changes(t / "new");

  snapshot::DiffOptions opts_plain{.compression = tar::Compression::none, .source_date_epoch = k_epoch};
  std::string from_overlay;
  auto d1 = snapshot::diff_overlay((t / "upper").string(), {(t / "lower").string()}, to_string(from_overlay),
                                   opts_plain);
  INFO((d1 ? "" : d1.error().to_string()));
  REQUIRE(d1);
  std::string from_trees;
  auto d2 = snapshot::diff_trees((t / "old").string(), (t / "new").string(), to_string(from_trees), opts_plain);
  INFO((d2 ? "" : d2.error().to_string()));
  REQUIRE(d2);

  auto entries = list_layer(from_overlay);
  std::vector<std::string> paths;
  for (auto& e : entries) {
    paths.push_back(e.path + ":" + std::string(tar::entry_type_name(e.type)) + (e.link.empty() ? "" : ">" + e.link));
  }
  std::vector<std::string> expect = {
      ".wh.gone:file",
      "bin:directory",
      "bin/new:file",
      "bin/tool:file",
      "busy:directory",
      "busy/.wh.two:file",
      "etc:directory",
      "etc/.wh.passwd:file",
      "etc/group:file",
      "newdir:directory",
      "newdir/capped:file",
      "newdir/d:file",
      "newdir/deeper:directory",
      "newdir/deeper/c:hardlink>newdir/d",
      "newdir/link:symlink>/bin/tool",
      "opq:directory",
      "opq/.wh.a:file",
      "opq/.wh.sub:file",
      "opq/fresh:file",
  };
  CHECK(paths == expect);
  CHECK(d1->entries == expect.size());
  // Same changes, same bytes.
  CHECK(from_overlay == from_trees);
  CHECK(d1->layer.diff_id == d2->layer.diff_id);
  CHECK(d1->layer.diff_id == sha256(from_overlay));

  // Metadata survives: mode, capability xattr, clamped mtimes.
  auto rd = tar::Reader::open(string_reader(from_overlay), "diff");
  REQUIRE(rd);
  while (true) {
    auto e = (*rd)->next();
    REQUIRE(e);
    if (!*e) {
      break;
    }
    const tar::Entry& en = **e;
    CHECK(en.mtime_sec <= k_epoch);
    if (en.path == "bin/tool") {
      CHECK(en.mode == 04711);
      CHECK(en.mtime_sec == 1600000000);
    }
    if (en.path == "newdir/capped") {
      REQUIRE(en.xattrs.size() == 1);
      CHECK(en.xattrs[0].first == "security.capability");
      CHECK(en.xattrs[0].second == k_cap);
    }
    for (auto& [k, v] : en.xattrs) {
      CHECK(k.rfind("trusted.overlay.", 0) != 0);
    }
  }

  // Round trip: the layer applied over the parent gives the new tree.
  ScratchDir again;
  auto again_root = fs::Root::open(again.path());
  REQUIRE(again_root);
  REQUIRE(fs::copy_tree(*old_root, *again_root));
  auto rr = tar::Reader::open(string_reader(from_overlay), "diff");
  REQUIRE(rr);
  REQUIRE(snapshot::apply_layer(*again_root, **rr));
  CHECK_FALSE(stdfs::exists(again / "etc/passwd"));
  CHECK_FALSE(stdfs::exists(again / "opq/a"));
  CHECK_FALSE(stdfs::exists(again / "gone"));
  CHECK(stdfs::exists(again / "busy/one"));
  CHECK(read_text(again / "opq/fresh") == "fresh");
  CHECK(read_text(again / "etc/group") == "root:x:0:\nwheel:x:10:\n");
  // Diffing the re-applied tree against the parent finds the same entries;
  // the replaced directory shows as explicit whiteouts there too.
  std::string third;
  auto d3 = snapshot::diff_trees((t / "old").string(), again.path().string(), to_string(third), opts_plain);
  REQUIRE(d3);
  auto non_whiteouts = [](const std::vector<Listed>& v) {
    std::vector<std::string> out;
    for (auto& e : v) {
      if (e.path.find(".wh.") == std::string::npos) {
        out.push_back(e.path);
      }
    }
    return out;
  };
  CHECK(non_whiteouts(list_layer(third)) == non_whiteouts(entries));
  bool explicit_opq_whiteout = false;
  for (auto& e : list_layer(third)) {
    explicit_opq_whiteout = explicit_opq_whiteout || e.path == "opq/.wh.a";
  }
  CHECK(explicit_opq_whiteout);
}

TEST_CASE("diff output is deterministic and gzip digests differ from diff_id", "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root to apply owners");
  ScratchDir t;
  stdfs::create_directories(t / "new");
  auto root = fs::Root::open(t / "new");
  REQUIRE(root);
  auto r = tar::Reader::open(string_reader(base_layer()), "base");
  REQUIRE(r);
  REQUIRE(snapshot::apply_layer(*root, **r));
  std::string one;
  std::string two;
  std::string plain;
  auto a = snapshot::diff_trees("", (t / "new").string(), to_string(one));
  auto b = snapshot::diff_trees("", (t / "new").string(), to_string(two));
  auto c = snapshot::diff_trees("", (t / "new").string(), to_string(plain), {.compression = tar::Compression::none});
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(c);
  CHECK(one == two);
  CHECK(a->layer.digest == sha256(one));
  CHECK(a->layer.diff_id == sha256(plain));
  CHECK(a->layer.diff_id != a->layer.digest);
  // Empty parent: the whole tree, hardlinks as typeflag 1.
  auto listed = list_layer(plain);
  bool saw_link = false;
  for (auto& e : listed) {
    if (e.path == "usr/y") {
      CHECK(e.type == tar::EntryType::hardlink);
      CHECK(e.link == "usr/x");
      saw_link = true;
    }
  }
  CHECK(saw_link);
  // The base layer applied and diffed gives the same entries as the original.
  CHECK(listed.size() == list_layer(base_layer()).size());
}

TEST_CASE("diff refuses overlay redirects", "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root for trusted xattrs");
  ScratchDir t;
  stdfs::create_directories(t / "upper/moved");
  stdfs::create_directories(t / "lower");
  REQUIRE(::setxattr((t / "upper/moved").c_str(), "trusted.overlay.redirect", "/orig", 5, 0) == 0);
  std::string out;
  auto d = snapshot::diff_overlay((t / "upper").string(), {(t / "lower").string()}, to_string(out));
  REQUIRE_FALSE(d);
  CHECK(d.error().to_string().find("trusted.overlay.redirect") != std::string::npos);
  CHECK(d.error().to_string().find("upper/moved") != std::string::npos);
}

TEST_CASE("unchanged trees give an empty layer", "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root to apply owners");
  ScratchDir t;
  stdfs::create_directories(t / "a");
  stdfs::create_directories(t / "b");
  auto a = fs::Root::open(t / "a");
  auto b = fs::Root::open(t / "b");
  REQUIRE(a);
  REQUIRE(b);
  auto r = tar::Reader::open(string_reader(base_layer()), "base");
  REQUIRE(r);
  REQUIRE(snapshot::apply_layer(*a, **r));
  REQUIRE(fs::copy_tree(*a, *b));
  std::string out;
  auto d = snapshot::diff_trees((t / "a").string(), (t / "b").string(), to_string(out),
                                {.compression = tar::Compression::none});
  REQUIRE(d);
  CHECK(d->entries == 0);
  CHECK(out == std::string(1024, '\0'));
}

// A filesystem stress test (k_max_depth + 5 nested directories: seconds of
// I/O on a busy disk), registered as integration so that the unit run stays
// quick.
TEST_CASE("diff refuses trees nested deeper than the limit", "[snapshot][integration]") {
  ScratchDir t;
  stdfs::create_directories(t / "new");
  {
    UniqueFd cur(::open((t / "new").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    for (size_t i = 0; i < fs::k_max_depth + 5; ++i) {
      REQUIRE(::mkdirat(cur.get(), "d", 0755) == 0);
      cur.reset(::openat(cur.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      REQUIRE(cur);
    }
  }
  std::string out;
  auto d = snapshot::diff_trees("", (t / "new").string(), to_string(out));
  REQUIRE_FALSE(d);
  CHECK(d.error().code == Errc::limit);
  auto root = fs::Root::open(t.path());
  REQUIRE(root);
  REQUIRE(root->remove_all("new"));
}

TEST_CASE("overlay diff leaves out copied-up entries that equal the lower ones",
          "[snapshot][integration]") {
  IMGBUILD_REQUIRE_PREREQ(overlay_available(), "needs root and overlayfs");
  ScratchDir t;
  for (auto d : {"lower", "upper", "work", "merged", "old", "new"}) {
    stdfs::create_directories(t / d);
  }
  auto lower = fs::Root::open(t / "lower");
  REQUIRE(lower);
  auto r1 = tar::Reader::open(string_reader(base_layer()), "base");
  REQUIRE(r1);
  REQUIRE(snapshot::apply_layer(*lower, **r1, {.mode = snapshot::ApplyMode::overlay_lower}));

  OverlayMount mnt{(t / "merged").string()};
  std::string opts = "lowerdir=" + (t / "lower").string() + ",upperdir=" + (t / "upper").string() +
                     ",workdir=" + (t / "work").string() + ",index=off,redirect_dir=off,metacopy=off";
  REQUIRE(::mount("overlay", mnt.target.c_str(), "overlay", 0, opts.c_str()) == 0);
  mnt.mounted = true;
  // Each leaves the tree as it was but makes overlayfs copy the entry up.
  struct stat st {};
  REQUIRE(::stat((t / "merged/bin/keep").c_str(), &st) == 0);
  REQUIRE(::chmod((t / "merged/bin/keep").c_str(), st.st_mode & 07777) == 0);  // chmod to the same mode
  UniqueFd opened(::open((t / "merged/busy/one").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));  // `: >> one`
  REQUIRE(opened);
  opened.reset();
  REQUIRE(::stat((t / "merged/keepdir").c_str(), &st) == 0);
  REQUIRE(::chmod((t / "merged/keepdir").c_str(), st.st_mode & 07777) == 0);
  REQUIRE(::umount2(mnt.target.c_str(), 0) == 0);
  mnt.mounted = false;

  std::string out;
  auto d = snapshot::diff_overlay((t / "upper").string(), {(t / "lower").string()}, to_string(out),
                                  {.compression = tar::Compression::none});
  INFO((d ? "" : d.error().to_string()));
  REQUIRE(d);
  std::vector<std::string> paths;
  for (auto& e : list_layer(out)) {
    paths.push_back(e.path);
  }
  // As BuildKit v0.22's differ: copied up but the same is not a change.
  CHECK(paths.empty());

  // The same trees compared as trees: nothing differs.
  auto r2 = tar::Reader::open(string_reader(base_layer()), "base");
  REQUIRE(r2);
  auto old_root = fs::Root::open(t / "old");
  auto new_root = fs::Root::open(t / "new");
  REQUIRE(old_root);
  REQUIRE(new_root);
  REQUIRE(snapshot::apply_layer(*old_root, **r2));
  REQUIRE(fs::copy_tree(*old_root, *new_root));
  std::string trees;
  auto dt = snapshot::diff_trees((t / "old").string(), (t / "new").string(), to_string(trees),
                                 {.compression = tar::Compression::none});
  REQUIRE(dt);
  CHECK(dt->entries == 0);
}
