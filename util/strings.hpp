#pragma once
// Small string helpers shared by every module.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace imgbuild::str {

/// ASCII lower-case copy.
std::string to_lower(std::string_view s);
/// ASCII upper-case copy.
std::string to_upper(std::string_view s);
/// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b);
/// Strips ASCII whitespace (space, \t, \n, \v, \f, \r) from both ends.
std::string_view trim(std::string_view s);
/// Splits on every occurrence of sep; "a,,b" gives {"a", "", "b"}.
std::vector<std::string> split(std::string_view s, char sep);
/// split without copies: views into `s`, which must outlive them.
std::vector<std::string_view> split_view(std::string_view s, char sep);
/// The lines of a text without their "\n" or "\r\n"; a last line without
/// a newline counts, an empty text has none. Views into `text`.
std::vector<std::string_view> split_lines(std::string_view text);
/// `s` with "\\" and "\n" escaped ("\\\\", "\\n"), so that any value fits
/// on one line of a line-based record.
std::string escape_line(std::string_view s);
/// Go's strings.Cut: the text before and after the first `sep`, nullopt
/// when there is none ("key value" lines).
std::optional<std::pair<std::string_view, std::string_view>> cut(std::string_view s, char sep);
/// "key=value" split at its first '=' ({s, ""} when there is none): the
/// attributes of -o, --cache-to and --secret.
std::pair<std::string, std::string> key_value(std::string_view s);
/// The value of a hexadecimal digit (0-9, a-f, A-F), -1 for anything else.
int hex_digit(char c);
/// The "key value" lines of a line-based record whose first line is
/// `magic` (nullopt when it is not): each split at its first space (lines
/// without one skipped); a last line without its newline is left out, as a
/// record still being written.
std::optional<std::vector<std::pair<std::string, std::string>>> record_lines(std::string_view text,
                                                                             std::string_view magic);
/// Joins parts with sep between them.
std::string join(const std::vector<std::string>& parts, std::string_view sep);
/// Joins two relative path pieces with one '/'; an empty piece is dropped
/// ("" + "b" = "b", "a" + "" = "a").
std::string join_path(std::string_view a, std::string_view b);
/// The last component of a '/'-separated path ("c" of "a/b/c"; "" when the
/// path ends in '/').
std::string base_name(std::string_view path);
/// Replaces every occurrence of from (non-empty) with to.
std::string replace_all(std::string_view s, std::string_view from, std::string_view to);

/// Levenshtein edit distance (bytes).
size_t edit_distance(std::string_view a, std::string_view b);
/// The candidate closest to word (case-insensitive) when it is close enough to
/// be a likely typo, for "did you mean" hints.
std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates);

/// Go's strconv.Quote-like quoting, for error messages that show a value.
std::string go_quote(std::string_view s);

/// Formats a byte count as docker does ("1.235MB", "512B"; SI units) with
/// `significant` digits (docker images uses 3).
std::string human_size(uint64_t bytes, int significant = 4);

/// Parses a size: bytes, or a number with B, K/KB/KiB, M/MB/MiB, G/GB/GiB,
/// T/TB/TiB (powers of 1024, as docker's RAMInBytes), case-insensitive;
/// nullopt when it is not one.
std::optional<uint64_t> parse_size(std::string_view text);

}  // namespace imgbuild::str
