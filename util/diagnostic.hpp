#pragma once
// Rendering of located errors in the style of BuildKit's Dockerfile errors:
//
//   Dockerfile:3:1: unknown instruction: FORM (did you mean FROM?)
//   --------------------
//      2 |     # base image
//      3 | >>> FORM alpine
//      4 |     RUN true
//   --------------------
//
// Pure formatting: the caller supplies the source text.

#include <string>
#include <string_view>

#include "util/result.hpp"

namespace imgbuild {

/// The first line, "file:line:col: message", as Error::to_string() gives it,
/// followed — when the error has a line and `source` holds it — by up to two
/// lines of context on each side with the failing lines marked ">>>" and a
/// caret under the column when one is known. Lines `line`..`end_line` are
/// marked (end_line 0 = just `line`).
std::string render_diagnostic(const Error& error, std::string_view source, int end_line = 0);

}  // namespace imgbuild
