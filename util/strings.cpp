#include "util/strings.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>

#include <fmt/format.h>

namespace imgbuild::str {

namespace {
bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
char lower_char(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
char upper_char(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
}  // namespace

std::string to_lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower_char);
  return out;
}

std::string to_upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), upper_char);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower_char(a[i]) != lower_char(b[i])) {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_ascii_space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::vector<std::string_view> split_view(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (std::string_view part : split_view(s, sep)) {
    out.emplace_back(part);
  }
  return out;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) {
      if (start < text.size()) {
        lines.push_back(text.substr(start));
      }
      break;
    }
    std::string_view line = text.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    lines.push_back(line);
    start = nl + 1;
  }
  return lines;
}

std::string escape_line(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\\') {
      out += "\\\\";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<std::pair<std::string_view, std::string_view>> cut(std::string_view s, char sep) {
  size_t at = s.find(sep);
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  return std::make_pair(s.substr(0, at), s.substr(at + 1));
}

std::pair<std::string, std::string> key_value(std::string_view s) {
  const size_t eq = s.find('=');
  if (eq == std::string_view::npos) {
    return {std::string(s), ""};
  }
  return {std::string(s.substr(0, eq)), std::string(s.substr(eq + 1))};
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::optional<std::vector<std::pair<std::string, std::string>>> record_lines(std::string_view text,
                                                                             std::string_view magic) {
  std::vector<std::string_view> lines = split_view(text, '\n');
  if (lines.back().empty() || lines.size() > 1) {
    lines.pop_back();  // after the last newline: nothing, or a line still being written
  }
  if (lines.empty() || lines[0] != magic) {
    return std::nullopt;
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (auto kv = cut(lines[i], ' ')) {
      out.emplace_back(kv->first, kv->second);
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) {
      out += sep;
    }
    out += parts[i];
  }
  return out;
}

std::string join_path(std::string_view a, std::string_view b) {
  if (a.empty()) {
    return std::string(b);
  }
  if (b.empty()) {
    return std::string(a);
  }
  std::string out(a);
  out += '/';
  out += b;
  return out;
}

std::string base_name(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  if (from.empty()) {
    return std::string(s);
  }
  size_t start = 0;
  while (true) {
    size_t pos = s.find(from, start);
    if (pos == std::string_view::npos) {
      out += s.substr(start);
      return out;
    }
    out += s.substr(start, pos - start);
    out += to;
    start = pos + from.size();
  }
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1);
  std::vector<size_t> cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    prev[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates) {
  // Like BuildKit's suggestions: accept a distance up to a third of the
  // word's length (at least 1), prefer the smallest distance.
  std::string lw = to_lower(word);
  std::optional<std::string> best;
  size_t best_distance = 0;
  size_t limit = std::max<size_t>(1, (lw.size() + 2) / 3);
  for (const auto& c : candidates) {
    size_t d = edit_distance(lw, to_lower(c));
    if (d == 0 || d > limit) {
      continue;
    }
    if (!best || d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

std::string go_quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\a': out += "\\a"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\v': out += "\\v"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += "\"";
  return out;
}

std::string human_size(uint64_t bytes, int significant) {
  // docker's units.HumanSizeWithPrecision: SI units, `significant` digits
  // ("%.4g" for HumanSize, 3 for `docker images`).
  static const char* const k_units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1000.0 && unit + 1 < std::size(k_units)) {
    value /= 1000.0;
    ++unit;
  }
  return fmt::format("{:.{}g}{}", value, significant, k_units[unit]);
}

std::optional<uint64_t> parse_size(std::string_view text) {
  std::string s = to_lower(trim(text));
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) != 0 || s[i] == '.')) {
    ++i;
  }
  if (i == 0) {
    return std::nullopt;
  }
  double n = 0;
  try {
    n = std::stod(s.substr(0, i));
  } catch (...) {
    return std::nullopt;
  }
  std::string unit(trim(std::string_view(s).substr(i)));
  static const std::map<std::string, double> k_units = {
      {"", 1},          {"b", 1},         {"k", 1024.0},     {"kb", 1024.0},    {"kib", 1024.0},
      {"m", 1048576.0}, {"mb", 1048576.0}, {"mib", 1048576.0}, {"g", 1073741824.0}, {"gb", 1073741824.0},
      {"gib", 1073741824.0}, {"t", 1099511627776.0}, {"tb", 1099511627776.0}, {"tib", 1099511627776.0}};
  auto it = k_units.find(unit);
  if (it == k_units.end() || n < 0) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(n * it->second);
}

}  // namespace imgbuild::str
