// Thin adapters over parser/syntax/unicode.hpp (Go-compatible decoding and
// character classes, generated from the Unicode database there).

#include "parser/unicode.hpp"

#include "parser/syntax/unicode.hpp"

namespace imgbuild::parser::unicode {

char32_t decode_at(std::string_view s, size_t pos, size_t& width) {
  syntax::DecodedRune r = syntax::decode_rune(s.substr(pos));
  width = r.width == 0 ? 1 : r.width;
  return r.rune;
}

std::vector<char32_t> decode(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    size_t width = 1;
    out.push_back(decode_at(s, pos, width));
    pos += width;
  }
  return out;
}

void append(std::string& out, char32_t cp) { syntax::append_rune(out, cp); }

std::string encode(const std::vector<char32_t>& cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) {
    append(out, cp);
  }
  return out;
}

bool is_letter(char32_t cp) { return syntax::is_letter(cp); }

bool is_digit(char32_t cp) { return syntax::is_digit(cp); }

bool is_space(char32_t cp) { return syntax::is_space(cp); }

}  // namespace imgbuild::parser::unicode
