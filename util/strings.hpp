#pragma once
// Small string helpers shared by every module.

#include <optional>
#include <string>
#include <string_view>
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
