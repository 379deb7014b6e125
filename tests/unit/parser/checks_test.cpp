// Build checks: every rule with a Dockerfile that triggers it and one that
// does not, messages compared word for word with BuildKit's texts; the check
// directive and BUILDKIT_DOCKERFILE_CHECK. (The `imgbuild check` command
// runs the binary: tests/integration/cli_commands_test.cpp.)

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <sys/wait.h>

#include <catch2/catch.hpp>

#include "parser/checks.hpp"
#include "parser/lower.hpp"
#include "parser/syntax/parse.hpp"
#include "support/paths.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild::parser;

namespace {

CheckReport check(const std::string& text, const CheckOptions& options = {}) {
  auto ast = parse_dockerfile(text);
  if (!ast) {
    FAIL("parse failed: " << ast.error().message);
  }
  LoweredFile lowered = lower(*ast);
  auto report = run_checks(*ast, lowered, options);
  if (!report) {
    FAIL("checks failed: " << report.error().message);
  }
  return *report;
}

// "LINE: Rule: message" lines for compact comparisons.
std::vector<std::string> lines(const CheckReport& report) {
  std::vector<std::string> out;
  for (const auto& w : report.warnings()) {
    out.push_back(std::to_string(w.line) + ": " + w.rule + ": " + w.message);
  }
  return out;
}

// Only the warnings of one rule.
std::vector<std::string> rule(const std::string& text, const std::string& name,
                              const CheckOptions& options = {}) {
  std::vector<std::string> out;
  for (const auto& w : check(text, options).warnings()) {
    if (w.rule == name) {
      out.push_back(std::to_string(w.line) + ": " + w.message);
    }
  }
  return out;
}

using Lines = std::vector<std::string>;

}  // namespace

TEST_CASE("rule registry holds every FEATURES.md rule", "[parser][checks]") {
  const char* names[] = {"StageNameCasing", "FromAsCasing", "NoEmptyContinuation",
                         "ConsistentInstructionCasing", "DuplicateStageName", "ReservedStageName",
                         "JSONArgsRecommended", "MaintainerDeprecated", "UndefinedArgInFrom",
                         "UndefinedVar", "WorkdirRelativePath", "MultipleInstructionsDisallowed",
                         "LegacyKeyValueFormat", "InvalidBaseImagePlatform", "RedundantTargetPlatform",
                         "FromPlatformFlagConstDisallowed", "SecretsUsedInArgOrEnv",
                         "InvalidDefaultArgInFrom", "CopyIgnoredFile", "ExposeProtoCasing",
                         "ExposeInvalidFormat", "InvalidDefinitionDescription"};
  for (const char* n : names) {
    INFO(n);
    const CheckRule* r = find_check_rule(n);
    REQUIRE(r != nullptr);
    CHECK_FALSE(r->description.empty());
  }
  CHECK(find_check_rule("InvalidDefinitionDescription")->experimental);
  CHECK(find_check_rule("CopyIgnoredFile")->experimental);
  CHECK_FALSE(find_check_rule("UndefinedVar")->experimental);
  CHECK_FALSE(find_check_rule("InvalidBaseImagePlatform")->static_check);
  CHECK(find_check_rule("NoSuchRule") == nullptr);
  CHECK(check_rules().size() == sizeof names / sizeof names[0]);
}

TEST_CASE("StageNameCasing", "[parser][checks]") {
  CHECK(rule("FROM scratch AS BuilDer\n", "StageNameCasing") ==
        Lines{"1: Stage name 'BuilDer' should be lowercase"});
  CHECK(rule("FROM scratch AS builder\nFROM scratch\n", "StageNameCasing").empty());
}

