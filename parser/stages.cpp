#include "parser/stages.hpp"

#include <algorithm>
#include <set>

#include "parser/shell.hpp"
#include "util/strings.hpp"

namespace imgbuild::parser {

namespace {

Error located(std::string message, const std::string& file, int line, int column = 0) {
  return Error(Errc::invalid_argument, std::move(message), SourceLocation{file, line, column});
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The environment FROM lines see: global ARG values (build arg, else the
// default expanded against the globals before it).
ShellEnv global_env(const std::vector<ArgInstruction>& args, const ShellEnv& build_args,
                    const Lexer& lexer, const std::string& file, std::vector<Error>& errors) {
  ShellEnv env;
  for (const auto& a : args) {
    for (const auto& decl : a.args) {
      if (const std::string* v = build_args.get(decl.name)) {
        env.set(decl.name, *v);
      } else if (decl.default_value) {
        auto expanded = lexer.process_word(*decl.default_value, env);
        if (!expanded) {
          errors.push_back(located(expanded.error().message, file, a.header.range.start_line,
                                   a.header.range.start_column));
          continue;
        }
        env.set(decl.name, *expanded);
      }
    }
  }
  return env;
}

}  // namespace

std::optional<int> StageGraph::find_by_name(std::string_view name) const {
  const std::string lower = str::to_lower(name);
  for (const auto& s : stages) {
    if (!s.name.empty() && s.name == lower) {
      return s.index;
    }
  }
  return std::nullopt;
}

std::optional<int> StageGraph::find_reference(std::string_view reference) const {
  if (auto by_name = find_by_name(reference)) {
    return by_name;
  }
  if (all_digits(reference) && reference.size() < 10) {
    int index = std::stoi(std::string(reference));
    if (index < static_cast<int>(stages.size())) {
      return index;
    }
  }
  return std::nullopt;
}

StageGraphResult build_stage_graph(const std::vector<Instruction>& instructions,
                                   const StageGraphOptions& options) {
  StageGraphResult out;
  StageGraph& g = out.graph;
  const std::string& file = options.file;
  for (const auto& inst : instructions) {
    if (const auto* from = inst.as<FromInstruction>()) {
      Stage s;
      s.index = static_cast<int>(g.stages.size());
      s.name = from->stage_name;
      s.from = *from;
      g.stages.push_back(std::move(s));
      continue;
    }
    if (g.stages.empty()) {
      if (const auto* arg = inst.as<ArgInstruction>()) {
        g.global_args.push_back(*arg);
        continue;
      }
      const auto& h = inst.header();
      out.errors.push_back(located("no build stage in current context", file, h.range.start_line,
                                   h.range.start_column));
      continue;
    }
    g.stages.back().instructions.push_back(inst);
  }
  if (g.stages.empty()) {
    out.errors.push_back(Error(Errc::invalid_argument, "dockerfile contains no stages to build",
                               SourceLocation{file, 0, 0}));
    return out;
  }

  // FROM lines expand with the global ARGs only.
  Lexer lexer('\\');
  const ShellEnv env = global_env(g.global_args, ShellEnv(options.build_args), lexer, file, out.errors);
  for (auto& s : g.stages) {
    const auto& h = s.from.header;
    auto base = lexer.process_word(s.from.image, env);
    if (!base) {
      out.errors.push_back(located(base.error().message, file, h.range.start_line, h.range.start_column));
      continue;
    }
    if (base->empty()) {
      out.errors.push_back(located("base name (" + s.from.image + ") should not be blank", file,
                                   h.range.start_line, h.range.start_column));
      continue;
    }
    s.base = *base;
    StageDependency dep;
    dep.kind = DependencyKind::base;
    dep.reference = *base;
    dep.line = h.range.start_line;
    dep.column = h.range.start_column;
    // Only stages defined before this one can be a base.
    const std::string lower = str::to_lower(*base);
    for (int i = 0; i < s.index; ++i) {
      if (!g.stages[static_cast<size_t>(i)].name.empty() && g.stages[static_cast<size_t>(i)].name == lower) {
        dep.stage = i;
        break;
      }
    }
    s.dependencies.push_back(std::move(dep));
  }

  // COPY --from and RUN --mount from= may name any stage, or an image.
  for (auto& s : g.stages) {
    for (const auto& inst : s.instructions) {
      const int line = inst.header().range.start_line;
      const int column = inst.header().range.start_column;
      auto add = [&](DependencyKind kind, const std::string& ref, const std::string& target) {
        StageDependency dep;
        dep.kind = kind;
        dep.reference = ref;
        dep.line = line;
        dep.column = column;
        dep.mount_target = target;
        if (all_digits(ref)) {
          int index = ref.size() < 10 ? std::stoi(ref) : -1;
          if (auto by_name = g.find_by_name(ref)) {
            index = *by_name;
          } else if (index < 0 || index >= static_cast<int>(g.stages.size())) {
            out.errors.push_back(located("invalid stage index " + ref, file, line, column));
            return;
          }
          dep.stage = index;
        } else {
          dep.stage = g.find_by_name(ref);
        }
        dep.forward = dep.stage && *dep.stage >= s.index;
        s.dependencies.push_back(std::move(dep));
      };
      if (const auto* copy = inst.as<CopyInstruction>(); copy != nullptr && copy->from) {
        add(DependencyKind::copy_from, *copy->from, "");
      } else if (const auto* run = inst.as<RunInstruction>()) {
        for (const auto& m : run->mounts) {
          if (!m.from.empty()) {
            add(DependencyKind::mount_from, m.from, m.target);
          }
        }
      }
    }
  }
  return out;
}

Result<int> select_target(const StageGraph& graph, std::string_view target) {
  if (graph.stages.empty()) {
    return fail(Errc::invalid_argument, "dockerfile contains no stages to build");
  }
  if (target.empty()) {
    return static_cast<int>(graph.stages.size()) - 1;
  }
  if (auto i = graph.find_by_name(target)) {
    return *i;
  }
  std::string msg = "target stage " + str::go_quote(target) + " could not be found";
  std::vector<std::string> names;
  for (const auto& s : graph.stages) {
    if (!s.name.empty()) {
      names.push_back(s.name);
    }
  }
  if (auto m = str::closest_match(target, names)) {
    msg += " (did you mean " + *m + "?)";
  }
  return fail(Errc::not_found, msg);
}

Result<std::vector<int>> stages_needed(const StageGraph& graph, int target, std::string_view file) {
  if (target < 0 || target >= static_cast<int>(graph.stages.size())) {
    return fail(Errc::invalid_argument, "invalid stage index " + std::to_string(target));
  }
  std::set<int> seen;
  std::vector<int> todo = {target};
  while (!todo.empty()) {
    int i = todo.back();
    todo.pop_back();
    if (!seen.insert(i).second) {
      continue;
    }
    const Stage& s = graph.stages[static_cast<size_t>(i)];
    for (const auto& dep : s.dependencies) {
      if (!dep.stage) {
        continue;
      }
      if (dep.forward) {
        const std::string& ref = dep.reference;
        std::string msg =
            dep.kind == DependencyKind::mount_from
                ? "cannot mount from stage " + str::go_quote(ref) + " to " +
                      str::go_quote(dep.mount_target) + ", stage needs to be defined before current command"
                : "cannot copy from stage " + str::go_quote(ref) +
                      ", it needs to be defined before current stage " + str::go_quote(s.display_name());
        return Error(Errc::invalid_argument, msg, SourceLocation{std::string(file), dep.line, dep.column});
      }
      todo.push_back(*dep.stage);
    }
  }
  return std::vector<int>(seen.begin(), seen.end());
}

std::vector<Error> collect_errors(const LoweredFile& lowered, const StageGraphResult* graph,
                                  std::string_view file) {
  std::vector<Error> out = lowered.errors;
  if (graph != nullptr) {
    out.insert(out.end(), graph->errors.begin(), graph->errors.end());
    if (!graph->graph.stages.empty()) {
      const int last = static_cast<int>(graph->graph.stages.size()) - 1;
      auto needed = stages_needed(graph->graph, last, file);
      if (!needed) {
        out.push_back(needed.error());
      }
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const Error& a, const Error& b) {
    return (a.location ? a.location->line : 0) < (b.location ? b.location->line : 0);
  });
  return out;
}

}  // namespace imgbuild::parser
