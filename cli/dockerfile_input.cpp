#include "cli/dockerfile_input.hpp"

#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "parser/syntax/parse.hpp"

namespace imgbuild::cli {

namespace {

std::string read_limited(std::istream& in, size_t limit) {
  std::string out;
  char buf[64 * 1024];
  while (out.size() <= limit && in.read(buf, sizeof buf), in.gcount() > 0) {
    out.append(buf, static_cast<size_t>(in.gcount()));
  }
  return out;
}

}  // namespace

std::string read_dockerfile(const std::string& file) {
  const size_t limit = parser::k_max_dockerfile_size;
  if (file == "-") {
    return read_limited(std::cin, limit);
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw CommandError{fmt::format("cannot open Dockerfile \"{}\"", file), 1};
  }
  return read_limited(in, limit);
}

std::string dockerfile_display_name(const std::string& file) {
  return file == "-" ? "<stdin>" : file;
}

}  // namespace imgbuild::cli
