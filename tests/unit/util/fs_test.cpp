#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>

#include "support/require.hpp"
#include "support/scratch_dir.hpp"
#include "util/fs.hpp"

using namespace imgbuild;
namespace stdfs = std::filesystem;
using test::read_text;
using test::ScratchDir;
using test::write_text;

namespace {

// base/root is the root; base/outside holds a victim that must never change.
struct Fixture {
  ScratchDir base;
  stdfs::path root = base / "root";
  stdfs::path outside = base / "outside";
  std::map<std::string, std::string> outside_before;

  Fixture() {
    stdfs::create_directories(root);
    stdfs::create_directories(outside / "dir");
    write_text(outside / "victim", "original");
    write_text(outside / "dir" / "keep", "keep");
    stdfs::create_symlink("/", root / "abs");
    stdfs::create_symlink("../..", root / "up");
    stdfs::create_symlink("../outside", root / "esc");
    stdfs::create_symlink(outside / "victim", root / "hostabs");
    stdfs::create_directories(root / "a");
    stdfs::create_symlink("..", root / "a" / "up");
    outside_before = test::snapshot_listing(base.path() / "outside");
  }
  bool outside_unchanged() const { return test::snapshot_listing(base.path() / "outside") == outside_before; }
};

}  // namespace

TEST_CASE("fs clean paths never climb above the root", "[util]") {
  CHECK(fs::clean_path("/a/./b//c/") == "a/b/c");
  CHECK(fs::clean_path("../../x") == "x");
  CHECK(fs::clean_path("/../x") == "x");
  CHECK(fs::clean_path("a/../../b") == "b");
  CHECK(fs::clean_path("..") == "");
  CHECK(fs::clean_components("./").empty());
}

TEST_CASE("fs symlinks pointing outside resolve inside the root", "[util][integration]") {
  Fixture fx;
  auto root = fs::Root::open(fx.root);
  REQUIRE(root);

  // Writes through absolute and ../ symlinks land inside the root.
  auto f1 = root->create_file("abs/through-abs", 0644);
  REQUIRE(f1);
  CHECK(stdfs::exists(fx.root / "through-abs"));
  auto f2 = root->create_file("up/through-up", 0644);
  REQUIRE(f2);
  CHECK(stdfs::exists(fx.root / "through-up"));
  auto f3 = root->create_file("a/up/up/up/deep", 0644);
  REQUIRE(f3);
  CHECK(stdfs::exists(fx.root / "deep"));

  // A dangling symlink whose target would be outside cannot be created through.
  CHECK_FALSE(root->create_file("esc/victim", 0644));
  CHECK_FALSE(root->mkdir_all("esc/sub"));
  // Opening through a host-absolute symlink looks inside the root.
  CHECK_FALSE(root->open_at("hostabs", O_RDONLY));
  CHECK_FALSE(root->open_at("../outside/victim", O_RDONLY));
  auto st = root->lstat("../../outside/victim");
  REQUIRE(st);
  CHECK_FALSE(st->has_value());

  // Acting on the symlinks themselves never touches their targets.
  REQUIRE(root->chown("hostabs", 1234, 1234));
  CHECK_FALSE(root->chmod("hostabs", 0777));
  REQUIRE(root->set_mtime("hostabs", 1000, 0));
  REQUIRE(root->remove("hostabs"));
  REQUIRE(root->remove_all("esc"));
  // remove_all through a symlinked parent stays inside.
  stdfs::create_directories(fx.root / "outside" / "dir");
  write_text(fx.root / "outside" / "dir" / "inner", "x");
  stdfs::create_symlink("../outside", fx.root / "esc");
  REQUIRE(root->remove_all("esc/dir"));
  CHECK_FALSE(stdfs::exists(fx.root / "outside" / "dir"));
  CHECK(fx.outside_unchanged());
}

