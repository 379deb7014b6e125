#include "builder/plan.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include <fmt/format.h>

#include "parser/checks.hpp"
#include "parser/lower.hpp"
#include "parser/shell.hpp"
#include "parser/stages.hpp"
#include "parser/syntax/parse.hpp"
#include "util/hash.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

std::vector<std::pair<std::string, std::string>> platform_args(const Platform& build, const Platform& target) {
  return {
      {"TARGETPLATFORM", target.str()},     {"TARGETOS", target.os},
      {"TARGETARCH", target.architecture},  {"TARGETVARIANT", target.variant},
      {"BUILDPLATFORM", build.str()},       {"BUILDOS", build.os},
      {"BUILDARCH", build.architecture},    {"BUILDVARIANT", build.variant},
  };
}

bool is_proxy_arg(std::string_view name) {
  static const std::set<std::string> k_proxy = {"http_proxy", "https_proxy", "ftp_proxy", "no_proxy",
                                                "all_proxy"};
  std::string lower = str::to_lower(name);
  if (k_proxy.count(lower) == 0) {
    return false;
  }
  // Only all-lower or all-upper spellings are predefined.
  return name == lower || name == str::to_upper(name);
}

const PlannedStage* Plan::stage(int index) const {
  for (const auto& s : stages) {
    if (s.index == index) {
      return &s;
    }
  }
  return nullptr;
}

const std::string* Plan::global_arg(std::string_view name) const {
  for (auto it = global_args.rbegin(); it != global_args.rend(); ++it) {
    if (it->first == name) {
      return &it->second;
    }
  }
  return nullptr;
}

SourceRef Plan::resolve_source(std::string_view reference, int current) const {
  SourceRef ref;
  const PlannedStage* referring = stage(current);
  ref.platform = referring != nullptr ? referring->platform : platform;
  std::string lower = str::to_lower(reference);
  for (int i = 0; i < current && i < static_cast<int>(stage_names.size()); ++i) {
    if (!stage_names[static_cast<size_t>(i)].empty() && stage_names[static_cast<size_t>(i)] == lower) {
      ref.kind = BaseKind::stage;
      ref.stage = i;
      return ref;
    }
  }
  int idx = -1;
  auto [ptr, ec] = std::from_chars(reference.data(), reference.data() + reference.size(), idx);
  if (ec == std::errc{} && ptr == reference.data() + reference.size() && idx >= 0 && idx < current) {
    ref.kind = BaseKind::stage;
    ref.stage = idx;
    return ref;
  }
  auto ctx = named_contexts.find(std::string(reference));
  if (ctx != named_contexts.end()) {
    ref.kind = BaseKind::context;
    ref.name = ctx->first;
    ref.source = ctx->second;
    return ref;
  }
  ref.kind = BaseKind::image;
  ref.name = std::string(reference);
  return ref;
}

namespace {

Result<int64_t> parse_epoch(const std::string& text) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() || v < 0) {
    return fail(Errc::invalid_argument, fmt::format("invalid SOURCE_DATE_EPOCH: {}", text));
  }
  return v;
}

std::string join_errors(const std::vector<Error>& errors) {
  std::vector<std::string> parts;
  parts.reserve(errors.size());
  for (const auto& e : errors) {
    parts.push_back(e.to_string());
  }
  return str::join(parts, "\n");
}

// The --from / mount from= references of ONBUILD trigger texts.
std::vector<std::string> trigger_references(const std::vector<std::string>& triggers) {
  std::vector<std::string> refs;
  for (const auto& t : triggers) {
    auto ast = parser::parse_dockerfile(t, "ONBUILD trigger");
    if (!ast) {
      continue;  // the executor reports it when the trigger runs
    }
    parser::LoweredFile lowered = parser::lower(*ast, "ONBUILD trigger");
    for (const auto& ins : lowered.instructions) {
      if (const auto* copy = ins.as<parser::CopyInstruction>(); copy != nullptr && copy->from) {
        refs.push_back(*copy->from);
      } else if (const auto* run = ins.as<parser::RunInstruction>()) {
        for (const auto& m : run->mounts) {  // parsed by lowering (from= is never expanded)
          if (!m.from.empty()) {
            refs.push_back(m.from);
          }
        }
      }
    }
  }
  return refs;
}

