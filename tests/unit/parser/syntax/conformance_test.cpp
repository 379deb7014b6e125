// BuildKit's parser corpus (../shared/conformance/buildkit/parser): every
// positive case dumps byte for byte as its `result`, every negative case
// fails with a located error, and testfile-line has the expected line ranges.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "parser/syntax/dump.hpp"
#include "parser/syntax/parse.hpp"
#include "support/paths.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::parser::dump_ast;
using imgbuild::parser::parse_dockerfile;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path parser_corpus() {
  fs::path dir = imgbuild::test::conformance_dir();
  if (dir.empty()) {
    return {};
  }
  return dir / "buildkit" / "parser";
}

std::vector<fs::path> case_dirs(const fs::path& root) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (entry.is_directory()) {
      out.push_back(entry.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("every testfiles case dumps byte-identically", "[parser][conformance]") {
  fs::path corpus = parser_corpus();
  IMGBUILD_REQUIRE_PREREQ(!corpus.empty() && fs::is_directory(corpus / "testfiles"),
                          "BuildKit conformance corpus not found (set IMGBUILD_CONFORMANCE_DIR)");
  std::vector<fs::path> cases = case_dirs(corpus / "testfiles");
  REQUIRE(cases.size() >= 33);
  for (const fs::path& dir : cases) {
    INFO("case " << dir.filename().string());
    auto ast = parse_dockerfile(read_file(dir / "Dockerfile"));
    if (!ast) {
      FAIL("parse failed: " << ast.error().to_string());
    }
    CHECK(dump_ast(*ast) + "\n" == read_file(dir / "result"));
  }
}

TEST_CASE("every testfiles-negative case fails with a located error", "[parser][conformance]") {
  fs::path corpus = parser_corpus();
  IMGBUILD_REQUIRE_PREREQ(!corpus.empty() && fs::is_directory(corpus / "testfiles-negative"),
                          "BuildKit conformance corpus not found (set IMGBUILD_CONFORMANCE_DIR)");
  std::vector<fs::path> cases = case_dirs(corpus / "testfiles-negative");
  REQUIRE(cases.size() >= 4);
  for (const fs::path& dir : cases) {
    INFO("case " << dir.filename().string());
    auto ast = parse_dockerfile(read_file(dir / "Dockerfile"), "Dockerfile");
    REQUIRE_FALSE(ast);
    CHECK(ast.error().code == imgbuild::Errc::syntax);
    REQUIRE(ast.error().location);
    CHECK(ast.error().location->file == "Dockerfile");
    CHECK(ast.error().location->line >= 1);
  }
}

TEST_CASE("negative cases give BuildKit's messages", "[parser][conformance]") {
  fs::path corpus = parser_corpus();
  IMGBUILD_REQUIRE_PREREQ(!corpus.empty() && fs::is_directory(corpus / "testfiles-negative"),
                          "BuildKit conformance corpus not found (set IMGBUILD_CONFORMANCE_DIR)");
  auto message = [&](const char* name) {
    auto ast = parse_dockerfile(read_file(corpus / "testfiles-negative" / name / "Dockerfile"));
    return ast ? std::string("(parsed)") : ast.error().message;
  };
  CHECK(message("empty_dockerfile") == "file with no instructions");
  CHECK(message("only_comments") == "file with no instructions");
  CHECK(message("env_no_value") == "ENV must have two arguments");
  CHECK(message("shykes-nested-json") == "when using JSON array syntax, arrays must be comprised of strings only");
}

TEST_CASE("testfile-line line numbers", "[parser][conformance]") {
  fs::path corpus = parser_corpus();
  IMGBUILD_REQUIRE_PREREQ(!corpus.empty() && fs::exists(corpus / "testfile-line" / "Dockerfile"),
                          "BuildKit conformance corpus not found (set IMGBUILD_CONFORMANCE_DIR)");
  auto ast = parse_dockerfile(read_file(corpus / "testfile-line" / "Dockerfile"));
  REQUIRE(ast);
  CHECK(ast->start_line == 5);
  CHECK(ast->end_line == 31);
  REQUIRE(ast->children.size() == 3);
  CHECK(ast->children[0].keyword == "from");
  CHECK(ast->children[0].start.line == 5);
  CHECK(ast->children[0].end_line == 5);
  CHECK(ast->children[1].keyword == "env");
  CHECK(ast->children[1].start.line == 11);
  CHECK(ast->children[1].end_line == 12);
  CHECK(ast->children[2].keyword == "run");
  CHECK(ast->children[2].start.line == 17);
  CHECK(ast->children[2].end_line == 31);
}
