// `imgbuild check`: runs the build checks on a Dockerfile.
//
//   imgbuild check [-f FILE|-] [--build-arg KEY=VALUE]…
//
// Prints each warning as `FILE:LINE: RuleName: message` on standard output,
// sorted by line. Exits 1 when the Dockerfile does not parse (the error is
// rendered with its source line and a caret), when it has semantic errors
// (rendered the same way, after the warnings), or when `check=error=true`
// (or BUILDKIT_DOCKERFILE_CHECK=error=true) turns the warnings into an error:
// "imgbuild: error: lint violation found for rules: A, B".
//
// Base images are not resolved here, so UndefinedVar is not checked in
// stages built on an image (see parser/checks.hpp).

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/dockerfile_input.hpp"
#include "parser/checks.hpp"
#include "parser/lower.hpp"
#include "parser/stages.hpp"
#include "parser/syntax/parse.hpp"
#include "util/diagnostic.hpp"

namespace imgbuild::cli {

namespace {

struct CheckCommandOptions {
  std::string file = "Dockerfile";
  std::vector<std::string> build_args;
};

// docker's --build-arg: KEY=VALUE, or KEY alone to take the value from the
// environment (ignored when the variable is not set).
std::vector<std::string> resolve_build_args(const std::vector<std::string>& given) {
  std::vector<std::string> out;
  for (const auto& a : given) {
    if (a.find('=') != std::string::npos) {
      out.push_back(a);
    } else if (const char* v = std::getenv(a.c_str())) {
      out.push_back(a + "=" + v);
    }
  }
  return out;
}

void run_check(const CheckCommandOptions& options, Context& ctx) {
  const std::string source = read_dockerfile(options.file);
  const std::string name = dockerfile_display_name(options.file);
  Result<parser::Ast> ast = parser::parse_dockerfile(source, name);
  if (!ast) {
    std::fputs(render_diagnostic(ast.error(), source).c_str(), stderr);
    ctx.exit_code = 1;
    return;
  }
  const parser::LoweredFile lowered = parser::lower(*ast, name);
  parser::CheckOptions check_options;
  check_options.build_args = resolve_build_args(options.build_args);
  Result<parser::CheckReport> report = parser::run_checks(*ast, lowered, check_options);
  if (!report) {
    throw CommandError{fmt::format("{}: {}", name, report.error().message), 1};
  }
  std::string out;
  for (const auto& w : report->warnings()) {
    out += fmt::format("{}:{}: {}: {}\n", name, w.line, w.rule, w.message);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);

  parser::StageGraphOptions graph_options;
  graph_options.file = name;
  graph_options.build_args = check_options.build_args;
  const parser::StageGraphResult graph = parser::build_stage_graph(lowered.instructions, graph_options);
  const std::vector<Error> errors = parser::collect_errors(lowered, &graph, name);
  for (const auto& e : errors) {
    std::fputs(render_diagnostic(e, source).c_str(), stderr);
  }
  if (auto message = report->error_message()) {
    throw CommandError{*message, 1};
  }
  if (!errors.empty()) {
    ctx.exit_code = 1;
  }
}

}  // namespace

void register_check_commands(CLI::App& app, Context& ctx) {
  auto options = std::make_shared<CheckCommandOptions>();
  CLI::App* cmd = app.add_subcommand("check", "Run the build checks on a Dockerfile");
  cmd->add_option("-f,--file", options->file, "Dockerfile to check, - for standard input")
      ->capture_default_str();
  cmd->add_option_function<std::vector<std::string>>(
      "--build-arg",
      [options](const std::vector<std::string>& values) {
        options->build_args.insert(options->build_args.end(), values.begin(), values.end());
      },
      "Build argument KEY=VALUE (repeatable); BUILDKIT_DOCKERFILE_CHECK overrides the check "
      "directive");
  cmd->callback([options, &ctx]() { run_check(*options, ctx); });
}

}  // namespace imgbuild::cli
