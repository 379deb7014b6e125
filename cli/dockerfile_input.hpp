#pragma once
// Reading the Dockerfile a command names with -f: a path, or "-" for standard
// input. Shared by `imgbuild parse` and `imgbuild check`.

#include <string>

namespace imgbuild::cli {

/// Reads the Dockerfile `file` ("-": standard input). At most one byte more
/// than the parser accepts is read, so that an oversized input is reported by
/// the parser's size check rather than read whole. Throws CommandError
/// (`cannot open Dockerfile "x"`) when the file cannot be opened.
std::string read_dockerfile(const std::string& file);

/// The name shown in messages for `file`: "<stdin>" for "-", else the name as
/// given.
std::string dockerfile_display_name(const std::string& file);

}  // namespace imgbuild::cli
