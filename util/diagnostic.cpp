#include "util/diagnostic.hpp"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild {

std::string render_diagnostic(const Error& error, std::string_view source, int end_line) {
  std::string out = error.to_string();
  out += '\n';
  if (!error.location || error.location->line <= 0) {
    return out;
  }
  std::vector<std::string_view> lines = str::split_lines(source);
  int first = error.location->line;
  int last = std::max(first, end_line);
  if (first > static_cast<int>(lines.size())) {
    return out;
  }
  last = std::min(last, static_cast<int>(lines.size()));
  int from = std::max(1, first - 2);
  int to = std::min(static_cast<int>(lines.size()), last + 2);
  const std::string rule(20, '-');
  out += rule + '\n';
  for (int n = from; n <= to; ++n) {
    bool marked = n >= first && n <= last;
    std::string_view text = lines[static_cast<size_t>(n - 1)];
    // Very long lines are cut so that a 100 MB line never reaches a terminal.
    constexpr size_t k_max_shown = 200;
    std::string shown(text.substr(0, k_max_shown));
    if (text.size() > k_max_shown) {
      shown += "...";
    }
    out += fmt::format(" {:>4} | {}{}\n", n, marked ? ">>> " : "    ", shown);
    if (marked && n == first && error.location->column > 0 &&
        static_cast<size_t>(error.location->column) <= k_max_shown + 1) {
      out += fmt::format(" {:>4} | {}{}^\n", "", "    ",
                         std::string(static_cast<size_t>(error.location->column - 1), ' '));
    }
  }
  out += rule + '\n';
  return out;
}

}  // namespace imgbuild