TEST_CASE("FromAsCasing", "[parser][checks]") {
  CHECK(rule("FROM scratch as base\n", "FromAsCasing") ==
        Lines{"1: 'as' and 'FROM' keywords' casing do not match"});
  CHECK(rule("from scratch AS base\n", "FromAsCasing") ==
        Lines{"1: 'AS' and 'from' keywords' casing do not match"});
  CHECK(rule("FROM scratch AS base\nfrom scratch as b2\nFrom scratch as b3\n", "FromAsCasing").empty());
}

TEST_CASE("NoEmptyContinuation", "[parser][checks]") {
  CHECK(rule("FROM scratch\nRUN echo a \\\n\n  b\n", "NoEmptyContinuation") ==
        Lines{"4: Empty continuation line"});
  CHECK(rule("FROM scratch\nRUN echo a \\\n  b\n", "NoEmptyContinuation").empty());
}

TEST_CASE("ConsistentInstructionCasing", "[parser][checks]") {
  CHECK(rule("FROM scratch\nexpose 80\nRUN true\n", "ConsistentInstructionCasing") ==
        Lines{"2: Command 'expose' should match the case of the command majority (uppercase)"});
  CHECK(rule("from scratch\nexpose 80\nRun true\n", "ConsistentInstructionCasing") ==
        Lines{"3: Command 'Run' should match the case of the command majority (lowercase)"});
  // A tie counts as uppercase; global ARGs are neither counted nor checked.
  CHECK(rule("arg x=1\nFROM scratch\nrun true\n", "ConsistentInstructionCasing") ==
        Lines{"3: Command 'run' should match the case of the command majority (uppercase)"});
  CHECK(rule("FROM scratch\nRUN true\nCMD [\"x\"]\n", "ConsistentInstructionCasing").empty());
}

TEST_CASE("DuplicateStageName and ReservedStageName", "[parser][checks]") {
  CHECK(rule("FROM scratch AS x\nFROM scratch AS X\n", "DuplicateStageName") ==
        Lines{"2: Duplicate stage name \"x\", stage names should be unique"});
  CHECK(rule("FROM scratch AS x\nFROM scratch AS y\n", "DuplicateStageName").empty());
  CHECK(rule("FROM scratch AS context\n", "ReservedStageName") ==
        Lines{"1: Stage name should not use the same name as reserved stage \"context\""});
  CHECK(rule("FROM busybox AS scratch\n", "ReservedStageName") ==
        Lines{"1: Stage name should not use the same name as reserved stage \"scratch\""});
  CHECK(rule("FROM scratch AS contexts\n", "ReservedStageName").empty());
}

TEST_CASE("JSONArgsRecommended", "[parser][checks]") {
  CHECK(rule("FROM scratch\nCMD echo hi\n", "JSONArgsRecommended") ==
        Lines{"2: JSON arguments recommended for CMD to prevent unintended behavior related to OS "
              "signals"});
  CHECK(rule("FROM scratch\nENTRYPOINT run.sh\n", "JSONArgsRecommended") ==
        Lines{"2: JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related "
              "to OS signals"});
  CHECK(rule("FROM scratch\nCMD [\"echo\", \"hi\"]\nENTRYPOINT [\"x\"]\n", "JSONArgsRecommended").empty());
  // An explicit SHELL (here or in the base stage) means the shell form is intended.
  CHECK(rule("FROM scratch AS a\nSHELL [\"/bin/bash\", \"-c\"]\nFROM a\nCMD echo hi\n",
             "JSONArgsRecommended")
            .empty());
  CheckOptions with_shell;
  with_shell.base_image = [](const std::string&) {
    return std::optional<BaseImageConfig>(BaseImageConfig{{}, {"cmd", "/S", "/C"}});
  };
  CHECK(rule("FROM windows\nCMD echo hi\n", "JSONArgsRecommended", with_shell).empty());
}

TEST_CASE("MaintainerDeprecated", "[parser][checks]") {
  CHECK(rule("FROM scratch\nMAINTAINER me@example.com\n", "MaintainerDeprecated") ==
        Lines{"2: Maintainer instruction is deprecated in favor of using label"});
  CHECK(rule("FROM scratch\nLABEL org.opencontainers.image.authors=me\n", "MaintainerDeprecated").empty());
}

