// .dockerignore parsing and pattern matching.
//
// A pattern is compiled into a small token list and matched by backtracking;
// the semantics follow what BuildKit's pattern matcher does with Go
// filepath.Match syntax:
//   `*`       any run of characters except `/`
//   `?`       one character except `/`
//   `[...]`   a character class (`^` negates, `a-z` ranges, `\` escapes)
//   `\c`      the character c
//   `**/`     zero or more whole directories; a trailing `**` matches anything
// Two shortcuts BuildKit takes are kept because they change results: a
// pattern that starts with `**` and has no other meta character matches any
// path ending with the rest (`**.txt` matches `a.txt`; `**/foo` matches
// `foo`), and a pattern with no meta character at all must equal the path.

#include "builder/dockerignore.hpp"

#include <fmt/format.h>

#include <cstddef>
#include <optional>
#include <utility>

#include "util/strings.hpp"

namespace imgbuild::builder {
namespace {

enum class TokenKind { literal, star, question, cls, dstar_dirs, dstar_all };

struct ClassRange {
  char lo = 0;
  char hi = 0;
};

struct Token {
  TokenKind kind = TokenKind::literal;
  char ch = 0;
  bool negated = false;
  std::vector<ClassRange> ranges;
};

// Reads one possibly-escaped class character at s[i]; advances i.
std::optional<char> class_char(std::string_view s, size_t& i) {
  if (i >= s.size()) {
    return std::nullopt;
  }
  char c = s[i];
  if (c == '-' || c == ']') {
    return std::nullopt;
  }
  if (c == '\\') {
    ++i;
    if (i >= s.size()) {
      return std::nullopt;
    }
    c = s[i];
  }
  ++i;
  return c;
}

// Parses a class starting after '['; on success i points past ']'.
std::optional<Token> parse_class(std::string_view s, size_t& i) {
  Token t;
  t.kind = TokenKind::cls;
  if (i < s.size() && s[i] == '^') {
    t.negated = true;
    ++i;
  }
  while (true) {
    if (i < s.size() && s[i] == ']' && !t.ranges.empty()) {
      ++i;
      return t;
    }
    auto lo = class_char(s, i);
    if (!lo) {
      return std::nullopt;
    }
    char hi = *lo;
    if (i < s.size() && s[i] == '-') {
      ++i;
      auto h = class_char(s, i);
      if (!h) {
        return std::nullopt;
      }
      hi = *h;
    }
    t.ranges.push_back({*lo, hi});
  }
}

// Compiles a pattern; nullopt when it is malformed. `double_star` enables `**`.
std::optional<std::vector<Token>> compile(std::string_view p, bool double_star) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < p.size()) {
    char c = p[i];
    if (c == '*') {
      if (double_star && i + 1 < p.size() && p[i + 1] == '*') {
        i += 2;
        if (i < p.size() && p[i] == '/') {
          ++i;
        }
        Token t;
        t.kind = i >= p.size() ? TokenKind::dstar_all : TokenKind::dstar_dirs;
        out.push_back(std::move(t));
        continue;
      }
      ++i;
      Token t;
      t.kind = TokenKind::star;
      out.push_back(std::move(t));
    } else if (c == '?') {
      ++i;
      Token t;
      t.kind = TokenKind::question;
      out.push_back(std::move(t));
    } else if (c == '[') {
      ++i;
      auto t = parse_class(p, i);
      if (!t) {
        return std::nullopt;
      }
      out.push_back(std::move(*t));
    } else if (c == '\\') {
      ++i;
      if (i >= p.size()) {
        return std::nullopt;
      }
      Token t;
      t.ch = p[i++];
      out.push_back(std::move(t));
    } else {
      Token t;
      t.ch = c;
      ++i;
      out.push_back(std::move(t));
    }
  }
  return out;
}

bool class_matches(const Token& t, char c) {
  bool in = false;
  for (const auto& r : t.ranges) {
    if (static_cast<unsigned char>(r.lo) <= static_cast<unsigned char>(c) &&
        static_cast<unsigned char>(c) <= static_cast<unsigned char>(r.hi)) {
      in = true;
      break;
    }
  }
  return in != t.negated;
}

bool match_tokens(const std::vector<Token>& toks, size_t ti, std::string_view s, size_t si, int& budget) {
  if (--budget < 0) {
    return false;  // pathological pattern: give up rather than hang
  }
  while (ti < toks.size()) {
    const Token& t = toks[ti];
    switch (t.kind) {
      case TokenKind::literal:
        if (si >= s.size() || s[si] != t.ch) {
          return false;
        }
        ++si;
        ++ti;
        break;
      case TokenKind::question:
        if (si >= s.size() || s[si] == '/') {
          return false;
        }
        ++si;
        ++ti;
        break;
      case TokenKind::cls:
        if (si >= s.size() || !class_matches(t, s[si])) {
          return false;
        }
        ++si;
        ++ti;
        break;
      case TokenKind::star:
        for (size_t k = si;; ++k) {
          if (match_tokens(toks, ti + 1, s, k, budget)) {
            return true;
          }
          if (k >= s.size() || s[k] == '/') {
            return false;
          }
        }
      case TokenKind::dstar_all:
        return true;
      case TokenKind::dstar_dirs:
        if (match_tokens(toks, ti + 1, s, si, budget)) {
          return true;
        }
        for (size_t k = si; k < s.size(); ++k) {
          if (s[k] == '/' && match_tokens(toks, ti + 1, s, k + 1, budget)) {
            return true;
          }
        }
        return false;
    }
  }
  return si == s.size();
}

