#pragma once
// The machine-readable view of a Dockerfile (`imgbuild parse --format json`):
// the typed instructions with their line ranges, the global ARGs, the stages
// with their dependencies, directives, and every error. Keys come out in a
// fixed order, so the same Dockerfile always gives the same bytes.

#include <string>
#include <string_view>

#include "parser/ast.hpp"
#include "parser/lower.hpp"
#include "parser/stages.hpp"

namespace imgbuild::parser {

/// Version of the JSON layout; bumped on incompatible changes.
inline constexpr int k_json_format_version = 1;

/// Renders the lowered Dockerfile and its stage graph as indented JSON
/// (ending in a newline). `graph` may be null when the graph was not built.
std::string to_json(const Ast& ast, const LoweredFile& lowered, const StageGraphResult* graph,
                    std::string_view file);

/// Lowers the AST and builds its stage graph, then renders both: the whole
/// pipeline after parsing, as the CLI uses it. Sets `ok` to false when any
/// lowering or stage-graph error was found.
std::string dockerfile_json(const Ast& ast, std::string_view file, bool& ok);

}  // namespace imgbuild::parser
