#include "builder/run_step.hpp"

#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "parser/lower.hpp"
#include "parser/shell.hpp"
#include "util/fs.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace {

// The command line, heredocs included.
void resolve_command(const parser::RunInstruction& run, const StageState& state, ResolvedRun& out) {
  if (run.heredocs.empty() || run.command.json_form) {
    out.argv = with_shell(state, run.command);
    return;
  }
  std::string line = str::join(run.command.args, " ");
  const parser::Heredoc& first = run.heredocs.front();
  bool only_heredoc = run.heredocs.size() == 1 && str::trim(line).starts_with("<<") &&
                      str::trim(line).find(' ') == std::string_view::npos;
  parser::CommandLine cl;
  if (only_heredoc) {
    std::string body = parser::heredoc_body(first);
    if (body.starts_with("#!")) {
      // The script is a file run through the shell, as BuildKit (v0.22)
      // does: `/bin/sh -c /dev/pipes/EOF`.
      out.script = RunScript{first.name, std::move(body)};
      cl.args = {"/dev/pipes/" + first.name};
    } else {
      cl.args = {std::move(body)};
    }
  } else {
    std::string script = line;
    for (const auto& h : run.heredocs) {
      script += "\n" + h.content + h.name;
    }
    cl.args = {std::move(script)};
  }
  out.argv = with_shell(state, cl);
}

MountSource mount_source(const parser::Mount& m, const RunResolveContext& context) {
  MountSource s;
  s.from = m.from;
  s.path = m.source;
  if (!m.from.empty()) {
    s.ref = context.plan->resolve_source(m.from, context.stage);
  }
  return s;
}

}  // namespace

Result<void> check_security(const parser::RunInstruction& run, const std::set<std::string>& allow) {
  if (run.security && *run.security == "insecure" && allow.count("security.insecure") == 0) {
    return fail(Errc::permission,
                "security.insecure is not allowed: pass --allow security.insecure to run RUN --security=insecure");
  }
  // --network=host needs no entitlement: docker buildx asks for --allow
  // network.host, but BuildKit's docker driver grants it.
  return ok();
}

Result<ResolvedRun> resolve_run(const parser::RunInstruction& run, const StageState& state,
                                const RunResolveContext& context) {
  static const std::set<std::string> k_none;
  TRY_VOID(check_security(run, context.allow != nullptr ? *context.allow : k_none));
  ResolvedRun out;
  out.text = run.header.original;
  for (const auto& h : run.heredocs) {
    out.text += "\n" + h.content + h.name;
  }
  resolve_command(run, state, out);
  const image::ContainerConfig& cfg = *state.image.config;
  out.env = run_environment(state, context.plan->build_args);
  out.shell = cfg.shell;
  out.user = cfg.user;
  out.workdir = cfg.working_dir;
  out.cwd = cfg.working_dir.empty() ? "/" : cfg.working_dir;
  out.network = run.network.value_or(context.network);
  out.security = run.security.value_or("sandbox");
  out.devices = run.devices;
  out.mount_specs = run.mount_specs;
  out.created_by = run_history_text(state, out.argv);

  parser::Lexer lexer(context.plan->escape);
  int ssh_index = 0;
  for (const auto& spec : run.mount_specs) {
    TRY(parser::Mount m,
        parser::parse_mount(spec, [&](const std::string& w) { return lexer.process_word(w, state.env); }));
    std::string target = m.target;
    if (!target.empty() && !target.starts_with("/")) {
      target = out.cwd + "/" + target;
    }
    switch (m.type) {
      case parser::MountType::bind:
        out.mounts.emplace_back(BindMount{mount_source(m, context), target, m.read_only});
        break;
      case parser::MountType::cache: {
        CacheMount c;
        c.id = m.id.empty() ? fs::clean_path(m.target) : m.id;
        c.source = mount_source(m, context);
        c.target = target;
        c.read_only = m.read_only;
        c.sharing = m.sharing.value_or(parser::CacheSharing::shared);
        c.mode = m.mode;
        c.uid = m.uid;
        c.gid = m.gid;
        out.mounts.emplace_back(std::move(c));
        break;
      }
      case parser::MountType::tmpfs: {
        TmpfsMount t;
        t.target = target;
        if (m.size_limit && *m.size_limit > 0) {
          t.size = static_cast<uint64_t>(*m.size_limit);
        }
        out.mounts.emplace_back(std::move(t));
        break;
      }
      case parser::MountType::secret: {
        SecretMount s;
        s.id = m.id.empty() ? std::filesystem::path(m.target).filename().string() : m.id;
        s.env = m.env;
        if (!m.env || !m.target.empty()) {
          s.target = target.empty() ? "/run/secrets/" + s.id : target;
        }
        s.required = m.required;
        s.mode = m.mode.value_or(0400);
        s.uid = m.uid.value_or(0);
        s.gid = m.gid.value_or(0);
        out.mounts.emplace_back(std::move(s));
        break;
      }
      case parser::MountType::ssh: {
        SshMount s;
        s.target = target.empty() ? fmt::format("/run/buildkit/ssh_agent.{}", ssh_index++) : target;
        s.required = m.required;
        s.mode = m.mode.value_or(0600);
        s.uid = m.uid.value_or(0);
        s.gid = m.gid.value_or(0);
        out.mounts.emplace_back(std::move(s));
        break;
      }
    }
  }
  return out;
}

}  // namespace imgbuild::builder
