#pragma once
// The few Unicode facilities the Dockerfile model needs, with Go's semantics
// (BuildKit is written in Go): UTF-8 decoding where each invalid byte becomes
// U+FFFD, and the letter / decimal-digit / white-space classes of Go's
// unicode package. Implemented over parser/syntax/unicode.hpp.

#include <string>
#include <string_view>
#include <vector>

namespace imgbuild::parser::unicode {

/// U+FFFD, what an invalid UTF-8 byte decodes to.
inline constexpr char32_t k_replacement = 0xFFFD;

/// Decodes one code point at s[pos]; sets `width` to the bytes consumed
/// (1 for an invalid byte, which yields U+FFFD). Requires pos < s.size().
char32_t decode_at(std::string_view s, size_t pos, size_t& width);

/// Decodes a whole string into code points (Go's `[]rune(s)`).
std::vector<char32_t> decode(std::string_view s);

/// Appends the UTF-8 encoding of cp (invalid code points as U+FFFD).
void append(std::string& out, char32_t cp);

/// Encodes a run of code points.
std::string encode(const std::vector<char32_t>& cps);

/// Go's unicode.IsLetter: general category L.
bool is_letter(char32_t cp);

/// Go's unicode.IsDigit: general category Nd.
bool is_digit(char32_t cp);

/// Go's unicode.IsSpace: \t \n \v \f \r, space, U+0085, U+00A0 and the
/// Unicode space separators.
bool is_space(char32_t cp);

}  // namespace imgbuild::parser::unicode
