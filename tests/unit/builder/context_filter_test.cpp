// The ignore filter as a whiteout layer: it hides exactly what the source
// walk skips (the same .dockerignore semantics, `!` exceptions included),
// and its directories carry the context's metadata.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <set>

#include "builder/context.hpp"
#include "builder/context_filter.hpp"
#include "support/require.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;
using imgbuild::test::ScratchDir;
using imgbuild::test::write_text;
namespace sfs = std::filesystem;

namespace {

// Every path below `dir` (relative, slash-separated).
std::set<std::string> all_paths(const sfs::path& dir) {
  std::set<std::string> out;
  for (auto it = sfs::recursive_directory_iterator(dir); it != sfs::recursive_directory_iterator(); ++it) {
    out.insert(it->path().lexically_relative(dir).generic_string());
  }
  return out;
}

// What walk_source visits from the root (the root itself left out).
std::set<std::string> walked(const fs::Root& root, const IgnoreMatcher& ignore) {
  SourceTree tree{&root, &ignore};
  SelectedSource top;
  auto st = root.lstat("");
  REQUIRE(st);
  top.st = **st;
  std::set<std::string> out;
  auto r = walk_source(tree, top, nullptr, [&](const WalkEntry& e) -> Result<void> {
    if (!e.path.empty()) {
      out.insert(e.path);
    }
    return ok();
  });
  REQUIRE(r);
  return out;
}

// all paths minus those at or below a hidden entry.
std::set<std::string> left_by(const std::set<std::string>& all, const std::vector<std::string>& hidden) {
  std::set<std::string> out;
  for (const auto& p : all) {
    bool gone = false;
    for (const auto& h : hidden) {
      gone = gone || p == h || p.starts_with(h + "/");
    }
    if (!gone) {
      out.insert(p);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("context filter: the whiteouts hide exactly what the source walk skips", "[builder]") {
  ScratchDir dir;
  sfs::path ctx = dir / "ctx";
  for (const char* f : {"a.txt", "secret.txt", "logs/a.log", "logs/keep.txt", "logs/deep/b.log", "sub/x.tmp",
                        "sub/y.txt", "sub/inner/z.tmp", "node_modules/m/index.js", "Dockerfile"}) {
    sfs::create_directories((ctx / f).parent_path());
    write_text(ctx / f, "x\n");
  }
  auto root = fs::Root::open(ctx.string());
  REQUIRE(root);
  std::set<std::string> all = all_paths(ctx);
  const char* pattern_sets[] = {
      "secret.txt\nlogs\n!logs/keep.txt\nsub/*.tmp\n",
      "*\n!sub\n",
      "**/*.tmp\nnode_modules\n",
      "logs\n!logs/deep\n",
      "*\n!**/*.log\n",
      "# nothing ignored\n",
  };
  for (const char* patterns : pattern_sets) {
    INFO(patterns);
    auto ignore = IgnoreMatcher::parse(patterns, ".dockerignore");
    REQUIRE(ignore);
    auto hidden = ignored_entries(*root, *ignore, "");
    REQUIRE(hidden);
    CHECK(left_by(all, *hidden) == walked(*root, *ignore));
    // The copy (for a store inside the context) holds the same paths.
    ScratchDir copy;
    REQUIRE(copy_filtered(*root, *ignore, "", copy.path()));
    CHECK(all_paths(copy.path()) == walked(*root, *ignore));
  }
}

TEST_CASE("context filter: the copy keeps contents, modes and mtimes, below a source", "[builder]") {
  ScratchDir dir;
  sfs::path ctx = dir / "ctx";
  sfs::create_directories(ctx / "a" / "b");
  write_text(ctx / "a" / "b" / "keep", "kept\n");
  write_text(ctx / "a" / "b" / "drop.tmp", "x\n");
  write_text(ctx / "other", "x\n");
  sfs::create_symlink("keep", ctx / "a" / "b" / "link");
  REQUIRE(::chmod((ctx / "a" / "b" / "keep").c_str(), 0640) == 0);
  REQUIRE(::chmod((ctx / "a").c_str(), 0751) == 0);
  struct timespec times[2] = {{1000, 0}, {2000, 0}};
  REQUIRE(::utimensat(AT_FDCWD, (ctx / "a" / "b").c_str(), times, 0) == 0);
  auto root = fs::Root::open(ctx.string());
  REQUIRE(root);
  auto ignore = IgnoreMatcher::parse("**/*.tmp\n", ".dockerignore");
  REQUIRE(ignore);
  sfs::path dest = dir / "copy";
  sfs::create_directories(dest);
  REQUIRE(copy_filtered(*root, *ignore, "a/b", dest));
  CHECK(all_paths(dest) == std::set<std::string>{"a", "a/b", "a/b/keep", "a/b/link"});
  CHECK(imgbuild::test::read_text(dest / "a" / "b" / "keep") == "kept\n");
  CHECK(sfs::read_symlink(dest / "a" / "b" / "link") == "keep");
  struct stat st {};
  REQUIRE(::stat((dest / "a" / "b" / "keep").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  REQUIRE(::stat((dest / "a").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0751);
  REQUIRE(::stat((dest / "a" / "b").c_str(), &st) == 0);
  CHECK(st.st_mtim.tv_sec == 2000);
  // A hidden source is absent from the copy.
  sfs::path none = dir / "none";
  sfs::create_directories(none);
  REQUIRE(copy_filtered(*root, *ignore, "a/b/drop.tmp", none));
  CHECK_FALSE(sfs::exists(none / "a" / "b" / "drop.tmp"));
}

TEST_CASE("context filter: below a mount source, and a hidden source itself", "[builder]") {
  ScratchDir dir;
  sfs::path ctx = dir / "ctx";
  for (const char* f : {"sub/keep.txt", "sub/drop.tmp", "other/drop.tmp", "gone/f"}) {
    sfs::create_directories((ctx / f).parent_path());
    write_text(ctx / f, "x\n");
  }
  auto root = fs::Root::open(ctx.string());
  REQUIRE(root);
  auto ignore = IgnoreMatcher::parse("**/*.tmp\ngone\n", ".dockerignore");
  REQUIRE(ignore);
  auto below = ignored_entries(*root, *ignore, "sub");
  REQUIRE(below);
  CHECK(*below == std::vector<std::string>{"sub/drop.tmp"});  // other/ is not looked at
  auto itself = ignored_entries(*root, *ignore, "gone");
  REQUIRE(itself);
  CHECK(*itself == std::vector<std::string>{"gone"});
  auto missing = ignored_entries(*root, *ignore, "nope");
  REQUIRE(missing);
  CHECK(missing->empty());
}

TEST_CASE("context filter: whiteouts are 0:0 devices under directories like the context's", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "whiteouts are device nodes: mknod needs root");
  ScratchDir dir;
  sfs::path ctx = dir / "ctx";
  sfs::create_directories(ctx / "a" / "b");
  write_text(ctx / "a" / "b" / "drop", "x\n");
  write_text(ctx / "top", "x\n");
  REQUIRE(::chmod((ctx / "a").c_str(), 0751) == 0);
  REQUIRE(::chown((ctx / "a" / "b").c_str(), 1234, 5678) == 0);
  struct timespec old_times[2] = {{1000, 0}, {2000, 500}};
  REQUIRE(::utimensat(AT_FDCWD, (ctx / "a").c_str(), old_times, 0) == 0);
  auto root = fs::Root::open(ctx.string());
  REQUIRE(root);
  sfs::path layer = dir / "layer";
  sfs::create_directories(layer);
  auto n = write_whiteouts(*root, {"a/b/drop", "top"}, layer);
  REQUIRE(n);
  CHECK(*n == 2);
  for (const char* w : {"a/b/drop", "top"}) {
    struct stat st {};
    REQUIRE(::lstat((layer / w).c_str(), &st) == 0);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_rdev == ::makedev(0, 0));
  }
  struct stat a {};
  struct stat b {};
  REQUIRE(::lstat((layer / "a").c_str(), &a) == 0);
  REQUIRE(::lstat((layer / "a" / "b").c_str(), &b) == 0);
  CHECK((a.st_mode & 07777) == 0751);
  CHECK(a.st_mtim.tv_sec == 2000);
  CHECK(a.st_mtim.tv_nsec == 500);
  CHECK(b.st_uid == 1234);
  CHECK(b.st_gid == 5678);
  // The root itself cannot be hidden.
  CHECK_FALSE(write_whiteouts(*root, {""}, dir / "other"));
}
