// Hostile input: whatever the bytes, parse_dockerfile returns a tree or a
// clear error; it never crashes, recurses without bound, or blows up in time
// or memory (the inputs below would take minutes if anything were quadratic,
// and would overflow the stack if anything recursed per nesting level).

#include <cstdint>
#include <string>

#include <catch2/catch.hpp>

#include "parser/syntax/dump.hpp"
#include "parser/syntax/parse.hpp"

using imgbuild::Errc;
using imgbuild::parser::dump_ast;
using imgbuild::parser::parse_dockerfile;

namespace {

// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng {
  uint64_t state;
  uint64_t next() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ULL;
  }
};

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) {
    out += s;
  }
  return out;
}

// Parses and, on success, dumps: both must terminate without crashing.
bool survives(const std::string& text) {
  auto ast = parse_dockerfile(text);
  if (ast) {
    (void)dump_ast(*ast);
    return true;
  }
  CHECK_FALSE(ast.error().message.empty());
  return false;
}

}  // namespace

TEST_CASE("random bytes never crash the parser", "[parser][robustness]") {
  Rng rng{0x9E3779B97F4A7C15ULL};
  const std::string alphabet = "RUN COPY ENV ONBUILD <<EOF\n\\`'\"[]{},=-# \t\r\x00\xFF\xC3\xA9$:";
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    size_t len = rng.next() % 400;
    bool binary = round % 2 == 0;
    for (size_t i = 0; i < len; ++i) {
      uint64_t r = rng.next();
      text += binary ? static_cast<char>(r & 0xFF) : alphabet[r % alphabet.size()];
    }
    (void)survives(text);
  }
}

TEST_CASE("NUL bytes and invalid UTF-8 are ordinary text", "[parser][robustness]") {
  auto ast = parse_dockerfile(std::string("FROM a\0b\nRUN \xFF\xFE\xC0\x80\n", 18));
  REQUIRE(ast);
  CHECK(dump_ast(*ast) == "(from \"a\\x00b\")\n(run \"\\xff\\xfe\\xc0\\x80\")");
}

TEST_CASE("line length is limited as in BuildKit", "[parser][robustness]") {
  std::string ok_line = "RUN " + std::string(65535 - 4, 'a');
  auto ok = parse_dockerfile("FROM a\n" + ok_line + "\n");
  REQUIRE(ok);
  CHECK(ok->children.size() == 2);

  auto too_long = parse_dockerfile("FROM a\n" + ok_line + "b\nRUN c\n");
  REQUIRE_FALSE(too_long);
  CHECK(too_long.error().code == Errc::limit);
  CHECK(too_long.error().message == "dockerfile line greater than max allowed size of 65535");
  REQUIRE(too_long.error().location);
  CHECK(too_long.error().location->line == 2);

  // Without an instruction before it, BuildKit reports the empty file first.
  auto only = parse_dockerfile(std::string(100000, 'x'));
  REQUIRE_FALSE(only);
  CHECK(only.error().message == "file with no instructions");
}

TEST_CASE("a 100 MB input is refused with a clear error", "[parser][robustness]") {
  std::string huge(100u << 20, 'a');
  auto ast = parse_dockerfile(huge);
  REQUIRE_FALSE(ast);
  CHECK(ast.error().code == Errc::limit);
  CHECK(ast.error().message == "Dockerfile is too large: more than 33554432 bytes");
}