TEST_CASE("UndefinedArgInFrom", "[parser][checks]") {
  CHECK(rule("ARG VERSION=1\nFROM alpine:${VERSIN}\n", "UndefinedArgInFrom") ==
        Lines{"2: FROM argument 'VERSIN' is not declared (did you mean VERSION?)"});
  CHECK(rule("FROM alpine:$TAG\n", "UndefinedArgInFrom") ==
        Lines{"1: FROM argument 'TAG' is not declared"});
  // Declared without a value, predefined, or in --platform.
  CHECK(rule("ARG TAG\nFROM alpine:$TAG\n", "UndefinedArgInFrom").empty());
  CHECK(rule("FROM --platform=$BUILDPLATFORM alpine\n", "UndefinedArgInFrom").empty());
  CHECK(rule("FROM --platform=$PLATFORM alpine\n", "UndefinedArgInFrom") ==
        Lines{"1: FROM argument 'PLATFORM' is not declared"});
}

TEST_CASE("UndefinedVar", "[parser][checks]") {
  CHECK(rule("FROM scratch\nCOPY $foo .\n", "UndefinedVar") ==
        Lines{"2: Usage of undefined variable '$foo'"});
  CHECK(rule("FROM scratch\nENV PATH=$PAHT:/app/bin\n", "UndefinedVar") ==
        Lines{"2: Usage of undefined variable '$PAHT' (did you mean $PATH?)"});
  CHECK(rule("FROM scratch\nARG VERSION=$foo\n", "UndefinedVar") ==
        Lines{"2: Usage of undefined variable '$foo'"});
  // Declared ARGs (with or without a value), ENV, and RUN/CMD text are fine.
  CHECK(rule("FROM scratch\nARG foo\nCOPY $foo .\nENV a=1\nWORKDIR /$a\nRUN echo $nothing\n",
             "UndefinedVar")
            .empty());
  // A global ARG is not visible in a stage until re-declared.
  CHECK(rule("ARG G=1\nFROM scratch\nCOPY $G /\n", "UndefinedVar") ==
        Lines{"3: Usage of undefined variable '$G'"});
  CHECK(rule("ARG G=1\nFROM scratch\nARG G\nCOPY $G /\n", "UndefinedVar").empty());
  // ENV a=1 b=$a sees the old value of a.
  CHECK(rule("FROM scratch\nENV a=1 b=$a\n", "UndefinedVar") ==
        Lines{"2: Usage of undefined variable '$a'"});
  // Inherited through FROM <stage>.
  CHECK(rule("FROM scratch AS base\nARG X\nENV Y=1\nFROM base\nCOPY $X$Y /\n", "UndefinedVar").empty());
  // Base image env: unknown without the hook (not checked), known with it.
  CHECK(rule("FROM python\nARG VERSION=$PYTHON_VERSION\n", "UndefinedVar").empty());
  CHECK(rule("FROM python\nARG VERSION=$FOO\n", "UndefinedVar").empty());
  CheckOptions opts;
  opts.base_image = [](const std::string& image) -> std::optional<BaseImageConfig> {
    if (image == "python") {
      return BaseImageConfig{{"PYTHON_VERSION=3.12"}, {}};
    }
    return std::nullopt;
  };
  CHECK(rule("FROM python\nARG VERSION=$PYTHON_VERSION\n", "UndefinedVar", opts).empty());
  CHECK(rule("FROM python\nARG VERSION=$PYTHON_VERSIO\n", "UndefinedVar", opts) ==
        Lines{"2: Usage of undefined variable '$PYTHON_VERSIO' (did you mean $PYTHON_VERSION?)"});
  // Predefined ARGs are global: a stage sees them once it declares them.
  CHECK(rule("FROM scratch\nARG TARGETARCH\nCOPY bin-$TARGETARCH /\n", "UndefinedVar").empty());
  CHECK(rule("FROM scratch\nCOPY bin-$TARGETARCH /\n", "UndefinedVar") ==
        Lines{"2: Usage of undefined variable '$TARGETARCH'"});
  // Proxy args too (they reach RUN without a declaration, not expansion).
  CHECK(rule("FROM scratch\nARG HTTP_PROXY\nENV P=$HTTP_PROXY\n", "UndefinedVar").empty());
  // Build args give values only to declared ARGs.
  CheckOptions args;
  args.build_args = {"foo=1"};
  CHECK(rule("FROM scratch\nCOPY $foo .\n", "UndefinedVar", args) ==
        Lines{"2: Usage of undefined variable '$foo'"});
}

