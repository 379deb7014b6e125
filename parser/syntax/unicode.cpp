#include "parser/syntax/unicode.hpp"

#include <algorithm>

namespace imgbuild::parser::syntax {

namespace {

bool in_ranges(char32_t r, const unicode_tables::RuneRange* table, size_t size) {
  const unicode_tables::RuneRange* end = table + size;
  const unicode_tables::RuneRange* it = std::upper_bound(
      table, end, r, [](char32_t v, const unicode_tables::RuneRange& range) { return v < range.lo; });
  if (it == table) {
    return false;
  }
  --it;
  return r >= it->lo && r <= it->hi;
}

bool is_continuation(unsigned char b, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
  return b >= lo && b <= hi;
}

constexpr char k_hex[] = "0123456789abcdef";

void append_hex(std::string& out, uint32_t v, int digits) {
  for (int i = digits - 1; i >= 0; --i) {
    out += k_hex[(v >> (4 * i)) & 0xF];
  }
}

}  // namespace

DecodedRune decode_rune(std::string_view s) {
  if (s.empty()) {
    return {k_rune_error, 0};
  }
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) {
    return {b0, 1};
  }
  const DecodedRune bad{k_rune_error, 1};
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (s.size() < 2 || !is_continuation(byte(1))) {
      return bad;
    }
    return {static_cast<char32_t>(((b0 & 0x1F) << 6) | (byte(1) & 0x3F)), 2};
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;
    unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;
    if (s.size() < 2 || !is_continuation(byte(1), lo, hi)) {
      return bad;
    }
    if (s.size() < 3 || !is_continuation(byte(2))) {
      return bad;
    }
    return {static_cast<char32_t>(((b0 & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F)), 3};
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (s.size() < 2 || !is_continuation(byte(1), lo, hi)) {
      return bad;
    }
    if (s.size() < 3 || !is_continuation(byte(2))) {
      return bad;
    }
    if (s.size() < 4 || !is_continuation(byte(3))) {
      return bad;
    }
    return {static_cast<char32_t>(((b0 & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) |
                                  (byte(3) & 0x3F)),
            4};
  }
  return bad;
}

void append_rune(std::string& out, char32_t r) {
  if (r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF)) {
    r = k_rune_error;
  }
  if (r < 0x80) {
    out += static_cast<char>(r);
  } else if (r < 0x800) {
    out += static_cast<char>(0xC0 | (r >> 6));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else if (r < 0x10000) {
    out += static_cast<char>(0xE0 | (r >> 12));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (r >> 18));
    out += static_cast<char>(0x80 | ((r >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  }
}

bool is_space(char32_t r) {
  switch (r) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return r >= 0x2000 && r <= 0x200A;
  }
}

bool is_space_byte(unsigned char b) { return is_space(b); }

bool is_print(char32_t r) {
  if (r < 0x80) {
    return r >= 0x20 && r < 0x7F;
  }
  return in_ranges(r, unicode_tables::k_print, unicode_tables::k_print_size);
}

bool is_letter(char32_t r) {
  if (r < 0x80) {
    return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z');
  }
  return in_ranges(r, unicode_tables::k_letter, unicode_tables::k_letter_size);
}

bool is_digit(char32_t r) {
  if (r < 0x80) {
    return r >= '0' && r <= '9';
  }
  return in_ranges(r, unicode_tables::k_digit, unicode_tables::k_digit_size);
}

char32_t to_lower(char32_t r) {
  if (r < 0x80) {
    return (r >= 'A' && r <= 'Z') ? r + ('a' - 'A') : r;
  }
  const unicode_tables::LowerPair* begin = unicode_tables::k_lower;
  const unicode_tables::LowerPair* end = begin + unicode_tables::k_lower_size;
  const unicode_tables::LowerPair* it = std::lower_bound(
      begin, end, r, [](const unicode_tables::LowerPair& p, char32_t v) { return p.from < v; });
  if (it != end && it->from == r) {
    return it->to;
  }
  return r;
}

std::string go_to_lower(std::string_view s) {
  bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  std::string out;
  out.reserve(s.size());
  if (ascii) {
    for (char c : s) {
      out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
    }
    return out;
  }
  size_t i = 0;
  while (i < s.size()) {
    DecodedRune d = decode_rune(s.substr(i));
    append_rune(out, to_lower(d.rune));
    i += d.width;
  }
  return out;
}

std::string_view go_trim_left_space(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    DecodedRune d = decode_rune(s.substr(i));
    if (!is_space(d.rune)) {
      break;
    }
    i += d.width;
  }
  return s.substr(i);
}

namespace {

// utf8.DecodeLastRuneInString: the rune that ends `s`.
DecodedRune decode_last_rune(std::string_view s) {
  if (s.empty()) {
    return {k_rune_error, 0};
  }
  size_t end = s.size();
  auto last = static_cast<unsigned char>(s[end - 1]);
  if (last < 0x80) {
    return {last, 1};
  }
  size_t lim = end >= 4 ? end - 4 : 0;
  size_t start = end - 1;
  while (start > lim && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
    --start;
  }
  DecodedRune d = decode_rune(s.substr(start));
  if (start + d.width != end) {
    return {k_rune_error, 1};
  }
  return d;
}

}  // namespace

std::string_view go_trim_space(std::string_view s) {
  s = go_trim_left_space(s);
  while (!s.empty()) {
    DecodedRune d = decode_last_rune(s);
    if (!is_space(d.rune)) {
      break;
    }
    s.remove_suffix(d.width);
  }
  return s;
}

std::string go_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0x20 && b < 0x7F && b != '"' && b != '\\') {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    DecodedRune d = decode_rune(s.substr(i));
    if (d.rune == k_rune_error && d.width == 1) {
      out += "\\x";
      append_hex(out, static_cast<unsigned char>(s[i]), 2);
      i += 1;
      continue;
    }
    char32_t r = d.rune;
    if (r == '"' || r == '\\') {
      out += '\\';
      out += static_cast<char>(r);
    } else if (is_print(r)) {
      out.append(s.substr(i, d.width));
    } else {
      switch (r) {
        case '\a': out += "\\a"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\v': out += "\\v"; break;
        default:
          if (r < 0x20 || r == 0x7F) {
            out += "\\x";
            append_hex(out, r, 2);
          } else if (r < 0x10000) {
            out += "\\u";
            append_hex(out, r, 4);
          } else {
            out += "\\U";
            append_hex(out, r, 8);
          }
      }
    }
    i += d.width;
  }
  out += '"';
  return out;
}

}  // namespace imgbuild::parser::syntax
