#include "util/result.hpp"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace imgbuild {

std::string Error::to_string() const {
  std::string out;
  if (location && !location->file.empty()) {
    out += location->file;
    if (location->line > 0) {
      out += fmt::format(":{}", location->line);
      if (location->column > 0) {
        out += fmt::format(":{}", location->column);
      }
    }
    out += ": ";
  }
  out += message;
  if (!context.empty()) {
    out += " (";
    for (size_t i = 0; i < context.size(); ++i) {
      if (i > 0) {
        out += "; ";
      }
      out += context[i];
    }
    out += ")";
  }
  return out;
}

Unexpected errno_fail(int err, std::string_view doing, std::string_view path) {
  if (err == ENOSPC || err == EDQUOT) {
    return fail(Errc::no_space, fmt::format("no space left on device while {} {}", doing, path));
  }
  return fail(Errc::io, fmt::format("{} {}: {}", doing, path, std::strerror(err)));
}

}  // namespace imgbuild
