// parse_dockerfile: drives the grammar (grammar.hpp) over a Dockerfile the
// way BuildKit's parser.Parse reads it.
//
// The file grammar hands each physical line to a LineMachine, which is in one
// of three modes:
//   start         the line may begin an instruction (comments, blank lines and
//                 parser directives are consumed here);
//   continuation  the previous line ended with the escape token: lines are
//                 appended to the logical line (comments skipped, blank lines
//                 skipped with a NoEmptyContinuation warning);
//   heredoc       the instruction opened heredocs: raw lines are body text
//                 until each terminator in turn.
// A finished logical line goes through the instruction grammar (keyword,
// flags, rest) and the per-instruction argument parser (README §1.3.5). The
// logical line keeps a map back to physical lines so that errors point at
// the right line and column even inside continuations.

#include "parser/syntax/parse.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <tao/pegtl.hpp>

#include "parser/syntax/grammar.hpp"
#include "parser/syntax/internal.hpp"
#include "parser/syntax/unicode.hpp"

namespace imgbuild::parser {

namespace {

namespace pegtl = tao::pegtl;
namespace g = syntax::grammar;
using syntax::go_quote;
using syntax::go_to_lower;
using syntax::go_trim_left_space;
using syntax::go_trim_space;

template <typename Rule, template <typename...> class Action = pegtl::nothing, typename... States>
bool match_text(std::string_view text, States&&... states) {
  pegtl::memory_input<pegtl::tracking_mode::lazy, pegtl::eol::lf> in(text.data(), text.size(), "");
  return pegtl::parse<Rule, Action>(in, states...);
}

// ---------------------------------------------------------------------------
// Actions for single-line rules

struct ContinuationState {
  const char* tail = nullptr;  // where the continuation marker starts
};
template <typename Rule>
struct continuation_action : pegtl::nothing<Rule> {};
template <char E>
struct continuation_action<g::continuation_tail<E>> {
  template <typename Input>
  static void apply(const Input& in, ContinuationState& st) {
    st.tail = in.begin();
  }
};

struct DirectiveState {
  std::string key;
  std::string value;
};
template <typename Rule>
struct directive_action : pegtl::nothing<Rule> {};
template <>
struct directive_action<g::directive_name> {
  template <typename Input>
  static void apply(const Input& in, DirectiveState& st) {
    st.key = syntax::go_to_lower(in.string_view());
  }
};
template <>
struct directive_action<g::directive_value> {
  template <typename Input>
  static void apply(const Input& in, DirectiveState& st) {
    std::string_view v = in.string_view();
    auto re_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'; };
    while (v.size() > 1 && re_space(v.back())) {
      v.remove_suffix(1);
    }
    st.value = std::string(v);
  }
};

// The instruction grammar's state: keyword, processed flags, rest.
struct InstructionState {
  std::string_view keyword;
  std::vector<std::string> flags;
  std::string_view rest;
  char escape = '\\';
};

// extractBuilderFlags' word processing: quotes removed, E+byte → byte, each
// byte appended as the code point of the same value (BuildKit scans bytes).
std::string process_flag_word(std::string_view word, char escape) {
  std::string out;
  char quote = 0;
  for (size_t i = 0; i < word.size(); ++i) {
    char c = word[i];
    if (quote == 0 && (c == '\'' || c == '"')) {
      quote = c;
      continue;
    }
    if (quote != 0 && c == quote) {
      quote = 0;
      continue;
    }
    if (c == escape) {
      if (i + 1 == word.size()) {
        continue;
      }
      ++i;
      c = word[i];
    }
    syntax::append_rune(out, static_cast<unsigned char>(c));
  }
  return out;
}

template <typename Rule>
struct instruction_action : pegtl::nothing<Rule> {};
template <>
struct instruction_action<g::keyword> {
  template <typename Input>
  static void apply(const Input& in, InstructionState& st) {
    st.keyword = in.string_view();
  }
};
template <char E>
struct instruction_action<g::flag_word<E>> {
  template <typename Input>
  static bool apply(const Input& in, InstructionState& st) {
    std::string word = process_flag_word(in.string_view(), st.escape);
    if (word == "--") {
      return false;
    }
    st.flags.push_back(std::move(word));
    return true;
  }
};
template <char E>
struct instruction_action<g::flag_terminator<E>> {
  template <typename Input>
  static bool apply(const Input& in, InstructionState& st) {
    return process_flag_word(in.string_view(), st.escape) == "--";
  }
};
template <>
struct instruction_action<g::rest> {
  template <typename Input>
  static void apply(const Input& in, InstructionState& st) {
    st.rest = in.string_view();
  }
};

// Exec form.
struct JsonState {
  std::vector<std::string> strings;
  const char* first_non_string = nullptr;
  bool json_overflow = false;
};
template <typename Rule>
struct json_action : pegtl::nothing<Rule> {};
template <>
struct json_action<g::json_element_string> {
  template <typename Input>
  static void apply(const Input& in, JsonState& st) {
    std::string_view quoted = in.string_view();
    st.strings.push_back(syntax::decode_json_string(quoted.substr(1, quoted.size() - 2)));
  }
};
template <>
struct json_action<g::json_element_other> {
  template <typename Input>
  static void apply(const Input& in, JsonState& st) {
    if (st.first_non_string == nullptr) {
      st.first_non_string = in.begin();
    }
  }
};
template <>
struct json_action<g::json_number> {
  template <typename Input>
  static void apply(const Input& in, JsonState& st) {
    if (syntax::json_number_overflows(in.string_view())) {
      st.json_overflow = true;
    }
  }
};

// Heredoc markers.
struct MarkerState {
  std::string_view fd;
  bool chomp = false;
  std::string_view delimiter;
};
template <typename Rule>
struct marker_action : pegtl::nothing<Rule> {};
template <>
struct marker_action<g::heredoc_fd> {
  template <typename Input>
  static void apply(const Input& in, MarkerState& st) {
    st.fd = in.string_view();
  }
};
template <>
struct marker_action<g::heredoc_chomp> {
  template <typename Input>
  static void apply(const Input&, MarkerState& st) {
    st.chomp = true;
  }
};
template <>
struct marker_action<g::heredoc_delimiter> {
  template <typename Input>
  static void apply(const Input& in, MarkerState& st) {
    st.delimiter = in.string_view();
  }
};

struct TabsState {
  size_t count = 0;
};
template <typename Rule>
struct tabs_action : pegtl::nothing<Rule> {};
template <>
struct tabs_action<g::heredoc_tabs> {
  template <typename Input>
  static void apply(const Input& in, TabsState& st) {
    st.count = in.size();
  }
};

// ---------------------------------------------------------------------------
// Small Go-isms

bool is_ascii_ws(char c) { return c == '\t' || c == '\v' || c == '\f' || c == '\r' || c == ' '; }

// regexp `[\t\v\f\r ]+` Split(s, -1) on a trimmed, non-empty string.
std::vector<std::string> split_ascii_ws(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (true) {
    size_t j = i;
    while (j < s.size() && !is_ascii_ws(s[j])) {
      ++j;
    }
    out.emplace_back(s.substr(i, j - i));
    if (j == s.size()) {
      break;
    }
    while (j < s.size() && is_ascii_ws(s[j])) {
      ++j;
    }
    i = j;
  }
  return out;
}

// parseWords: the ENV/LABEL/ARG word splitter (quotes and escapes kept).
std::vector<std::string> parse_words(std::string_view rest, char escape) {
  enum class Phase { spaces, word, quote };
  std::vector<std::string> words;
  Phase phase = Phase::spaces;
  char32_t quote = 0;
  bool blank_ok = false;
  std::string word;
  size_t pos = 0;
  char32_t ch = 0;
  size_t width = 0;
  while (pos <= rest.size()) {
    if (pos != rest.size()) {
      syntax::DecodedRune d = syntax::decode_rune(rest.substr(pos));
      ch = d.rune;
      width = d.width;
    }
    if (phase == Phase::spaces) {
      if (pos == rest.size()) {
        break;
      }
      if (syntax::is_space(ch)) {
        pos += width;
        continue;
      }
      phase = Phase::word;
    }
    if (pos == rest.size()) {
      if (blank_ok || !word.empty()) {
        words.push_back(word);
      }
      break;
    }
    if (phase == Phase::word) {
      if (syntax::is_space(ch)) {
        phase = Phase::spaces;
        if (blank_ok || !word.empty()) {
          words.push_back(word);
        }
        word.clear();
        blank_ok = false;
        pos += width;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote = ch;
        blank_ok = true;
        phase = Phase::quote;
      }
      if (ch == static_cast<unsigned char>(escape)) {
        if (pos + width == rest.size()) {
          pos += width;
          continue;
        }
        syntax::append_rune(word, ch);
        pos += width;
        syntax::DecodedRune d = syntax::decode_rune(rest.substr(pos));
        ch = d.rune;
        width = d.width;
      }
      syntax::append_rune(word, ch);
      pos += width;
      continue;
    }
    // Phase::quote
    if (ch == quote) {
      phase = Phase::word;
    }
    if (ch == static_cast<unsigned char>(escape) && quote != '\'') {
      if (pos + width == rest.size()) {
        phase = Phase::word;
        pos += width;
        continue;
      }
      pos += width;
      syntax::append_rune(word, ch);
      syntax::DecodedRune d = syntax::decode_rune(rest.substr(pos));
      ch = d.rune;
      width = d.width;
    }
    syntax::append_rune(word, ch);
    pos += width;
  }
  return words;
}

// ---------------------------------------------------------------------------
// The line machine

// A piece of the logical line and where it came from (kept small: a long
// continuation chain holds one per line).
struct Piece {
  uint32_t offset;  // in the logical line (inputs are far below 4 GiB)
  int32_t line;
  int32_t column;   // 1-based column of the piece's first byte
};

class LineMachine {
public:
  explicit LineMachine(std::string_view filename) : m_filename(filename) {}

