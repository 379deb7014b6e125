// Lowering and stage-graph tests on real Dockerfile text, through the
// grammar (parse_dockerfile).

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "parser/lower.hpp"
#include "parser/stages.hpp"
#include "parser/syntax/parse.hpp"

using namespace imgbuild::parser;

namespace {

LoweredFile lower_text(const std::string& text) {
  auto ast = parse_dockerfile(text);
  if (!ast) {
    FAIL("parse failed: " << ast.error().to_string());
  }
  return lower(*ast);
}

}  // namespace

TEST_CASE("real text: a multi-stage Dockerfile lowers and forms a graph", "[parser][lower][text]") {
  const std::string text =
      "# syntax=docker/dockerfile:1\n"
      "ARG BASE=alpine\n"
      "FROM --platform=$BUILDPLATFORM ${BASE} AS Build\n"
      "RUN --mount=type=cache,target=/root/.cache \\\n"
      "    --network=none <<EOF\n"
      "echo hi\n"
      "EOF\n"
      "COPY --chmod=755 <<-EOT /x\n"
      "\tbody\n"
      "EOT\n"
      "ONBUILD RUN echo hi\n"
      "ENV a=1 b=\"two words\"\n"
      "HEALTHCHECK --interval=5s CMD [\"true\"]\n"
      "FROM scratch\n"
      "COPY --from=build /x /y\n";
  LoweredFile f = lower_text(text);
  REQUIRE(f.ok());
  REQUIRE(f.instructions.size() == 9);
  const auto& from = f.instructions[1].get<FromInstruction>();
  CHECK(from.stage_name == "build");
  CHECK(from.platform == std::optional<std::string>("$BUILDPLATFORM"));
  CHECK(from.header.range.start_line == 3);
  const auto& run = f.instructions[2].get<RunInstruction>();
  CHECK(run.header.range.start_line == 4);
  CHECK(run.header.range.end_line == 7);
  CHECK(run.network == std::optional<std::string>("none"));
  REQUIRE(run.mounts.size() == 1);
  CHECK(run.mounts[0].target == "/root/.cache");
  REQUIRE(run.heredocs.size() == 1);
  CHECK(run.heredocs[0].content == "echo hi\n");
  const auto& copy = f.instructions[3].get<CopyInstruction>();
  REQUIRE(copy.inline_sources.size() == 1);
  CHECK(copy.inline_sources[0].name == "EOT");
  CHECK(heredoc_body(copy.inline_sources[0]) == "body\n");
  CHECK(copy.dest == "/x");
  const auto& onbuild = f.instructions[4].get<OnbuildInstruction>();
  CHECK(onbuild.trigger == "RUN echo hi");
  REQUIRE(onbuild.lowered.size() == 1);
  const auto& env = f.instructions[5].get<EnvInstruction>();
  REQUIRE(env.pairs.size() == 2);
  CHECK(env.pairs[1].value == "\"two words\"");
  const auto& hc = f.instructions[6].get<HealthcheckInstruction>();
  CHECK(hc.test == std::vector<std::string>{"CMD", "true"});
  CHECK(hc.interval_ns == std::optional<int64_t>(5000000000));

  auto graph = build_stage_graph(f.instructions);
  REQUIRE(graph.ok());
  REQUIRE(graph.graph.stages.size() == 2);
  CHECK(graph.graph.global_args.size() == 1);
  CHECK(graph.graph.stages[0].base == "alpine");
  CHECK(graph.graph.stages[1].dependencies[1].stage == std::optional<int>(0));
  CHECK(*stages_needed(graph.graph, 1) == std::vector<int>{0, 1});
}

TEST_CASE("real text: all semantic errors are collected with their lines", "[parser][lower][text]") {
  const std::string text =
      "FROM alpine AS 1bad\n"
      "FORM alpine\n"
      "COPY --form=x a b\n"
      "RUN --mount=type=secret echo\n"
      "SHELL /bin/sh -c\n"
      "ONBUILD ONBUILD RUN x\n"
      "HEALTHCHECK --interval=1 CMD true\n"
      "COPY --link --link a b\n";
  LoweredFile f = lower_text(text);
  REQUIRE(f.errors.size() == 8);
  const std::vector<std::string> expected = {
      "invalid name for build stage: \"1bad\", name can't start with a number or contain symbols",
      "unknown instruction: FORM (did you mean FROM?)",
      "unknown flag: --form (did you mean from?)",
      "invalid secret mount. one of source, target required",
      "SHELL requires the arguments to be in JSON form",
      "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
      "time: missing unit in duration \"1\"",
      "duplicate flag specified: --link",
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(f.errors[i].message == expected[i]);
    REQUIRE(f.errors[i].location.has_value());
    CHECK(f.errors[i].location->line == static_cast<int>(i) + 1);
    CHECK(f.errors[i].location->column == 1);
  }
}

TEST_CASE("real text: escape directive and JSON fallback", "[parser][lower][text]") {
  LoweredFile f = lower_text(
      "# escape=`\n"
      "FROM scratch\n"
      "ENTRYPOINT []random string\n"
      "VOLUME [\"/a\", \"/b\"]\n"
      "LABEL maintainer me\n"
      "EXPOSE 80/tcp 53/udp\n");
  REQUIRE(f.ok());
  CHECK(f.escape == '`');
  const auto& ep = f.instructions[1].get<EntrypointInstruction>();
  CHECK_FALSE(ep.command.json_form);
  CHECK(ep.command.args == std::vector<std::string>{"[]random string"});
  CHECK(f.instructions[2].get<VolumeInstruction>().json_form);
  CHECK(f.instructions[3].get<LabelInstruction>().legacy_form);
  CHECK(f.instructions[4].get<ExposeInstruction>().ports == std::vector<std::string>{"80/tcp", "53/udp"});
}

TEST_CASE("real text: ONBUILD triggers keep their heredocs", "[parser][lower][text]") {
  LoweredFile f = lower_text(
      "FROM scratch\n"
      "ONBUILD RUN <<EOF\n"
      "echo hi\n"
      "EOF\n"
      "ONBUILD COPY <<one <<two /dst/\n"
      "1\n"
      "one\n"
      "2\n"
      "two\n");
  REQUIRE(f.ok());
  const auto& run = f.instructions[1].get<OnbuildInstruction>();
  CHECK(run.trigger == "RUN <<EOF\necho hi\nEOF");
  REQUIRE(run.lowered.size() == 1);
  if (const auto* r = run.lowered[0].as<RunInstruction>()) {
    std::vector<std::string> bodies;
    for (const auto& h : r->heredocs) {
      bodies.push_back(h.content);
    }
    CHECK(bodies == std::vector<std::string>{"echo hi\n"});
  } else {
    FAIL("the trigger is not a RUN");
  }
  const auto& copy = f.instructions[2].get<OnbuildInstruction>();
  CHECK(copy.trigger == "COPY <<one <<two /dst/\n1\none\n2\ntwo");
  CHECK_FALSE(copy.trigger_error);
  REQUIRE(copy.lowered.size() == 1);
  if (const auto* c = copy.lowered[0].as<CopyInstruction>()) {
    std::vector<std::string> bodies;
    for (const auto& h : c->inline_sources) {
      bodies.push_back(h.name + "=" + h.content);
    }
    CHECK(bodies == std::vector<std::string>{"one=1\n", "two=2\n"});
  } else {
    FAIL("the trigger is not a COPY");
  }
}
