#pragma once
// Helpers shared by the files of imgbuild_parser_syntax. Not part of the
// public interface (parse.hpp, dump.hpp); PEGTL-free.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imgbuild::parser::syntax {

/// True when a valid JSON number does not fit a float64 (Go's json decoder
/// then fails, and BuildKit falls back to the shell form).
bool json_number_overflows(std::string_view number);

/// Decodes the inside of a valid JSON string literal as Go does: escapes
/// resolved, bad surrogates and invalid UTF-8 bytes become U+FFFD.
std::string decode_json_string(std::string_view body);

/// How the heredoc shell lexer treats quotes and escapes.
struct WordLexOptions {
  bool raw_quotes = false;   ///< keep quote characters in the words
  bool raw_escapes = false;  ///< keep escape characters in the words
  bool glue_heredoc = false; ///< `<<` followed by spaces/tabs/CRs joins the next word
};

/// BuildKit's shell lexer (escape `\`, no variables set, unset variables
/// left as written) splitting `text` into words; nullopt on a lexing error,
/// whose message goes to `error` when given.
std::optional<std::vector<std::string>> lex_shell_words(std::string_view text, const WordLexOptions& options,
                                                        std::string* error = nullptr);

}  // namespace imgbuild::parser::syntax
