#pragma once
// The Dockerfile grammar (PEGTL), as BuildKit's parser reads a Dockerfile.
// Rules only: the actions that build the syntax tree live in parse.cpp.
// This header is private to imgbuild_parser_syntax (the only target that
// links PEGTL); nothing public includes it.
//
// BuildKit's parser is line-driven and stateful: which physical lines form an
// instruction depends on the escape directive, on continuation markers, and
// on the heredocs an instruction opens. The grammar therefore comes in layers
// that parse.cpp applies in turn:
//
//   file               the input as physical lines (BOM, `\n` line ends)
//   comment_line, blank_line, directive, continued_line<E>
//                      classify one physical line (E = escape token)
//   instruction<E>     a logical line: keyword, builder flags, rest
//   exec_form          the JSON (exec) form of an argument list
//   heredoc_marker     a shell word that opens a heredoc (`3<<-"EOF"`)
//   heredoc_tabs       the tabs `<<-` strips before matching a terminator
//
// Every rule is linear in its input and none recurses: nested JSON values are
// matched by an iterative custom rule with a depth bound (Go's, 10000).

#include <cstddef>

#include <tao/pegtl.hpp>

namespace imgbuild::parser::syntax::grammar {

namespace pegtl = tao::pegtl;
using pegtl::any;
using pegtl::at;
using pegtl::eof;
using pegtl::not_at;
using pegtl::not_one;
using pegtl::not_range;
using pegtl::one;
using pegtl::opt;
using pegtl::plus;
using pegtl::range;
using pegtl::rep;
using pegtl::seq;
using pegtl::sor;
using pegtl::star;
using pegtl::two;

// ---------------------------------------------------------------------------
// Character classes

/// Go's unicode.IsSpace over UTF-8 input.
struct uspace : sor<one<' ', '\t', '\n', '\v', '\f', '\r'>,
                    pegtl::utf8::one<0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000>,
                    pegtl::utf8::range<0x2000, 0x200A>> {};
/// unicode.IsSpace applied to single bytes (BuildKit's byte-wise scanners).
struct byte_space : one<' ', '\t', '\n', '\v', '\f', '\r', '\x85', '\xA0'> {};
/// The separator BuildKit splits instructions on: `[\t\v\f\r ]`.
struct ascii_ws : one<'\t', '\v', '\f', '\r', ' '> {};
/// RE2's `\s`: `[\t\n\f\r ]`.
struct re_space : one<' ', '\t', '\n', '\f', '\r'> {};
/// The blanks allowed after a continuation marker.
struct blank_tab : one<' ', '\t'> {};
/// An ASCII digit (RE2's `\d`).
struct digit : range<'0', '9'> {};

// ---------------------------------------------------------------------------
// Physical lines

/// A UTF-8 byte-order mark, dropped from the first line.
struct bom : pegtl::string<'\xEF', '\xBB', '\xBF'> {};
/// One physical line with its `\n` (the last line may lack it).
struct physical_line : sor<seq<star<not_one<'\n'>>, one<'\n'>>, seq<plus<not_one<'\n'>>, eof>> {};
/// A whole Dockerfile.
struct file : seq<opt<bom>, star<physical_line>, eof> {};

// ---------------------------------------------------------------------------
// Classifying one physical line (line ending already removed)

/// A comment: `#` after optional whitespace (matched as a prefix).
struct comment_line : seq<star<uspace>, one<'#'>> {};
/// A line of whitespace only.
struct blank_line : seq<star<uspace>, eof> {};

/// The allowed parser-directive names, compared case-insensitively.
struct directive_name : sor<pegtl::istring<'s', 'y', 'n', 't', 'a', 'x'>, pegtl::istring<'e', 's', 'c', 'a', 'p', 'e'>,
                            pegtl::istring<'c', 'h', 'e', 'c', 'k'>> {};
/// A whole key: `[a-zA-Z][a-zA-Z0-9]*` that is one of the allowed names.
struct directive_key : seq<directive_name, not_at<pegtl::alnum>> {};
/// `(.+?)\s*$`: the action trims trailing `\s` but keeps at least one byte.
struct directive_value : plus<any> {};
/// `^#\s*(key)\s*=\s*(.+?)\s*$` with a known key, on a left-trimmed line.
struct directive : seq<one<'#'>, star<re_space>, directive_key, star<re_space>, one<'='>,
                       star<re_space, at<any>>, directive_value, eof> {};

/// The escape token E ending a line, followed only by spaces and tabs.
template <char E>
struct continuation_tail : seq<one<E>, star<blank_tab>, eof> {};
/// A run of two or more E is consumed whole: its last E is escaped, so it
/// cannot be a continuation marker (`foo\\` does not continue).
template <char E>
struct line_unit : sor<seq<one<E>, plus<one<E>>>, any> {};
/// `([^E])E[ \t]*$|^E[ \t]*$`: a line that continues on the next one.
template <char E>
struct continued_line : seq<star<not_at<continuation_tail<E>>, line_unit<E>>, continuation_tail<E>> {};

// ---------------------------------------------------------------------------
// A logical line: keyword, builder flags, rest

/// The instruction word: everything up to the first `[\t\v\f\r ]`.
struct keyword : star<not_one<'\t', '\v', '\f', '\r', ' '>> {};

/// E followed by any byte stands for that byte; a final E is dropped.
template <char E>
struct flag_escape : seq<one<E>, opt<any>> {};
/// A quoted section of a flag word; an unterminated one runs to the end.
template <char Q, char E>
struct flag_quoted : seq<one<Q>, star<sor<flag_escape<E>, not_one<Q>>>, opt<one<Q>>> {};
/// One whitespace-separated word starting with `--`.
template <char E>
struct flag_shape : seq<two<'-'>, star<sor<flag_escape<E>, flag_quoted<'\'', E>, flag_quoted<'"', E>,
                                           not_one<' ', '\t', '\n', '\v', '\f', '\r', '\x85', '\xA0'>>>> {};
/// A builder flag (`--from=build`); the action rejects a bare `--`.
template <char E>
struct flag_word : flag_shape<E> {};
/// The `--` that ends the flags; the action accepts only that word.
template <char E>
struct flag_terminator : flag_shape<E> {};
/// Everything after the flags (trimmed by the action).
struct rest : star<any> {};
/// extractBuilderFlags: flag words while they start with `--`, then the rest.
template <char E>
struct flags_and_rest : seq<star<star<byte_space>, flag_word<E>>,
                            sor<seq<star<byte_space>, flag_terminator<E>, rest>, seq<star<byte_space>, rest>>> {};
/// A trimmed logical line.
template <char E>
struct instruction : seq<keyword, opt<plus<ascii_ws>, flags_and_rest<E>>, eof> {};

// ---------------------------------------------------------------------------
// JSON (exec) form, as Go's encoding/json accepts it

/// JSON whitespace (Go rejects `\v` and `\f`).
struct json_ws : one<' ', '\t', '\n', '\r'> {};
/// A JSON string escape.
struct json_escape : seq<one<'\\'>, sor<one<'"', '\\', '/', 'b', 'f', 'n', 'r', 't'>,
                                        seq<one<'u'>, rep<4, pegtl::xdigit>>>> {};
/// A raw string byte: anything but `"`, `\` and control characters.
struct json_plain : seq<not_at<one<'"', '\\'>>, not_range<'\x00', '\x1F'>> {};
/// A JSON string literal.
struct json_string : seq<one<'"'>, star<sor<json_plain, json_escape>>, one<'"'>> {};
/// A JSON number (Go's grammar; no leading zeros, no `+`).
struct json_number : seq<opt<one<'-'>>, sor<one<'0'>, seq<range<'1', '9'>, star<digit>>>,
                         opt<one<'.'>, plus<digit>>, opt<one<'e', 'E'>, opt<one<'+', '-'>>, plus<digit>>> {};
/// true, false, null.
struct json_literal : sor<pegtl::string<'t', 'r', 'u', 'e'>, pegtl::string<'f', 'a', 'l', 's', 'e'>,
                          pegtl::string<'n', 'u', 'l', 'l'>> {};

/// Scans one JSON array or object at `p` without recursion; nesting deeper
/// than `max_depth` (counting from `depth`) fails. Sets `overflow` when a
/// number does not fit a float64. Defined in json.cpp.
bool scan_nested_json(const char*& p, const char* end, int depth, int max_depth, bool& overflow);

/// Go's encoding/json nesting limit.
inline constexpr int k_json_max_depth = 10000;

/// A nested array or object inside the exec-form array (custom rule).
struct json_nested {
  using rule_t = json_nested;
  using subs_t = pegtl::empty_list;