  // Called for each physical line (with its '\n'); false stops the input.
  bool feed(std::string_view raw) {
    ++m_line;
    std::string_view content = raw;
    while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) {
      content.remove_suffix(1);
    }
    size_t length = raw.size() - (raw.empty() || raw.back() != '\n' ? 0 : 1);
    if (m_line == 1 && m_bom) {
      length += 3;
    }
    if (length > k_max_line_length) {
      m_scanner_error = Error(Errc::limit,
                              "dockerfile line greater than max allowed size of " + std::to_string(k_max_line_length),
                              location(m_line, 0));
      return false;
    }
    bool ok = true;
    switch (m_mode) {
      case Mode::start:
        ok = feed_start(raw, content);
        break;
      case Mode::continuation:
        ok = feed_continuation(content);
        break;
      case Mode::heredoc:
        feed_heredoc(raw, content);
        break;
    }
    return ok;
  }

  Result<Ast> finish() {
    if (m_error) {
      return fail(std::move(*m_error));
    }
    if (m_mode == Mode::continuation) {
      if (!finish_instruction()) {
        return fail(std::move(*m_error));
      }
    }
    if (m_mode == Mode::heredoc) {
      return fail(Error(Errc::syntax, "unterminated heredoc", location(m_start_line, m_start_column)));
    }
    if (m_ast.children.empty()) {
      return fail(Error(Errc::syntax, "file with no instructions", location(std::max(m_line, 1), 0)));
    }
    if (m_scanner_error) {
      return fail(std::move(*m_scanner_error));
    }
    m_ast.escape = m_escape;
    return std::move(m_ast);
  }

