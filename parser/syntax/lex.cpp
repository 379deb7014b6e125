// The part of BuildKit's shell lexer (frontend/dockerfile/shell) that the
// parser needs to find heredocs: word splitting with quotes and escapes,
// `$name` / `${…}` kept as written because no variable is set, and the
// errors that make a line "not lexable". Runes are decoded as Go's
// text/scanner does (an invalid byte reads as U+FFFD).
//
// `${…}` may nest (`${a:-${b:-c}}`); the nesting is bounded so that hostile
// input cannot exhaust the stack: past k_max_nesting the text counts as not
// lexable.

#include <string>
#include <vector>

#include "parser/syntax/internal.hpp"
#include "parser/syntax/unicode.hpp"

namespace imgbuild::parser::syntax {

namespace {

constexpr char32_t k_eof = static_cast<char32_t>(-1);
constexpr int k_max_nesting = 200;

struct LexError {
  std::string message;
};

class Words {
public:
  explicit Words(bool glue) : m_glue(glue) {}

  void add_char(char32_t ch) {
    if (is_space(ch)) {
      if (m_glue && m_after_heredoc_op && m_in_word && (ch == ' ' || ch == '\t' || ch == '\r')) {
        append_rune(m_word, ch);
        return;
      }
      if (m_in_word && !m_word.empty()) {
        m_words.push_back(std::move(m_word));
        m_word.clear();
        m_in_word = false;
        m_after_heredoc_op = false;
      }
      return;
    }
    add_raw_char(ch);
  }

  void add_raw_char(char32_t ch) {
    append_rune(m_word, ch);
    m_in_word = true;
    m_after_heredoc_op = ch == '<' && m_word.size() >= 2 && m_word[m_word.size() - 2] == '<';
  }

  void add_string(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
      DecodedRune d = decode_rune(s.substr(i));
      add_char(d.rune);
      i += d.width;
    }
  }

  void add_raw_string(std::string_view s) {
    m_word += s;
    m_in_word = true;
    m_after_heredoc_op = false;
  }

  std::vector<std::string> take() {
    if (!m_word.empty()) {
      m_words.push_back(std::move(m_word));
      m_word.clear();
    }
    return std::move(m_words);
  }

private:
  bool m_glue;
  std::string m_word;
  std::vector<std::string> m_words;
  bool m_in_word = false;
  bool m_after_heredoc_op = false;
};

class Lexer {
public:
  Lexer(std::string_view text, const WordLexOptions& options)
      : m_text(text), m_options(options), m_raw_escapes(options.raw_escapes) {
    // text/scanner skips a byte-order mark at the very start.
    if (m_text.substr(0, 3) == "\xEF\xBB\xBF") {
      m_pos = 3;
    }
  }

  bool run(std::vector<std::string>& words, std::string& error) {
    std::string result;
    if (!process_stop_on(k_eof, m_options.raw_escapes, result, &words)) {
      error = m_error;
      return false;
    }
    return true;
  }

private:
  char32_t peek() const {
    if (m_pos >= m_text.size()) {
      return k_eof;
    }
    return decode_rune(m_text.substr(m_pos)).rune;
  }

  char32_t next() {
    if (m_pos >= m_text.size()) {
      return k_eof;
    }
    DecodedRune d = decode_rune(m_text.substr(m_pos));
    m_pos += d.width;
    return d.rune;
  }

  bool fail(std::string message) {
    if (m_error.empty()) {
      m_error = std::move(message);
    }
    return false;
  }

  static std::string rune_string(char32_t r) {
    std::string s;
    append_rune(s, r == k_eof ? k_rune_error : r);
    return s;
  }

  // processStopOn: reads until `stop` (consumed) or the end of the text.
  bool process_stop_on(char32_t stop, bool raw_escapes, std::string& result, std::vector<std::string>* words_out) {
    if (++m_depth > k_max_nesting) {
      return fail("nesting too deep");
    }
    bool saved_raw = m_raw_escapes;
    m_raw_escapes = raw_escapes;
    Words words(m_options.glue_heredoc);
    bool ok = true;
    bool stopped = false;
    while (peek() != k_eof) {
      char32_t ch = peek();
      if (stop != k_eof && ch == stop) {
        next();
        stopped = true;
        break;
      }
      if (ch == '$' || ch == '\'' || ch == '"') {
        std::string tmp;
        if (ch == '$') {
          ok = process_dollar(tmp);
        } else if (ch == '\'') {
          ok = process_single_quote(tmp);
        } else {
          ok = process_double_quote(tmp);
        }
        if (!ok) {
          break;
        }
        result += tmp;
        if (ch == '$') {
          words.add_string(tmp);
        } else {
          words.add_raw_string(tmp);
        }
        continue;
      }
      ch = next();
      if (ch == '\\') {
        if (m_raw_escapes) {
          words.add_raw_char(ch);
          append_rune(result, ch);
        }
        ch = next();
        if (ch == k_eof) {
          break;
        }
        words.add_raw_char(ch);
      } else {
        words.add_char(ch);
      }
      append_rune(result, ch);
    }
    m_raw_escapes = saved_raw;
    --m_depth;
    if (!ok) {
      return false;
    }
    if (stop != k_eof && !stopped) {
      return fail("unexpected end of statement while looking for matching " + rune_string(stop));
    }
    if (words_out != nullptr) {
      *words_out = words.take();
    }
    return true;
  }

