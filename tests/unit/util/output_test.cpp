#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "support/scratch_dir.hpp"
#include "util/output.hpp"

using namespace imgbuild;
namespace stdfs = std::filesystem;
using test::read_text;
using test::ScratchDir;
using test::write_text;

namespace {

std::set<std::string> names_in(const stdfs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : stdfs::directory_iterator(dir)) {
    out.insert(e.path().filename().string());
  }
  return out;
}

mode_t current_umask() {
  mode_t m = ::umask(0);
  ::umask(m);
  return m;
}

}  // namespace

TEST_CASE("output destinations are classified by what the path is", "[util]") {
  ScratchDir d;
  write_text(d / "file", "old");
  stdfs::create_directories(d / "dir");
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);
  stdfs::create_symlink("fifo", d / "to-fifo");
  stdfs::create_symlink(d / "file", d / "to-file");
  stdfs::create_symlink("to-file", d / "to-to-file");
  stdfs::create_symlink("new-target", d / "dangling");
  stdfs::create_symlink("dir", d / "to-dir");
  stdfs::create_symlink("/proc/self/fd/1", d / "to-stdout");
  stdfs::create_symlink("loop-b", d / "loop-a");
  stdfs::create_symlink("loop-a", d / "loop-b");

  auto kind = [](const stdfs::path& p) {
    auto r = output::check_destination(p.string());
    INFO(p.string() << ": " << (r ? std::string("ok") : r.error().message));
    REQUIRE(r);
    return *r;
  };
  CHECK(kind("-").kind == output::Kind::descriptor);
  CHECK(kind("-").fd == STDOUT_FILENO);
  CHECK(kind(d / "file").kind == output::Kind::replace);
  CHECK(kind(d / "new").kind == output::Kind::replace);
  CHECK(kind(d / "new").resolved == (d / "new").string());
  CHECK(kind(d / "fifo").kind == output::Kind::stream);
  CHECK(kind(d / "to-fifo").kind == output::Kind::stream);
  CHECK(kind(d / "to-fifo").resolved == (d / "fifo").string());
  CHECK(kind(d / "to-to-file").kind == output::Kind::replace);
  CHECK(kind(d / "to-to-file").resolved == (d / "file").string());
  CHECK(kind(d / "dangling").resolved == (d / "new-target").string());
  output::Destination out = kind(d / "to-stdout");
  CHECK(out.kind == output::Kind::descriptor);
  CHECK(out.fd == 1);

  auto error = [](const stdfs::path& p) {
    auto r = output::check_destination(p.string());
    REQUIRE_FALSE(r);
    return r.error().message;
  };
  CHECK_THAT(error(d / "dir"), Catch::Contains("is a directory"));
  CHECK_THAT(error(d / "to-dir"), Catch::Contains("is a directory"));
  CHECK_THAT(error(d / "missing" / "out"), Catch::Contains("does not exist"));
  CHECK_THAT(error(d / "missing" / "out"), Catch::Contains((d / "missing").string()));
  CHECK_THAT(error(d / "file" / "out"), Catch::Contains("not a directory"));
  CHECK_THAT(error(d / "loop-a"), Catch::Contains("too many levels of symbolic links"));
  CHECK_THAT(error(d / "new/"), Catch::Contains("names a directory"));
  CHECK_FALSE(output::check_destination(""));
}

TEST_CASE("a replaced output is a new file, written only on commit", "[util]") {
  ScratchDir d;
  write_text(d / "out", "old contents");
  ::chmod((d / "out").c_str(), 0600);
  stdfs::create_hard_link(d / "out", d / "hard");
  std::set<std::string> before = names_in(d.path());

  SECTION("a writer that fails leaves the old file and no temporary file") {
    {
      auto f = output::File::open((d / "out").string());
      REQUIRE(f);
      REQUIRE(::write(f->fd(), "partial", 7) == 7);
      // no commit
    }
    CHECK(read_text(d / "out") == "old contents");
    CHECK(names_in(d.path()) == before);
  }
  SECTION("a commit replaces the file whole, with a new file's mode") {
    REQUIRE(output::write_file((d / "out").string(), "new"));
    CHECK(read_text(d / "out") == "new");
    CHECK(read_text(d / "hard") == "old contents");  // another inode: the old one is not written
    struct stat st {};
    REQUIRE(::stat((d / "out").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == (0666 & ~current_umask()));
    CHECK(names_in(d.path()) == before);
  }
  SECTION("through a symlink, the link's target is replaced and the link stays") {
    stdfs::create_symlink("out", d / "link");
    REQUIRE(output::write_file((d / "link").string(), "via link"));
    CHECK(stdfs::is_symlink(d / "link"));
    CHECK(read_text(d / "out") == "via link");
  }
}

TEST_CASE("a FIFO output is written in place as a stream", "[util]") {
  ScratchDir d;
  REQUIRE(::mkfifo((d / "fifo").c_str(), 0600) == 0);
  stdfs::create_symlink("fifo", d / "link");
  std::string received;
  std::thread reader([&] { received = read_text(d / "fifo"); });
  auto r = output::write_file((d / "link").string(), "streamed bytes");
  reader.join();
  REQUIRE(r);
  CHECK(received == "streamed bytes");
  CHECK(stdfs::is_fifo(d / "fifo"));
  CHECK(stdfs::is_symlink(d / "link"));
}
