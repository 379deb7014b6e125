// Runs BuildKit's shell-expansion tables (conformance/buildkit/shell):
// every A and U line of envVarTest through process_word, every line of
// wordsTest through process_words. See conformance README §2.

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "parser/shell.hpp"
#include "support/paths.hpp"
#include "support/require.hpp"

namespace {

using imgbuild::parser::Lexer;
using imgbuild::parser::ShellEnv;

std::string trim_ws(const std::string& s) {
  const char* ws = " \t\r\n\v\f";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) {
    return "";
  }
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::vector<std::string> read_lines(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
  }
  return lines;
}

std::filesystem::path shell_dir() {
  auto dir = imgbuild::test::conformance_dir();
  return dir.empty() ? dir : dir / "buildkit" / "shell";
}

}  // namespace

TEST_CASE("envVarTest: every A and U line", "[parser][shell][conformance]") {
  auto dir = shell_dir();
  IMGBUILD_REQUIRE_PREREQ(!dir.empty() && std::filesystem::exists(dir / "envVarTest"),
                          "conformance data not found (set IMGBUILD_CONFORMANCE_DIR)");
  ShellEnv env({"PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="});
  Lexer lexer('\\');
  int ran = 0;
  for (const auto& line : read_lines(dir / "envVarTest")) {
    if (line.empty() || line[0] == '#' || trim_ws(line).empty()) {
      continue;
    }
    std::vector<std::string> fields;
    std::stringstream ss(line);
    std::string f;
    while (std::getline(ss, f, '|')) {
      fields.push_back(f);
    }
    if (line.back() == '|') {
      fields.emplace_back();
    }
    REQUIRE(fields.size() == 3);
    std::string platform = trim_ws(fields[0]);
    std::string source = trim_ws(fields[1]);
    std::string expected = trim_ws(fields[2]);
    if (platform == "W") {
      continue;
    }
    REQUIRE((platform == "A" || platform == "U"));
    INFO("line: " << line);
    auto got = lexer.process_word(source, env);
    if (expected == "error") {
      CHECK_FALSE(got.has_value());
    } else {
      REQUIRE(got.has_value());
      CHECK(*got == expected);
    }
    ++ran;
  }
  CHECK(ran == 228);
}

TEST_CASE("wordsTest: every line", "[parser][shell][conformance]") {
  auto dir = shell_dir();
  IMGBUILD_REQUIRE_PREREQ(!dir.empty() && std::filesystem::exists(dir / "wordsTest"),
                          "conformance data not found (set IMGBUILD_CONFORMANCE_DIR)");
  std::vector<std::string> env_entries;
  Lexer lexer('\\');
  int ran = 0;
  for (const auto& line : read_lines(dir / "wordsTest")) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    if (line.rfind("ENV ", 0) == 0) {
      std::string rest = line.substr(3);
      rest.erase(0, rest.find_first_not_of(' '));
      env_entries.push_back(rest);
      continue;
    }
    size_t bar = line.find('|');
    REQUIRE(bar != std::string::npos);
    REQUIRE(line.find('|', bar + 1) == std::string::npos);
    std::string input = trim_ws(line.substr(0, bar));
    std::string want = line.substr(bar + 1);
    want.erase(0, want.find_first_not_of(' '));
    std::vector<std::string> expected;
    std::stringstream ss(want);
    std::string w;
    while (std::getline(ss, w, ',')) {
      expected.push_back(w);
    }
    INFO("line: " << line);
    auto got = lexer.process_words(input, ShellEnv(env_entries));
    if (expected.size() == 1 && expected[0] == "error") {
      CHECK_FALSE(got.has_value());
    } else {
      REQUIRE(got.has_value());
      CHECK(*got == expected);
    }
    ++ran;
  }
  CHECK(ran == 24);
}