  bool process_single_quote(std::string& out) {
    char32_t ch = next();
    if (m_options.raw_quotes) {
      append_rune(out, ch);
    }
    for (;;) {
      ch = next();
      if (ch == k_eof) {
        return fail("unexpected end of statement while looking for matching single-quote");
      }
      if (ch == '\'') {
        if (m_options.raw_quotes) {
          append_rune(out, ch);
        }
        return true;
      }
      append_rune(out, ch);
    }
  }

  bool process_double_quote(std::string& out) {
    char32_t ch = next();
    if (m_options.raw_quotes) {
      append_rune(out, ch);
    }
    for (;;) {
      char32_t p = peek();
      if (p == k_eof) {
        return fail("unexpected end of statement while looking for matching double-quote");
      }
      if (p == '"') {
        ch = next();
        if (m_options.raw_quotes) {
          append_rune(out, ch);
        }
        return true;
      }
      if (p == '$') {
        std::string value;
        if (!process_dollar(value)) {
          return false;
        }
        out += value;
        continue;
      }
      ch = next();
      if (ch == '\\') {
        if (m_raw_escapes) {
          append_rune(out, ch);
        }
        char32_t q = peek();
        if (q == k_eof) {
          continue;
        }
        if (q == '"' || q == '$' || q == '\\') {
          ch = next();
        }
      }
      append_rune(out, ch);
    }
  }

  static bool is_special_param(char32_t c) {
    switch (c) {
      case '@': case '*': case '#': case '?': case '-': case '$': case '!': case '0':
        return true;
      default:
        return false;
    }
  }

  std::string process_name() {
    std::string name;
    while (peek() != k_eof) {
      char32_t ch = peek();
      if (name.empty() && is_digit(ch)) {
        while (peek() != k_eof && is_digit(peek())) {
          append_rune(name, next());
        }
        return name;
      }
      if (name.empty() && is_special_param(ch)) {
        append_rune(name, next());
        return name;
      }
      if (!is_letter(ch) && !is_digit(ch) && ch != '_') {
        break;
      }
      append_rune(name, next());
    }
    return name;
  }

  // processDollar with no variable set and unset variables kept as written.
  bool process_dollar(std::string& out) {
    next();
    if (peek() != '{') {
      std::string name = process_name();
      out = "$" + name;
      return true;
    }
    next();
    char32_t p = peek();
    if (p == k_eof) {
      return fail("syntax error: missing '}'");
    }
    if (p == '{' || p == '}' || p == ':') {
      return fail("syntax error: bad substitution");
    }
    std::string name = process_name();
    char32_t ch = next();
    std::string chs = rune_string(ch);
    switch (ch) {
      case '}':
        out = "${" + name + "}";
        return true;
      case ':':
        ch = next();
        chs += rune_string(ch);
        [[fallthrough]];
      case '+':
      case '-':
      case '?':
      case '#':
      case '%': {
        bool raw = ch == '#' || ch == '%';
        std::string word;
        if (!process_stop_on('}', raw, word, nullptr)) {
          if (peek() == k_eof) {
            m_error = "syntax error: missing '}'";
          }
          return false;
        }
        out = "${" + name + chs + word + "}";
        return true;
      }
      case '/': {
        if (peek() == '/') {
          next();
        }
        std::string pattern;
        if (!process_stop_on('/', true, pattern, nullptr)) {
          if (peek() == k_eof) {
            m_error = "syntax error: missing '/' in ${}";
          }
          return false;
        }
        std::string replacement;
        if (!process_stop_on('}', true, replacement, nullptr)) {
          if (peek() == k_eof) {
            m_error = "syntax error: missing '}'";
          }
          return false;
        }
        out = "${" + name + "/" + pattern + "/" + replacement + "}";
        return true;
      }
      default:
        return fail("unsupported modifier (" + chs + ") in substitution");
    }
  }

  std::string_view m_text;
  WordLexOptions m_options;
  bool m_raw_escapes;
  size_t m_pos = 0;
  int m_depth = 0;
  std::string m_error;
};

}  // namespace

std::optional<std::vector<std::string>> lex_shell_words(std::string_view text, const WordLexOptions& options,
                                                        std::string* error) {
  Lexer lexer(text, options);
  std::vector<std::string> words;
  std::string message;
  if (!lexer.run(words, message)) {
    if (error != nullptr) {
      *error = "failed to process " + go_quote(text) + ": " + message;
    }
    return std::nullopt;
  }
  return words;
}

}  // namespace imgbuild::parser::syntax
