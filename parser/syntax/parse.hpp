#pragma once
// parse_dockerfile: Dockerfile text → syntax tree, exactly as BuildKit's
// parser (frontend/dockerfile/parser) builds it; see
// ../shared/conformance/buildkit/README.md §1.3 for the rules.
//
// Errors are Errc::syntax with a SourceLocation (file, line, column) and
// BuildKit's message text where BuildKit has one ("file with no
// instructions", "ENV must have two arguments", "unterminated heredoc", …).
// Resource limits are Errc::limit: input over k_max_dockerfile_size bytes, a
// physical line over 65535 bytes (BuildKit's own limit, same message), and
// ONBUILD nested deeper than k_max_onbuild_depth.

#include <cstddef>
#include <string_view>

#include "parser/ast.hpp"
#include "util/result.hpp"

namespace imgbuild::parser {

/// Largest Dockerfile parse_dockerfile accepts (64 MiB).
inline constexpr std::size_t k_max_dockerfile_size = std::size_t{64} << 20;
/// Longest physical line, newline excluded (bufio.MaxScanTokenSize - 1).
inline constexpr std::size_t k_max_line_length = 65535;
/// Deepest ONBUILD ONBUILD … nesting accepted.
inline constexpr int k_max_onbuild_depth = 64;

/// Parses a whole Dockerfile. `filename` is only used in error locations.
Result<Ast> parse_dockerfile(std::string_view text, std::string_view filename = "Dockerfile");

}  // namespace imgbuild::parser
