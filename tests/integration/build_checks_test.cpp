// Build checks during builds: the warnings summary after a build, `--check`
// (checks only, exit 1 on warnings), `# check=error=true` failing the build
// before any step runs, and the warnings in the metadata file.

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::read_file;
using imgbuild::test::RunResult;
using namespace imgbuild::test::build;
using nlohmann::json;

TEST_CASE("build checks: warnings after the build, in the metadata file, --check", "[integration][build][checks]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const char* df =
      "FROM busybox as Base\n"
      "CMD echo hi\n"
      "FROM base\n"
      "COPY secret.txt /\n"
      "RUN echo ran-the-step\n";
  fs::path md = fx.work.path / "md.json";
  RunResult r = fx.build("warn", df, {{"secret.txt", "s\n"}, {".dockerignore", "secret.txt\n"}},
                         {"--metadata-file", md.string()});
  INFO(r.err);
  // COPY of an ignored file fails the build, and the warnings still follow.
  CHECK(r.status == 1);
  CHECK(r.err.find(" 3 warnings found (use --check to expand):\n") != std::string::npos);
  CHECK(r.err.find(" - StageNameCasing: Stage name 'Base' should be lowercase (line 1)\n") != std::string::npos);
  CHECK(r.err.find(" - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)\n") !=
        std::string::npos);
  CHECK(r.err.find(" - JSONArgsRecommended: JSON arguments recommended for CMD") != std::string::npos);

  // CopyIgnoredFile (experimental) reads the context's .dockerignore.
  RunResult ign = fx.build("warn-ignored", "# check=experimental=CopyIgnoredFile\nFROM busybox\nCOPY secret.txt /\n",
                           {{"secret.txt", "s\n"}, {".dockerignore", "secret.txt\n"}});
  CHECK(ign.status == 1);
  CHECK(ign.err.find(" - CopyIgnoredFile: Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore "
                     "(line 3)") != std::string::npos);

  // A passing build: the summary after the steps, the warnings in the metadata.
  RunResult ok = fx.build("warn2", "FROM busybox as base\nRUN echo ran\n", {}, {"--metadata-file", md.string()});
  INFO(ok.err);
  REQUIRE(ok.status == 0);
  size_t summary = ok.err.find(" 1 warning found (use --check to expand):\n - FromAsCasing:");
  CHECK(summary != std::string::npos);
  CHECK(summary > ok.err.find("ran"));
  json meta = json::parse(read_file(md));
  REQUIRE(meta["imgbuild.build.warnings"].size() == 1);
  CHECK(meta["imgbuild.build.warnings"][0]["rule"] == "FromAsCasing");
  CHECK(meta["imgbuild.build.warnings"][0]["line"] == 1);
  CHECK(meta["imgbuild.build.warnings"][0]["url"] == "https://docs.docker.com/go/dockerfile/rule/from-as-casing/");

  // --check: the expanded form with the Dockerfile excerpt; nothing is built.
  RunResult chk = fx.build("warn3", df, {{"secret.txt", "s\n"}}, {"--check"});
  CHECK(chk.status == 1);
  CHECK(chk.out.find("WARNING: JSONArgsRecommended - "
                     "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n") != std::string::npos);
  CHECK(chk.out.find("Dockerfile:2\n--------------------\n") != std::string::npos);
  CHECK(chk.out.find(">>> CMD echo hi") != std::string::npos);
  CHECK(chk.out.find("Check complete, 3 warnings have been found!") != std::string::npos);
  CHECK(chk.err.find("ran-the-step") == std::string::npos);

  RunResult clean = fx.build("clean", "FROM busybox\nRUN echo x\n", {}, {"--check"});
  CHECK(clean.status == 0);
  CHECK(clean.out == "Check complete, no warnings found.\n");
}

TEST_CASE("build checks: check=error=true fails the build before it runs", "[integration][build][checks]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const char* df =
      "# check=error=true\n"
      "FROM busybox as base\n"
      "RUN echo should-not-run\n"
      "CMD echo hi\n";
  RunResult r = fx.build("err", df, {}, {"-t", "imgbuild-test-builder-checkerr:1"});
  CHECK(r.status == 1);
  CHECK(r.err.find("imgbuild: error: lint violation found for rules: FromAsCasing, JSONArgsRecommended") !=
        std::string::npos);
  CHECK(r.err.find(" - FromAsCasing:") != std::string::npos);
  CHECK(r.err.find("should-not-run") == std::string::npos);
  CHECK(imgbuild::test::run_imgbuild(fx.root, {"image", "inspect", "imgbuild-test-builder-checkerr:1"}).status != 0);

  // The build arg replaces the directive: skip the rules, the build passes.
  RunResult skipped = fx.build("err", df, {}, {"--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all"});
  INFO(skipped.err);
  CHECK(skipped.status == 0);
  CHECK(skipped.err.find("warning") == std::string::npos);
}