  void set_bom() { m_bom = true; }

private:
  enum class Mode { start, continuation, heredoc };

  SourceLocation location(int line, int column) const { return SourceLocation{std::string(m_filename), line, column}; }

  bool set_error(std::string message, int line, int column, Errc code = Errc::syntax) {
    m_error = Error(code, std::move(message), location(line, column));
    return false;
  }

  // trimContinuationCharacter: the line without its marker, and whether the
  // instruction ends here.
  std::pair<std::string_view, bool> trim_continuation(std::string_view line) const {
    ContinuationState st;
    bool continued = m_escape == '`' ? match_text<g::continued_line<'`'>, continuation_action>(line, st)
                                     : match_text<g::continued_line<'\\'>, continuation_action>(line, st);
    if (!continued) {
      return {line, true};
    }
    return {line.substr(0, static_cast<size_t>(st.tail - line.data())), false};
  }

  static bool is_comment(std::string_view content) { return match_text<g::comment_line>(content); }

  bool feed_start(std::string_view raw, std::string_view content) {
    std::string_view stripped = go_trim_left_space(content);
    bool comment = is_comment(content);
    if (comment) {
      std::string_view text = go_trim_space(raw.substr(1));
      if (text.empty()) {
        m_comments.clear();
      } else {
        if (!use_words(1)) {
          return set_error("too many strings in the Dockerfile (limit " + std::to_string(k_max_words) + ")", m_line,
                           1, Errc::limit);
        }
        m_comments.emplace_back(text);
      }
    }
    if (!m_directives_done) {
      DirectiveState st;
      if (match_text<g::directive, directive_action>(stripped, st)) {
        if (!m_comments.empty()) {
          m_comments.pop_back();
        }
        if (m_ast.directive(st.key)) {
          return set_error("only one " + st.key + " parser directive can be used", m_line, 1);
        }
        if (st.key == "escape") {
          if (st.value != "`" && st.value != "\\") {
            return set_error("invalid escape token '" + st.value + "' does not match ` or \\", m_line, 1);
          }
          m_escape = st.value.front();
        }
        m_ast.directives.push_back(Directive{st.key, st.value, m_line});
      } else {
        m_directives_done = true;
      }
    }
    std::string_view line = comment ? std::string_view() : stripped;
    auto [piece, end] = trim_continuation(line);
    if (end && piece.empty()) {
      return true;
    }
    m_start_line = m_line;
    m_start_column = static_cast<int>(content.size() - stripped.size()) + 1;
    m_logical.assign(piece);
    m_pieces.clear();
    m_pieces.push_back(Piece{0, m_line, m_start_column});
    m_has_empty_continuation = false;
    if (!end) {
      m_mode = Mode::continuation;
      return true;
    }
    return finish_instruction();
  }

