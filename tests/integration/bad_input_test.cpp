// Bad input through the real binary: each is refused with exit status 1 and
// one `imgbuild: error: …` naming what is wrong, without running anything
// it should not: an empty --root, oversized Dockerfiles (a sparse file, an
// endless FIFO), a Dockerfile that is a directory, word expansion past its
// limit, ENV with 100k pairs (linear, so it completes), a rootfs tar with an
// entry below a symlink to nowhere, FROM --platform=bogus, container names.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.hpp"

namespace fs = std::filesystem;
using imgbuild::test::dir;
using imgbuild::test::file;
using imgbuild::test::imgbuild_binary;
using imgbuild::test::make_tar;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::symlink_entry;
using imgbuild::test::TempDir;
using imgbuild::test::write_file;

namespace {

// imgbuild with a time bound, so that a regression (reading without end)
// fails the test instead of hanging it.
RunResult run_bounded(const fs::path& root, const std::vector<std::string>& args) {
  std::string cmd = "timeout 120 " + sh_quote(imgbuild_binary().string()) + " --root " + sh_quote(root.string());
  for (const auto& a : args) {
    cmd += ' ';
    cmd += sh_quote(a);
  }
  return run_sh(cmd);
}

// parser::k_max_dockerfile_size, as the user sees it.
constexpr off_t k_max_dockerfile_size = off_t{32} << 20;
const std::string k_limit = std::to_string(k_max_dockerfile_size);

// A sparse file of `size` zero bytes.
fs::path sparse_file(const fs::path& p, off_t size) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, size) == 0);
  ::close(fd);
  return p;
}

void check_error(const RunResult& r, const std::string& says) {
  INFO(r.err);
  CHECK(r.status == 1);
  CHECK(r.err.find("imgbuild: error: ") != std::string::npos);
  CHECK(r.err.find(says) != std::string::npos);
}

}  // namespace

TEST_CASE("an empty --root is an error, not the default store", "[integration]") {
  TempDir work;
  RunResult r = run_sh(sh_quote(imgbuild_binary().string()) + " --root '' images");
  check_error(r, "--root is empty");
  RunResult eq = run_sh(sh_quote(imgbuild_binary().string()) + " --root= images");
  check_error(eq, "--root is empty");
}

TEST_CASE("parse, check and build refuse a Dockerfile over the size limit, naming it", "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  fs::path big = sparse_file(work.path / "Dockerfile.big",
                             k_max_dockerfile_size * 2);
  fs::path ctx = work.path / "ctx";
  fs::create_directories(ctx);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"parse", "-f", big.string()}, std::vector<std::string>{"check", "-f", big.string()},
        std::vector<std::string>{"build", "--progress", "plain", "-f", big.string(), ctx.string()}}) {
    INFO(args.front());
    RunResult r = run_bounded(root, args);
    check_error(r, "larger than the limit of " + k_limit + " bytes");
  }

  // An endless FIFO: the reader stops at the limit.
  fs::path fifo = work.path / "endless";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  struct sigaction ignore {};
  struct sigaction old {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    int fd = -1;
    while (fd < 0 && !done) {
      fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // ENXIO until the reader opens
      if (fd < 0) {
        ::usleep(10000);
      }
    }
    if (fd < 0) {
      return;
    }
    ::fcntl(fd, F_SETFL, 0);
    std::string zeros(1 << 16, '\0');
    while (::write(fd, zeros.data(), zeros.size()) > 0) {
    }
    ::close(fd);
  });
  RunResult r = run_bounded(root, {"parse", "-f", fifo.string()});
  done = true;
  writer.join();
  ::sigaction(SIGPIPE, &old, nullptr);
  check_error(r, "larger than the limit of " + k_limit + " bytes");
}

TEST_CASE("a build context that does not exist is named as buildx names it", "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  // Also what a global flag's misplaced value gives: `imgbuild --snapshotter
  // copy build .` takes "build" for the context of the default command.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"build", (work.path / "nowhere").string()},
        std::vector<std::string>{(work.path / "nowhere").string()}}) {
    RunResult r = run_bounded(root, args);
    check_error(r, "unable to prepare context: path \"" + (work.path / "nowhere").string() + "\" not found");
  }
}

TEST_CASE("parse -f of a directory says it is a directory", "[integration]") {
  TempDir work;
  for (const char* cmd : {"parse", "check"}) {
    RunResult r = run_imgbuild(work.path / "store", {cmd, "-f", work.path.string()});
    check_error(r, work.path.string() + "\" is a directory");
  }
}

