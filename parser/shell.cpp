// Shell-word expansion, BuildKit-compatible.
//
// The input is decoded into code points once (invalid UTF-8 bytes become
// U+FFFD, as Go's text/scanner does) and walked by a recursive-descent
// processor:
//   - process_until(stop) copies plain characters, handles the escape token,
//     and hands ' " $ to their processors; it ends at `stop` (or end of input);
//   - ${name<op>word} reads `word` with a nested process_until('}'), which is
//     why modifier words may themselves contain quotes and substitutions;
//   - word splitting is tracked alongside: text from a $-expansion and plain
//     text split on white space, text from quotes and escaped characters do not.
//
// Pattern operators (# ## % %% / //) use shell globs with `*`, `?` and the
// escapes `\*` `\?` `\\`. BuildKit turns these into Go regular expressions
// whose `.` does not match a newline; the matcher below keeps that property.
// `#`/`%` pick the shortest (or, doubled, the longest) matching prefix or
// suffix; `/` replaces the leftmost-longest match, `//` every match.
//
// Deliberate differences from BuildKit, both about broken input only:
//   - `${name` ending the input reports "missing '}'" (BuildKit reports
//     "unsupported modifier (\uFFFD) in substitution");
//   - ProcessWords does not lose the text before a ${x:-…} (BuildKit's shared
//     word buffer drops it).

#include "parser/shell.hpp"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

#include "parser/unicode.hpp"
#include "util/strings.hpp"

namespace imgbuild::parser {

// ---------------------------------------------------------------- ShellEnv

ShellEnv::ShellEnv(const std::vector<std::string>& entries) {
  for (const auto& e : entries) {
    size_t eq = e.find('=');
    if (eq == std::string::npos) {
      set(e, "");
    } else {
      set(std::string_view(e).substr(0, eq), std::string_view(e).substr(eq + 1));
    }
  }
}

void ShellEnv::set(std::string_view key, std::string_view value) {
  auto it = m_values.find(key);
  if (it != m_values.end()) {
    it->second = std::string(value);
    return;
  }
  m_values.emplace(std::string(key), std::string(value));
  m_keys.emplace_back(key);
}

void ShellEnv::unset(std::string_view key) {
  auto it = m_values.find(key);
  if (it == m_values.end()) {
    return;
  }
  m_values.erase(it);
  m_keys.erase(std::find(m_keys.begin(), m_keys.end(), key));
}

const std::string* ShellEnv::get(std::string_view key) const {
  auto it = m_values.find(key);
  return it == m_values.end() ? nullptr : &it->second;
}

std::vector<std::string> ShellEnv::entries() const {
  std::vector<std::string> out;
  out.reserve(m_keys.size());
  for (const auto& k : m_keys) {
    out.push_back(k + "=" + m_values.find(k)->second);
  }
  return out;
}

namespace {

constexpr char32_t k_eof = 0xFFFFFFFF;

// ---------------------------------------------------------------- patterns

enum class TokenKind { literal, any, star };

struct PatternToken {
  TokenKind kind = TokenKind::literal;
  char32_t ch = 0;
};

using Pattern = std::vector<PatternToken>;

Result<Pattern> compile_pattern(const std::vector<char32_t>& text) {
  Pattern out;
  for (size_t i = 0; i < text.size(); ++i) {
    char32_t c = text[i];
    if (c == '*') {
      out.push_back({TokenKind::star, 0});
    } else if (c == '?') {
      out.push_back({TokenKind::any, 0});
    } else if (c == '\\') {
      char32_t next = i + 1 < text.size() ? text[i + 1] : k_eof;
      if (next == '}' || next == '/') {
        continue;  // the escape only protected the ${} syntax
      }
      if (next != '*' && next != '?' && next != '\\') {
        std::string shown;
        unicode::append(shown, next == k_eof ? unicode::k_replacement : next);
        return fail(Errc::syntax, "invalid escape '\\" + shown + "'");
      }
      out.push_back({TokenKind::literal, next});
      ++i;
    } else {
      out.push_back({TokenKind::literal, c});
    }
  }
  return out;
}

// A set of NFA states: positions 0..size in the token list (size = accept).
class StateSet {
public:
  // A std::string, not a vector: GCC's -Wnull-dereference cannot see that a
  // freshly sized vector's buffer is non-null.
  explicit StateSet(const Pattern& p) : m_pattern(p), m_on(p.size() + 1, '\0') {}

