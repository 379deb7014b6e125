#pragma once
// A RUN instruction resolved once: its words expanded with the stage
// environment, its --mount values parsed (after expansion), their targets
// made absolute against WORKDIR, their defaults filled in (cache and secret
// ids, secret and SSH targets, modes and owners) and every from= reference
// resolved against the plan. The cache key (run_key) and the execution
// (builder/run.hpp) both read this one value, so the key covers exactly
// what runs; nothing reads the RUN's --mount text after this.
//
// Pure: no I/O. Secret values, SSH agents and source directories are the
// execution's business (builder/run_mounts.hpp).

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "builder/config.hpp"
#include "builder/plan.hpp"
#include "parser/instructions.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// Where a bind or cache mount's files come from.
struct MountSource {
  /// from= as written ("" = the build context; for a cache mount: no seed).
  std::string from;
  /// from= resolved against the plan; nullopt when `from` is "".
  std::optional<SourceRef> ref;
  /// source= (expanded), relative to the root `from` names.
  std::string path;
};

/// RUN --mount=type=bind.
struct BindMount {
  MountSource source;
  /// Absolute target inside the rootfs.
  std::string target;
  /// False: writes go to a copy that is discarded afterwards.
  bool read_only = true;
};

/// RUN --mount=type=cache.
struct CacheMount {
  /// The cache id (id=, else the target as written, cleaned).
  std::string id;
  /// The seed of a new cache directory (from=, source=); from "" = none.
  MountSource source;
  /// Absolute target inside the rootfs.
  std::string target;
  bool read_only = false;
  parser::CacheSharing sharing = parser::CacheSharing::shared;
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
};

/// RUN --mount=type=tmpfs.
struct TmpfsMount {
  /// Absolute target inside the rootfs.
  std::string target;
  /// Size limit in bytes; nullopt = the kernel's default.
  std::optional<uint64_t> size;
};

/// RUN --mount=type=secret.
struct SecretMount {
  /// The secret id (id=, else the target's file name).
  std::string id;
  /// Where the secret file goes (default /run/secrets/<id>); nullopt when
  /// the secret only goes to `env`.
  std::optional<std::string> target;
  /// env=: also (or only) exposed as this variable.
  std::optional<std::string> env;
  bool required = false;
  uint32_t mode = 0400;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

/// RUN --mount=type=ssh.
struct SshMount {
  /// The agent socket's path (default /run/buildkit/ssh_agent.<n>, n
  /// counting the SSH mounts without a target).
  std::string target;
  bool required = false;
  uint32_t mode = 0600;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

/// One resolved RUN --mount.
using RunMount = std::variant<BindMount, CacheMount, TmpfsMount, SecretMount, SshMount>;

/// A heredoc RUN whose only body starts with "#!": the body becomes a script
/// file, mounted read-only at argv[0].
struct RunScript {
  /// The heredoc's name (the file name under /dev/pipes/).
  std::string name;
  std::string body;
};

/// A RUN, resolved for one stage state.
struct ResolvedRun {
  /// The instruction as written plus its heredoc bodies (the key's text).
  std::string text;
  /// The process's command line (SHELL-wrapped for the shell form).
  std::vector<std::string> argv;
  /// Set when argv[0] is a heredoc script.
  std::optional<RunScript> script;
  /// The process environment (run_environment) before secret and SSH
  /// variables are added.
  std::vector<std::string> env;
  /// The stage's SHELL, USER and WORKDIR (as the config holds them).
  std::vector<std::string> shell;
  std::string user;
  std::string workdir;
  /// The process's working directory (WORKDIR, "/" when unset).
  std::string cwd = "/";
  /// default, none or host (--network, else the build's default).
  std::string network = "default";
  /// sandbox or insecure.
  std::string security = "sandbox";
  /// --device values as written.
  std::vector<std::string> devices;
  /// --mount values as written (part of the key's text).
  std::vector<std::string> mount_specs;
  /// The mounts, in the order of mount_specs.
  std::vector<RunMount> mounts;
  /// The history entry's created_by (run_history_text).
  std::string created_by;

  /// True for --security=insecure.
  bool privileged() const { return security == "insecure"; }
};

/// Fails unless `allow` grants what the RUN's --security asks for.
Result<void> check_security(const parser::RunInstruction& run, const std::set<std::string>& allow);

/// What resolve_run needs beyond the instruction and the stage state.
struct RunResolveContext {
  const Plan* plan = nullptr;
  /// The stage the RUN belongs to (for from= references).
  int stage = 0;
  /// The build's default --network.
  std::string network = "default";
  /// The granted entitlements (--allow).
  const std::set<std::string>* allow = nullptr;
};

/// Resolves `run` for a stage in `state`. Errors: an entitlement that is
/// not granted, a word that does not expand, a --mount value that does not
/// parse after expansion (BuildKit's messages).
Result<ResolvedRun> resolve_run(const parser::RunInstruction& run, const StageState& state,
                                const RunResolveContext& context);

}  // namespace imgbuild::builder
