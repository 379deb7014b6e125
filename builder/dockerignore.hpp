#pragma once
// .dockerignore files and path patterns as BuildKit reads them.
//
// Parsing (one pattern per line): a UTF-8 BOM at the start is dropped; a line
// whose first character is `#` is a comment; lines are trimmed; empty lines
// are skipped; a leading `!` makes an exception (re-include); the rest is
// cleaned like Go's filepath.Clean, and a leading `/` is removed. A pattern
// that cleans to `.` matches nothing and is dropped.
//
// Matching: a path relative to the context root ("dir/file", no leading
// "/") is excluded when the last pattern that matches the path or one of its
// parent directories is not an exception. Patterns follow Go's
// filepath.Match (`*` and `?` never cross a `/`, `[a-z]`, `[^x]`, `\` escapes)
// plus `**`, which matches any number of directories (zero included).
// The same matcher serves COPY/ADD --exclude (patterns given as a list).

#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace imgbuild::builder {

/// One compiled pattern.
struct IgnorePattern {
  /// The cleaned pattern text (without the leading `!`).
  std::string text;
  /// True for `!pattern` (re-include what earlier patterns excluded).
  bool exception = false;
  /// 1-based line in the file it came from (0 for a pattern list).
  int line = 0;
};

/// Validates `pattern` with Go filepath.Match rules; returns an error naming
/// what is wrong ("syntax error in pattern").
Result<void> validate_pattern(std::string_view pattern);

/// Go filepath.Match extended with `**`: whether `path` matches `pattern`
/// (both slash-separated). Invalid patterns match nothing.
bool match_pattern(std::string_view pattern, std::string_view path);

/// Go filepath.Match for one path component (no `**` meaning): used for
/// wildcard COPY sources. Invalid patterns match nothing.
bool match_component(std::string_view pattern, std::string_view name);

/// True when `s` contains a Go filepath.Match meta character (`*?[\`).
bool has_wildcards(std::string_view s);

/// Go's filepath.Clean on a slash path ("a/../b" → "b", "./" → ".", "../x"
/// stays "../x", "/.." → "/").
std::string go_clean(std::string_view path);

/// An ordered list of exclude/exception patterns.
class IgnoreMatcher {
public:
  IgnoreMatcher() = default;

  /// Parses .dockerignore text. `file` names the file in errors, which read
  /// "<file>:<line>: invalid pattern "<p>": syntax error in pattern".
  static Result<IgnoreMatcher> parse(std::string_view text, const std::string& file);
  /// Compiles a pattern list (COPY --exclude values); cleaned like file lines.
  static Result<IgnoreMatcher> from_patterns(const std::vector<std::string>& patterns);

  /// True when `path` (relative to the root, slash-separated) is excluded:
  /// the last pattern matching it or one of its parents is not an exception.
  bool excluded(std::string_view path) const;
  /// True when some exception pattern exists, so an excluded directory may
  /// still have included entries below it (the walk must descend).
  bool has_exceptions() const { return m_has_exceptions; }
  /// True when there are no patterns at all.
  bool empty() const { return m_patterns.empty(); }
  /// The compiled patterns in order.
  const std::vector<IgnorePattern>& patterns() const { return m_patterns; }

private:
  std::vector<IgnorePattern> m_patterns;
  bool m_has_exceptions = false;
};

}  // namespace imgbuild::builder
