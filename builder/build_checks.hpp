#pragma once
// Build checks during `imgbuild build`: BuildKit's linter rules
// (parser/checks.hpp) run over the Dockerfile with the hooks only a build
// can fill (base image configs from the store, the context's .dockerignore),
// limited to the stages the build needs, and printed the way buildx prints
// them:
//  - after a build (also a failed one), a summary on stderr after a blank
//    line (none for --progress quiet; rawjson gets one "warning" event per
//    warning instead):
//      " 2 warnings found (use --check to expand):"
//      " - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)"
//    (`build --check` shows the expanded form below);
//  - for `build --check`, the expanded form of each warning:
//      "WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
//      message, "Dockerfile:1", the surrounding lines with ">>>" marks,
//    then "Check complete, 1 warning has been found!" (or "no warnings found").

#include <optional>
#include <string>
#include <vector>

#include "builder/context.hpp"
#include "builder/plan.hpp"
#include "image/store.hpp"
#include "parser/checks.hpp"

namespace imgbuild::builder {

/// The outcome of the checks of one build.
struct BuildCheckResult {
  /// Warnings, sorted by line.
  std::vector<parser::CheckWarning> warnings;
  /// With check=error=true and warnings: "lint violation found for rules: …".
  std::optional<std::string> error;
};

/// What the checks of a build need.
struct BuildCheckInput {
  const std::string* dockerfile_text = nullptr;
  /// The Dockerfile's name in messages ("Dockerfile").
  std::string dockerfile_name = "Dockerfile";
  const builder::Plan* plan = nullptr;
  /// --build-arg values, "KEY=VALUE".
  std::vector<std::string> build_args;
  /// --target ("" = last stage).
  std::string target;
  /// Base image configs are read from here (never pulled); null: unknown.
  image::ImageStore* store = nullptr;
  /// Its .dockerignore drives CopyIgnoredFile; null: not checked.
  const builder::BuildContext* context = nullptr;
};

/// The container config of the stored image `ref` names; nothing when the
/// store has no such image or it has no config (build-time lookups that
/// never pull: checks, ONBUILD planning).
std::optional<image::ContainerConfig> stored_image_config(image::ImageStore& store, const std::string& ref);

/// Runs the checks. Errors: an invalid check directive or
/// BUILDKIT_DOCKERFILE_CHECK value ("failed to parse check options: …").
Result<BuildCheckResult> run_build_checks(const BuildCheckInput& input);

/// The rule's documentation URL, as BuildKit names it
/// ("https://docs.docker.com/go/dockerfile/rule/from-as-casing/").
std::string check_rule_url(const std::string& rule);

/// The after-build summary, starting with its blank line (empty when there
/// are no warnings). buildx's hint names `docker --debug`; imgbuild's way to
/// expand the warnings is `build --check`.
std::string format_check_summary(const std::vector<parser::CheckWarning>& warnings);

/// The warnings as `--progress rawjson` events, one JSON object a line:
/// {"event":"warning","rule":…,"message":…,"line":N,"url":…}.
std::string format_check_events(const std::vector<parser::CheckWarning>& warnings);

/// The expanded form of every warning (`--check`), each with its
/// Dockerfile excerpt.
std::string format_check_details(const std::vector<parser::CheckWarning>& warnings, const std::string& file,
                                 const std::vector<std::string>& lines);

/// "Check complete, N warnings have been found!" / "…, no warnings found.".
std::string format_check_complete(size_t count);

}  // namespace imgbuild::builder
