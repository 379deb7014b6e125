// libFuzzer target for the Dockerfile parser: any input must give a tree or
// an error, never a crash, a sanitizer report, a hang or a memory blowup; a
// tree must satisfy the invariants checked below. Build and run: see
// tests/fuzz/CMakeLists.txt.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "parser/syntax/dump.hpp"
#include "parser/syntax/parse.hpp"

namespace {

void check(bool condition) {
  if (!condition) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ast = imgbuild::parser::parse_dockerfile(text);
  if (!ast) {
    check(!ast.error().message.empty());
    check(ast.error().location.has_value());
    return 0;
  }
  check(!ast->children.empty());
  check(ast->start_line >= 1 && ast->start_line <= ast->end_line);
  int previous_end = 0;
  for (const auto& node : ast->children) {
    check(node.start.line > previous_end);
    check(node.start.line <= node.end_line);
    check(node.start.column >= 1);
    check(node.children.size() <= 1);
    previous_end = node.end_line;
  }
  check(previous_end == ast->end_line);
  std::string dump = imgbuild::parser::dump_ast(*ast);
  check(!dump.empty() && dump.front() == '(' && dump.back() == ')');
  return 0;
}
