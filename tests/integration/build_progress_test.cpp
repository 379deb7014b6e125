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
  CHECK(tty.out.find(" => [3/3] RUN echo second-step") != std::string::npos);
  CHECK(tty.out.find("#1 ") == std::string::npos);

  RunResult plain = under_tty("plain");
  INFO(plain.out);
  REQUIRE(plain.status == 0);
  CHECK(plain.out.find("#2 [2/3] RUN for i in 1 2 3") != std::string::npos);
  CHECK(plain.out.find(" out-3") != std::string::npos);
  CHECK(plain.out.find("\x1b[") == std::string::npos);
}

TEST_CASE("build progress: the end of the output, as BuildKit prints it", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  // plain: the warnings come last, after one blank line.
  RunResult ok = fx.build("end-ok", "FROM busybox as base\nRUN echo hi\n", {}, {"--no-cache"});
  INFO(ok.err);
  REQUIRE(ok.status == 0);
  size_t summary = ok.err.find("\n 1 warning found (use --check to expand):\n - FromAsCasing: ");
  REQUIRE(summary != std::string::npos);
  size_t writing = ok.err.rfind("\nwriting image sha256:", summary);
  REQUIRE(writing != std::string::npos);
  // "writing image … done\n", the build's summary line, then "\n 1 warning".
  size_t build_summary = ok.err.find('\n', writing + 1) + 1;
  CHECK(ok.err.compare(build_summary, 9, "summary: ") == 0);
  CHECK(ok.err.find('\n', build_summary) + 1 == summary);
  CHECK(ok.err.find('\n', summary + 2) == ok.err.rfind('\n', ok.err.size() - 2));  // the rule line ends the output
  CHECK(ok.err.find("\n#2 DONE ") < writing);
  CHECK(ok.err.find("#1 DONE") != std::string::npos);
  CHECK(ok.err.find("\n\n#2 [2/2] RUN echo hi\n") != std::string::npos);  // one blank line between steps
  CHECK(ok.err.find("\n\n\n") == std::string::npos);

  // rawjson: a warning event instead of the summary text.
  RunResult json = imgbuild::test::run_imgbuild(
      fx.root, {"build", "--progress", "rawjson", (fx.work.path / "ctx-end-ok").string()});
  CHECK(json.status == 0);
  CHECK(json.err.find("warning found") == std::string::npos);
  CHECK(json.err.find("{\"event\":\"warning\",\"line\":1,\"message\":") != std::string::npos);
  CHECK(json.err.find("\"rule\":\"FromAsCasing\"") != std::string::npos);

  // plain, failed: the error block with the step's last output lines, then
  // the warnings, then the Dockerfile excerpt.
  RunResult bad = fx.build("end-bad", "FROM busybox as base\nRUN echo out-line && false\n", {});
  INFO(bad.err);
  REQUIRE(bad.status == 1);
  size_t err = bad.err.find("#2 ERROR: process ");
  REQUIRE(err != std::string::npos);
  size_t block = bad.err.find("\n------\n > [2/2] RUN echo out-line && false:\n", err);
  REQUIRE(block != std::string::npos);
  size_t line_end = bad.err.find(" out-line\n------\n", block);
  CHECK(line_end != std::string::npos);
  size_t warn = bad.err.find("\n\n 1 warning found", block);
  size_t excerpt = bad.err.find("Dockerfile:2\n", block);
  CHECK(warn != std::string::npos);
  CHECK(excerpt != std::string::npos);
  CHECK(warn < excerpt);

  // tty: the view ends with the FINISHED header, on success and failure.
  IMGBUILD_REQUIRE_PREREQ(have_tool("script"), "script(1) (bsdutils) is not installed");
  auto under_tty = [&](const std::string& name) {
    fs::path ctx = fx.work.path / ("ctx-" + name);
    std::string cmd = sh_quote(imgbuild::test::imgbuild_binary().string()) + " --root " + sh_quote(fx.root.string()) +
                      " build --no-cache --progress tty " + sh_quote(ctx.string());
    return run_sh("script -qec " + sh_quote(cmd) + " /dev/null");
  };
  RunResult tty_ok = under_tty("end-ok");
  INFO(tty_ok.out);
  CHECK(tty_ok.status == 0);
  size_t fin = tty_ok.out.find(" (2/2) FINISHED");
  CHECK(fin != std::string::npos);
  size_t tty_writing = tty_ok.out.find("writing image sha256:", fin);
  CHECK(tty_writing != std::string::npos);
  CHECK(tty_ok.out.find(" 1 warning found", tty_writing) != std::string::npos);
  RunResult tty_bad = under_tty("end-bad");
  INFO(tty_bad.out);
  CHECK(tty_bad.status != 0);
  size_t fin_bad = tty_bad.out.find(" (1/2) FINISHED");
  CHECK(fin_bad != std::string::npos);
  CHECK(tty_bad.out.find("Dockerfile:2", fin_bad) != std::string::npos);
}
