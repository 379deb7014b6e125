// JSON support for the exec form: validating nested values without
// recursion, the float64 overflow rule, and Go-compatible string decoding.

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "parser/syntax/grammar.hpp"
#include "parser/syntax/internal.hpp"
#include "parser/syntax/unicode.hpp"
#include "util/strings.hpp"

namespace imgbuild::parser::syntax {

namespace {

bool is_json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit_char(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit_char(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool scan_string(const char*& p, const char* end) {
  // *p == '"'
  ++p;
  while (p < end) {
    auto c = static_cast<unsigned char>(*p);
    if (c == '"') {
      ++p;
      return true;
    }
    if (c < 0x20) {
      return false;
    }
    if (c == '\\') {
      ++p;
      if (p == end) {
        return false;
      }
      switch (*p) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          ++p;
          break;
        case 'u':
          ++p;
          for (int i = 0; i < 4; ++i, ++p) {
            if (p == end || !is_hex(*p)) {
              return false;
            }
          }
          break;
        default:
          return false;
      }
      continue;
    }
    ++p;
  }
  return false;
}

bool scan_number(const char*& p, const char* end, bool& overflow) {
  const char* start = p;
  if (p < end && *p == '-') {
    ++p;
  }
  if (p == end) {
    return false;
  }
  if (*p == '0') {
    ++p;
  } else if (*p >= '1' && *p <= '9') {
    while (p < end && is_digit_char(*p)) {
      ++p;
    }
  } else {
    return false;
  }
  if (p < end && *p == '.') {
    ++p;
    if (p == end || !is_digit_char(*p)) {
      return false;
    }
    while (p < end && is_digit_char(*p)) {
      ++p;
    }
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    ++p;
    if (p < end && (*p == '+' || *p == '-')) {
      ++p;
    }
    if (p == end || !is_digit_char(*p)) {
      return false;
    }
    while (p < end && is_digit_char(*p)) {
      ++p;
    }
  }
  if (json_number_overflows(std::string_view(start, static_cast<size_t>(p - start)))) {
    overflow = true;
  }
  return true;
}

bool scan_literal(const char*& p, const char* end) {
  for (std::string_view lit : {std::string_view("true"), std::string_view("false"), std::string_view("null")}) {
    if (static_cast<size_t>(end - p) >= lit.size() && std::string_view(p, lit.size()) == lit) {
      p += lit.size();
      return true;
    }
  }
  return false;
}

enum class Expect { value_or_close, key_or_close, value, key, after_value };

}  // namespace

bool json_number_overflows(std::string_view number) {
  std::string copy(number);
  double v = std::strtod(copy.c_str(), nullptr);
  return std::isinf(v);
}

std::string decode_json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex4 = [&](size_t at) -> long {
    // s[at] should be '\\', s[at+1] 'u', then four hex digits.
    if (at + 6 > s.size() || s[at] != '\\' || s[at + 1] != 'u') {
      return -1;
    }
    long v = 0;
    for (size_t i = at + 2; i < at + 6; ++i) {
      int d = str::hex_digit(s[i]);
      if (d < 0) {
        return -1;
      }
      v = v * 16 + d;
    }
    return v;
  };
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\' && i + 1 < s.size()) {
      char e = s[i + 1];
      switch (e) {
        case 'b': out += '\b'; i += 2; continue;
        case 'f': out += '\f'; i += 2; continue;
        case 'n': out += '\n'; i += 2; continue;
        case 'r': out += '\r'; i += 2; continue;
        case 't': out += '\t'; i += 2; continue;
        case 'u': {
          long r = hex4(i);
          i += 6;
          if (r >= 0xD800 && r < 0xE000) {
            long r2 = hex4(i);
            if (r < 0xDC00 && r2 >= 0xDC00 && r2 < 0xE000) {
              i += 6;
              append_rune(out, static_cast<char32_t>(0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00)));
              continue;
            }
            r = k_rune_error;
          }
          append_rune(out, static_cast<char32_t>(r < 0 ? k_rune_error : r));
          continue;
        }
        default:  // '"', '\\', '/'
          out += e;
          i += 2;
          continue;
      }
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    DecodedRune d = decode_rune(s.substr(i));
    append_rune(out, d.rune);
    i += d.width;
  }
  return out;
}

namespace grammar {

bool scan_nested_json(const char*& p, const char* end, int depth, int max_depth, bool& overflow) {
  std::vector<char> stack;
  Expect expect = Expect::value;
  const char* q = p;
  for (;;) {
    while (q < end && is_json_ws(*q)) {
      ++q;
    }
    if (q == end) {
      return false;
    }
    char c = *q;
    if (expect == Expect::after_value) {
      if (c == ',') {
        ++q;
        expect = stack.back() == '[' ? Expect::value : Expect::key;
        continue;
      }
      if ((c == ']' && stack.back() == '[') || (c == '}' && stack.back() == '{')) {
        ++q;
        stack.pop_back();
        if (stack.empty()) {
          p = q;
          return true;
        }
        continue;
      }
      return false;
    }
    if ((expect == Expect::value_or_close && c == ']') || (expect == Expect::key_or_close && c == '}')) {
      ++q;
      stack.pop_back();
      if (stack.empty()) {
        p = q;
        return true;
      }
      expect = Expect::after_value;
      continue;
    }
    if (expect == Expect::key || expect == Expect::key_or_close) {
      if (c != '"' || !scan_string(q, end)) {
        return false;
      }
      while (q < end && is_json_ws(*q)) {
        ++q;
      }
      if (q == end || *q != ':') {
        return false;
      }
      ++q;
      expect = Expect::value;
      continue;
    }
    // A value.
    if (c == '[' || c == '{') {
      if (depth + static_cast<int>(stack.size()) > max_depth) {
        return false;
      }
      stack.push_back(c);
      ++q;
      expect = c == '[' ? Expect::value_or_close : Expect::key_or_close;
      continue;
    }
    if (stack.empty()) {
      return false;  // the caller guarantees a container; be safe
    }
    bool ok = false;
    if (c == '"') {
      ok = scan_string(q, end);
    } else if (c == '-' || is_digit_char(c)) {
      ok = scan_number(q, end, overflow);
    } else {
      ok = scan_literal(q, end);
    }
    if (!ok) {
      return false;
    }
    expect = Expect::after_value;
  }
}

}  // namespace grammar

}  // namespace imgbuild::parser::syntax
