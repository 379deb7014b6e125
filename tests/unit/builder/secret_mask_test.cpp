#include <catch2/catch.hpp>

#include "builder/secret_mask.hpp"

using imgbuild::builder::SecretMask;

TEST_CASE("secret mask: every occurrence of every value, longest first", "[builder]") {
  SecretMask m;
  CHECK(m.empty());
  CHECK(m.apply("token=abc") == "token=abc");
  m.add("abc");
  m.add("abcdef\n");  // a trailing newline is not part of what is printed
  m.add("");
  CHECK_FALSE(m.empty());
  CHECK(m.apply("token=abcdef and abc, abcabc") == "token=**** and ****, ********");
  CHECK(m.apply("nothing here") == "nothing here");
}

TEST_CASE("secret mask: each line of a multi-line value is masked", "[builder]") {
  SecretMask m;
  m.add("first-line\r\nsecond-line\n");
  CHECK(m.apply("x first-line y") == "x **** y");
  CHECK(m.apply("second-line") == "****");
}
