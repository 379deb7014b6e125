#include "builder/run.hpp"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

Result<sandbox::RunSpec> run_spec(const ResolvedRun& run, const MountEnv& env, RunMounts& held) {
  sandbox::RunSpec spec;
  if (run.script) {
    TRY(fsys::path d, held.temp_dir());
    fsys::path script = d / run.script->name;
    {
      std::ofstream out(script, std::ios::binary);
      out << run.script->body;
    }
    fsys::permissions(script, fsys::perms::owner_all | fsys::perms::group_read | fsys::perms::group_exec |
                                  fsys::perms::others_read | fsys::perms::others_exec);
    spec.mounts.push_back(sandbox::BindMount{script, "/dev/pipes/" + run.script->name, sandbox::Access::read_only});
  }
  spec.argv = run.argv;
  spec.env = run.env;
  spec.user = run.user;
  spec.workdir = run.cwd;
  spec.network = run.network == "none" ? sandbox::NetworkMode::none : sandbox::NetworkMode::host;
  spec.hostname = "buildkitsandbox";
  spec.flavor = sandbox::Flavor::build;
  spec.privileged = run.privileged();
  TRY_VOID(add_mounts(run, env, held, spec));
  return spec;
}

Result<void> run_process(sandbox::Sandbox& sandbox, sandbox::RunSpec spec, const SecretMask& mask,
                         const RunOutput& output) {
  auto emit = [&](OutputStream stream, std::string_view line) {
    if (mask.empty()) {
      output(stream, line);
    } else {
      output(stream, mask.apply(line));
    }
  };
  spec.on_stdout = [&](std::string_view line) { emit(OutputStream::stdout_, line); };
  spec.on_stderr = [&](std::string_view line) { emit(OutputStream::stderr_, line); };
  TRY(sandbox::RunResult result, sandbox.run(spec));
  if (result.exit_code != 0) {
    return fail(Errc::internal, fmt::format("process {} did not complete successfully: exit code: {}",
                                            str::go_quote(str::join(spec.argv, " ")), result.exit_code));
  }
  return ok();
}

}  // namespace imgbuild::builder