  bool feed_continuation(std::string_view content) {
    if (is_comment(content)) {
      return true;
    }
    if (match_text<g::blank_line>(content)) {
      m_has_empty_continuation = true;
      return true;
    }
    auto [piece, end] = trim_continuation(content);
    if (m_logical.size() + piece.size() > k_max_instruction_length) {
      return set_error("instruction longer than " + std::to_string(k_max_instruction_length) + " bytes", m_start_line,
                       m_start_column, Errc::limit);
    }
    if (!piece.empty()) {
      m_pieces.push_back(Piece{static_cast<uint32_t>(m_logical.size()), m_line, 1});
      m_logical.append(piece);
    }
    if (end) {
      return finish_instruction();
    }
    return true;
  }

  void feed_heredoc(std::string_view raw, std::string_view content) {
    Heredoc& doc = m_pending.heredocs[m_heredoc_index];
    std::string_view candidate = content;
    if (doc.chomp) {
      TabsState tabs;
      match_text<pegtl::seq<g::heredoc_tabs>, tabs_action>(candidate, tabs);
      candidate.remove_prefix(tabs.count);
    }
    if (candidate == doc.name) {
      ++m_heredoc_index;
      if (m_heredoc_index == m_pending.heredocs.size()) {
        m_pending.end_line = m_line;
        add_child(std::move(m_pending));
        m_pending = Node{};
        m_mode = Mode::start;
      }
      return;
    }
    doc.content.append(raw);
  }

