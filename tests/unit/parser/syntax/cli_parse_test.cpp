// `imgbuild parse` end to end: the real binary dumps every conformance case
// byte for byte, reads standard input, and renders located errors.

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "support/paths.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;

namespace {

struct Run {
  int status = -1;
  std::string out;
};

// Runs a shell command line and captures its standard output.
Run run(const std::string& command) {
  Run r;
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) {
    r.out.append(buf, n);
  }
  int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string quote(const fs::path& p) { return std::string("'").append(p.string()).append("'"); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("imgbuild parse --format ast dumps every conformance case", "[parser][cli]") {
  fs::path dir = imgbuild::test::conformance_dir();
  IMGBUILD_REQUIRE_PREREQ(!dir.empty() && fs::is_directory(dir / "buildkit" / "parser" / "testfiles"),
                          "BuildKit conformance corpus not found (set IMGBUILD_CONFORMANCE_DIR)");
  const std::string bin = quote(imgbuild::test::imgbuild_binary());
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(dir / "buildkit" / "parser" / "testfiles")) {
    INFO("case " << entry.path().filename().string());
    Run r = run(bin + " parse --format ast -f " + quote(entry.path() / "Dockerfile"));
    CHECK(r.status == 0);
    CHECK(r.out == read_file(entry.path() / "result"));
    ++cases;
  }
  CHECK(cases >= 33);
  for (const auto& entry : fs::directory_iterator(dir / "buildkit" / "parser" / "testfiles-negative")) {
    INFO("negative case " << entry.path().filename().string());
    Run r = run(bin + " parse -f " + quote(entry.path() / "Dockerfile") + " 2>&1");
    CHECK(r.status == 1);
    CHECK(r.out.find((entry.path() / "Dockerfile").string() + ":") == 0);
  }
}

TEST_CASE("imgbuild parse reads stdin and renders errors with a caret", "[parser][cli]") {
  const std::string bin = quote(imgbuild::test::imgbuild_binary());
  Run ok = run("printf 'FROM a\\nRUN b \\\\\\n  c\\n' | " + bin + " parse -f -");
  CHECK(ok.status == 0);
  CHECK(ok.out == "(from \"a\")\n(run \"b   c\")\n");

  Run bad = run("printf 'FROM a\\nCMD [\"x\", 1]\\n' | " + bin + " parse -f - 2>&1");
  CHECK(bad.status == 1);
  CHECK(bad.out.find("<stdin>:2:11: when using JSON array syntax, arrays must be comprised of strings only\n") == 0);
  CHECK(bad.out.find(">>> CMD [\"x\", 1]") != std::string::npos);
  CHECK(bad.out.find("^") != std::string::npos);

  Run format = run(bin + " parse --format yaml -f - </dev/null 2>&1");
  CHECK(format.status != 0);
}