// The triggers that run at the start of stage `st`: its parent stage's
// ONBUILD lines, or the base image's (through the hook).
std::vector<std::string> stage_triggers(const parser::StageGraph& graph, const parser::Stage& st,
                                        const BuildOptions& options) {
  std::vector<std::string> triggers;
  for (const auto& dep : st.dependencies) {
    if (dep.kind != parser::DependencyKind::base) {
      continue;
    }
    if (dep.stage && !dep.forward) {
      for (const auto& ins : graph.stages[static_cast<size_t>(*dep.stage)].instructions) {
        if (const auto* ob = ins.as<parser::OnbuildInstruction>()) {
          triggers.push_back(ob->trigger);
        }
      }
      return triggers;
    }
  }
  if (!options.base_onbuild || str::to_lower(st.base) == "scratch") {
    return triggers;
  }
  std::string image = st.base;
  if (auto ctx = options.named_contexts.find(st.base); ctx != options.named_contexts.end()) {
    if (!ctx->second.starts_with("docker-image://") && !ctx->second.starts_with("oci-layout://")) {
      return triggers;
    }
    image = ctx->second.starts_with("docker-image://") ? ctx->second.substr(std::string_view("docker-image://").size())
                                                       : ctx->second;
  }
  if (auto found = options.base_onbuild(image)) {
    triggers = *found;
  }
  return triggers;
}

// PlannedStage::share_key. The stages it needs come earlier in the plan.
// (ONBUILD triggers of an image base are not read: a trigger's ARG of a
// TARGET* name would be missed.)
std::string share_key(const Plan& plan, const PlannedStage& ps) {
  std::string text = fmt::format("stage {}\nplatform {}\nbase {} {} {} {}\n", ps.index, ps.platform.str(),
                                 static_cast<int>(ps.base.kind), ps.base.name, ps.base.stage, ps.base.source);
  for (int need : ps.needs) {
    const PlannedStage* dep = plan.stage(need);
    text += "needs " + (dep != nullptr ? dep->share_key : std::to_string(need)) + "\n";
  }
  for (const auto& ins : ps.steps) {
    if (const auto* arg = ins.as<parser::ArgInstruction>()) {
      for (const auto& d : arg->args) {
        const std::string* global = plan.global_arg(d.name);
        auto build = plan.build_args.find(d.name);
        text += fmt::format("arg {}={}|{}\n", d.name, global != nullptr ? *global : "<none>",
                            build != plan.build_args.end() ? build->second : "<none>");
      }
    }
  }
  return sha256(text).str();
}

}  // namespace

