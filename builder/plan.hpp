#pragma once
// Build planning: a pure function from the Dockerfile text and the build
// options to the stages the target needs, in dependency order, each with its
// base and its steps. No I/O: a test can call it without root.
//
// What the plan settles:
//  - parse, lower and build the stage graph (all semantic errors at once);
//  - the target stage and the stages it needs (unused stages are never built);
//  - each stage's base: scratch, an earlier stage, a named context
//    (--build-context) or an image reference (after global-ARG expansion);
//  - the global ARG values (build args win over defaults), the predefined
//    platform ARGs (build: the host; target: --platform), the proxy args and SOURCE_DATE_EPOCH.
// ONBUILD triggers are not inserted here (the executor runs them from the
// base's config), but the stages they refer to (COPY --from=stage, RUN
// --mount from=stage) are: a stage on an earlier stage knows its parent's
// ONBUILD lines; for an image base, the caller's base_onbuild hook reads the
// triggers from the image's config (the plan itself does no I/O).

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "parser/instructions.hpp"
#include "util/platform.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// Everything the user asked for that shapes the plan.
struct BuildOptions {
  /// --build-arg KEY=VALUE, in order (a later one wins).
  std::vector<std::pair<std::string, std::string>> build_args;
  /// --target ("" = last stage).
  std::string target;
  /// --label KEY=VALUE, added to the final image.
  std::map<std::string, std::string> labels;
  /// --no-cache.
  bool no_cache = false;
  /// --no-cache-filter stage names.
  std::vector<std::string> no_cache_filter;
  /// --build-context NAME=SOURCE (SOURCE: a dir, docker-image://REF,
  /// oci-layout://PATH[:TAG]).
  std::map<std::string, std::string> named_contexts;
  /// --platform: the one target platform ("" = the host's). A build for
  /// several platforms makes one plan per platform.
  std::string platform;
  /// Names the Dockerfile in messages.
  std::string dockerfile_name = "Dockerfile";
  /// SOURCE_DATE_EPOCH from the environment (a build arg wins).
  std::optional<std::string> source_date_epoch_env;
  /// The ONBUILD triggers of a base image (by reference as expanded, the
  /// docker-image:// reference of a named context, or a whole
  /// "oci-layout://…" source); null or nullopt: none known. Only used to find
  /// the stages triggers refer to.
  std::function<std::optional<std::vector<std::string>>(const std::string& image)> base_onbuild;
};

/// What a stage starts from.
enum class BaseKind { scratch, stage, image, context };

/// A stage's base.
struct Base {
  BaseKind kind = BaseKind::scratch;
  /// image: the reference as expanded; context: the named context's name.
  std::string name;
  /// stage: the index of the parent stage.
  int stage = -1;
  /// context: the --build-context source.
  std::string source;
};

/// A stage the build runs.
struct PlannedStage {
  int index = 0;
  /// Lower-cased name, "" when unnamed.
  std::string name;
  /// The name progress lines show: the stage name or "stage-N".
  std::string display_name;
  Base base;
  /// The FROM line (for messages and history).
  parser::FromInstruction from;
  /// The instructions after FROM, in order.
  std::vector<parser::Instruction> steps;
  /// Stages this one needs (base, COPY --from, RUN --mount from=, and the
  /// same in the ONBUILD triggers of its base), sorted.
  std::vector<int> needs;
  /// True when the cache must not be used for this stage.
  bool no_cache = false;
  /// The platform the stage is built for: its FROM --platform, else its
  /// parent stage's (FROM stage), else the target platform.
  Platform platform;
  /// The stage's identity across the plans of one multi-platform build:
  /// equal in two plans only when the stage builds the same for both
  /// targets (same platform, base, ARG values it declares, shared stages it
  /// needs), so the executor runs it once.
  std::string share_key;
};

/// A resolved COPY --from / --mount from= reference.
struct SourceRef {
  BaseKind kind = BaseKind::image;  ///< stage, context or image
  int stage = -1;
  std::string name;    ///< image reference or context name
  std::string source;  ///< context source
  /// image, context: the platform an image is resolved for (the referring
  /// stage's, as BuildKit resolves COPY --from and mount from= images).
  Platform platform;
};

/// The whole plan.
struct Plan {
  /// The stages to run, in ascending index (a valid dependency order).
  std::vector<PlannedStage> stages;
  /// Index of the target stage.
  int target = 0;
  /// Every stage name by index ("" for unnamed), for --from lookups.
  std::vector<std::string> stage_names;
  /// Global ARG values (declared before the first FROM, build args applied,
  /// defaults expanded), plus the predefined platform ARGs.
  std::vector<std::pair<std::string, std::string>> global_args;
  /// Build args as given (later wins).
  std::map<std::string, std::string> build_args;
  /// SOURCE_DATE_EPOCH in seconds, when set.
  std::optional<int64_t> source_date_epoch;
  /// --label values for the final image.
  std::map<std::string, std::string> labels;
  /// The target platform (TARGETPLATFORM).
  Platform platform;
  /// The platform the build runs on (BUILDPLATFORM): the host's.
  Platform build_platform;
  /// True when --platform named the target (the final image then gets the
  /// target's os/architecture/variant, as BuildKit's explicit platform does).
  bool explicit_platform = false;
  /// Named contexts (NAME → SOURCE).
  std::map<std::string, std::string> named_contexts;
  /// The escape token of the Dockerfile.
  char escape = '\\';
  /// Dockerfile lines, for failure excerpts.
  std::vector<std::string> lines;

  /// The stage with index `index`, or nullptr when it is not planned.
  const PlannedStage* stage(int index) const;
  /// Resolves a COPY --from / mount from= value seen in stage `current`.
  SourceRef resolve_source(std::string_view reference, int current) const;
  /// The value of a global ARG (or predefined ARG), or nullptr.
  const std::string* global_arg(std::string_view name) const;
};

/// The predefined platform ARGs, in this order:
/// TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT, BUILDPLATFORM,
/// BUILDOS, BUILDARCH, BUILDVARIANT.
std::vector<std::pair<std::string, std::string>> platform_args(const Platform& build, const Platform& target);

/// True for the proxy build args (HTTP_PROXY … ALL_PROXY, either case).
bool is_proxy_arg(std::string_view name);

/// Plans a build. Errors: every semantic error of the Dockerfile (joined),
/// an unknown target (with "did you mean"), a forward stage reference in a
/// needed stage, an invalid --platform or FROM --platform, an invalid
/// SOURCE_DATE_EPOCH.
Result<Plan> make_plan(std::string_view dockerfile, const BuildOptions& options);

}  // namespace imgbuild::builder
