#include "cli/dockerfile_input.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "parser/syntax/parse.hpp"
#include "util/fd.hpp"
#include "util/io.hpp"

namespace imgbuild::cli {

std::string read_dockerfile(const std::string& file) {
  UniqueFd owned;
  int fd = STDIN_FILENO;
  if (file != "-") {
    owned.reset(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!owned) {
      throw CommandError{fmt::format("cannot open Dockerfile \"{}\": {}", file, std::strerror(errno)), 1};
    }
    fd = owned.get();
  }
  auto text = io::read_all(fd, fmt::format("Dockerfile \"{}\"", dockerfile_display_name(file)),
                           parser::k_max_dockerfile_size);
  if (!text) {
    throw CommandError{text.error().message, 1};
  }
  return std::move(*text);
}

std::string dockerfile_display_name(const std::string& file) {
  return file == "-" ? "<stdin>" : file;
}

}  // namespace imgbuild::cli