  template <pegtl::apply_mode A, pegtl::rewind_mode M, template <typename...> class Action,
            template <typename...> class Control, typename ParseInput, typename State>
  [[nodiscard]] static bool match(ParseInput& in, State& state) {
    const char* p = in.current();
    const char* end = p + in.size();
    if (p == end || (*p != '[' && *p != '{')) {
      return false;
    }
    if (!scan_nested_json(p, end, 2, k_json_max_depth, state.json_overflow)) {
      return false;
    }
    in.bump(static_cast<std::size_t>(p - in.current()));
    return true;
  }
};

/// A string element of the top-level array (decoded by its action).
struct json_element_string : json_string {};
/// Any other element: a non-string, which BuildKit rejects once the JSON is
/// known to be valid.
struct json_element_other : sor<json_number, json_literal, json_nested> {};
/// One element of the top-level array.
struct json_element : sor<json_element_string, json_element_other> {};
/// The top-level array.
struct json_array : seq<one<'['>, star<json_ws>,
                        opt<json_element, star<star<json_ws>, one<','>, star<json_ws>, json_element>>,
                        star<json_ws>, one<']'>> {};
/// The exec form: one JSON array of the whole (left-trimmed) text.
struct exec_form : seq<json_array, star<json_ws>, eof> {};

// ---------------------------------------------------------------------------
// Heredocs

/// The file descriptor digits before `<<`.
struct heredoc_fd : star<digit> {};
/// The `-` of `<<-`.
struct heredoc_chomp : one<'-'> {};
/// The delimiter text, lexed later as a shell word.
struct heredoc_delimiter : star<not_one<'<'>> {};
/// `^(\d*)<<(-?)\s*([^<]*)$` on one shell word.
struct heredoc_marker : seq<heredoc_fd, two<'<'>, opt<heredoc_chomp>, star<re_space>, heredoc_delimiter, eof> {};
/// The leading tabs that `<<-` ignores on a terminator line.
struct heredoc_tabs : star<one<'\t'>> {};

}  // namespace imgbuild::parser::syntax::grammar