Result<Plan> make_plan(std::string_view dockerfile, const BuildOptions& options) {
  Plan plan;
  plan.build_platform = host_platform();
  plan.platform = plan.build_platform;
  if (!options.platform.empty()) {
    if (options.platform.find(',') != std::string::npos) {
      return fail(Errc::invalid_argument,
                  fmt::format("make_plan takes one platform, not the list {} (plan each one)",
                              str::go_quote(options.platform)));
    }
    TRY(plan.platform, parse_platform(str::trim(options.platform)));
    plan.explicit_platform = true;
  }
  plan.named_contexts = options.named_contexts;
  plan.labels = options.labels;
  for (std::string_view line : str::split_lines(dockerfile)) {
    plan.lines.emplace_back(line);
  }
  for (const auto& [k, v] : options.build_args) {
    plan.build_args[k] = v;
  }

  TRY(auto ast, parser::parse_dockerfile(dockerfile, options.dockerfile_name));
  plan.escape = ast.escape;
  parser::LoweredFile lowered = parser::lower(ast, options.dockerfile_name);

  // Predefined platform ARGs (global scope; build args override them).
  std::vector<std::pair<std::string, std::string>> predefined = platform_args(plan.build_platform, plan.platform);
  std::vector<std::string> graph_args;
  for (const auto& [k, v] : predefined) {
    auto it = plan.build_args.find(k);
    graph_args.push_back(k + "=" + (it != plan.build_args.end() ? it->second : v));
  }
  for (const auto& [k, v] : plan.build_args) {
    graph_args.push_back(k + "=" + v);
  }
  parser::StageGraphOptions gopts;
  gopts.build_args = graph_args;
  gopts.file = options.dockerfile_name;
  parser::StageGraphResult graph = parser::build_stage_graph(lowered.instructions, gopts);
  std::vector<Error> errors = parser::collect_errors(lowered, &graph, options.dockerfile_name);
  // A forward reference in a stage the target does not need is not an error
  // for this build: stages_needed reports the ones that matter.
  errors.erase(std::remove_if(errors.begin(), errors.end(),
                              [](const Error& e) {
                                return e.message.find("needs to be defined before current stage") !=
                                       std::string::npos;
                              }),
               errors.end());
  if (!errors.empty()) {
    Error e = errors.front();
    e.message = errors.size() == 1 ? e.message : join_errors(errors);
    if (errors.size() > 1) {
      e.location.reset();
    }
    return fail(std::move(e));
  }

  // Global ARGs: build args win, defaults expand with what is defined so far.
  parser::Lexer lexer(plan.escape);
  parser::ShellEnv genv;
  for (const auto& [k, v] : predefined) {
    auto it = plan.build_args.find(k);
    std::string value = it != plan.build_args.end() ? it->second : v;
    genv.set(k, value);
    plan.global_args.emplace_back(k, value);
  }
  for (const auto& arg : graph.graph.global_args) {
    for (const auto& decl : arg.args) {
      auto it = plan.build_args.find(decl.name);
      std::optional<std::string> value;
      if (it != plan.build_args.end()) {
        value = it->second;
      } else if (decl.default_value) {
        auto expanded = lexer.process_word(*decl.default_value, genv);
        if (!expanded) {
          Error e = std::move(expanded).error();
          e.location = SourceLocation{options.dockerfile_name, arg.header.range.start_line, 0};
          return fail(std::move(e));
        }
        value = *expanded;
      }
      if (value) {
        genv.set(decl.name, *value);
        plan.global_args.emplace_back(decl.name, *value);
      }
    }
  }

  // FROM --platform, expanded with the global ARGs as BuildKit does, must
  // name a platform: the stage's (a stage without it is built for the
  // target platform; one on an earlier stage inherits that stage's).
  std::map<int, Platform> from_platform;
  for (const auto& st : graph.graph.stages) {
    if (!st.from.platform) {
      continue;
    }
    SourceLocation where{options.dockerfile_name, st.from.header.range.start_line, 0};
    auto expanded = lexer.process_word(*st.from.platform, genv);
    if (!expanded) {
      Error e = std::move(expanded).error();
      e.location = where;
      return fail(std::move(e));
    }
    auto parsed = parse_platform(*expanded);
    if (!parsed) {
      return fail(Error(Errc::invalid_argument,
                        fmt::format("failed to parse platform {} of FROM --platform on line {}: {}",
                                    str::go_quote(*expanded), where.line, parsed.error().message),
                        where));
    }
    from_platform[st.index] = *parsed;
  }

  // SOURCE_DATE_EPOCH: build arg, else global ARG default, else environment.
  std::optional<std::string> sde;
  if (const std::string* g = plan.global_arg("SOURCE_DATE_EPOCH")) {
    sde = *g;
  } else if (auto it = plan.build_args.find("SOURCE_DATE_EPOCH"); it != plan.build_args.end()) {
    sde = it->second;
  } else if (options.source_date_epoch_env && !options.source_date_epoch_env->empty()) {
    sde = options.source_date_epoch_env;
  }
  if (sde) {
    TRY(plan.source_date_epoch, parse_epoch(*sde));
  }

  TRY(int target, parser::select_target(graph.graph, options.target));
  TRY(auto needed_list, parser::stages_needed(graph.graph, target, options.dockerfile_name));
  // Stages referred to by the ONBUILD triggers of a needed stage's base are
  // needed too (with what they need), until nothing new is added.
  std::set<int> needed(needed_list.begin(), needed_list.end());
  std::map<int, std::set<int>> trigger_needs;
  for (bool changed = true; changed;) {
    changed = false;
    for (int idx : std::vector<int>(needed.begin(), needed.end())) {
      if (trigger_needs.count(idx) != 0) {
        continue;
      }
      const parser::Stage& st = graph.graph.stages[static_cast<size_t>(idx)];
      std::set<int>& deps = trigger_needs[idx];
      for (const auto& ref : trigger_references(stage_triggers(graph.graph, st, options))) {
        auto dep = graph.graph.find_reference(ref);
        if (!dep) {
          continue;  // an image or a named context
        }
        if (*dep >= idx) {
          return fail(Errc::invalid_argument,
                      fmt::format("ONBUILD trigger of the base of stage {} refers to stage {}, which needs to be "
                                  "defined before current stage",
                                  st.display_name(), ref));
        }
        deps.insert(*dep);
        TRY(auto more, parser::stages_needed(graph.graph, *dep, options.dockerfile_name));
        for (int m : more) {
          changed = needed.insert(m).second || changed;
        }
      }
    }
  }
  plan.target = target;
  for (const auto& st : graph.graph.stages) {
    plan.stage_names.push_back(st.name);
  }
  std::set<std::string> filter;
  for (const auto& f : options.no_cache_filter) {
    filter.insert(str::to_lower(f));
  }
  for (int idx : needed) {
    const parser::Stage& st = graph.graph.stages[static_cast<size_t>(idx)];
    PlannedStage ps;
    ps.index = st.index;
    ps.name = st.name;
    ps.display_name = st.display_name();
    ps.from = st.from;
    ps.steps = st.instructions;
    ps.no_cache = options.no_cache || filter.count(st.name) > 0 || filter.count(std::to_string(st.index)) > 0;
    std::set<int> needs;
    for (const auto& dep : st.dependencies) {
      if (dep.kind == parser::DependencyKind::base) {
        if (dep.stage && !dep.forward) {
          ps.base.kind = BaseKind::stage;
          ps.base.stage = *dep.stage;
        } else if (auto ctx = plan.named_contexts.find(st.base); ctx != plan.named_contexts.end()) {
          ps.base.kind = BaseKind::context;
          ps.base.name = ctx->first;
          ps.base.source = ctx->second;
        } else if (str::to_lower(st.base) == "scratch") {
          ps.base.kind = BaseKind::scratch;
        } else {
          ps.base.kind = BaseKind::image;
          ps.base.name = st.base;
        }
      }
      if (dep.stage && !dep.forward) {
        needs.insert(*dep.stage);
      }
    }
    needs.insert(trigger_needs[idx].begin(), trigger_needs[idx].end());
    ps.needs.assign(needs.begin(), needs.end());
    ps.platform = plan.platform;
    if (ps.base.kind == BaseKind::stage) {
      if (const PlannedStage* parent = plan.stage(ps.base.stage)) {
        ps.platform = parent->platform;
      }
    } else if (auto fp = from_platform.find(idx); fp != from_platform.end()) {
      ps.platform = fp->second;
    }
    ps.share_key = share_key(plan, ps);
    plan.stages.push_back(std::move(ps));
  }
  return plan;
}

}  // namespace imgbuild::builder
