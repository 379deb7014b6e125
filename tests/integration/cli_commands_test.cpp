// Commands end to end through the real binary that need no store: `imgbuild
// parse` dumps every conformance case byte for byte, reads standard input
// and renders located errors; `imgbuild check` prints the build checks;
// `imgbuild login` refuses to guess credentials.

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "support/paths.hpp"
#include "support/registry_fixture.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::ScratchDir;
using imgbuild::test::slurp;

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

TEST_CASE("imgbuild check prints warnings and fails on check=error=true", "[parser][checks][cli]") {
  imgbuild::test::ScratchDir dir;
  const std::string bin = quote(imgbuild::test::imgbuild_binary().string());
  const std::string file = (dir.path() / "Dockerfile").string();
  {
    std::ofstream out(file);
    out << "FROM scratch AS Build\n"
           "ENV name value\n"
           "CMD echo hi\n";
  }
  Run warn = run(bin + " check -f " + quote(file) + " 2>&1");
  CHECK(warn.status == 0);
  CHECK(warn.out == file + ":1: StageNameCasing: Stage name 'Build' should be lowercase\n" + file +
                        ":2: LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy "
                        "\"ENV key value\" format\n" +
                        file +
                        ":3: JSONArgsRecommended: JSON arguments recommended for CMD to prevent "
                        "unintended behavior related to OS signals\n");

  Run skip = run(bin + " check -f " + quote(file) +
                 " --build-arg BUILDKIT_DOCKERFILE_CHECK=skip=StageNameCasing,JSONArgsRecommended 2>&1");
  CHECK(skip.status == 0);
  CHECK(skip.out == file + ":2: LegacyKeyValueFormat: \"ENV key=value\" should be used instead of "
                           "legacy \"ENV key value\" format\n");

  Run err = run(bin + " check -f " + quote(file) +
                " --build-arg BUILDKIT_DOCKERFILE_CHECK='skip=StageNameCasing;error=true' 2>&1");
  CHECK(err.status == 1);
  CHECK(err.out == file + ":2: LegacyKeyValueFormat: \"ENV key=value\" should be used instead of "
                          "legacy \"ENV key value\" format\n" +
                       file +
                       ":3: JSONArgsRecommended: JSON arguments recommended for CMD to prevent "
                       "unintended behavior related to OS signals\n"
                       "imgbuild: error: lint violation found for rules: LegacyKeyValueFormat, "
                       "JSONArgsRecommended\n");

  Run clean = run("printf 'FROM scratch\\nCMD [\"x\"]\\n' | " + bin + " check -f - 2>&1");
  CHECK(clean.status == 0);
  CHECK(clean.out.empty());

  Run stdin_warn = run("printf 'FROM scratch\\nMAINTAINER me\\n' | " + bin + " check -f - 2>&1");
  CHECK(stdin_warn.status == 0);
  CHECK(stdin_warn.out ==
        "<stdin>:2: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label\n");

  Run bad = run("printf 'FROM scratch\\nFORM x\\n' | " + bin + " check -f - 2>&1");
  CHECK(bad.status == 1);
  CHECK(bad.out.rfind("<stdin>:2:", 0) == 0);
  CHECK(bad.out.find(">>> FORM x") != std::string::npos);

  // Warnings are still reported when the Dockerfile has errors.
  Run semantic = run("printf 'FROM scratch AS Build\\nHEALTHCHECK --interval=x CMD true\\n' | " + bin +
                     " check -f - 2>&1");
  CHECK(semantic.status == 1);
  CHECK(semantic.out.rfind("<stdin>:1: StageNameCasing: Stage name 'Build' should be lowercase\n"
                           "<stdin>:2:1: time: invalid duration \"x\"\n",
                           0) == 0);

  Run directive = run("printf '# check=bogus\\nFROM scratch\\n' | " + bin + " check -f - 2>&1");
  CHECK(directive.status == 1);
  CHECK(directive.out ==
        "imgbuild: error: <stdin>: failed to parse check options: invalid check option \"bogus\"\n");
}

TEST_CASE("imgbuild login refuses to guess missing credentials", "[registry]") {
  ScratchDir dir;
  auto run = [&](const std::string& args, const std::string& log) {
    return imgbuild::test::run_command(
        {"sh", "-c", "DOCKER_CONFIG=\"$0\" \"$1\" " + args, dir.path().string(),
         imgbuild::test::imgbuild_binary().string()},
        dir.path() / log);
  };
  // stdin is /dev/null: no prompting possible.
  CHECK(run("login 127.0.0.1:1", "nouser.log") == 2);
  CHECK(slurp(dir.path() / "nouser.log").find("no username given") != std::string::npos);
  CHECK(run("login --password-stdin 127.0.0.1:1", "stdin.log") == 2);
  CHECK(slurp(dir.path() / "stdin.log").find("--password-stdin needs --username") != std::string::npos);
  CHECK(run("login -u me -p x --password-stdin 127.0.0.1:1", "both.log") == 2);
  CHECK(slurp(dir.path() / "both.log").find("mutually exclusive") != std::string::npos);
  // Nothing was written.
  CHECK_FALSE(std::filesystem::exists(dir.path() / "config.json"));
  CHECK(run("logout 127.0.0.1:1", "logout.log") == 0);
  CHECK(slurp(dir.path() / "logout.log").find("Not logged in to 127.0.0.1:1") != std::string::npos);
}