  void add(size_t state) { m_on[state] = 1; }
  bool accepts() const { return m_on.back() != 0; }
  bool empty() const { return m_on.find('\1') == std::string::npos; }

  // A star may match nothing: whoever reaches it also reaches what follows.
  void close() {
    for (size_t i = 0; i < m_pattern.size(); ++i) {
      if (m_on[i] != 0 && m_pattern[i].kind == TokenKind::star) {
        m_on[i + 1] = 1;
      }
    }
  }

  void step(char32_t c) {
    std::string next(m_on.size(), '\0');
    for (size_t i = 0; i < m_pattern.size(); ++i) {
      if (m_on[i] == 0) {
        continue;
      }
      const PatternToken& t = m_pattern[i];
      if (t.kind == TokenKind::star) {
        if (c != '\n') {
          next[i] = 1;
        }
      } else if (t.kind == TokenKind::any) {
        if (c != '\n') {
          next[i + 1] = 1;
        }
      } else if (t.ch == c) {
        next[i + 1] = 1;
      }
    }
    m_on.swap(next);
    close();
  }

private:
  const Pattern& m_pattern;
  std::string m_on;
};

// Length of the shortest (or longest) prefix of value matching the pattern.
std::optional<size_t> match_prefix(const Pattern& p, const std::vector<char32_t>& value,
                                   bool longest) {
  StateSet s(p);
  s.add(0);
  s.close();
  std::optional<size_t> best;
  if (s.accepts()) {
    best = 0;
    if (!longest) {
      return best;
    }
  }
  for (size_t k = 0; k < value.size(); ++k) {
    s.step(value[k]);
    if (s.empty()) {
      break;
    }
    if (s.accepts()) {
      best = k + 1;
      if (!longest) {
        return best;
      }
    }
  }
  return best;
}

// The leftmost match starting at or after `from`, longest at that start.
std::optional<std::pair<size_t, size_t>> find_match(const Pattern& p,
                                                    const std::vector<char32_t>& value,
                                                    size_t from) {
  constexpr size_t none = static_cast<size_t>(-1);
  const size_t m = p.size();
  std::vector<size_t> start(m + 1, none);
  std::optional<std::pair<size_t, size_t>> found;
  auto close = [&] {
    for (size_t i = 0; i < m; ++i) {
      if (start[i] != none && p[i].kind == TokenKind::star && start[i] < start[i + 1]) {
        start[i + 1] = start[i];
      }
    }
  };
  for (size_t pos = from;; ++pos) {
    if (!found && start[0] == none) {
      start[0] = pos;
    }
    close();
    if (start[m] != none && (!found || start[m] <= found->first)) {
      found = std::make_pair(start[m], pos);
    }
    if (found) {
      bool alive = false;
      for (auto& s : start) {
        if (s != none && s > found->first) {
          s = none;
        }
        alive = alive || s != none;
      }
      if (!alive) {
        break;
      }
    }
    if (pos >= value.size()) {
      break;
    }
    const char32_t c = value[pos];
    std::vector<size_t> next(m + 1, none);
    auto put = [&](size_t state, size_t s) {
      if (s < next[state]) {
        next[state] = s;
      }
    };
    for (size_t i = 0; i < m; ++i) {
      if (start[i] == none) {
        continue;
      }
      const PatternToken& t = p[i];
      if (t.kind == TokenKind::star) {
        if (c != '\n') {
          put(i, start[i]);
        }
      } else if (t.kind == TokenKind::any) {
        if (c != '\n') {
          put(i + 1, start[i]);
        }
      } else if (t.ch == c) {
        put(i + 1, start[i]);
      }
    }
    start.swap(next);
  }
  return found;
}

std::string encode_range(const std::vector<char32_t>& v, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to; ++i) {
    unicode::append(out, v[i]);
  }
  return out;
}

bool is_template_name_char(char32_t c) {
  return c == '_' || unicode::is_letter(c) || unicode::is_digit(c);
}

// `${v//p/r}` goes through Go's Regexp.ReplaceAllString, which expands
// `$name`, `${name}` and `$$` in the replacement. The pattern has no groups,
// so only group 0 (the whole match) is non-empty.
std::string expand_template(const std::vector<char32_t>& repl, const std::string& match) {
  std::string out;
  for (size_t i = 0; i < repl.size(); ++i) {
    if (repl[i] != '$' || i + 1 >= repl.size()) {
      unicode::append(out, repl[i]);
      continue;
    }
    if (repl[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    size_t j = i + 1;
    bool brace = repl[j] == '{';
    if (brace) {
      ++j;
    }
    size_t name_start = j;
    while (j < repl.size() && is_template_name_char(repl[j])) {
      ++j;
    }
    bool ok = j > name_start && (!brace || (j < repl.size() && repl[j] == '}'));
    if (!ok) {
      out += '$';
      continue;
    }
    bool numeric = true;
    bool zero = true;
    for (size_t k = name_start; k < j; ++k) {
      numeric = numeric && repl[k] >= '0' && repl[k] <= '9';
      zero = zero && repl[k] == '0';
    }
    if (numeric && zero) {
      out += match;
    }
    i = brace ? j : j - 1;
  }
  return out;
}

// ---------------------------------------------------------------- words

// Word splitting state (BuildKit's wordsStruct).
class Words {
public:
  void add_char(char32_t c) {
    if (unicode::is_space(c)) {
      if (m_in_word && !m_buf.empty()) {
        m_words.push_back(std::move(m_buf));
        m_buf.clear();
        m_in_word = false;
      }
      return;
    }
    add_raw_char(c);
  }
  void add_raw_char(char32_t c) {
    unicode::append(m_buf, c);
    m_in_word = true;
  }
  void add_string(const std::string& s) {
    for (char32_t c : unicode::decode(s)) {
      add_char(c);
    }
  }
  void add_raw_string(const std::string& s) {
    m_buf += s;
    m_in_word = true;
  }
  std::vector<std::string> finish() {
    if (!m_buf.empty()) {
      m_words.push_back(std::move(m_buf));
      m_buf.clear();
      m_in_word = false;
    }
    return std::move(m_words);
  }

private:
  std::string m_buf;
  std::vector<std::string> m_words;
  bool m_in_word = false;
};

// ---------------------------------------------------------------- processor

bool is_special_param(char32_t c) {
  switch (c) {
    case '@': case '*': case '#': case '?': case '-': case '$': case '!': case '0':
      return true;
    default:
      return false;
  }
}

class Processor {
public:
  Processor(const LexerOptions& options, const ShellEnv& env, std::string_view word)
      : m_options(options), m_env(env), m_in(unicode::decode(word)),
        m_escape(static_cast<unsigned char>(options.escape)),
        m_raw_escapes(options.keep_escapes) {
    // Go's text/scanner skips a byte-order mark at the very start.
    if (!m_in.empty() && m_in[0] == 0xFEFF) {
      m_pos = 1;
    }
  }

  Result<std::string> run(Words& words) { return process_until(k_eof, m_raw_escapes, &words, 0); }

  std::vector<std::string> used() const { return {m_used.begin(), m_used.end()}; }
  std::vector<std::string> unset() const { return {m_unset.begin(), m_unset.end()}; }

private:
  char32_t peek() const { return m_pos < m_in.size() ? m_in[m_pos] : k_eof; }
  char32_t next() { return m_pos < m_in.size() ? m_in[m_pos++] : k_eof; }

  static Unexpected error(std::string message) { return fail(Errc::syntax, std::move(message)); }

  // The k_max_expanded_size check, for each place a result grows.
  static Result<void> bounded(const std::string& s) {
    if (s.size() > k_max_expanded_size) {
      return fail(Errc::limit, "the expanded value is larger than the limit of " +
                                   std::to_string(k_max_expanded_size) + " bytes (" +
                                   std::to_string(k_max_expanded_size >> 20) + " MiB)");
    }
    return ok();
  }

  // Temporarily switches raw-escape mode for a nested section.
  class RawEscapes {
  public:
    RawEscapes(bool& flag, bool value) : m_flag(flag), m_saved(flag) { m_flag = value; }
    ~RawEscapes() { m_flag = m_saved; }
    RawEscapes(const RawEscapes&) = delete;
    RawEscapes& operator=(const RawEscapes&) = delete;

  private:
    bool& m_flag;
    bool m_saved;
  };

  Result<std::string> process_until(char32_t stop, bool raw_escapes, Words* words, int depth) {
    RawEscapes guard(m_raw_escapes, raw_escapes);
    std::string result;
    Words scratch;
    Words& w = words != nullptr ? *words : scratch;
    while (peek() != k_eof) {
      char32_t c = peek();
      if (stop != k_eof && c == stop) {
        next();
        return result;
      }
      if (c == '$' || (m_options.process_quotes && (c == '\'' || c == '"'))) {
        std::string piece;
        if (c == '$') {
          TRY(piece, dollar(depth));
          w.add_string(piece);
        } else if (c == '\'') {
          TRY(piece, single_quote());
          w.add_raw_string(piece);
        } else {
          TRY(piece, double_quote(depth));
          w.add_raw_string(piece);
        }
        result += piece;
        TRY_VOID(bounded(result));
        continue;
      }
      c = next();
      if (c == m_escape) {
        if (m_raw_escapes) {
          w.add_raw_char(c);
          unicode::append(result, c);
        }
        c = next();
        if (c == k_eof) {
          break;
        }
        w.add_raw_char(c);
      } else {
        w.add_char(c);
      }
      unicode::append(result, c);
    }
    if (stop != k_eof) {
      std::string s;
      unicode::append(s, stop);
      return error("unexpected end of statement while looking for matching " + s);
    }
    return result;
  }

  Result<std::string> single_quote() {
    std::string result;
    char32_t c = next();
    if (m_options.keep_quotes) {
      unicode::append(result, c);
    }
    for (;;) {
      c = next();
      if (c == k_eof) {
        return error("unexpected end of statement while looking for matching single-quote");
      }
      if (c == '\'') {
        if (m_options.keep_quotes) {
          unicode::append(result, c);
        }
        return result;
      }
      unicode::append(result, c);
    }
  }

  Result<std::string> double_quote(int depth) {
    std::string result;
    char32_t c = next();
    if (m_options.keep_quotes) {
      unicode::append(result, c);
    }
    for (;;) {
      char32_t p = peek();
      if (p == k_eof) {
        return error("unexpected end of statement while looking for matching double-quote");
      }
      if (p == '"') {
        c = next();
        if (m_options.keep_quotes) {
          unicode::append(result, c);
        }
        return result;
      }
      if (p == '$') {
        std::string value;
        TRY(value, dollar(depth));
        result += value;
        TRY_VOID(bounded(result));
        continue;
      }
      c = next();
      if (c == m_escape) {
        if (m_raw_escapes) {
          unicode::append(result, c);
        }
        char32_t after = peek();
        if (after == k_eof) {
          continue;  // an escape at the very end is dropped
        }
        if (after == '"' || after == '$' || after == m_escape) {
          c = next();
        }
      }
      unicode::append(result, c);
    }
  }

  std::string name() {
    std::string out;
    while (peek() != k_eof) {
      char32_t c = peek();
      if (out.empty() && unicode::is_digit(c)) {
        while (peek() != k_eof && unicode::is_digit(peek())) {
          unicode::append(out, next());
        }
        return out;
      }
      if (out.empty() && is_special_param(c)) {
        unicode::append(out, next());
        return out;
      }
      if (!unicode::is_letter(c) && !unicode::is_digit(c) && c != '_') {
        break;
      }
      unicode::append(out, next());
    }
    return out;
  }

  const std::string* lookup(const std::string& key) {
    const std::string* v = m_env.get(key);
    (v != nullptr ? m_used : m_unset).insert(key);
    return v;
  }

  Result<std::string> dollar(int depth) {
    if (depth >= k_max_substitution_depth) {
      return fail(Errc::limit, "substitutions nested more than " +
                                   std::to_string(k_max_substitution_depth) + " deep");
    }
    next();  // '$'
    if (peek() != '{') {
      std::string n = name();
      if (n.empty()) {
        return std::string("$");
      }
      const std::string* v = lookup(n);
      if (v == nullptr) {
        return m_options.keep_unset ? "$" + n : std::string();
      }
      return *v;
    }
    next();  // '{'
    switch (peek()) {
      case k_eof:
        return error("syntax error: missing '}'");
      case '{':
      case '}':
      case ':':
        return error("syntax error: bad substitution");
      default:
        break;
    }
    std::string n = name();
    char32_t op = next();
    if (op == k_eof) {
      return error("syntax error: missing '}'");
    }
    std::string op_text;
    unicode::append(op_text, op);
    if (op == '}') {
      const std::string* v = lookup(n);
      if (v == nullptr) {
        return m_options.keep_unset ? "${" + n + "}" : std::string();
      }
      return *v;
    }
    if (op == '/') {
      return replace(n, depth);
    }
    bool null_is_unset = false;
    if (op == ':') {
      null_is_unset = true;
      op = next();
      unicode::append(op_text, op == k_eof ? unicode::k_replacement : op);
    } else if (op != '+' && op != '-' && op != '?' && op != '#' && op != '%') {
      return error("unsupported modifier (" + op_text + ") in substitution");
    }
    const bool pattern_op = op == '#' || op == '%';
    if (null_is_unset && pattern_op) {
      return error("unsupported modifier (" + op_text + ") in substitution");
    }
    auto word = process_until('}', pattern_op, nullptr, depth + 1);
    if (!word) {
      if (peek() == k_eof && word.error().code != Errc::limit) {
        return error("syntax error: missing '}'");
      }
      return word.error();
    }
    const std::string* v = lookup(n);
    if (v == nullptr && m_options.keep_unset) {
      return "${" + n + op_text + *word + "}";
    }
    const bool empty = v == nullptr || (null_is_unset && v->empty());
    switch (op) {
      case '-':
        return empty ? *word : *v;
      case '+':
        return empty ? std::string() : *word;
      case '?':
        if (v == nullptr) {
          return fail(Errc::invalid_argument,
                      n + ": " + (word->empty() ? "is not allowed to be unset" : *word));
        }
        if (empty) {
          return fail(Errc::invalid_argument,
                      n + ": " + (word->empty() ? "is not allowed to be empty" : *word));
        }
        return *v;
      case '#':
      case '%':
        return trim(*word, v == nullptr ? std::string() : *v, op);
      default:
        return error("unsupported modifier (" + op_text + ") in substitution");
    }
  }

  static Result<std::string> trim(std::string word, const std::string& value, char32_t op) {
    bool longest = false;
    if (!word.empty() && static_cast<unsigned char>(word[0]) == op) {
      longest = true;
      word.erase(0, 1);
    }
    auto compiled = compile_pattern(unicode::decode(word));
    if (!compiled) {
      return fail(Errc::syntax, "invalid pattern (" + word + ") in substitution: " +
                                    compiled.error().message);
    }
    Pattern pattern = std::move(*compiled);
    std::vector<char32_t> v = unicode::decode(value);
    if (op == '%') {
      std::reverse(pattern.begin(), pattern.end());
      std::reverse(v.begin(), v.end());
    }
    std::optional<size_t> cut = match_prefix(pattern, v, longest);
    if (!cut) {
      return unicode::encode(op == '%' ? std::vector<char32_t>(v.rbegin(), v.rend()) : v);
    }
    std::vector<char32_t> rest(v.begin() + static_cast<std::ptrdiff_t>(*cut), v.end());
    if (op == '%') {
      std::reverse(rest.begin(), rest.end());
    }
    return unicode::encode(rest);
  }

  Result<std::string> replace(const std::string& n, int depth) {
    const bool all = peek() == '/';
    if (all) {
      next();
    }
    auto pattern_text = process_until('/', true, nullptr, depth + 1);
    if (!pattern_text) {
      if (peek() == k_eof && pattern_text.error().code != Errc::limit) {
        return error("syntax error: missing '/' in ${}");
      }
      return pattern_text.error();
    }
    auto replacement = process_until('}', true, nullptr, depth + 1);
    if (!replacement) {
      if (peek() == k_eof && replacement.error().code != Errc::limit) {
        return error("syntax error: missing '}'");
      }
      return replacement.error();
    }
    const std::string* v = lookup(n);
    if (v == nullptr && m_options.keep_unset) {
      return "${" + n + "/" + *pattern_text + "/" + *replacement + "}";
    }
    auto compiled = compile_pattern(unicode::decode(*pattern_text));
    if (!compiled) {
      return fail(Errc::syntax, "invalid pattern (" + *pattern_text + ") in substitution: " +
                                    compiled.error().message);
    }
    const std::vector<char32_t> value = unicode::decode(v == nullptr ? std::string() : *v);
    if (!all) {
      auto m = find_match(*compiled, value, 0);
      if (!m) {
        return unicode::encode(value);
      }
      std::string out = encode_range(value, 0, m->first) + *replacement +
                        encode_range(value, m->second, value.size());
      TRY_VOID(bounded(out));
      return out;
    }
    // Go's Regexp.ReplaceAllString loop: non-overlapping matches, an empty
    // match right after a match is not replaced, always advance.
    const std::vector<char32_t> repl = unicode::decode(*replacement);
    std::string out;
    size_t last_end = 0;
    size_t search = 0;
    while (search <= value.size()) {
      auto m = find_match(*compiled, value, search);
      if (!m) {
        break;
      }
      out += encode_range(value, last_end, m->first);
      if (m->second > last_end || m->first == 0) {
        out += expand_template(repl, encode_range(value, m->first, m->second));
      }
      TRY_VOID(bounded(out));
      last_end = m->second;
      search = search + 1 > m->second ? search + 1 : m->second;
    }
    out += encode_range(value, std::min(last_end, value.size()), value.size());
    return out;
  }

  const LexerOptions& m_options;
  const ShellEnv& m_env;
  std::vector<char32_t> m_in;
  size_t m_pos = 0;
  char32_t m_escape;
  bool m_raw_escapes;
  std::set<std::string> m_used;
  std::set<std::string> m_unset;
};

}  // namespace

Lexer::Lexer(char escape) { m_options.escape = escape; }

Lexer::Lexer(LexerOptions options) : m_options(options) {}

Result<Expansion> Lexer::expand(std::string_view word, const ShellEnv& env) const {
  Processor p(m_options, env, word);
  Words words;
  auto r = p.run(words);
  if (!r) {
    Error e = std::move(r).error();
    e.message = "failed to process " + str::go_quote(word) + ": " + e.message;
    return e;
  }
  Expansion out;
  out.word = std::move(*r);
  out.words = words.finish();
  out.used = p.used();
  out.unset = p.unset();
  return out;
}

Result<std::string> Lexer::process_word(std::string_view word, const ShellEnv& env) const {
  TRY(Expansion e, expand(word, env));
  return std::move(e.word);
}

Result<std::vector<std::string>> Lexer::process_words(std::string_view word,
                                                      const ShellEnv& env) const {
  TRY(Expansion e, expand(word, env));
  return std::move(e.words);
}

}  // namespace imgbuild::parser
