#pragma once
// parse_dockerfile: Dockerfile text → syntax tree, exactly as BuildKit's
// parser (frontend/dockerfile/parser) builds it; see
// ../shared/conformance/buildkit/README.md §1.3 for the rules.
//
// Errors are Errc::syntax with a SourceLocation (file, line, column) and
// BuildKit's message text where BuildKit has one ("file with no
// instructions", "ENV must have two arguments", "unterminated heredoc", …).
// Resource limits are Errc::limit: input over k_max_dockerfile_size bytes, a
// physical line over 65535 bytes (BuildKit's own limit, same message), an
// instruction over k_max_instruction_length bytes once joined, more than
// k_max_instructions instructions or k_max_words strings (arguments,
// flags, heredocs, comments) in the tree, and ONBUILD nested deeper than
// k_max_onbuild_depth. Together they bound memory to a small multiple of the
// input size, whatever the input.

#include <cstddef>
#include <string_view>

#include "parser/ast.hpp"
#include "util/result.hpp"

namespace imgbuild::parser {

/// Largest Dockerfile parse_dockerfile accepts (32 MiB).
inline constexpr std::size_t k_max_dockerfile_size = std::size_t{32} << 20;
/// Longest logical line (an instruction joined over its continuation lines).
inline constexpr std::size_t k_max_instruction_length = std::size_t{2} << 20;
/// Most instructions in one Dockerfile.
inline constexpr std::size_t k_max_instructions = 100000;
/// Most strings (arguments, flags, heredocs, comments) in one syntax tree.
inline constexpr std::size_t k_max_words = 1000000;
/// Longest physical line, newline excluded (bufio.MaxScanTokenSize - 1).
inline constexpr std::size_t k_max_line_length = 65535;
/// Deepest ONBUILD ONBUILD … nesting accepted.
inline constexpr int k_max_onbuild_depth = 64;

/// Parses a whole Dockerfile. `filename` is only used in error locations.
Result<Ast> parse_dockerfile(std::string_view text, std::string_view filename = "Dockerfile");

}  // namespace imgbuild::parser