  // The physical position of an offset into the logical line.
  Position position_of(size_t offset) const {
    auto it = std::upper_bound(m_pieces.begin(), m_pieces.end(), offset,
                               [](size_t v, const Piece& p) { return v < size_t{p.offset}; });
    if (it == m_pieces.begin()) {
      return Position{m_start_line, m_start_column};
    }
    --it;
    return Position{it->line, it->column + static_cast<int>(offset - it->offset)};
  }
  Position position_of(const char* p) const { return position_of(static_cast<size_t>(p - m_logical.data())); }

  bool error_at(std::string message, const char* where) {
    Position pos = position_of(where);
    return set_error(std::move(message), pos.line, pos.column);
  }

  bool finish_instruction() {
    m_mode = Mode::start;
    if (m_has_empty_continuation) {
      m_ast.warnings.push_back(
          ParseWarning{"NoEmptyContinuation", "Empty continuation line found in: " + m_logical, m_line});
    }
    Node node;
    if (!node_from_line(m_logical, node, 0)) {
      return false;
    }
    node.original = m_logical;
    node.comments = std::move(m_comments);
    m_comments.clear();
    node.end_line = m_line;
    if (m_ast.children.size() >= k_max_instructions) {
      return set_error("too many instructions in the Dockerfile (limit " + std::to_string(k_max_instructions) + ")",
                       m_start_line, m_start_column, Errc::limit);
    }
    if (can_contain_heredoc(node) && m_logical.find("<<") != std::string::npos) {
      if (!heredocs_from_line(node)) {
        return false;
      }
    }
    if (!use_words(count_words(node))) {
      return set_error("too many strings in the Dockerfile (limit " + std::to_string(k_max_words) + ")",
                       m_start_line, m_start_column, Errc::limit);
    }
    if (!node.heredocs.empty()) {
      m_pending = std::move(node);
      m_heredoc_index = 0;
      m_mode = Mode::heredoc;
      return true;
    }
    add_child(std::move(node));
    return true;
  }

  // Counts strings against k_max_words; false once over the limit.
  bool use_words(size_t n) {
    m_words += n;
    return m_words <= k_max_words;
  }

  static size_t count_words(const Node& node) {
    size_t n = node.args.size() + node.flags.size() + node.heredocs.size();
    for (const Node& child : node.children) {
      n += count_words(child);
    }
    return n;
  }

  void add_child(Node node) {
    if (m_ast.children.empty()) {
      m_ast.start_line = node.start.line;
    }
    m_ast.end_line = node.end_line;
    m_ast.children.push_back(std::move(node));
  }

  static bool can_contain_heredoc(const Node& node) {
    const Node* n = &node;
    if (n->keyword == "onbuild" && !n->children.empty()) {
      n = &n->children.front();
    }
    if (n->keyword != "run" && n->keyword != "copy" && n->keyword != "add") {
      return false;
    }
    return !n->json_form;
  }

  bool heredocs_from_line(Node& node) {
    syntax::WordLexOptions line_options;
    line_options.raw_quotes = true;
    line_options.raw_escapes = true;
    line_options.glue_heredoc = true;
    std::optional<std::vector<std::string>> words = syntax::lex_shell_words(m_logical, line_options);
    if (!words) {
      return true;
    }
    for (const std::string& word : *words) {
      MarkerState marker;
      if (!match_text<g::heredoc_marker, marker_action>(word, marker)) {
        continue;
      }
      if (marker.delimiter.empty()) {
        continue;
      }
      syntax::WordLexOptions unquoted;
      std::string message;
      std::optional<std::vector<std::string>> names = syntax::lex_shell_words(marker.delimiter, unquoted, &message);
      if (!names) {
        return set_error(message, m_start_line, m_start_column);
      }
      if (names->size() != 1) {
        continue;
      }
      syntax::WordLexOptions quoted;
      quoted.raw_quotes = true;
      std::optional<std::vector<std::string>> raw_names = syntax::lex_shell_words(marker.delimiter, quoted, &message);
      if (!raw_names) {
        return set_error(message, m_start_line, m_start_column);
      }
      if (raw_names->size() != names->size()) {
        return set_error("internal lexing of heredoc produced inconsistent results: " + std::string(marker.delimiter),
                         m_start_line, m_start_column);
      }
      auto quotes = [](const std::string& s) { return std::count(s.begin(), s.end(), '\'') + std::count(s.begin(), s.end(), '"'); };
      Heredoc doc;
      doc.name = names->front();
      doc.expand = quotes(names->front()) == quotes(raw_names->front());
      doc.chomp = marker.chomp;
      doc.file_descriptor = parse_fd(marker.fd);
      node.heredocs.push_back(std::move(doc));
    }
    return true;
  }

