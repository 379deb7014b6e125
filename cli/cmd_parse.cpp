// `imgbuild parse`: parses a Dockerfile and prints its syntax tree.
//
//   imgbuild parse [-f FILE|-] [--format ast|json]
//
// `ast` prints BuildKit's parser dump (the format of the conformance
// `result` files). `json` prints the typed instructions with line ranges,
// the stages and their dependencies, and every semantic error
// (parser/json.hpp); semantic errors are also rendered on stderr and make the
// exit status 1. A syntax error is rendered with its location, the source
// line and a caret, and the command exits with status 1.

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/dockerfile_input.hpp"
#include "parser/json.hpp"
#include "parser/syntax/dump.hpp"
#include "parser/syntax/parse.hpp"
#include "util/diagnostic.hpp"

namespace imgbuild::cli {

namespace {

struct ParseOptions {
  std::string file = "Dockerfile";
  std::string format = "ast";
};

void run_parse(const ParseOptions& options, Context& ctx) {
  std::string source = read_dockerfile(options.file);
  std::string name = dockerfile_display_name(options.file);
  Result<parser::Ast> ast = parser::parse_dockerfile(source, name);
  if (!ast) {
    std::fputs(render_diagnostic(ast.error(), source).c_str(), stderr);
    ctx.exit_code = 1;
    return;
  }
  if (options.format == "json") {
    parser::LoweredFile lowered = parser::lower(*ast, name);
    parser::StageGraphOptions graph_options;
    graph_options.file = name;
    parser::StageGraphResult graph = parser::build_stage_graph(lowered.instructions, graph_options);
    std::string out = parser::to_json(*ast, lowered, &graph, name);
    std::fwrite(out.data(), 1, out.size(), stdout);
    const std::vector<Error> errors = parser::collect_errors(lowered, &graph, name);
    for (const auto& e : errors) {
      std::fputs(render_diagnostic(e, source).c_str(), stderr);
    }
    if (!errors.empty()) {
      ctx.exit_code = 1;
    }
    return;
  }
  std::string out = parser::dump_ast(*ast);
  out += '\n';
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

void register_parse_commands(CLI::App& app, Context& ctx) {
  auto options = std::make_shared<ParseOptions>();
  CLI::App* cmd = app.add_subcommand("parse", "Parse a Dockerfile and print its syntax tree");
  cmd->add_option("-f,--file", options->file, "Dockerfile to parse, - for standard input")
      ->capture_default_str();
  cmd->add_option("--format", options->format,
                  "Output format: ast (BuildKit's parser dump) or json (typed instructions, "
                  "stages and dependencies)")
      ->capture_default_str()
      ->check(CLI::IsMember({"ast", "json"}));
  cmd->callback([options, &ctx]() { run_parse(*options, ctx); });
}

}  // namespace imgbuild::cli
