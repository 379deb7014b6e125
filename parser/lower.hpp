#pragma once
// Lowering: syntax tree (parser/ast.hpp) → typed instructions
// (parser/instructions.hpp), with BuildKit's flag semantics, argument-count
// rules and the validations that can be decided before any variable is
// expanded. Every instruction is lowered even when an earlier one failed, so a
// caller sees all semantic errors at once.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "parser/ast.hpp"
#include "parser/instructions.hpp"
#include "util/result.hpp"

namespace imgbuild::parser {

/// Everything lowering produced for one Dockerfile.
struct LoweredFile {
  /// Instructions that lowered, in source order (failed ones are left out).
  std::vector<Instruction> instructions;
  /// Every error found, in source order, each located at its instruction.
  std::vector<Error> errors;
  /// The escape token in effect.
  char escape = '\\';

  /// True when no error was found.
  bool ok() const { return errors.empty(); }
};

/// Lowers a whole syntax tree; `file` names the Dockerfile in error locations.
LoweredFile lower(const Ast& ast, std::string_view file = "Dockerfile");

/// Lowers one node. The error, if any, is located at the node.
Result<Instruction> lower_node(const Node& node, std::string_view file = "Dockerfile");

/// Expands one word of a --mount value (the builder passes its shell
/// expansion with the stage environment).
using MountExpander = std::function<Result<std::string>(const std::string&)>;

/// Parses one RUN --mount value (CSV `key=value,…`, keys case-insensitive,
/// default type bind) with BuildKit's rules and messages. Without an expander
/// (lowering), values containing `$` are kept as written and checks that
/// depend on them are left for the builder; `from` never accepts variables.
Result<Mount> parse_mount(std::string_view spec, const MountExpander& expand = nullptr);

/// Validates a --chmod value: octal up to 07777 or a symbolic mode
/// (`u=rwX,go=rX`). Values containing `$` are accepted (checked after
/// expansion).
Result<void> validate_chmod(std::string_view value);

/// Parses a Go duration ("1m30s", "500ms"); the error texts are Go's.
Result<int64_t> parse_go_duration(std::string_view text);

/// Validates a STOPSIGNAL value: a signal name (with or without SIG) or a
/// positive number.
Result<void> validate_signal(std::string_view value);

/// Validates one EXPOSE entry: `port`, `port/proto`, `a-b[/proto]`.
Result<void> validate_port_spec(std::string_view value);

/// The instruction keywords, upper-case, for "did you mean".
const std::vector<std::string>& instruction_names();

}  // namespace imgbuild::parser
