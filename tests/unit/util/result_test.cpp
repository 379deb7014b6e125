#include <catch2/catch.hpp>

#include "util/result.hpp"

using namespace imgbuild;

namespace {
Result<int> half(int x) {
  if (x % 2 != 0) {
    return fail(Errc::invalid_argument, "odd");
  }
  return x / 2;
}
Result<int> quarter(int x) {
  TRY(int h, half(x));
  TRY(int q, half(h));
  return q;
}
}  // namespace

TEST_CASE("Result propagates errors through TRY", "[util]") {
  CHECK(*quarter(8) == 2);
  auto r = quarter(6);
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "odd");
}

TEST_CASE("Error renders location and context", "[util]") {
  Error e(Errc::syntax, "unknown instruction: FORM", SourceLocation{"Dockerfile", 3, 1});
  e.with_context("while parsing");
  CHECK(e.to_string() == "Dockerfile:3:1: unknown instruction: FORM (while parsing)");
}

#include "util/diagnostic.hpp"

TEST_CASE("render_diagnostic marks the line and column", "[util]") {
  Error e(Errc::syntax, "unknown instruction: FORM (did you mean FROM?)", SourceLocation{"Dockerfile", 3, 1});
  std::string src = "# c\nARG X\nFORM alpine\nRUN true\n";
  CHECK(render_diagnostic(e, src) ==
        "Dockerfile:3:1: unknown instruction: FORM (did you mean FROM?)\n"
        "--------------------\n"
        "    1 |     # c\n"
        "    2 |     ARG X\n"
        "    3 | >>> FORM alpine\n"
        "      |     ^\n"
        "    4 |     RUN true\n"
        "--------------------\n");
}
