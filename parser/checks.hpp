#pragma once
// Build checks: BuildKit's Dockerfile linter rules, with BuildKit's rule
// names and message texts, run over a parsed and lowered Dockerfile.
//
// Every rule is data (CheckRule: name, description, experimental flag) plus a
// function over a shared analysis of the file. The analysis replays what
// BuildKit's dispatcher knows about each stage without running anything: the
// global ARGs (with the predefined platform ARGs and the caller's build
// args), each stage's environment (base stage or image env, ENV, ARG), its
// SHELL, its WORKDIR state.
//
// What cannot be decided from the Dockerfile alone comes from hooks
// (CheckOptions): the base image's config (its Env and Shell), and whether a
// path is excluded by .dockerignore. Without the base image hook the
// environment of a stage built on an image is unknown; BuildKit always knows
// it (it resolves the image config before linting), so to avoid false
// UndefinedVar warnings such stages — and stages built on them — are not
// checked for UndefinedVar. Stages on `scratch` (env: PATH only) or on a
// stage whose env is known are checked fully. An unknown image is assumed to
// set no SHELL (JSONArgsRecommended), as nearly all Linux images do.
// InvalidBaseImagePlatform needs the pulled image: the builder reports it
// through CheckReport::report with format_invalid_base_image_platform().
//
// Directive: `# check=skip=<rules|all>;error=<bool>;experimental=<rules|all>`;
// the build arg BUILDKIT_DOCKERFILE_CHECK, when given, replaces it.
// Experimental rules run only when enabled, and then regardless of skip (as
// in BuildKit). With error=true any reported warning makes the check fail
// with "lint violation found for rules: A, B".
//
// Output order: warnings sorted by line (stable), identical warnings (same
// rule, message and line) reported once.

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "parser/ast.hpp"
#include "parser/lower.hpp"
#include "util/result.hpp"

namespace imgbuild::parser {

/// One build-check rule, as data.
struct CheckRule {
  /// BuildKit's rule name ("StageNameCasing").
  std::string_view name;
  /// BuildKit's one-line description.
  std::string_view description;
  /// Experimental rules run only when enabled with experimental=.
  bool experimental = false;
  /// False when the rule needs information only the builder has (it is then
  /// reported through CheckReport::report by the builder).
  bool static_check = true;
};

/// Every rule, in BuildKit's ruleset order.
const std::vector<CheckRule>& check_rules();

/// The rule called `name`, or nullptr.
const CheckRule* find_check_rule(std::string_view name);

/// The parsed `check` directive (or BUILDKIT_DOCKERFILE_CHECK value).
struct CheckConfig {
  bool skip_all = false;
  std::set<std::string> skip;
  bool experimental_all = false;
  std::set<std::string> experimental;
  /// error=true: warnings fail the check.
  bool error = false;
};

/// Parses `skip=…;error=…;experimental=…` with BuildKit's rules and messages:
/// `invalid check option "x"`, `failed to parse check option "error=x":
/// strconv.ParseBool: parsing "x": invalid syntax`. An empty text is the
/// default configuration.
Result<CheckConfig> parse_check_config(std::string_view text);

/// One reported warning.
struct CheckWarning {
  std::string rule;
  std::string message;
  int line = 0;      ///< first line of the instruction (0: no location)
  int end_line = 0;  ///< last line
};

/// Collects warnings under a configuration: filters skipped and disabled
/// experimental rules, and knows whether the result is an error.
class CheckReport {
public:
  CheckReport() = default;
  /// A report honouring `config`.
  explicit CheckReport(CheckConfig config) : m_config(std::move(config)) {}

  /// Records a warning for `rule` unless the configuration filters it out.
  /// Unknown rule names are recorded as non-experimental rules.
  void report(std::string_view rule, std::string message, int line, int end_line = 0);

  /// The warnings, sorted by line, duplicates removed.
  std::vector<CheckWarning> warnings() const;
  /// The configuration in effect.
  const CheckConfig& config() const { return m_config; }
  /// With error=true and at least one warning: "lint violation found for
  /// rules: A, B" (rules in order of first report); else nullopt.
  std::optional<std::string> error_message() const;

private:
  CheckConfig m_config;
  std::vector<CheckWarning> m_warnings;
};

/// A base image's config as far as the checks need it.
struct BaseImageConfig {
  /// "KEY=VALUE" entries.
  std::vector<std::string> env;
  /// The image's SHELL (empty: none).
  std::vector<std::string> shell;
};

/// Inputs beyond the Dockerfile.
struct CheckOptions {
  /// Build args, "KEY=VALUE" (a BUILDKIT_DOCKERFILE_CHECK entry replaces the
  /// check directive).
  std::vector<std::string> build_args;
  /// os/arch[/variant] for TARGETPLATFORM; empty: the host's.
  std::string target_platform;
  /// os/arch[/variant] for BUILDPLATFORM; empty: the host's.
  std::string build_platform;
  /// The build target (TARGETSTAGE); empty: the last stage.
  std::string target;
  /// Stages to run dispatch-time rules on (BuildKit lints only the stages a
  /// build needs; `imgbuild check` lints all). Empty: all stages.
  std::vector<int> stages;
  /// The config of a base image (after global-ARG expansion), or nullopt
  /// when unknown. Null hook: every image is unknown.
  std::function<std::optional<BaseImageConfig>(const std::string& image)> base_image;
  /// True when a build-context path (cleaned, relative to the context root)
  /// is excluded by .dockerignore (CopyIgnoredFile). Null: not checked.
  std::function<bool(const std::string& path)> dockerignore_excludes;
};

/// Runs every static rule. Fails only when the check configuration (the
/// directive or BUILDKIT_DOCKERFILE_CHECK) is invalid: "failed to parse check
/// options: …". Lowering errors do not stop the checks: instructions that
/// did not lower are not checked.
Result<CheckReport> run_checks(const Ast& ast, const LoweredFile& lowered,
                               const CheckOptions& options = {});

/// The InvalidBaseImagePlatform message (for the builder):
/// `Base image alpine was pulled with platform "linux/arm64", expected
/// "linux/amd64" for current build`.
std::string format_invalid_base_image_platform(std::string_view image, std::string_view expected,
                                               std::string_view actual);

/// True when `name` is a valid image reference as docker's
/// ParseNormalizedNamed accepts it (InvalidDefaultArgInFrom).
bool is_valid_image_reference(std::string_view name);

}  // namespace imgbuild::parser
