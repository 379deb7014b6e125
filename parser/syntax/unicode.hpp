#pragma once
// Go-compatible text primitives. BuildKit's parser is written in Go, and the
// exact bytes of its parse tree depend on how Go decodes UTF-8 (an invalid
// byte is one U+FFFD of width 1), which runes unicode.IsSpace accepts, what
// strings.ToLower and strings.TrimSpace do, and how strconv.Quote escapes.
// These functions reproduce that behaviour; the tables behind them are
// generated from the Unicode 15.0.0 database (scripts/gen_unicode_tables.py).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace imgbuild::parser::syntax {

/// The replacement character U+FFFD that Go substitutes for invalid UTF-8.
inline constexpr char32_t k_rune_error = 0xFFFD;

/// One decoded rune and the number of bytes it took.
struct DecodedRune {
  char32_t rune = 0;
  size_t width = 0;
};

/// Decodes the rune at the start of `s` as Go's utf8.DecodeRuneInString:
/// invalid or truncated sequences, surrogates and overlong forms give
/// {U+FFFD, 1}; an empty input gives {U+FFFD, 0}.
DecodedRune decode_rune(std::string_view s);

/// Appends the UTF-8 encoding of `r` (invalid runes become U+FFFD).
void append_rune(std::string& out, char32_t r);

/// Go's unicode.IsSpace.
bool is_space(char32_t r);
/// Go's unicode.IsSpace applied to a single byte taken as a rune (byte-wise
/// scanners in BuildKit do this: 0x85 and 0xA0 count as spaces).
bool is_space_byte(unsigned char b);
/// Go's unicode.IsPrint (L, M, N, P, S and U+0020).
bool is_print(char32_t r);
/// Go's unicode.IsLetter.
bool is_letter(char32_t r);
/// Go's unicode.IsDigit (category Nd).
bool is_digit(char32_t r);
/// Go's unicode.ToLower (simple mapping).
char32_t to_lower(char32_t r);

/// Go's strings.ToLower: lower-cases every rune; invalid bytes become U+FFFD
/// unless the string is pure ASCII.
std::string go_to_lower(std::string_view s);
/// Go's strings.TrimSpace (Unicode whitespace at both ends).
std::string_view go_trim_space(std::string_view s);
/// Go's strings.TrimLeftFunc(s, unicode.IsSpace).
std::string_view go_trim_left_space(std::string_view s);
/// Go's strconv.Quote: the exact quoting used by BuildKit's Node.Dump.
std::string go_quote(std::string_view s);

namespace unicode_tables {
/// An inclusive range of code points.
struct RuneRange {
  char32_t lo;
  char32_t hi;
};
/// A code point and its simple lower-case mapping.
struct LowerPair {
  char32_t from;
  char32_t to;
};
extern const RuneRange k_print[];
extern const size_t k_print_size;
extern const RuneRange k_letter[];
extern const size_t k_letter_size;
extern const RuneRange k_digit[];
extern const size_t k_digit_size;
extern const LowerPair k_lower[];
extern const size_t k_lower_size;
}  // namespace unicode_tables

}  // namespace imgbuild::parser::syntax
