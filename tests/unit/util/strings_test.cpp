#include <catch2/catch.hpp>

#include "util/strings.hpp"

using namespace imgbuild;

TEST_CASE("split keeps empty fields", "[util]") {
  CHECK(str::split("a,,b", ',') == std::vector<std::string>{"a", "", "b"});
  CHECK(str::split("", ',') == std::vector<std::string>{""});
}

TEST_CASE("trim and case helpers", "[util]") {
  CHECK(str::trim(" \t x y \r\n") == "x y");
  CHECK(str::to_lower("RuN") == "run");
  CHECK(str::iequals("FROM", "from"));
  CHECK_FALSE(str::iequals("FROM", "fro"));
}

TEST_CASE("closest_match suggests near misses only", "[util]") {
  std::vector<std::string> words = {"FROM", "RUN", "COPY", "WORKDIR", "HEALTHCHECK"};
  CHECK(str::closest_match("FORM", words) == std::optional<std::string>("FROM"));
  CHECK(str::closest_match("workdri", words) == std::optional<std::string>("WORKDIR"));
  CHECK_FALSE(str::closest_match("banana", words).has_value());
  CHECK_FALSE(str::closest_match("run", words).has_value());  // exact: no hint
}

TEST_CASE("go_quote escapes like strconv.Quote", "[util]") {
  CHECK(str::go_quote("a\"b\\c\n") == "\"a\\\"b\\\\c\\n\"");
}

TEST_CASE("human_size matches docker's units", "[util]") {
  CHECK(str::human_size(0) == "0B");
  CHECK(str::human_size(999) == "999B");
  CHECK(str::human_size(1234567) == "1.235MB");
  CHECK(str::human_size(1234567, 3) == "1.23MB");
  CHECK(str::human_size(999999, 3) == "1e+03kB");
}

TEST_CASE("join_path drops empty pieces", "[util]") {
  CHECK(str::join_path("a", "b") == "a/b");
  CHECK(str::join_path("", "b") == "b");
  CHECK(str::join_path("a", "") == "a");
}

TEST_CASE("str split_view, split_lines, cut and base_name", "[util]") {
  CHECK(str::split_view("a//b/", '/') == std::vector<std::string_view>{"a", "", "b", ""});
  CHECK(str::split_view("", '/') == std::vector<std::string_view>{""});
  CHECK(str::split_lines("one\r\ntwo\n\nlast") == std::vector<std::string_view>{"one", "two", "", "last"});
  CHECK(str::split_lines("x\n") == std::vector<std::string_view>{"x"});
  CHECK(str::split_lines("").empty());
  auto kv = str::cut("key value with spaces", ' ');
  REQUIRE(kv);
  CHECK(kv->first == "key");
  CHECK(kv->second == "value with spaces");
  CHECK_FALSE(str::cut("nospace", ' '));
  CHECK(str::base_name("a/b/c.txt") == "c.txt");
  CHECK(str::base_name("plain") == "plain");
  CHECK(str::base_name("dir/") == "");
}

TEST_CASE("str escape_line and hex_digit", "[util]") {
  CHECK(str::escape_line("a\nb\\c") == "a\\nb\\\\c");
  CHECK(str::escape_line("plain") == "plain");
  CHECK(str::hex_digit('0') == 0);
  CHECK(str::hex_digit('9') == 9);
  CHECK(str::hex_digit('a') == 10);
  CHECK(str::hex_digit('F') == 15);
  CHECK(str::hex_digit('g') == -1);
  CHECK(str::hex_digit('/') == -1);
}

TEST_CASE("str record_lines reads key-value records and leaves out a line being written", "[util]") {
  auto r = str::record_lines("magic 1\npid 42\nblob sha256:ab cd\nbare\nlayer partial", "magic 1");
  REQUIRE(r);
  REQUIRE(r->size() == 2);
  CHECK((*r)[0] == std::make_pair(std::string("pid"), std::string("42")));
  CHECK((*r)[1] == std::make_pair(std::string("blob"), std::string("sha256:ab cd")));
  auto only_magic = str::record_lines("magic 1", "magic 1");
  REQUIRE(only_magic);
  CHECK(only_magic->empty());
  CHECK_FALSE(str::record_lines("other\npid 1\n", "magic 1"));
  CHECK_FALSE(str::record_lines("", "magic 1"));
}