  // strconv.ParseUint(fd, 10, 0) with errors ignored: 0 when empty or too big.
  static int parse_fd(std::string_view digits) {
    unsigned long long v = 0;
    for (char c : digits) {
      unsigned d = static_cast<unsigned>(c - '0');
      if (v > (~0ULL - d) / 10) {
        return 0;
      }
      v = v * 10 + d;
    }
    return v > 0x7FFFFFFF ? 0 : static_cast<int>(v);
  }

  // newNodeFromLine: splits `line` (a view into m_logical) and dispatches.
  bool node_from_line(std::string_view line, Node& node, int depth) {
    if (depth > k_max_onbuild_depth) {
      return set_error("ONBUILD nested more than " + std::to_string(k_max_onbuild_depth) + " levels deep",
                       m_start_line, m_start_column, Errc::limit);
    }
    std::string_view trimmed = go_trim_space(line);
    InstructionState st;
    st.escape = m_escape;
    st.rest = std::string_view(trimmed.data() + trimmed.size(), 0);
    bool matched = m_escape == '`' ? match_text<g::instruction<'`'>, instruction_action>(trimmed, st)
                                   : match_text<g::instruction<'\\'>, instruction_action>(trimmed, st);
    if (!matched) {
      return set_error("internal error: instruction grammar rejected the line", m_start_line, m_start_column,
                       Errc::internal);
    }
    node.keyword_as_written = std::string(st.keyword);
    node.keyword = go_to_lower(st.keyword);
    node.flags = std::move(st.flags);
    node.start = position_of(trimmed.data());
    std::string_view rest = go_trim_space(st.rest);
    const std::string& kw = node.keyword;
    if (kw == "add" || kw == "copy" || kw == "volume") {
      return parse_maybe_json(rest, node, true);
    }
    if (kw == "cmd" || kw == "entrypoint" || kw == "run" || kw == "shell") {
      return parse_maybe_json(rest, node, false);
    }
    if (kw == "from" || kw == "expose") {
      if (!rest.empty()) {
        node.args = split_ascii_ws(rest);
      }
      return true;
    }
    if (kw == "maintainer" || kw == "stopsignal" || kw == "user" || kw == "workdir") {
      if (!rest.empty()) {
        node.args.emplace_back(rest);
      }
      return true;
    }
    if (kw == "env" || kw == "label") {
      return parse_name_val(rest, kw == "env" ? "ENV" : "LABEL", node);
    }
    if (kw == "arg") {
      node.args = parse_words(rest, m_escape);
      return true;
    }
    if (kw == "healthcheck") {
      return parse_health(rest, node);
    }
    if (kw == "onbuild") {
      if (rest.empty()) {
        return true;
      }
      Node child;
      if (!node_from_line(rest, child, depth + 1)) {
        return false;
      }
      child.original = std::string(rest);
      child.end_line = m_line;
      node.children.push_back(std::move(child));
      return true;
    }
    node.args.emplace_back();
    return true;
  }

  // parseJSON: 1 = exec form parsed, 0 = not JSON, -1 = error set.
  int parse_json(std::string_view rest, Node& node) {
    std::string_view text = go_trim_left_space(rest);
    if (text.empty() || text.front() != '[') {
      return 0;
    }
    JsonState st;
    if (!match_text<g::exec_form, json_action>(text, st) || st.json_overflow) {
      return 0;
    }
    if (st.first_non_string != nullptr) {
      error_at("when using JSON array syntax, arrays must be comprised of strings only", st.first_non_string);
      return -1;
    }
    node.args = std::move(st.strings);
    node.json_form = true;
    return 1;
  }

