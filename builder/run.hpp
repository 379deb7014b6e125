#pragma once
// Executing a resolved RUN (builder/run_step.hpp): the sandbox spec it
// becomes (command, environment, user, working directory, network,
// privileges, mounts through builder/run_mounts.hpp) and the process run
// with its output passed on, secrets masked. The snapshot view the process
// runs in and the layer it leaves are the executor's.

#include <functional>
#include <string_view>

#include "builder/events.hpp"
#include "builder/run_mounts.hpp"
#include "builder/run_step.hpp"
#include "sandbox/sandbox.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// The sandbox spec of `run`, every field but rootfs and the output sinks
/// set; what it needs on the host (a heredoc script file, mounts) is held
/// by `held`.
Result<sandbox::RunSpec> run_spec(const ResolvedRun& run, const MountEnv& env, RunMounts& held);

/// Receives one line of a RUN's output.
using RunOutput = std::function<void(OutputStream stream, std::string_view line)>;

/// Runs `spec` (rootfs set) in `sandbox`, each output line passed to
/// `output` with the values of `mask` replaced. A non-zero exit is an error
/// naming the command and the exit code.
Result<void> run_process(sandbox::Sandbox& sandbox, sandbox::RunSpec spec, const SecretMask& mask,
                         const RunOutput& output);

}  // namespace imgbuild::builder