TEST_CASE("fs operations create what they say", "[util][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root for chown and mknod");
  Fixture fx;
  auto root = fs::Root::open(fx.root);
  REQUIRE(root);
  auto dir = root->mkdir_all("x/y/z", 0750);
  REQUIRE(dir);
  CHECK(stdfs::is_directory(fx.root / "x/y/z"));
  // mkdir_all through an in-root absolute symlink: var/run -> /run.
  stdfs::create_directories(fx.root / "var");
  stdfs::create_directories(fx.root / "run");
  stdfs::create_symlink("/run", fx.root / "var" / "run");
  REQUIRE(root->mkdir_all("var/run/lock"));
  CHECK(stdfs::is_directory(fx.root / "run" / "lock"));

  auto f = root->create_file("x/file", 0600);
  REQUIRE(f);
  REQUIRE(::write(f->get(), "hello", 5) == 5);
  CHECK_FALSE(root->create_file("x/file", 0600));  // O_EXCL
  REQUIRE(root->chown("x/file", 42, 43));
  REQUIRE(root->chmod("x/file", 04755));
  REQUIRE(root->set_xattr("x/file", "user.k", "v"));
  REQUIRE(root->set_mtime("x/file", 1234567890, 5));
  struct stat st {};
  REQUIRE(::lstat((fx.root / "x/file").c_str(), &st) == 0);
  CHECK(st.st_uid == 42);
  CHECK(st.st_gid == 43);
  CHECK((st.st_mode & 07777) == 04755);
  CHECK(st.st_mtim.tv_sec == 1234567890);
  CHECK(st.st_mtim.tv_nsec == 5);
  auto xs = root->xattrs("x/file");
  REQUIRE(xs);
  CHECK(*xs == fs::Xattrs{{"user.k", "v"}});

  REQUIRE(root->symlink("x/link", "/outside/victim"));
  auto target = root->readlink("x/link");
  REQUIRE(target);
  CHECK(*target == "/outside/victim");
  REQUIRE(root->set_xattr("x/link", "trusted.t", "1"));
  // A hardlink to a symlink links the symlink itself.
  REQUIRE(root->link("/x/link", "x/link2"));
  CHECK(stdfs::is_symlink(fx.root / "x/link2"));
  REQUIRE(root->link("x/file", "x/file2"));
  REQUIRE(::lstat((fx.root / "x/file2").c_str(), &st) == 0);
  CHECK(st.st_nlink == 2);
  CHECK_FALSE(root->link("x/y", "x/dirlink"));  // directories cannot be hardlinked
  REQUIRE(root->mknod("x/null", S_IFCHR | 0666, makedev(1, 3)));
  REQUIRE(root->mknod("x/fifo", S_IFIFO | 0644, 0));
  REQUIRE(::lstat((fx.root / "x/null").c_str(), &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK(major(st.st_rdev) == 1);

  auto parent = root->parent("new/deep/name", fs::Parents::create);
  REQUIRE(parent);
  CHECK(parent->name == "name");
  CHECK(stdfs::is_directory(fx.root / "new/deep"));
  CHECK_FALSE(root->parent("/"));
  CHECK_FALSE(root->remove_all(".."));
  REQUIRE(root->remove_all("x"));
  CHECK_FALSE(stdfs::exists(fx.root / "x"));
  CHECK(fx.outside_unchanged());
}

TEST_CASE("fs copy_tree copies everything and keeps hardlinks", "[util][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root for chown and mknod");
  ScratchDir base;
  stdfs::create_directories(base / "src/d/e");
  stdfs::create_directories(base / "dst");
  write_text(base / "src/d/f", "data");
  REQUIRE(::chown((base / "src/d/f").c_str(), 7, 8) == 0);
  REQUIRE(::chmod((base / "src/d/f").c_str(), 02711) == 0);
  stdfs::create_hard_link(base / "src/d/f", base / "src/d/e/g");
  stdfs::create_symlink("../../outside", base / "src/d/l");
  REQUIRE(::mkfifo((base / "src/fifo").c_str(), 0600) == 0);
  auto src = fs::Root::open(base / "src");
  auto dst = fs::Root::open(base / "dst");
  REQUIRE(src);
  REQUIRE(dst);
  REQUIRE(src->set_xattr("d/f", "user.a", "b"));
  REQUIRE(src->set_mtime("d", 1600000000, 7));
  write_text(base / "dst/d", "a file where a directory will go");
  auto r = fs::copy_tree(*src, *dst);
  INFO((r ? "" : r.error().to_string()));
  REQUIRE(r);
  CHECK(read_text(base / "dst/d/f") == "data");
  struct stat a {};
  struct stat b {};
  REQUIRE(::lstat((base / "dst/d/f").c_str(), &a) == 0);
  REQUIRE(::lstat((base / "dst/d/e/g").c_str(), &b) == 0);
  CHECK(a.st_ino == b.st_ino);
  CHECK(a.st_uid == 7);
  CHECK((a.st_mode & 07777) == 02711);
  CHECK(stdfs::read_symlink(base / "dst/d/l") == "../../outside");
  CHECK(stdfs::is_fifo(base / "dst/fifo"));
  auto xs = dst->xattrs("d/f");
  REQUIRE(xs);
  CHECK(*xs == fs::Xattrs{{"user.a", "b"}});
  REQUIRE(::lstat((base / "dst/d").c_str(), &a) == 0);
  CHECK(a.st_mtim.tv_sec == 1600000000);
  CHECK(a.st_mtim.tv_nsec == 7);
}

// A filesystem stress test (3,000 nested directories made, walked and
// removed: 5 to 20 s of I/O on a busy disk), registered as integration so
// that the unit run stays quick.
TEST_CASE("fs removes arbitrarily deep trees and copy_tree refuses them", "[util][integration]") {
  ScratchDir base;
  stdfs::create_directories(base / "deep");
  stdfs::create_directories(base / "copy");
  {
    UniqueFd cur(::open((base / "deep").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    for (int i = 0; i < 3000; ++i) {
      REQUIRE(::mkdirat(cur.get(), "d", 0755) == 0);
      int fd = ::openat(cur.get(), "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      REQUIRE(fd >= 0);
      ::close(fd);
      cur.reset(::openat(cur.get(), "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      REQUIRE(cur);
    }
  }
  auto src = fs::Root::open(base / "deep");
  auto dst = fs::Root::open(base / "copy");
  REQUIRE(src);
  REQUIRE(dst);
  auto copied = fs::copy_tree(*src, *dst);
  REQUIRE_FALSE(copied);
  CHECK(copied.error().code == Errc::limit);
  auto root = fs::Root::open(base.path());
  REQUIRE(root);
  REQUIRE(root->remove_all("deep"));
  REQUIRE(root->remove_all("copy"));
  CHECK_FALSE(stdfs::exists(base / "deep"));
  CHECK_FALSE(stdfs::exists(base / "copy"));
}