TEST_CASE("WorkdirRelativePath", "[parser][checks]") {
  CHECK(rule("FROM scratch\nWORKDIR app\nWORKDIR sub\n", "WorkdirRelativePath") ==
        Lines{"2: Relative workdir \"app\" can have unexpected results if the base image changes"});
  CHECK(rule("FROM scratch\nWORKDIR /app\nWORKDIR sub\n", "WorkdirRelativePath").empty());
  CHECK(rule("FROM scratch AS a\nWORKDIR /app\nFROM a\nWORKDIR sub\n", "WorkdirRelativePath").empty());
  // The path is checked after expansion.
  CHECK(rule("FROM scratch\nENV D=/srv\nWORKDIR $D/x\n", "WorkdirRelativePath").empty());
}

TEST_CASE("MultipleInstructionsDisallowed", "[parser][checks]") {
  CHECK(rule("FROM scratch\nCMD [\"a\"]\nCMD [\"b\"]\n", "MultipleInstructionsDisallowed") ==
        Lines{"2: Multiple CMD instructions should not be used in the same stage because only the "
              "last one will be used"});
  CHECK(rule("FROM scratch\nENTRYPOINT [\"a\"]\nHEALTHCHECK NONE\nENTRYPOINT [\"b\"]\n"
             "HEALTHCHECK NONE\n",
             "MultipleInstructionsDisallowed") ==
        Lines{"2: Multiple ENTRYPOINT instructions should not be used in the same stage because "
              "only the last one will be used",
              "3: Multiple HEALTHCHECK instructions should not be used in the same stage because "
              "only the last one will be used"});
  CHECK(rule("FROM scratch AS a\nCMD [\"a\"]\nFROM a\nCMD [\"b\"]\n", "MultipleInstructionsDisallowed")
            .empty());
}

TEST_CASE("LegacyKeyValueFormat", "[parser][checks]") {
  CHECK(rule("FROM scratch\nENV key value\n", "LegacyKeyValueFormat") ==
        Lines{"2: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format"});
  CHECK(rule("FROM scratch\nLABEL key value\n", "LegacyKeyValueFormat") ==
        Lines{"2: \"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format"});
  CHECK(rule("FROM scratch\nENV key=value\nLABEL a=b\n", "LegacyKeyValueFormat").empty());
}

TEST_CASE("RedundantTargetPlatform and FromPlatformFlagConstDisallowed", "[parser][checks]") {
  CHECK(rule("FROM --platform=$TARGETPLATFORM scratch\n", "RedundantTargetPlatform") ==
        Lines{"1: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is "
              "the default behavior"});
  CHECK(rule("FROM --platform=${TARGETPLATFORM} scratch\n", "RedundantTargetPlatform") ==
        Lines{"1: Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is "
              "the default behavior"});
  CHECK(rule("FROM --platform=$BUILDPLATFORM scratch\n", "RedundantTargetPlatform").empty());

  CHECK(rule("FROM --platform=linux/amd64 scratch\n", "FromPlatformFlagConstDisallowed") ==
        Lines{"1: FROM --platform flag should not use constant value \"linux/amd64\""});
  // A stage named after the platform is deliberate; variables are not constants.
  CHECK(rule("FROM --platform=linux/amd64 scratch AS build-amd64\n", "FromPlatformFlagConstDisallowed")
            .empty());
  CHECK(rule("FROM --platform=$BUILDPLATFORM scratch\n", "FromPlatformFlagConstDisallowed").empty());
}

