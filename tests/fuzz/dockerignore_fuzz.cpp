// libFuzzer target for .dockerignore parsing and matching. The input is the
// file text, optionally followed by a NUL byte and newline-separated paths to
// match. Any input must give a matcher or an error naming the file, never a
// crash, a sanitizer report or a hang; a matcher must satisfy the invariants
// checked below. Build and run: scripts/fuzz.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "builder/dockerignore.hpp"

using namespace imgbuild;

namespace {

void check(bool condition) {
  if (!condition) {
    __builtin_trap();
  }
}

constexpr int k_max_paths = 16;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string_view text = input.substr(0, nul);
  std::string_view paths = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);

  auto matcher = builder::IgnoreMatcher::parse(text, ".dockerignore");
  if (!matcher) {
    check(matcher.error().message.rfind(".dockerignore:", 0) == 0);
    return 0;
  }
  bool any_exception = false;
  for (const auto& p : matcher->patterns()) {
    // Stored patterns are non-empty, clean, valid, and carry their line.
    check(!p.text.empty() && p.text != ".");
    check(builder::go_clean(p.text) == p.text);
    check(builder::validate_pattern(p.text).has_value());
    check(p.line >= 1);
    any_exception = any_exception || p.exception;
  }
  check(any_exception == matcher->has_exceptions());
  check(matcher->empty() == matcher->patterns().empty());

  int count = 0;
  size_t pos = 0;
  while (pos < paths.size() && count < k_max_paths) {
    size_t nl = paths.find('\n', pos);
    std::string_view raw = paths.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? paths.size() : nl + 1;
    ++count;
    // The builder asks about clean paths relative to the context root.
    std::string path = builder::go_clean(raw);
    check(builder::go_clean(path) == path);
    if (path == "." || path[0] == '/' || path == ".." || path.rfind("../", 0) == 0) {
      continue;
    }
    bool excluded = matcher->excluded(path);
    if (excluded && !matcher->has_exceptions()) {
      // Without exceptions, what is inside an excluded directory is excluded.
      check(matcher->excluded(path + "/child"));
    }
    for (const auto& p : matcher->patterns()) {
      bool hit = builder::match_pattern(p.text, path);
      // A pattern without wildcards matches exactly itself.
      if (!builder::has_wildcards(p.text)) {
        check(hit == (p.text == path));
      }
    }
  }
  return 0;
}
