#pragma once
// The stage graph of a Dockerfile: global ARGs (before the first FROM), the
// stages in order with their names, and which stage needs which through
// FROM <stage>, COPY --from and RUN --mount from=. Pure functions over the
// lowered instructions; BuildKit's rules:
//   - FROM <name> refers to a stage only when that stage is defined earlier;
//     otherwise it is an image (after expansion with the global ARGs);
//   - COPY --from / --mount from= name a stage (by name or index) anywhere in
//     the file, or else an image; a stage that is not defined before the
//     current one is an error, reported only if the target needs the stage
//     (BuildKit never dispatches stages the target does not need).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "parser/instructions.hpp"
#include "parser/lower.hpp"
#include "util/result.hpp"

namespace imgbuild::parser {

/// How one stage refers to another stage or an image.
enum class DependencyKind { base, copy_from, mount_from };

/// One reference from a stage to a stage or image.
struct StageDependency {
  DependencyKind kind = DependencyKind::base;
  /// The reference as written (for FROM: after global-ARG expansion).
  std::string reference;
  /// The stage it resolves to; empty when it names an image.
  std::optional<int> stage;
  /// True when the stage is the current one or defined after it (an error
  /// if the stage is built).
  bool forward = false;
  /// The referring instruction's line and column.
  int line = 0;
  int column = 0;
  /// For mounts: the mount target, for the error message.
  std::string mount_target;
};

/// One build stage.
struct Stage {
  int index = 0;
  /// Lower-cased name; "" when unnamed.
  std::string name;
  /// The FROM that starts the stage.
  FromInstruction from;
  /// The base after global-ARG expansion ("" if expansion failed).
  std::string base;
  /// Instructions after FROM, in order.
  std::vector<Instruction> instructions;
  /// References in source order (the FROM base first).
  std::vector<StageDependency> dependencies;

  /// The name BuildKit shows for the stage: its name or "stage-N".
  std::string display_name() const {
    return name.empty() ? "stage-" + std::to_string(index) : name;
  }
};

/// All stages of a Dockerfile.
struct StageGraph {
  /// ARG instructions before the first FROM.
  std::vector<ArgInstruction> global_args;
  std::vector<Stage> stages;

  /// The stage named `name` (case-insensitive), first definition wins.
  std::optional<int> find_by_name(std::string_view name) const;
  /// The stage named by a COPY --from / mount from= value: a name or an index.
  std::optional<int> find_reference(std::string_view reference) const;
};

/// Options for building the graph.
struct StageGraphOptions {
  /// Build arguments (KEY=VALUE); they override global ARG defaults when
  /// FROM lines are expanded.
  std::vector<std::string> build_args;
  /// Names the Dockerfile in error locations.
  std::string file = "Dockerfile";
};

/// The graph and every error found while building it.
struct StageGraphResult {
  StageGraph graph;
  std::vector<Error> errors;
  bool ok() const { return errors.empty(); }
};

/// Builds the stage graph from lowered instructions. Errors: "dockerfile
/// contains no stages to build", "no build stage in current context" (an
/// instruction other than ARG before the first FROM), FROM expansion errors,
/// "base name (…) should not be blank", "invalid stage index N".
StageGraphResult build_stage_graph(const std::vector<Instruction>& instructions,
                                   const StageGraphOptions& options = {});

/// The stage a build targets: the last stage when `target` is empty, else
/// the named one (`target stage "bulid" could not be found (did you mean
/// build?)`).
Result<int> select_target(const StageGraph& graph, std::string_view target);

/// The stages `target` needs, itself included, in ascending index order.
/// Fails with BuildKit's message when a needed stage refers to a stage that
/// is not defined before it.
Result<std::vector<int>> stages_needed(const StageGraph& graph, int target,
                                       std::string_view file = "Dockerfile");

/// Every semantic error of a Dockerfile, sorted by line: lowering errors,
/// stage-graph errors (`graph` may be null), and a forward stage reference
/// in a stage the default target (the last stage) needs.
std::vector<Error> collect_errors(const LoweredFile& lowered, const StageGraphResult* graph,
                                  std::string_view file = "Dockerfile");

}  // namespace imgbuild::parser
