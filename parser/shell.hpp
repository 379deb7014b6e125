#pragma once
// Shell-word expansion as BuildKit's Dockerfile frontend performs it: quote
// removal, escapes, and $name / ${name…} substitution, with optional word
// splitting after expansion. A pure function of (word, environment, options):
// no I/O, no process environment. The conformance data in
// conformance/buildkit/shell (envVarTest, wordsTest) pins the behaviour.

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace imgbuild::parser {

/// The variables visible to an expansion: an ordered set of KEY=VALUE
/// entries where a later entry for the same key wins. Names are
/// case-sensitive (Linux semantics).
class ShellEnv {
public:
  ShellEnv() = default;
  /// Builds from "KEY=VALUE" strings; an entry without '=' sets KEY to "".
  explicit ShellEnv(const std::vector<std::string>& entries);

  /// Sets (or replaces) a variable, keeping its first position in keys().
  void set(std::string_view key, std::string_view value);
  /// Removes a variable if present.
  void unset(std::string_view key);
  /// The value of key, or nullptr when it is unset.
  const std::string* get(std::string_view key) const;
  /// Names in first-definition order.
  const std::vector<std::string>& keys() const { return m_keys; }
  /// The entries as "KEY=VALUE" in keys() order.
  std::vector<std::string> entries() const;

private:
  std::map<std::string, std::string, std::less<>> m_values;
  std::vector<std::string> m_keys;
};

/// How a Lexer treats its input. The defaults are BuildKit's default mode:
/// quotes and escapes are processed and removed, unset variables expand to "".
struct LexerOptions {
  /// The escape token: '\\' or '`' (the `# escape=` directive).
  char escape = '\\';
  /// Keep quote characters in the output (BuildKit RawQuotes).
  bool keep_quotes = false;
  /// Keep escape tokens in the output (BuildKit RawEscapes).
  bool keep_escapes = false;
  /// Treat ' and " as quotes; false makes them ordinary characters
  /// (BuildKit SkipProcessQuotes, used for heredoc bodies).
  bool process_quotes = true;
  /// Leave references to unset variables as written, `$x` / `${x:-y}`
  /// (BuildKit SkipUnsetEnv).
  bool keep_unset = false;
};

/// Everything one expansion produced.
struct Expansion {
  /// The expanded word, quotes removed, not split (ProcessWord).
  std::string word;
  /// The expanded input split into words after expansion (ProcessWords):
  /// whitespace from unquoted expansions and plain text splits, quoted or
  /// escaped whitespace does not; empty words are never produced.
  std::vector<std::string> words;
  /// Variable names that were looked up and set, sorted, unique.
  std::vector<std::string> used;
  /// Variable names that were looked up and unset, sorted, unique (the
  /// UndefinedVar build check).
  std::vector<std::string> unset;
};

/// A configured shell-word lexer. Stateless between calls and safe to share.
///
/// Errors carry BuildKit's texts, wrapped as BuildKit wraps them:
/// `failed to process "<word>": <reason>`, where reason is for example
/// `syntax error: bad substitution`, `syntax error: missing '}'`,
/// `unsupported modifier (:=) in substitution`, `x: is not allowed to be unset`.
class Lexer {
public:
  /// A default-mode lexer with the given escape token.
  explicit Lexer(char escape = '\\');
  /// A lexer with explicit options.
  explicit Lexer(LexerOptions options);

  /// The options in effect.
  const LexerOptions& options() const { return m_options; }

  /// Expands word against env and returns the single resulting word
  /// (BuildKit ProcessWord).
  Result<std::string> process_word(std::string_view word, const ShellEnv& env) const;
  /// Expands word against env and splits the result into words
  /// (BuildKit ProcessWords).
  Result<std::vector<std::string>> process_words(std::string_view word, const ShellEnv& env) const;
  /// Expands word and reports the word, the split words and which variable
  /// names were referenced (BuildKit ProcessWordWithMatches).
  Result<Expansion> expand(std::string_view word, const ShellEnv& env) const;

private:
  LexerOptions m_options;
};

/// Nesting bound for ${…} inside ${…}: deeper input is an error, so hostile
/// input cannot exhaust the stack.
inline constexpr int k_max_substitution_depth = 256;

/// Bound on the size in bytes of one expanded word (and of every piece of it,
/// such as a substitution's value): a longer result is an Errc::limit error
/// naming the limit, so that chains like `ARG b=${a}${a}${a}…` fail at once
/// instead of growing without bound.
inline constexpr size_t k_max_expanded_size = size_t{8} << 20;

}  // namespace imgbuild::parser