  bool parse_maybe_json(std::string_view rest, Node& node, bool to_list) {
    if (rest.empty()) {
      return true;
    }
    int json = parse_json(rest, node);
    if (json < 0) {
      return false;
    }
    if (json > 0) {
      return true;
    }
    if (to_list) {
      node.args = split_ascii_ws(rest);
    } else {
      node.args.emplace_back(rest);
    }
    return true;
  }

  bool parse_health(std::string_view rest, Node& node) {
    size_t sep = 0;
    while (sep < rest.size() && !syntax::is_space_byte(static_cast<unsigned char>(rest[sep]))) {
      ++sep;
    }
    size_t next = sep;
    while (next < rest.size() && syntax::is_space_byte(static_cast<unsigned char>(rest[next]))) {
      ++next;
    }
    if (sep == 0) {
      return true;
    }
    Node cmd;
    if (!parse_maybe_json(rest.substr(next), cmd, false)) {
      return false;
    }
    node.args.emplace_back(rest.substr(0, sep));
    for (std::string& a : cmd.args) {
      node.args.push_back(std::move(a));
    }
    node.json_form = cmd.json_form;
    return true;
  }

  bool parse_name_val(std::string_view rest, const std::string& key, Node& node) {
    std::vector<std::string> words = parse_words(rest, m_escape);
    if (words.empty()) {
      return true;
    }
    if (words.front().find('=') == std::string::npos) {
      size_t i = 0;
      while (i < rest.size() && !is_ascii_ws(rest[i])) {
        ++i;
      }
      if (i == rest.size()) {
        return error_at(key + " must have two arguments", rest.data());
      }
      size_t j = i;
      while (j < rest.size() && is_ascii_ws(rest[j])) {
        ++j;
      }
      node.args = {std::string(rest.substr(0, i)), std::string(rest.substr(j)), ""};
      return true;
    }
    for (const std::string& word : words) {
      size_t eq = word.find('=');
      if (eq == std::string::npos) {
        return error_at("Syntax error - can't find = in " + go_quote(word) + ". Must be of the form: name=value",
                        rest.data());
      }
      node.args.push_back(word.substr(0, eq));
      node.args.push_back(word.substr(eq + 1));
      node.args.emplace_back("=");
    }
    return true;
  }

  std::string_view m_filename;
  Ast m_ast;
  char m_escape = '\\';
  bool m_bom = false;
  bool m_directives_done = false;
  int m_line = 0;
  Mode m_mode = Mode::start;
  std::vector<std::string> m_comments;
  std::string m_logical;
  std::vector<Piece> m_pieces;
  int m_start_line = 0;
  int m_start_column = 0;
  bool m_has_empty_continuation = false;
  Node m_pending;
  size_t m_heredoc_index = 0;
  size_t m_words = 0;
  std::optional<Error> m_error;
  std::optional<Error> m_scanner_error;
};

template <typename Rule>
struct file_action : pegtl::nothing<Rule> {};
template <>
struct file_action<g::bom> {
  template <typename Input>
  static void apply(const Input&, LineMachine& machine) {
    machine.set_bom();
  }
};
template <>
struct file_action<g::physical_line> {
  template <typename Input>
  static bool apply(const Input& in, LineMachine& machine) {
    return machine.feed(in.string_view());
  }
};

}  // namespace

Result<Ast> parse_dockerfile(std::string_view text, std::string_view filename) {
  if (text.size() > k_max_dockerfile_size) {
    return fail(Error(Errc::limit,
                      "Dockerfile is too large: more than " + std::to_string(k_max_dockerfile_size) + " bytes",
                      SourceLocation{std::string(filename), 0, 0}));
  }
  LineMachine machine(filename);
  // The file grammar cannot fail on its own; an action returning false stops
  // it early (an error or an over-long line), which finish() reports.
  (void)match_text<g::file, file_action>(text, machine);
  return machine.finish();
}

}  // namespace imgbuild::parser
