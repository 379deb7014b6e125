#include <catch2/catch.hpp>

#include "builder/dockerignore.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;

namespace {

IgnoreMatcher parse_ok(std::string_view text) {
  auto m = IgnoreMatcher::parse(text, ".dockerignore");
  REQUIRE(m);
  return *m;
}

}  // namespace

TEST_CASE("dockerignore: BOM is stripped from the first line", "[builder]") {
  auto m = parse_ok("\xEF\xBB\xBF" "secret\n");
  REQUIRE(m.patterns().size() == 1);
  CHECK(m.patterns()[0].text == "secret");
  CHECK(m.excluded("secret"));
}

TEST_CASE("dockerignore: # in column 1 is a comment, elsewhere it is a pattern", "[builder]") {
  auto m = parse_ok("#comment\n  #notcomment\n");
  REQUIRE(m.patterns().size() == 1);
  CHECK(m.patterns()[0].text == "#notcomment");
  CHECK(m.patterns()[0].line == 2);
  CHECK_FALSE(m.excluded("comment"));
  CHECK(m.excluded("#notcomment"));
}

TEST_CASE("dockerignore: lines are trimmed, blank lines and CRLF skipped", "[builder]") {
  auto m = parse_ok("  a.txt  \r\n\n\t\n b \n");
  REQUIRE(m.patterns().size() == 2);
  CHECK(m.patterns()[0].text == "a.txt");
  CHECK(m.patterns()[1].text == "b");
  CHECK(m.patterns()[1].line == 4);
}

TEST_CASE("dockerignore: patterns are cleaned, leading / removed, . dropped", "[builder]") {
  auto m = parse_ok("/abs/x\n./rel/../y/\n.\n!.\nz//w\n");
  REQUIRE(m.patterns().size() == 3);
  CHECK(m.patterns()[0].text == "abs/x");
  CHECK(m.patterns()[1].text == "y");
  CHECK(m.patterns()[2].text == "z/w");
  CHECK(m.excluded("abs/x"));
  CHECK(m.excluded("y/file"));
  CHECK_FALSE(m.excluded("x"));
}

TEST_CASE("dockerignore: ! exceptions and last match wins", "[builder]") {
  auto m = parse_ok("*.md\n!README.md\n");
  CHECK(m.excluded("a.md"));
  CHECK_FALSE(m.excluded("README.md"));
  CHECK(m.has_exceptions());
  auto m2 = parse_ok("!README.md\n*.md\n");
  CHECK(m2.excluded("README.md"));
  auto m3 = parse_ok("! spaced.md \n*.md\n!spaced.md\n");
  CHECK_FALSE(m3.excluded("spaced.md"));
}

TEST_CASE("dockerignore: a matched directory excludes what is below it", "[builder]") {
  auto m = parse_ok("node_modules\n");
  CHECK(m.excluded("node_modules"));
  CHECK(m.excluded("node_modules/a/b.js"));
  CHECK_FALSE(m.excluded("src/node_modules"));
  auto m2 = parse_ok("build\n!build/keep\n");
  CHECK(m2.excluded("build/other"));
  CHECK_FALSE(m2.excluded("build/keep"));
  CHECK_FALSE(m2.excluded("build/keep/inner"));
}

TEST_CASE("dockerignore: Go filepath.Match wildcards do not cross /", "[builder]") {
  auto m = parse_ok("*.log\nd?r/[a-c]*.txt\n[^x]y\n");
  CHECK(m.excluded("a.log"));
  CHECK_FALSE(m.excluded("sub/a.log"));
  CHECK(m.excluded("dir/b1.txt"));
  CHECK_FALSE(m.excluded("dir/d1.txt"));
  CHECK_FALSE(m.excluded("dr/a.txt"));
  CHECK(m.excluded("ay"));
  CHECK_FALSE(m.excluded("xy"));
  CHECK(match_pattern("a\\*b", "a*b"));
  CHECK_FALSE(match_pattern("a\\*b", "axb"));
}

TEST_CASE("dockerignore: ** matches any number of directories", "[builder]") {
  CHECK(match_pattern("**/*.go", "a.go"));
  CHECK(match_pattern("**/*.go", "x/y/a.go"));
  CHECK(match_pattern("a/**/b", "a/b"));
  CHECK(match_pattern("a/**/b", "a/x/y/b"));
  CHECK_FALSE(match_pattern("a/**/b", "a/xb"));
  CHECK(match_pattern("a/**", "a/x/y"));
  CHECK_FALSE(match_pattern("a/**", "a"));
  CHECK(match_pattern("**", "anything/at/all"));
  CHECK(match_pattern("**/foo", "foo"));
  CHECK(match_pattern("**/foo", "x/foo"));
  CHECK(match_pattern("**.txt", "a/b.txt"));
  auto m = parse_ok("**/*.tmp\n");
  CHECK(m.excluded("deep/down/x.tmp"));
  CHECK_FALSE(m.excluded("x.tmpl"));
}

TEST_CASE("dockerignore: an invalid pattern is an error naming the line", "[builder]") {
  auto m = IgnoreMatcher::parse("ok\n[\n", ".dockerignore");
  REQUIRE_FALSE(m);
  CHECK(m.error().message.find(".dockerignore:2:") != std::string::npos);
  CHECK(m.error().message.find("syntax error in pattern") != std::string::npos);
  CHECK_FALSE(IgnoreMatcher::parse("a\\\n", "f"));
  CHECK_FALSE(IgnoreMatcher::parse("[]a]\n", "f"));
  CHECK_FALSE(IgnoreMatcher::parse("[a-]\n", "f"));
  CHECK(IgnoreMatcher::parse("[a-c]\n", "f"));
}

TEST_CASE("dockerignore: go_clean matches filepath.Clean", "[builder]") {
  CHECK(go_clean("") == ".");
  CHECK(go_clean("a/../b") == "b");
  CHECK(go_clean("../x") == "../x");
  CHECK(go_clean("/../x") == "/x");
  CHECK(go_clean("a/b/../../..") == "..");
  CHECK(go_clean("./") == ".");
  CHECK(go_clean("//a//b/") == "/a/b");
}

TEST_CASE("dockerignore: --exclude pattern lists", "[builder]") {
  auto m = IgnoreMatcher::from_patterns({"*.txt", "!keep.txt"});
  REQUIRE(m);
  CHECK(m->excluded("a.txt"));
  CHECK_FALSE(m->excluded("keep.txt"));
  CHECK_FALSE(m->excluded("a.bin"));
  auto bad = IgnoreMatcher::from_patterns({"[x"});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("--exclude") != std::string::npos);
}