TEST_CASE("SecretsUsedInArgOrEnv", "[parser][checks]") {
  CHECK(rule("FROM scratch\nARG API_KEY\nENV github_token=x\n", "SecretsUsedInArgOrEnv") ==
        Lines{"2: Do not use ARG or ENV instructions for sensitive data (ARG \"API_KEY\")",
              "3: Do not use ARG or ENV instructions for sensitive data (ENV \"github_token\")"});
  CHECK(rule("FROM scratch\nARG PASSWORD_FILE\nENV PUBLIC_KEY=x KEYBOARD=1 MONKEY=2\n",
             "SecretsUsedInArgOrEnv")
            .empty());
  // Global ARGs are not dispatched, hence not checked (as in BuildKit).
  CHECK(rule("ARG SECRET=1\nFROM scratch\n", "SecretsUsedInArgOrEnv").empty());
}

TEST_CASE("InvalidDefaultArgInFrom", "[parser][checks]") {
  CHECK(rule("ARG TAG\nFROM busybox:${TAG}\n", "InvalidDefaultArgInFrom") ==
        Lines{"2: Default value for ARG busybox:${TAG} results in empty or invalid base image name"});
  CHECK(rule("ARG IMAGE\nFROM $IMAGE\n", "InvalidDefaultArgInFrom") ==
        Lines{"2: Default value for ARG $IMAGE results in empty or invalid base image name"});
  CHECK(rule("ARG TAG=latest\nFROM busybox:${TAG}\n", "InvalidDefaultArgInFrom").empty());
  CHECK(rule("ARG TAG=${TAG:-latest}\nFROM busybox:${TAG}\n", "InvalidDefaultArgInFrom").empty());
  // Build args do not hide a bad default.
  CheckOptions args;
  args.build_args = {"TAG=1"};
  CHECK(rule("ARG TAG\nFROM busybox:${TAG}\n", "InvalidDefaultArgInFrom", args).size() == 1);
}

