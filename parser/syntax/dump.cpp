#include "parser/syntax/dump.hpp"

#include "parser/syntax/unicode.hpp"

namespace imgbuild::parser {

std::string dump_node(const Node& node) {
  std::string out = node.keyword;
  if (!node.flags.empty()) {
    out += " [";
    for (size_t i = 0; i < node.flags.size(); ++i) {
      if (i > 0) {
        out += ' ';
      }
      out += syntax::go_quote(node.flags[i]);
    }
    out += ']';
  }
  for (const std::string& arg : node.args) {
    out += ' ';
    out += syntax::go_quote(arg);
  }
  for (const Node& child : node.children) {
    out += " (";
    out += dump_node(child);
    out += ')';
  }
  return std::string(syntax::go_trim_space(out));
}

std::string dump_ast(const Ast& ast) {
  std::string out;
  for (size_t i = 0; i < ast.children.size(); ++i) {
    if (i > 0) {
      out += '\n';
    }
    out += '(';
    out += dump_node(ast.children[i]);
    out += ')';
  }
  return out;
}

}  // namespace imgbuild::parser
