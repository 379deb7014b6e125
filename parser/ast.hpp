#pragma once
// The Dockerfile syntax tree: what the PEG grammar's actions build. It holds
// exactly what BuildKit's parser node holds (keyword, flags, args, JSON-form
// attribute, heredocs, original text, line range) plus column positions for
// diagnostics. Nothing here is expanded or validated: lowering
// (parser/lower.hpp) turns nodes into typed instructions.

#include <optional>
#include <string>
#include <vector>

namespace imgbuild::parser {

/// A heredoc attached to RUN, COPY or ADD (`<<EOF`, `<<-EOF`, `3<<"EOF"`).
struct Heredoc {
  /// The delimiter with quotes removed; for COPY/ADD also the file name.
  std::string name;
  /// Body lines with their original line endings; leading tabs are kept even
  /// with `<<-` (chomp says they are to be stripped by whoever uses it).
  std::string content;
  /// The N of `N<<EOF`; 0 when absent.
  int file_descriptor = 0;
  /// True when the delimiter was unquoted: the body is subject to expansion.
  bool expand = true;
  /// True for `<<-`: leading tabs are stripped from each body line.
  bool chomp = false;
};

/// One position in the source: 1-based line and column (bytes).
struct Position {
  int line = 0;
  int column = 0;
};

/// One instruction as parsed (BuildKit's Node).
struct Node {
  /// Lower-cased keyword ("run"); for the unknown keyword `FORM`, "form".
  std::string keyword;
  /// The keyword exactly as written ("Run"), for casing checks and errors.
  std::string keyword_as_written;
  /// Flag words as BuildKit extracts them: "--from=build", quotes removed,
  /// escapes applied, in source order.
  std::vector<std::string> flags;
  /// Arguments as the instruction's argument parser produced them (see the
  /// conformance README §1.3.5); for ENV/LABEL the key/value/separator triples.
  std::vector<std::string> args;
  /// True when args came from a JSON array (exec form).
  bool json_form = false;
  /// ONBUILD's trigger instruction (exactly one element), else empty.
  std::vector<Node> children;
  /// Heredocs in the order they appear on the line.
  std::vector<Heredoc> heredocs;
  /// The logical line: physical lines joined with continuations removed,
  /// BuildKit's Node.Original.
  std::string original;
  /// Comment lines directly above the instruction, '#' and one space removed.
  std::vector<std::string> comments;
  /// Where the keyword starts.
  Position start;
  /// Last physical line consumed (continuations, heredoc bodies, terminators).
  int end_line = 0;
};

/// A parser directive at the top of the file.
struct Directive {
  std::string key;    ///< lower-cased: syntax, escape or check
  std::string value;
  int line = 0;
};

/// A warning the parser itself raises (BuildKit's NoEmptyContinuation).
struct ParseWarning {
  std::string rule;     ///< build-check rule name
  std::string message;
  int line = 0;
};

/// A whole Dockerfile.
struct Ast {
  std::vector<Node> children;
  std::vector<Directive> directives;
  /// The escape token in effect: '\\' or '`'.
  char escape = '\\';
  std::vector<ParseWarning> warnings;
  /// First line of the first child and last line of the last child.
  int start_line = 0;
  int end_line = 0;

  /// The value of a directive, if given.
  std::optional<std::string> directive(const std::string& key) const {
    for (const auto& d : directives) {
      if (d.key == key) {
        return d.value;
      }
    }
    return std::nullopt;
  }
};

}  // namespace imgbuild::parser
