// Stage graph tests: stages by index and name, global ARGs, dependencies,
// target selection and the stages a target needs.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "parser/lower.hpp"
#include "parser/stages.hpp"

using namespace imgbuild::parser;

namespace {

int g_line = 0;

Instruction inst(const std::string& keyword, std::vector<std::string> args,
                 std::vector<std::string> flags = {}) {
  Node n;
  n.keyword_as_written = keyword;
  n.args = std::move(args);
  n.flags = std::move(flags);
  n.start = Position{++g_line, 1};
  n.end_line = g_line;
  auto r = lower_node(n);
  if (!r) {
    FAIL("lowering failed: " << r.error().message);
  }
  return std::move(*r);
}

}  // namespace

TEST_CASE("stages by index and name, global ARGs", "[parser][stages]") {
  std::vector<Instruction> is = {
      inst("ARG", {"BASE=alpine", "TAG=3"}),
      inst("FROM", {"${BASE}:${TAG}", "AS", "Build"}),
      inst("RUN", {"make"}),
      inst("FROM", {"build"}),
      inst("COPY", {"a", "b"}, {"--from=0"}),
      inst("FROM", {"scratch"}),
      inst("COPY", {"x", "y"}, {"--from=BUILD"}),
      inst("RUN", {"true"}, {"--mount=from=nginx:latest,target=/n"}),
  };
  auto r = build_stage_graph(is);
  REQUIRE(r.ok());
  const StageGraph& g = r.graph;
  REQUIRE(g.global_args.size() == 1);
  REQUIRE(g.stages.size() == 3);
  CHECK(g.stages[0].name == "build");
  CHECK(g.stages[0].base == "alpine:3");
  CHECK_FALSE(g.stages[0].dependencies[0].stage.has_value());
  CHECK(g.stages[0].instructions.size() == 1);
  CHECK(g.stages[1].dependencies[0].stage == std::optional<int>(0));
  CHECK(g.stages[1].dependencies[1].kind == DependencyKind::copy_from);
  CHECK(g.stages[1].dependencies[1].stage == std::optional<int>(0));
  CHECK(g.stages[1].display_name() == "stage-1");
  CHECK(g.stages[2].dependencies[1].stage == std::optional<int>(0));
  CHECK(g.stages[2].dependencies[2].kind == DependencyKind::mount_from);
  CHECK_FALSE(g.stages[2].dependencies[2].stage.has_value());
  CHECK(g.find_by_name("BUILD") == std::optional<int>(0));
  CHECK(g.find_reference("2") == std::optional<int>(2));
  CHECK_FALSE(g.find_reference("3").has_value());
}

TEST_CASE("build args override global ARG defaults in FROM", "[parser][stages]") {
  std::vector<Instruction> is = {inst("ARG", {"V=1"}), inst("ARG", {"IMG=img:$V"}),
                                 inst("FROM", {"$IMG"})};
  StageGraphOptions o;
  o.build_args = {"V=2"};
  auto r = build_stage_graph(is, o);
  REQUIRE(r.ok());
  CHECK(r.graph.stages[0].base == "img:2");
}

TEST_CASE("FROM a later stage name is an image", "[parser][stages]") {
  std::vector<Instruction> is = {inst("FROM", {"later"}), inst("FROM", {"alpine", "AS", "later"})};
  auto r = build_stage_graph(is);
  REQUIRE(r.ok());
  CHECK_FALSE(r.graph.stages[0].dependencies[0].stage.has_value());
}

TEST_CASE("stage graph errors, word for word", "[parser][stages]") {
  auto none = build_stage_graph({inst("ARG", {"X"})});
  REQUIRE(none.errors.size() == 1);
  CHECK(none.errors[0].message == "dockerfile contains no stages to build");

  auto before = build_stage_graph({inst("RUN", {"x"}), inst("FROM", {"a"})});
  REQUIRE(before.errors.size() == 1);
  CHECK(before.errors[0].message == "no build stage in current context");

  auto blank = build_stage_graph({inst("ARG", {"B"}), inst("FROM", {"$B"})});
  REQUIRE(blank.errors.size() == 1);
  CHECK(blank.errors[0].message == "base name ($B) should not be blank");

  auto index = build_stage_graph({inst("FROM", {"a"}), inst("COPY", {"a", "b"}, {"--from=7"})});
  REQUIRE(index.errors.size() == 1);
  CHECK(index.errors[0].message == "invalid stage index 7");
  CHECK(index.errors[0].location->line == g_line);
}

TEST_CASE("target selection", "[parser][stages]") {
  auto r = build_stage_graph({inst("FROM", {"a", "AS", "build"}), inst("FROM", {"b", "AS", "test"})});
  REQUIRE(r.ok());
  CHECK(*select_target(r.graph, "") == 1);
  CHECK(*select_target(r.graph, "Build") == 0);
  auto bad = select_target(r.graph, "bulid");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message == "target stage \"bulid\" could not be found (did you mean build?)");
  auto far = select_target(r.graph, "zzzzzz");
  CHECK(far.error().message == "target stage \"zzzzzz\" could not be found");
}

TEST_CASE("stages a target needs, and forward references fail only when needed", "[parser][stages]") {
  std::vector<Instruction> is = {
      inst("FROM", {"alpine", "AS", "base"}),
      inst("FROM", {"base", "AS", "deps"}),
      inst("FROM", {"scratch", "AS", "broken"}),
      inst("COPY", {"a", "b"}, {"--from=final"}),
      inst("FROM", {"alpine", "AS", "mnt"}),
      inst("RUN", {"x"}, {"--mount=from=final,target=/f"}),
      inst("FROM", {"scratch", "AS", "final"}),
      inst("COPY", {"a", "b"}, {"--from=deps"}),
      inst("COPY", {"a", "b"}, {"--from=final"}),
  };
  auto r = build_stage_graph(is);
  REQUIRE(r.ok());
  auto deps = stages_needed(r.graph, 1);
  REQUIRE(deps.has_value());
  CHECK(*deps == std::vector<int>{0, 1});
  auto broken = stages_needed(r.graph, 2);
  REQUIRE_FALSE(broken.has_value());
  CHECK(broken.error().message ==
        "cannot copy from stage \"final\", it needs to be defined before current stage \"broken\"");
  auto mnt = stages_needed(r.graph, 3);
  REQUIRE_FALSE(mnt.has_value());
  CHECK(mnt.error().message ==
        "cannot mount from stage \"final\" to \"/f\", stage needs to be defined before current command");
  auto self = stages_needed(r.graph, 4);
  REQUIRE_FALSE(self.has_value());
  CHECK(self.error().message ==
        "cannot copy from stage \"final\", it needs to be defined before current stage \"final\"");
}
