#pragma once
// dump_ast: BuildKit's Node.Dump() of a whole file, one "(keyword …)" line per
// instruction, lines separated by "\n" and no newline after the last; the
// conformance `result` files hold exactly dump_ast(ast) + "\n".

#include <string>

#include "parser/ast.hpp"

namespace imgbuild::parser {

/// The dump of one instruction, without the surrounding parentheses.
std::string dump_node(const Node& node);

/// The dump of a whole file.
std::string dump_ast(const Ast& ast);

}  // namespace imgbuild::parser
