#pragma once
// Reading the Dockerfile a command names with -f: a path, or "-" for standard
// input. Shared by `imgbuild parse` and `imgbuild check`.

#include <string>

namespace imgbuild::cli {

/// Reads the Dockerfile `file` ("-": standard input), at most
/// parser::k_max_dockerfile_size bytes. Throws CommandError when the file
/// cannot be opened (`cannot open Dockerfile "x": …`), is a directory, or is
/// larger than the limit (the error names the limit).
std::string read_dockerfile(const std::string& file);

/// The name shown in messages for `file`: "<stdin>" for "-", else the name as
/// given.
std::string dockerfile_display_name(const std::string& file);

}  // namespace imgbuild::cli