TEST_CASE("an ARG chain that expands past the word size limit fails at its line, at once", "[integration]") {
  if (::geteuid() != 0) {
    WARN("SKIPPED: needs root (builds)");
    return;
  }
  TempDir work;
  fs::path ctx = work.path / "ctx";
  fs::create_directories(ctx);
  // a0 is 10 bytes and each line multiplies by 12: a6 (29 MiB) is the first
  // over the 8 MiB limit.
  std::string chain = "ARG a0=0123456789\n";
  for (int i = 1; i <= 12; ++i) {
    chain += "ARG a" + std::to_string(i) + "=";
    for (int j = 0; j < 12; ++j) {
      chain += "${a" + std::to_string(i - 1) + "}";
    }
    chain += "\n";
  }
  SECTION("global ARGs") {
    write_file(ctx / "Dockerfile", chain + "FROM scratch\n");
    RunResult r = run_bounded(work.path / "store", {"build", "--progress", "plain", ctx.string()});
    check_error(r, "the expanded value is larger than the limit of 8388608 bytes");
    CHECK(r.err.find("Dockerfile:7\n") != std::string::npos);
  }
  SECTION("stage ARGs") {
    write_file(ctx / "Dockerfile", "FROM scratch\n" + chain);
    RunResult r = run_bounded(work.path / "store", {"build", "--progress", "plain", ctx.string()});
    check_error(r, "the expanded value is larger than the limit of 8388608 bytes");
    CHECK(r.err.find("Dockerfile:8\n") != std::string::npos);
  }
}

TEST_CASE("ENV with 100k pairs builds", "[integration]") {
  if (::geteuid() != 0) {
    WARN("SKIPPED: needs root (builds)");
    return;
  }
  TempDir work;
  fs::path ctx = work.path / "ctx";
  fs::create_directories(ctx);
  std::string df = "FROM scratch\nENV";
  for (int i = 0; i < 100000; ++i) {
    df += " k" + std::to_string(i) + "=v" + std::to_string(i) + (i % 10 == 9 && i < 99999 ? " \\\n" : "");
  }
  df += "\nENV k5=again\n";
  write_file(ctx / "Dockerfile", df);
  fs::path root = work.path / "store";
  RunResult r = run_bounded(root, {"build", "--progress", "plain", "-t", "many-env", ctx.string()});
  INFO(r.err.substr(0, 2000));
  REQUIRE(r.status == 0);
  RunResult inspect = run_imgbuild(root, {"inspect", "many-env"});
  REQUIRE(inspect.status == 0);
  nlohmann::json j = nlohmann::json::parse(inspect.out);
  const nlohmann::json& env = j[0]["Config"]["Env"];
  REQUIRE(env.size() == 100001);  // PATH first, as BuildKit sets it
  CHECK(env[0].get<std::string>().starts_with("PATH="));
  CHECK(env[1] == "k0=v0");
  CHECK(env[6] == "k5=again");  // replaced in place
  CHECK(env[100000] == "k99999=v99999");
}

TEST_CASE("import refuses an entry below a symlink that is not a directory of the archive", "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  fs::path tarball = work.path / "rootfs.tar";
  write_file(tarball, make_tar({symlink_entry("x", "/some/dir"), file("x/f", "data")}));
  RunResult r = run_imgbuild(root, {"import", tarball.string(), "bad"});
  check_error(r, "entry \"x/f\" is below symlink \"x\" -> \"/some/dir\"");
  RunResult images = run_imgbuild(root, {"images", "-q"});
  CHECK(images.out.empty());

  // A symlink to a directory the archive has (before or after the link) is fine.
  write_file(tarball, make_tar({dir("d"), symlink_entry("x", "d"), file("x/f", "data")}));
  RunResult ok = run_imgbuild(root, {"import", tarball.string(), "good"});
  INFO(ok.err);
  CHECK(ok.status == 0);
  write_file(tarball, make_tar({symlink_entry("y", "/e"), dir("e/sub"), file("y/f", "data")}));
  RunResult ok2 = run_imgbuild(root, {"import", tarball.string(), "good2"});
  INFO(ok2.err);
  CHECK(ok2.status == 0);
}

TEST_CASE("FROM --platform=bogus is an error naming the line", "[integration]") {
  if (::geteuid() != 0) {
    WARN("SKIPPED: needs root (builds)");
    return;
  }
  TempDir work;
  fs::path ctx = work.path / "ctx";
  fs::create_directories(ctx);
  write_file(ctx / "f", "x");
  write_file(ctx / "Dockerfile", "FROM scratch AS a\nFROM --platform=bogus scratch\nCOPY f /f\n");
  RunResult r = run_imgbuild(work.path / "store", {"build", "--progress", "plain", ctx.string()});
  check_error(r, "failed to parse platform \"bogus\" of FROM --platform on line 2");
  CHECK(r.err.find("Dockerfile:2\n") != std::string::npos);

  write_file(ctx / "Dockerfile", "FROM --platform=$BUILDPLATFORM scratch\nCOPY f /f\n");
  RunResult ok = run_imgbuild(work.path / "store", {"build", "--progress", "plain", ctx.string()});
  INFO(ok.err);
  CHECK(ok.status == 0);
}

TEST_CASE("container names are checked as Docker checks them", "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  for (const std::string& name : {std::string(".."), std::string("a/b"), std::string(5000, 'a'), std::string("x"),
                                  std::string("-a"), std::string("")}) {
    INFO(name.substr(0, 20));
    RunResult r = run_imgbuild(root, {"run", "--name", name, "no-such-image", "true"});
    check_error(r, "invalid container name");
    CHECK(r.err.size() < 400);  // a 5,000-character name is not echoed whole
  }
  // A valid name passes the check (and the run fails on the missing image).
  RunResult valid = run_imgbuild(root, {"run", "--name", "web_1.x-y", "no-such-image", "true"});
  CHECK(valid.status != 0);
  CHECK(valid.err.find("invalid container name") == std::string::npos);
}
