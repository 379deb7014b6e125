#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/scratch_dir.hpp"
#include "util/fd.hpp"
#include "util/io.hpp"

using namespace imgbuild;
namespace stdfs = std::filesystem;
using test::ScratchDir;

namespace {

// A pattern that shows where bytes went missing or were repeated.
std::string pattern(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    s[i] = static_cast<char>('a' + (i * 7 + i / 4093) % 26);
  }
  return s;
}

}  // namespace

TEST_CASE("io read_all reads a pipe to EOF across many short reads", "[util]") {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  UniqueFd r(fds[0]);
  UniqueFd w(fds[1]);
  const std::string data = pattern(3 * 1024 * 1024 + 17);  // far more than a pipe holds
  std::thread writer([&] {
    auto done = io::write_all(w.get(), data, "the pipe");
    (void)done;
    w.reset();
  });
  auto got = io::read_all(r.get(), "the pipe");
  writer.join();
  REQUIRE(got);
  CHECK(got->size() == data.size());
  CHECK(*got == data);
}

TEST_CASE("io read_all reads a file over 16 MiB whole", "[util]") {
  ScratchDir dir;
  const std::string path = (dir / "big").string();
  const std::string data = pattern((size_t{16} << 20) + 4097);
  REQUIRE(io::write_all(path, data));
  auto got = io::read_all(path);
  REQUIRE(got);
  CHECK(got->size() == data.size());
  CHECK(*got == data);

  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd);
  REQUIRE(::lseek(fd.get(), 4096, SEEK_SET) == 4096);
  auto rest = io::read_all(fd.get(), "big");
  REQUIRE(rest);
  CHECK(*rest == data.substr(4096));  // from the current offset
}

TEST_CASE("io read_all with a cap fails naming the file and the limit", "[util]") {
  ScratchDir dir;
  const std::string path = (dir / "f").string();
  REQUIRE(io::write_all(path, pattern((size_t{1} << 20) + 1)));
  auto over = io::read_all(path, size_t{1} << 20);
  REQUIRE_FALSE(over);
  CHECK(over.error().code == Errc::limit);
  CHECK(over.error().message == path + " is larger than the limit of 1048576 bytes (1 MiB)");
  auto exact = io::read_all(path, (size_t{1} << 20) + 1);
  REQUIRE(exact);
  CHECK(exact->size() == (size_t{1} << 20) + 1);

  // An endless source stops at the cap instead of reading forever.
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  UniqueFd r(fds[0]);
  UniqueFd w(fds[1]);
  struct sigaction ignore {};
  struct sigaction old_action {};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(::sigaction(SIGPIPE, &ignore, &old_action) == 0);
  std::thread writer([&] {
    const std::string chunk(65536, 'z');
    while (io::write_all(w.get(), chunk, "pipe")) {
    }
  });
  auto endless = io::read_all(r.get(), "the stream", 100000);
  r.reset();  // the writer's next write fails with EPIPE
  writer.join();
  ::sigaction(SIGPIPE, &old_action, nullptr);
  REQUIRE_FALSE(endless);
  CHECK(endless.error().code == Errc::limit);
  CHECK(endless.error().message == "the stream is larger than the limit of 100000 bytes");
}

TEST_CASE("io read_all refuses a directory and names a missing file", "[util]") {
  ScratchDir dir;
  auto d = io::read_all(dir.path().string());
  REQUIRE_FALSE(d);
  CHECK(d.error().message == dir.path().string() + " is a directory");
  const std::string missing = (dir / "missing").string();
  auto m = io::read_all(missing);
  REQUIRE_FALSE(m);
  CHECK(m.error().code == Errc::not_found);
  CHECK(m.error().message.find(missing) != std::string::npos);
}

TEST_CASE("io write_all carries on after a short write and names the file on failure", "[util]") {
  // RLIMIT_FSIZE makes write(2) return a short count at the limit, then fail
  // with EFBIG: write_all must write what fits, then report the error.
  ScratchDir dir;
  const std::string path = (dir / "limited").string();
  struct rlimit old {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  struct sigaction ignore {};
  struct sigaction old_action {};
  ignore.sa_handler = SIG_IGN;
  REQUIRE(::sigaction(SIGXFSZ, &ignore, &old_action) == 0);
  struct rlimit small = old;
  small.rlim_cur = 10000;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  auto r = io::write_all(path, pattern(25000));
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::sigaction(SIGXFSZ, &old_action, nullptr);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::io);
  CHECK(r.error().message.find(path + ": write: ") == 0);
  CHECK(stdfs::file_size(path) == 10000);
  auto back = io::read_all(path);
  REQUIRE(back);
  CHECK(*back == pattern(25000).substr(0, 10000));
}

TEST_CASE("io TempDir is removed on scope exit, on exception and when moved from", "[util]") {
  ScratchDir parent;
  std::string kept;
  {
    auto t = io::TempDir::create(parent.path().string(), "unit-");
    REQUIRE(t);
    kept = t->path();
    CHECK(kept.rfind(parent.path().string() + "/unit-", 0) == 0);
    CHECK(stdfs::is_directory(kept));
    CHECK((stdfs::status(kept).permissions() & stdfs::perms::all) == stdfs::perms::owner_all);
    stdfs::create_directories(kept + "/a/b");
    test::write_text(kept + "/a/b/file", "x");
  }
  CHECK_FALSE(stdfs::exists(kept));

  std::string thrown;
  CHECK_THROWS_AS(
      [&] {
        auto t = io::TempDir::create(parent.path().string(), "unit-");
        REQUIRE(t);
        thrown = t->path();
        test::write_text(thrown + "/file", "x");
        throw std::runtime_error("boom");
      }(),
      std::runtime_error);
  REQUIRE_FALSE(thrown.empty());
  CHECK_FALSE(stdfs::exists(thrown));

  std::string moved;
  io::TempDir outer;
  {
    auto t = io::TempDir::create(parent.path().string(), "unit-");
    REQUIRE(t);
    moved = t->path();
    outer = std::move(*t);
  }
  CHECK(stdfs::is_directory(moved));  // the moved-from object removes nothing
  CHECK(outer.path() == moved);
  outer.remove();
  CHECK_FALSE(stdfs::exists(moved));
  CHECK(outer.path().empty());

  auto bad = io::TempDir::create((parent / "missing").string(), "unit-");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find((parent / "missing").string()) != std::string::npos);
}

TEST_CASE("io random_hex gives fresh lower-case hex of the asked length", "[util]") {
  std::set<std::string> seen;
  for (int i = 0; i < 64; ++i) {
    std::string h = io::random_hex();
    CHECK(h.size() == 16);
    CHECK(h.find_first_not_of("0123456789abcdef") == std::string::npos);
    seen.insert(h);
  }
  CHECK(seen.size() == 64);
  CHECK(io::random_hex(16).size() == 32);
}
