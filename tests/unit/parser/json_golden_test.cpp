// Golden-file tests for the JSON view (`imgbuild parse --format json`):
// every testdata/parser/json/<case>.dockerfile is parsed, lowered, graphed
// and rendered; the output must equal <case>.json byte for byte.
// IMGBUILD_UPDATE_GOLDEN=1 rewrites the .json files instead (review the diff).

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "parser/json.hpp"
#include "parser/syntax/parse.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool update_golden() {
  const char* v = std::getenv("IMGBUILD_UPDATE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

}  // namespace

TEST_CASE("parse --format json golden files", "[parser][json]") {
  const fs::path dir = imgbuild::test::testdata_dir() / "parser" / "json";
  REQUIRE(fs::is_directory(dir));
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".dockerfile") {
      continue;
    }
    ++cases;
    const fs::path golden = fs::path(entry.path()).replace_extension(".json");
    INFO("case: " << entry.path().filename().string());
    auto ast = imgbuild::parser::parse_dockerfile(slurp(entry.path()), "Dockerfile");
    REQUIRE(ast.has_value());
    bool ok = true;
    const std::string got = imgbuild::parser::dockerfile_json(*ast, "Dockerfile", ok);
    // Determinism: the same input renders the same bytes.
    bool ok2 = true;
    CHECK(imgbuild::parser::dockerfile_json(*ast, "Dockerfile", ok2) == got);
    if (update_golden()) {
      std::ofstream(golden, std::ios::binary) << got;
      continue;
    }
    REQUIRE(fs::exists(golden));
    CHECK(got == slurp(golden));
  }
  CHECK(cases >= 2);
}

TEST_CASE("parse --format json reports semantic errors", "[parser][json]") {
  auto ast = imgbuild::parser::parse_dockerfile("FROM a\nFORM b\n", "Dockerfile");
  REQUIRE(ast.has_value());
  bool ok = true;
  std::string out = imgbuild::parser::dockerfile_json(*ast, "Dockerfile", ok);
  CHECK_FALSE(ok);
  CHECK(out.find("\"message\": \"unknown instruction: FORM (did you mean FROM?)\"") !=
        std::string::npos);
}
