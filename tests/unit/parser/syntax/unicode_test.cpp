// The Go-compatible text primitives behind the dump: UTF-8 decoding with
// Go's error rules, unicode.IsSpace, strings.TrimSpace / ToLower and
// strconv.Quote.

#include <string>

#include <catch2/catch.hpp>

#include "parser/syntax/unicode.hpp"

using namespace imgbuild::parser::syntax;

TEST_CASE("UTF-8 decoding follows Go", "[parser][unicode]") {
  CHECK(decode_rune("a").rune == 'a');
  CHECK(decode_rune("\xC3\xA9").rune == 0xE9);
  CHECK(decode_rune("\xC3\xA9").width == 2);
  CHECK(decode_rune("\xF0\x9F\x98\x80").rune == 0x1F600);
  // Invalid, overlong, surrogate and truncated sequences: U+FFFD of width 1.
  for (const char* bad : {"\xFF", "\xC0\x80", "\xED\xA0\x80", "\xE2\x82", "\xF4\x90\x80\x80", "\x80"}) {
    DecodedRune d = decode_rune(bad);
    CHECK(d.rune == k_rune_error);
    CHECK(d.width == 1);
  }
  CHECK(decode_rune("").width == 0);
}

TEST_CASE("Go whitespace, trimming and lower-casing", "[parser][unicode]") {
  CHECK(is_space(0x85));
  CHECK(is_space(0x3000));
  CHECK_FALSE(is_space(0x200B));
  CHECK(is_space_byte(0xA0));
  CHECK(go_trim_space("\xC2\xA0 a b\t\xE2\x80\xA8") == "a b");
  CHECK(go_trim_space("\xFF a \xFF") == "\xFF a \xFF");
  CHECK(go_trim_left_space(" \t x ") == "x ");
  CHECK(go_to_lower("FROM") == "from");
  CHECK(go_to_lower("\xC4\xB0X") == "ix");      // U+0130 lower-cases to 'i'
  CHECK(go_to_lower("A\xFF") == "a\xEF\xBF\xBD");  // invalid bytes become U+FFFD
  CHECK(go_to_lower("a\xC3\x89") == "a\xC3\xA9");
}

TEST_CASE("strconv.Quote", "[parser][unicode]") {
  CHECK(go_quote("") == "\"\"");
  CHECK(go_quote("a \"b\" \\c") == "\"a \\\"b\\\" \\\\c\"");
  CHECK(go_quote(std::string("\a\b\f\n\r\t\v\x00\x1b\x7f", 10)) == "\"\\a\\b\\f\\n\\r\\t\\v\\x00\\x1b\\x7f\"");
  CHECK(go_quote("\xC2\xAD") == "\"\\u00ad\"");          // soft hyphen (Cf)
  CHECK(go_quote("\xEF\xBB\xBF") == "\"\\ufeff\"");      // BOM (Cf)
  CHECK(go_quote("\xF3\xA0\x80\x81") == "\"\\U000e0001\"");  // language tag (Cf)
  CHECK(go_quote("\xE2\x99\xA5\xE2\x98\x83") == "\"\xE2\x99\xA5\xE2\x98\x83\"");
  CHECK(go_quote("\xFF\xFE") == "\"\\xff\\xfe\"");
  CHECK(is_print(0x1F600));
  CHECK_FALSE(is_print(0xE000));  // private use
  CHECK_FALSE(is_print(0x0378));  // unassigned
}
