// GCC 12 reports a false maybe-uninitialized for std::optional<std::string>
// members assigned in a default-constructed aggregate (BuildOptions).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <catch2/catch.hpp>

#include <string>

#include "builder/config.hpp"
#include "builder/plan.hpp"
#include "builder/run_step.hpp"
#include "util/fs.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;

namespace {

// Plans `df`, applies the target stage's metadata instructions to a scratch
// state and resolves its last RUN.
Result<ResolvedRun> resolve_last_run(const std::string& df, const std::set<std::string>& allow = {}) {
  auto plan = make_plan(df, {});
  REQUIRE(plan);
  const PlannedStage& stage = plan->stages.back();
  StageState state = start_stage(std::nullopt, plan->platform, "");
  const parser::RunInstruction* last = nullptr;
  ArgInputs inputs{&plan->build_args, &plan->global_args};
  for (const auto& ins : stage.steps) {
    if (const auto* run = ins.as<parser::RunInstruction>()) {
      last = run;
    } else {
      REQUIRE(apply_metadata(state, ins, inputs, plan->escape));
    }
  }
  REQUIRE(last != nullptr);
  RunResolveContext context{&*plan, stage.index, "default", &allow};
  return resolve_run(*last, state, context);
}

}  // namespace

TEST_CASE("resolve_run: mounts expanded, targets made absolute, defaults filled", "[builder][run]") {
  auto r = resolve_last_run(
      "FROM scratch AS tools\n"
      "FROM scratch\n"
      "ARG SRC=lib TGT=out SIZE=64k\n"
      "WORKDIR /w\n"
      "RUN --mount=type=bind,from=tools,source=$SRC,target=$TGT "
      "--mount=type=cache,target=/var/cache/apt,sharing=locked,mode=0700 "
      "--mount=type=tmpfs,target=/t,size=$SIZE "
      "--mount=type=secret,id=tok,env=TOKEN "
      "--mount=type=secret,target=/run/x/key "
      "--mount=type=secret,id=s2,required "
      "--mount=type=ssh --mount=type=ssh,target=/agent --mount=type=ssh "
      "--mount=source=.,target=/ctx,rw "
      "--network=none make\n");
  REQUIRE(r);
  CHECK(r->network == "none");
  CHECK(r->security == "sandbox");
  CHECK(r->cwd == "/w");
  CHECK(r->argv == std::vector<std::string>{"/bin/sh", "-c", "make"});
  REQUIRE(r->mounts.size() == 10);
  CHECK(r->mount_specs.size() == 10);

  const auto& bind = std::get<BindMount>(r->mounts[0]);
  CHECK(bind.source.from == "tools");
  REQUIRE(bind.source.ref);
  CHECK(bind.source.ref->kind == BaseKind::stage);
  CHECK(bind.source.ref->stage == 0);
  CHECK(bind.source.path == "lib");
  CHECK(bind.target == "/w/out");
  CHECK(bind.read_only);

  const auto& cache = std::get<CacheMount>(r->mounts[1]);
  CHECK(cache.id == fs::clean_path("/var/cache/apt"));
  CHECK(cache.target == "/var/cache/apt");
  CHECK(cache.sharing == parser::CacheSharing::locked);
  CHECK(cache.mode == 0700u);
  CHECK_FALSE(cache.source.ref);
  CHECK_FALSE(cache.read_only);

  const auto& tmpfs = std::get<TmpfsMount>(r->mounts[2]);
  CHECK(tmpfs.target == "/t");
  CHECK(tmpfs.size == uint64_t{64 * 1024});

  const auto& env_only = std::get<SecretMount>(r->mounts[3]);
  CHECK(env_only.id == "tok");
  CHECK(env_only.env == std::optional<std::string>("TOKEN"));
  CHECK_FALSE(env_only.target);
  const auto& by_target = std::get<SecretMount>(r->mounts[4]);
  CHECK(by_target.id == "key");
  CHECK(by_target.target == std::optional<std::string>("/run/x/key"));
  CHECK(by_target.mode == 0400u);
  const auto& by_id = std::get<SecretMount>(r->mounts[5]);
  CHECK(by_id.target == std::optional<std::string>("/run/secrets/s2"));
  CHECK(by_id.required);

  CHECK(std::get<SshMount>(r->mounts[6]).target == "/run/buildkit/ssh_agent.0");
  CHECK(std::get<SshMount>(r->mounts[7]).target == "/agent");
  CHECK(std::get<SshMount>(r->mounts[8]).target == "/run/buildkit/ssh_agent.1");

  const auto& ctx = std::get<BindMount>(r->mounts[9]);
  CHECK(ctx.source.from.empty());
  CHECK_FALSE(ctx.source.ref);
  CHECK_FALSE(ctx.read_only);
  CHECK(ctx.target == "/ctx");
}

TEST_CASE("resolve_run: the key text, heredoc scripts and history", "[builder][run]") {
  auto r = resolve_last_run("FROM scratch\nRUN <<EOF\n#!/bin/tool\nhello\nEOF\n");
  REQUIRE(r);
  REQUIRE(r->script);
  CHECK(r->script->name == "EOF");
  CHECK(r->script->body == "#!/bin/tool\nhello\n");
  // Run through the shell, as BuildKit v0.22 does.
  CHECK(r->argv == std::vector<std::string>{"/bin/sh", "-c", "/dev/pipes/EOF"});
  CHECK(r->text == "RUN <<EOF\n#!/bin/tool\nhello\nEOF");
  CHECK(r->created_by == "RUN /bin/sh -c /dev/pipes/EOF");

  auto plain = resolve_last_run("FROM scratch\nRUN <<EOF\necho hi\nEOF\n");
  REQUIRE(plain);
  CHECK_FALSE(plain->script);
  CHECK(plain->argv == std::vector<std::string>{"/bin/sh", "-c", "echo hi\n"});
}

TEST_CASE("resolve_run: a mount that fails after expansion, an insecure RUN", "[builder][run]") {
  auto bad = resolve_last_run("FROM scratch\nARG T=bogus\nRUN --mount=type=$T,target=/x true\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("unsupported mount type \"bogus\"") != std::string::npos);

  auto insecure = resolve_last_run("FROM scratch\nRUN --security=insecure true\n");
  REQUIRE_FALSE(insecure);
  CHECK(insecure.error().code == Errc::permission);
  CHECK(insecure.error().message.find("--allow security.insecure") != std::string::npos);

  auto allowed = resolve_last_run("FROM scratch\nRUN --security=insecure true\n", {"security.insecure"});
  REQUIRE(allowed);
  CHECK(allowed->privileged());
}
