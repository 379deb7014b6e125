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
