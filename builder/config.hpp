#pragma once
// Image config and history evolution: what each Dockerfile instruction does
// to the image config and the history, as BuildKit's Dockerfile frontend does
// it. Pure functions over a StageState; the executor adds the filesystem work
// (RUN, COPY/ADD, the WORKDIR directory) and calls add_history for those.
//
// BuildKit's rules kept here:
//  - history texts: `RUN |2 a=b c=d /bin/sh -c … # buildkit`, `COPY a b # buildkit`,
//    `WORKDIR /app`, `ENV k=v`, `LABEL k=v`, `EXPOSE map[80/tcp:{}]`,
//    `VOLUME [/data]`, `CMD ["/bin/sh" "-c" "x"]`, `SHELL [/bin/bash -c]`,
//    `HEALTHCHECK &{["CMD-SHELL" "x"] "30s" "0s" "0s" "0s" '\x00'}`,
//    `ARG a=b`, `USER x`, `STOPSIGNAL x`, `MAINTAINER x`, `ONBUILD …`;
//    comment "buildkit.dockerfile.v0"; metadata-only steps are empty_layer;
//  - the stage environment (expansion and RUN's env) is the config Env with
//    ARGs layered on in source order: a later ENV replaces an ARG, a later
//    ARG replaces an ENV in the build env only (the config keeps the ENV);
//  - CMD sets ArgsEscaped (ENTRYPOINT does not); ENTRYPOINT clears an inherited CMD
//    unless the stage set CMD; shell forms go through SHELL (default
//    /bin/sh -c);
//  - an empty base (scratch) has PATH set and WorkingDir "/"; a base without
//    PATH gets the default PATH.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "builder/plan.hpp"
#include "image/types.hpp"
#include "parser/instructions.hpp"
#include "parser/shell.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// The history comment BuildKit writes.
inline constexpr const char* k_history_comment = "buildkit.dockerfile.v0";
/// Docker's default PATH for Linux.
inline constexpr const char* k_default_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One declared ARG of a stage (BuildKit's buildArgs).
struct DeclaredArg {
  std::string name;
  std::optional<std::string> value;
};

/// The evolving state of one stage.
struct StageState {
  /// The image config (config.config is always set) with history and diff_ids.
  image::ImageConfig image;
  /// The build environment: config Env plus ARGs in scope (later wins).
  parser::ShellEnv env;
  /// ARGs declared in this stage (and inherited from a parent stage).
  std::vector<DeclaredArg> args;
  /// True once the stage set CMD (ENTRYPOINT then keeps it).
  bool cmd_set = false;
  /// `created` for new history entries (RFC 3339).
  std::string created;
  /// Metadata-only entries get no `created` until fill_history_created
  /// gives them their neighbours' (BuildKit's rule when SOURCE_DATE_EPOCH
  /// is unset, so a fully cached rebuild gives the same image).
  bool defer_empty_created = false;
};

/// What the build-wide ARG inputs are for a stage's ARG instructions.
struct ArgInputs {
  /// --build-arg values.
  const std::map<std::string, std::string>* build_args = nullptr;
  /// Global (and predefined) ARG values, later wins.
  const std::vector<std::pair<std::string, std::string>>* global_args = nullptr;
};

/// Formats unix seconds (and nanoseconds) as RFC 3339 UTC, Go's
/// time.RFC3339Nano ("2024-01-02T03:04:05Z", trailing zeros trimmed).
std::string format_rfc3339(int64_t seconds, uint32_t nanos = 0);

/// Go's time.Duration.String() ("1m30s", "500ms", "0s").
std::string go_duration(int64_t nanoseconds);

/// Go's %q of a []string: `["a" "b"]`.
std::string go_quote_list(const std::vector<std::string>& items);

/// Starts a stage from a base image config (nullopt = scratch): the base's
/// config and history are kept; PATH is added when missing; scratch gets
/// WorkingDir "/" and the platform.
StageState start_stage(const std::optional<image::ImageConfig>& base, const Platform& platform,
                       std::string created);

/// Appends a history entry (with " # buildkit" when `buildkit_suffix`).
void add_history(StageState& state, std::string created_by, bool with_layer, bool buildkit_suffix);

/// Gives every history entry without `created` a time, as BuildKit's
/// exporter does: entries before the first dated entry that follows an
/// undated one take that entry's time, later ones the time of the dated
/// entry before them (so metadata steps take the time of the layer they sit
/// next to). Returns the time of the last entry ("" when there is none).
std::string fill_history_created(std::vector<image::HistoryEntry>& history);

/// The command SHELL-wrapped for a shell-form CMD/ENTRYPOINT/RUN.
std::vector<std::string> with_shell(const StageState& state, const parser::CommandLine& command);

/// The created_by text of a RUN ("RUN |1 a=b /bin/sh -c x # buildkit" minus
/// the suffix, which add_history adds).
std::string run_history_text(const StageState& state, const std::vector<std::string>& argv);

/// The environment of a RUN process: the build env, then the proxy build args
/// that no ARG/ENV defines.
std::vector<std::string> run_environment(const StageState& state, const std::map<std::string, std::string>& build_args);

/// What a metadata instruction asks of the filesystem.
struct MetadataEffect {
  /// WORKDIR: the absolute directory to create (owned by the stage USER),
  /// then call add_history("WORKDIR …") with the layer outcome.
  std::optional<std::string> mkdir;
};

/// True for instructions apply_metadata handles (everything but RUN, COPY, ADD, FROM).
bool is_metadata(const parser::Instruction& instruction);

/// Applies a metadata instruction to the stage: config, env, args and (except
/// WORKDIR) the history entry. Words are expanded with the stage env.
Result<MetadataEffect> apply_metadata(StageState& state, const parser::Instruction& instruction,
                                      const ArgInputs& inputs, char escape);

/// Adds the --label values to the final image's config.
void apply_build_labels(StageState& state, const std::map<std::string, std::string>& labels);

}  // namespace imgbuild::builder