TEST_CASE("image references", "[parser][checks]") {
  for (const char* ok : {"alpine", "alpine:3.20", "library/alpine", "docker.io/library/alpine:latest",
                         "localhost:5000/a/b:c", "ghcr.io/o-w/n__x.y:v1.0-rc",
                         "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                         "[::1]:5000/img", "scratch"}) {
    INFO(ok);
    CHECK(is_valid_image_reference(ok));
  }
  for (const char* bad : {"", "alpine:", "Alpine", "a//b", "-a", "a:b:c", "alpine@sha256:abc",
                          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                          "a/B", ":tag"}) {
    INFO(bad);
    CHECK_FALSE(is_valid_image_reference(bad));
  }
}

TEST_CASE("ExposeProtoCasing and ExposeInvalidFormat", "[parser][checks]") {
  CHECK(rule("FROM scratch\nEXPOSE 80/TcP 53/udp\n", "ExposeProtoCasing") ==
        Lines{"2: Defined protocol '80/TcP' in EXPOSE instruction should be lowercase"});
  CHECK(rule("FROM scratch\nEXPOSE 80/tcp 53\n", "ExposeProtoCasing").empty());
  CHECK(rule("FROM scratch\nEXPOSE 127.0.0.1:80:80 8080:80\n", "ExposeInvalidFormat") ==
        Lines{"2: EXPOSE instruction should not define an IP address or host-port mapping, found "
              "'127.0.0.1:80:80'",
              "2: EXPOSE instruction should not define an IP address or host-port mapping, found "
              "'8080:80'"});
  // Ports are checked after expansion.
  CHECK(rule("FROM scratch\nENV P=1234:80\nEXPOSE $P\n", "ExposeInvalidFormat") ==
        Lines{"3: EXPOSE instruction should not define an IP address or host-port mapping, found "
              "'1234:80'"});
  CHECK(rule("FROM scratch\nEXPOSE 80 443/tcp 1000-2000/udp\n", "ExposeInvalidFormat").empty());
}

TEST_CASE("InvalidDefinitionDescription (experimental)", "[parser][checks]") {
  const std::string text =
      "# check=experimental=InvalidDefinitionDescription\n"
      "\n"
      "# the base stage\n"
      "FROM scratch AS base\n"
      "# bar the bar arg\n"
      "ARG foo\n"
      "# both x and y\n"
      "ARG x y\n"
      "# y is fine\n"
      "ARG x y\n"
      "# base2 is good\n"
      "FROM scratch AS base2\n"
      "# foo is good\n"
      "ARG foo\n"
      "\n"
      "ARG nocomment\n";
  CHECK(rule(text, "InvalidDefinitionDescription") ==
        Lines{"4: Comment for FROM should follow the format: `# base <description>`",
              "6: Comment for ARG should follow the format: `# foo <description>`",
              "8: Comment for ARG should follow the format: `# <arg_key> <description>`"});
  // Not enabled: not reported.
  CHECK(rule("# the base stage\nFROM scratch AS base\n", "InvalidDefinitionDescription").empty());
}

TEST_CASE("CopyIgnoredFile (experimental, through the dockerignore hook)", "[parser][checks]") {
  CheckOptions opts;
  opts.dockerignore_excludes = [](const std::string& path) { return path == "secret.txt" || path == "tmp"; };
  const std::string head = "# check=experimental=CopyIgnoredFile\nFROM scratch AS a\n";
  CHECK(rule(head + "COPY ./secret.txt /\nADD tmp/ /t\nCOPY ok /\nCOPY --from=a secret.txt /\n",
             "CopyIgnoredFile", opts) ==
        Lines{"3: Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore",
              "4: Attempting to Add file \"tmp\" that is excluded by .dockerignore"});
  CHECK(rule("FROM scratch\nCOPY secret.txt /\n", "CopyIgnoredFile", opts).empty());
}

TEST_CASE("InvalidBaseImagePlatform message for the builder", "[parser][checks]") {
  CHECK(format_invalid_base_image_platform("alpine", "linux/amd64", "linux/arm64") ==
        "Base image alpine was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for "
        "current build");
  CheckReport report;
  report.report("InvalidBaseImagePlatform", format_invalid_base_image_platform("a", "b", "c"), 1);
  CHECK(report.warnings().size() == 1);
}

TEST_CASE("check directive: skip, error, experimental", "[parser][checks]") {
  const std::string body = "FROM scratch AS BASE_STAGE\nCMD echo \"Hello, world!\"\n";
  CHECK(lines(check(body)) ==
        Lines{"1: StageNameCasing: Stage name 'BASE_STAGE' should be lowercase",
              "2: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended "
              "behavior related to OS signals"});
  CHECK_FALSE(check(body).error_message());

  CHECK(lines(check("# check=skip=JSONArgsRecommended,StageNameCasing\n" + body)).empty());
  CHECK(lines(check("# check=skip=all\n" + body)).empty());
  CHECK(lines(check("# check=skip= JSONArgsRecommended \n" + body)) ==
        Lines{"2: StageNameCasing: Stage name 'BASE_STAGE' should be lowercase"});

  CheckReport err = check("# check=error=true\n" + body);
  CHECK(err.warnings().size() == 2);
  REQUIRE(err.error_message());
  CHECK(*err.error_message() == "lint violation found for rules: StageNameCasing, JSONArgsRecommended");

  CheckReport both = check("# check=skip=StageNameCasing;error=true\n" + body);
  REQUIRE(both.error_message());
  CHECK(*both.error_message() == "lint violation found for rules: JSONArgsRecommended");
  CHECK_FALSE(check("# check=skip=all;error=true\n" + body).error_message());
  CHECK_FALSE(check("# check=error=false\n" + body).error_message());

  // Experimental rules need experimental=, and then ignore skip (BuildKit).
  const std::string desc = "# wrong\nFROM scratch AS base\n";
  CHECK(rule("# check=experimental=all\n\n" + desc, "InvalidDefinitionDescription").size() == 1);
  CHECK(rule("# check=skip=all;experimental=all\n\n" + desc, "InvalidDefinitionDescription").size() == 1);
}

TEST_CASE("BUILDKIT_DOCKERFILE_CHECK replaces the directive", "[parser][checks]") {
  const std::string body = "# check=error=true\nFROM scratch\nCMD echo hi\n";
  CheckOptions skip;
  skip.build_args = {"BUILDKIT_DOCKERFILE_CHECK=skip=JSONArgsRecommended"};
  CheckReport r = check(body, skip);
  CHECK(r.warnings().empty());
  CheckOptions warn_only;
  warn_only.build_args = {"BUILDKIT_DOCKERFILE_CHECK=skip=StageNameCasing"};
  CheckReport w = check(body, warn_only);
  CHECK(w.warnings().size() == 1);
  CHECK_FALSE(w.error_message());
  CheckOptions err;
  err.build_args = {"BUILDKIT_DOCKERFILE_CHECK=error=true"};
  CHECK(check("FROM scratch\nCMD echo hi\n", err).error_message());
}

TEST_CASE("invalid check options", "[parser][checks]") {
  auto a = parse_check_config("skip");
  REQUIRE_FALSE(a);
  CHECK(a.error().message == "invalid check option \"skip\"");
  auto b = parse_check_config("error=maybe");
  REQUIRE_FALSE(b);
  CHECK(b.error().message ==
        "failed to parse check option \"error=maybe\": strconv.ParseBool: parsing \"maybe\": invalid "
        "syntax");
  auto c = parse_check_config("bogus=1");
  REQUIRE_FALSE(c);
  CHECK(c.error().message == "invalid check option \"bogus\"");
  auto d = parse_check_config(" skip = A, B ; error = 1 ");
  REQUIRE(d);
  CHECK(d->skip == std::set<std::string>{"A", "B"});
  CHECK(d->error);

  auto ast = parse_dockerfile("# check=nope\nFROM scratch\n");
  REQUIRE(ast);
  auto r = run_checks(*ast, lower(*ast));
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "failed to parse check options: invalid check option \"nope\"");
}

TEST_CASE("dispatch rules can be limited to the stages a build needs", "[parser][checks]") {
  const std::string text = "FROM scratch AS a\nCMD echo a\nFROM scratch AS b\nCMD echo b\n";
  CheckOptions only_b;
  only_b.stages = {1};
  CHECK(rule(text, "JSONArgsRecommended", only_b) ==
        Lines{"4: JSON arguments recommended for CMD to prevent unintended behavior related to OS "
              "signals"});
  CHECK(rule(text, "JSONArgsRecommended").size() == 2);
}

TEST_CASE("a clean Dockerfile has no warnings", "[parser][checks]") {
  CHECK(lines(check("# syntax=docker/dockerfile:1\n"
                    "ARG BASE=scratch\n"
                    "FROM ${BASE} AS build\n"
                    "ARG VERSION=1\n"
                    "ENV APP_VERSION=${VERSION}\n"
                    "WORKDIR /src\n"
                    "COPY --chmod=0644 a.txt ./\n"
                    "EXPOSE 8080/tcp\n"
                    "FROM build\n"
                    "ENTRYPOINT [\"/app\"]\n"
                    "CMD [\"--help\"]\n"))
            .empty());
}