TEST_CASE("deep nesting is bounded", "[parser][robustness]") {
  SECTION("60,000 open brackets: not JSON, one shell string") {
    std::string text = "CMD " + std::string(60000, '[') + "\n";
    auto ast = parse_dockerfile(text);
    REQUIRE(ast);
    CHECK(ast->children[0].args.size() == 1);
  }
  SECTION("nesting within Go's depth limit is valid JSON with a non-string") {
    std::string text = "CMD [" + std::string(9000, '[') + std::string(9000, ']') + "]\n";
    auto ast = parse_dockerfile(text);
    REQUIRE_FALSE(ast);
    CHECK(ast.error().message == "when using JSON array syntax, arrays must be comprised of strings only");
  }
  SECTION("nesting beyond Go's limit of 10000 is invalid JSON: fallback") {
    std::string text = "CMD [" + std::string(10000, '[') + std::string(10000, ']') + "]\n";
    auto ast = parse_dockerfile(text);
    REQUIRE(ast);
    CHECK_FALSE(ast->children[0].json_form);
  }
  SECTION("thousands of nested quotes and substitutions on a heredoc line") {
    std::string text = "RUN <<EOF " + repeat("\"'${a:-", 5000) + "\nEOF\n";
    CHECK(survives(text));
    std::string subst = "RUN <<EOF " + repeat("${a:-", 8000) + repeat("}", 8000) + "\nEOF\n";
    CHECK(survives(subst));
    std::string quotes = "ENV a=" + repeat("\"'", 30000) + "\n";
    CHECK(survives(quotes));
  }
  SECTION("ONBUILD chains are bounded") {
    auto ok = parse_dockerfile(repeat("ONBUILD ", 60) + "RUN x\n");
    REQUIRE(ok);
    auto deep = parse_dockerfile(repeat("ONBUILD ", 5000) + "RUN x\n");
    REQUIRE_FALSE(deep);
    CHECK(deep.error().code == Errc::limit);
  }
}

TEST_CASE("huge continuation chains and many heredocs are linear", "[parser][robustness]") {
  SECTION("900,000 continued lines") {
    std::string text = "RUN a \\\n" + repeat("b \\\n", 900000) + "c\n";
    auto ast = parse_dockerfile(text);
    REQUIRE(ast);
    CHECK(ast->children[0].end_line == 900002);
  }
  SECTION("a million empty continuation lines warn once") {
    std::string text = "RUN a \\\n" + repeat(" \n", 1000000) + "c\n";
    auto ast = parse_dockerfile(text);
    REQUIRE(ast);
    CHECK(ast->warnings.size() == 1);
  }
  SECTION("ten thousand heredocs on one line") {
    std::string text = "COPY" + repeat(" <<E", 10000) + " /d\n" + repeat("x\nE\n", 10000);
    auto ast = parse_dockerfile(text);
    REQUIRE(ast);
    CHECK(ast->children[0].heredocs.size() == 10000);
  }
  SECTION("long runs of escape tokens, quotes and spaces") {
    CHECK(survives("RUN " + std::string(60000, '\\') + "\nRUN x\n"));
    CHECK(survives("COPY --" + std::string(60000, '"') + " a b\n"));
    CHECK(survives("ENV a " + std::string(60000, '\\') + "\n"));
    CHECK(survives("RUN a" + std::string(60000, ' ') + "\\" + std::string(5000, '\t') + "\nb\n"));
    CHECK(survives("RUN a" + std::string(60000, '\r') + "\n"));
  }
}

TEST_CASE("memory stays bounded: instruction, string and length limits", "[parser][robustness]") {
  SECTION("too many instructions") {
    auto ast = parse_dockerfile(repeat("a\n", 100001));
    REQUIRE_FALSE(ast);
    CHECK(ast.error().code == Errc::limit);
    CHECK(ast.error().message == "too many instructions in the Dockerfile (limit 100000)");
    REQUIRE(ast.error().location);
    CHECK(ast.error().location->line == 100001);
  }
  SECTION("too many strings") {
    std::string line = "ENV" + repeat(" a=b", 500) + "\n";
    auto ast = parse_dockerfile(repeat(line, 700));
    REQUIRE_FALSE(ast);
    CHECK(ast.error().code == Errc::limit);
    CHECK(ast.error().message == "too many strings in the Dockerfile (limit 1000000)");
  }
  SECTION("a flood of comments counts too") {
    auto ast = parse_dockerfile(repeat("#a\n", 1000001) + "FROM x\n");
    REQUIRE_FALSE(ast);
    CHECK(ast.error().code == Errc::limit);
  }
  SECTION("an instruction joined over continuations is bounded") {
    auto ast = parse_dockerfile("RUN a \\\n" + repeat(std::string(1000, 'x') + " \\\n", 3000) + "end\n");
    REQUIRE_FALSE(ast);
    CHECK(ast.error().code == Errc::limit);
    CHECK(ast.error().message == "instruction longer than 2097152 bytes");
    REQUIRE(ast.error().location);
    CHECK(ast.error().location->line == 1);
  }
}