bool run_match(const std::vector<Token>& toks, std::string_view s) {
  int budget = 1 << 20;
  return match_tokens(toks, 0, s, 0, budget);
}

std::string_view trim_ascii(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; };
  while (!s.empty() && is_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

// Cleans one pattern line body the way BuildKit does; "" when it is dropped.
std::string clean_pattern(std::string_view p) {
  std::string c = go_clean(p);
  if (c.size() > 1 && c[0] == '/') {
    c.erase(0, 1);
  }
  return c;
}

Result<void> add_pattern(std::vector<IgnorePattern>& out, bool& has_exceptions, std::string_view raw, int line,
                         const std::string& file) {
  std::string_view p = trim_ascii(raw);
  if (p.empty()) {
    return ok();
  }
  bool exception = false;
  if (p[0] == '!') {
    exception = true;
    p = trim_ascii(p.substr(1));
  }
  std::string cleaned = p.empty() ? std::string() : clean_pattern(p);
  auto valid = validate_pattern(cleaned);
  if (!valid) {
    std::string where = file.empty() ? std::string() : (line > 0 ? fmt::format("{}:{}: ", file, line) : file + ": ");
    return fail(Errc::invalid_argument,
                fmt::format("{}invalid pattern \"{}\": {}", where, std::string(raw), valid.error().message));
  }
  if (cleaned.empty() || cleaned == ".") {
    return ok();  // matches nothing a COPY could select
  }
  has_exceptions = has_exceptions || exception;
  out.push_back(IgnorePattern{std::move(cleaned), exception, line});
  return ok();
}

}  // namespace

bool has_wildcards(std::string_view s) {
  return s.find_first_of("*?[\\") != std::string_view::npos;
}

std::string go_clean(std::string_view path) {
  if (path.empty()) {
    return ".";
  }
  bool rooted = path[0] == '/';
  std::vector<std::string_view> parts;
  size_t dotdots = 0;  // leading ".." kept in an unrooted path
  for (std::string_view comp : str::split_view(path, '/')) {
    if (comp.empty() || comp == ".") {
      continue;
    }
    if (comp == "..") {
      if (parts.size() > dotdots) {
        parts.pop_back();
      } else if (!rooted) {
        parts.push_back(comp);
        ++dotdots;
      }
      continue;
    }
    parts.push_back(comp);
  }
  std::string out = rooted ? "/" : "";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) {
      out += '/';
    }
    out += parts[i];
  }
  if (out.empty()) {
    return ".";
  }
  return out;
}

Result<void> validate_pattern(std::string_view pattern) {
  if (!compile(pattern, false)) {
    return fail(Errc::invalid_argument, "syntax error in pattern");
  }
  return ok();
}

bool match_component(std::string_view pattern, std::string_view name) {
  auto toks = compile(pattern, false);
  return toks && run_match(*toks, name);
}

bool match_pattern(std::string_view pattern, std::string_view path) {
  if (!has_wildcards(pattern)) {
    return pattern == path;
  }
  if (pattern.size() >= 2 && pattern.substr(0, 2) == "**" && !has_wildcards(pattern.substr(2))) {
    std::string_view suffix = pattern.substr(2);
    if (path.size() >= suffix.size() && path.substr(path.size() - suffix.size()) == suffix) {
      return true;
    }
    return !suffix.empty() && suffix[0] == '/' && path == suffix.substr(1);
  }
  auto toks = compile(pattern, true);
  return toks && run_match(*toks, path);
}

Result<IgnoreMatcher> IgnoreMatcher::parse(std::string_view text, const std::string& file) {
  IgnoreMatcher m;
  static constexpr std::string_view k_bom = "\xEF\xBB\xBF";
  if (text.substr(0, k_bom.size()) == k_bom) {
    text.remove_prefix(k_bom.size());
  }
  int line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view l = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line;
    if (!l.empty() && l.back() == '\r') {
      l.remove_suffix(1);
    }
    if (!l.empty() && l[0] == '#') {
      continue;
    }
    TRY_VOID(add_pattern(m.m_patterns, m.m_has_exceptions, l, line, file));
  }
  return m;
}

Result<IgnoreMatcher> IgnoreMatcher::from_patterns(const std::vector<std::string>& patterns) {
  IgnoreMatcher m;
  for (const auto& p : patterns) {
    TRY_VOID(add_pattern(m.m_patterns, m.m_has_exceptions, p, 0, "--exclude"));
  }
  return m;
}

bool IgnoreMatcher::excluded(std::string_view path) const {
  bool matched = false;
  for (const auto& p : m_patterns) {
    if (p.exception != matched) {
      continue;  // cannot change the outcome
    }
    bool hit = match_pattern(p.text, path);
    if (!hit) {
      for (size_t i = path.find('/'); i != std::string_view::npos; i = path.find('/', i + 1)) {
        if (match_pattern(p.text, path.substr(0, i))) {
          hit = true;
          break;
        }
      }
    }
    if (hit) {
      matched = !p.exception;
    }
  }
  return matched;
}

}  // namespace imgbuild::builder
