// The live tty progress view through the real binary on a pseudo-terminal
// (script(1)): `--progress auto` picks it on a terminal; `plain` stays plain.

#include <unistd.h>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::have_tool;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::write_file;
using namespace imgbuild::test::build;

TEST_CASE("build progress: the tty view on a terminal, plain unchanged", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  IMGBUILD_REQUIRE_PREREQ(have_tool("script"), "script(1) (bsdutils) is not installed");
  Fixture fx;
  fs::path ctx = fx.work.path / "ctx-tty";
  fs::create_directories(ctx);
  write_file(ctx / "Dockerfile",
             "FROM busybox\nRUN for i in 1 2 3; do echo \"out-$i\"; sleep 0.2; done\nRUN echo second-step\n");
  auto under_tty = [&](const std::string& progress) {
    std::string cmd = sh_quote(imgbuild::test::imgbuild_binary().string()) + " --root " + sh_quote(fx.root.string()) +
                      " build --no-cache --progress " + progress + " " + sh_quote(ctx.string());
    return run_sh("script -qec " + sh_quote(cmd) + " /dev/null");
  };
  RunResult tty = under_tty("auto");
  INFO(tty.out);
  INFO(tty.err);
  REQUIRE(tty.status == 0);
  CHECK(tty.out.find("[+] Building ") != std::string::npos);
  CHECK(tty.out.find(" => > out-1") != std::string::npos);  // a running step's output in the live area
  CHECK(tty.out.find("\x1b[J") != std::string::npos);       // redrawn in place
  CHECK(tty.out.find(" => [stage-0 3/3] RUN echo second-step") != std::string::npos);
  CHECK(tty.out.find("#1 ") == std::string::npos);

  RunResult plain = under_tty("plain");
  INFO(plain.out);
  REQUIRE(plain.status == 0);
  CHECK(plain.out.find("#2 [stage-0 2/3] RUN for i in 1 2 3") != std::string::npos);
  CHECK(plain.out.find(" out-3") != std::string::npos);
  CHECK(plain.out.find("\x1b[") == std::string::npos);
}
