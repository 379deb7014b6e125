#include "util/mountinfo.hpp"

#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild::mountinfo {

namespace {

bool is_octal(char c) { return c >= '0' && c <= '7'; }

}  // namespace

std::string unescape(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && is_octal(field[i + 1]) && is_octal(field[i + 2]) &&
        is_octal(field[i + 3])) {
      int v = (field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0');
      out.push_back(static_cast<char>(v));
      i += 3;
      continue;
    }
    out.push_back(field[i]);
  }
  return out;
}

std::vector<Mount> parse(std::string_view text) {
  std::vector<Mount> out;
  for (std::string_view line : str::split_lines(text)) {
    size_t dash = line.find(" - ");
    if (dash == std::string_view::npos) {
      continue;
    }
    std::vector<std::string_view> head;
    for (std::string_view f : str::split_view(line.substr(0, dash), ' ')) {
      if (!f.empty()) {
        head.push_back(f);
      }
    }
    std::vector<std::string_view> tail;
    for (std::string_view f : str::split_view(line.substr(dash + 3), ' ')) {
      if (!f.empty()) {
        tail.push_back(f);
      }
    }
    if (head.size() < 5 || tail.empty()) {
      continue;
    }
    Mount m;
    m.root = unescape(head[3]);
    m.mount_point = unescape(head[4]);
    m.fs_type = std::string(tail[0]);
    if (tail.size() > 1) {
      m.source = unescape(tail[1]);
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<Mount> read_self() {
  auto text = io::read_all("/proc/self/mountinfo");
  return text ? parse(*text) : std::vector<Mount>();
}

}  // namespace imgbuild::mountinfo
