#include "parser/json.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace imgbuild::parser {

namespace {

using Json = nlohmann::ordered_json;

template <class... Fs>
struct Overload : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overload(Fs...) -> Overload<Fs...>;

Json optional_string(const std::optional<std::string>& v) { return v ? Json(*v) : Json(nullptr); }

template <class T>
Json optional_number(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

Json command_json(const CommandLine& c) {
  Json j;
  j["form"] = c.json_form ? "exec" : "shell";
  j["args"] = c.args;
  return j;
}

Json heredoc_json(const Heredoc& h) {
  Json j;
  j["name"] = h.name;
  j["file_descriptor"] = h.file_descriptor;
  j["expand"] = h.expand;
  j["chomp"] = h.chomp;
  j["content"] = h.content;
  return j;
}

Json heredocs_json(const std::vector<Heredoc>& hs) {
  Json j = Json::array();
  for (const auto& h : hs) {
    j.push_back(heredoc_json(h));
  }
  return j;
}

Json mount_json(const Mount& m) {
  Json j;
  j["type"] = to_string(m.type);
  j["from"] = m.from;
  j["source"] = m.source;
  j["target"] = m.target;
  j["read_only"] = m.read_only;
  j["id"] = m.id;
  j["sharing"] = m.sharing ? Json(to_string(*m.sharing)) : Json(nullptr);
  j["required"] = m.required;
  j["size"] = optional_number(m.size_limit);
  j["mode"] = optional_number(m.mode);
  j["uid"] = optional_number(m.uid);
  j["gid"] = optional_number(m.gid);
  j["env"] = optional_string(m.env);
  return j;
}

Json pairs_json(const std::vector<KeyValue>& pairs) {
  Json j = Json::array();
  for (const auto& kv : pairs) {
    j.push_back(Json{{"key", kv.key}, {"value", kv.value}});
  }
  return j;
}

Json instruction_json(const Instruction& inst);

void add_body(Json& j, const InstructionVariant& node) {
  std::visit(
      Overload{
          [&](const FromInstruction& i) {
            j["image"] = i.image;
            j["platform"] = optional_string(i.platform);
            j["stage_name"] = i.stage_name;
          },
          [&](const RunInstruction& i) {
            j["command"] = command_json(i.command);
            j["heredocs"] = heredocs_json(i.heredocs);
            Json mounts = Json::array();
            for (const auto& m : i.mounts) {
              mounts.push_back(mount_json(m));
            }
            j["mounts"] = mounts;
            j["network"] = optional_string(i.network);
            j["security"] = optional_string(i.security);
            j["devices"] = i.devices;
          },
          [&](const CmdInstruction& i) { j["command"] = command_json(i.command); },
          [&](const EntrypointInstruction& i) { j["command"] = command_json(i.command); },
          [&](const EnvInstruction& i) {
            j["pairs"] = pairs_json(i.pairs);
            j["legacy_form"] = i.legacy_form;
          },
          [&](const LabelInstruction& i) {
            j["pairs"] = pairs_json(i.pairs);
            j["legacy_form"] = i.legacy_form;
          },
          [&](const ExposeInstruction& i) { j["ports"] = i.ports; },
          [&](const VolumeInstruction& i) {
            j["paths"] = i.paths;
            j["json_form"] = i.json_form;
          },
          [&](const UserInstruction& i) { j["user"] = i.user; },
          [&](const WorkdirInstruction& i) { j["path"] = i.path; },
          [&](const ArgInstruction& i) {
            Json args = Json::array();
            for (const auto& a : i.args) {
              args.push_back(Json{{"name", a.name}, {"default", optional_string(a.default_value)}});
            }
            j["args"] = args;
          },
          [&](const OnbuildInstruction& i) {
            j["trigger"] = i.trigger;
            j["lowered"] = i.lowered.empty() ? Json(nullptr) : instruction_json(i.lowered.front());
            j["trigger_error"] = optional_string(i.trigger_error);
          },
          [&](const StopsignalInstruction& i) { j["signal"] = i.signal; },
          [&](const HealthcheckInstruction& i) {
            j["test"] = i.test;
            j["interval_ns"] = optional_number(i.interval_ns);
            j["timeout_ns"] = optional_number(i.timeout_ns);
            j["start_period_ns"] = optional_number(i.start_period_ns);
            j["start_interval_ns"] = optional_number(i.start_interval_ns);
            j["retries"] = optional_number(i.retries);
          },
          [&](const ShellInstruction& i) { j["shell"] = i.shell; },
          [&](const MaintainerInstruction& i) { j["maintainer"] = i.maintainer; },
          [&](const CopyInstruction& i) {
            j["sources"] = i.sources;
            j["inline_sources"] = heredocs_json(i.inline_sources);
            j["dest"] = i.dest;
            j["from"] = optional_string(i.from);
            j["chown"] = optional_string(i.chown);
            j["chmod"] = optional_string(i.chmod);
            j["link"] = i.link;
            j["parents"] = i.parents;
            j["excludes"] = i.excludes;
          },
          [&](const AddInstruction& i) {
            j["sources"] = i.sources;
            j["inline_sources"] = heredocs_json(i.inline_sources);
            j["dest"] = i.dest;
            j["chown"] = optional_string(i.chown);
            j["chmod"] = optional_string(i.chmod);
            j["checksum"] = optional_string(i.checksum);
            j["link"] = i.link;
            j["keep_git_dir"] = i.keep_git_dir;
            j["unpack"] = i.unpack ? Json(*i.unpack) : Json(nullptr);
            j["excludes"] = i.excludes;
          },
      },
      node);
}

Json instruction_json(const Instruction& inst) {
  const InstructionHeader& h = inst.header();
  Json j;
  j["instruction"] = inst.name();
  j["keyword"] = h.keyword;
  j["start_line"] = h.range.start_line;
  j["start_column"] = h.range.start_column;
  j["end_line"] = h.range.end_line;
  j["original"] = h.original;
  Json flags = Json::array();
  for (const auto& f : h.flags) {
    flags.push_back(Json{{"name", f.name}, {"value", f.has_value ? Json(f.value) : Json(nullptr)}});
  }
  j["flags"] = flags;
  add_body(j, inst.node);
  return j;
}

Json error_json(const Error& e) {
  Json j;
  j["line"] = e.location ? e.location->line : 0;
  j["column"] = e.location ? e.location->column : 0;
  j["message"] = e.message;
  return j;
}

const char* kind_name(DependencyKind k) {
  switch (k) {
    case DependencyKind::base: return "base";
    case DependencyKind::copy_from: return "copy_from";
    case DependencyKind::mount_from: return "mount_from";
  }
  return "base";
}

}  // namespace

std::string to_json(const Ast& ast, const LoweredFile& lowered, const StageGraphResult* graph,
                    std::string_view file) {
  Json root;
  root["version"] = k_json_format_version;
  root["file"] = std::string(file);
  root["escape"] = std::string(1, lowered.escape);
  Json directives = Json::array();
  for (const auto& d : ast.directives) {
    directives.push_back(Json{{"key", d.key}, {"value", d.value}, {"line", d.line}});
  }
  root["directives"] = directives;

  // Instructions are numbered in source order; stages refer to them.
  Json instructions = Json::array();
  for (const auto& inst : lowered.instructions) {
    instructions.push_back(instruction_json(inst));
  }
  root["instructions"] = instructions;

  Json stages = Json::array();
  Json global_args = Json::array();
  if (graph != nullptr) {
    size_t next = 0;
    auto index_of_line = [&](int line) -> Json {
      for (size_t i = next; i < lowered.instructions.size(); ++i) {
        if (lowered.instructions[i].header().range.start_line == line) {
          next = i + 1;
          return Json(i);
        }
      }
      return Json(nullptr);
    };
    for (const auto& a : graph->graph.global_args) {
      global_args.push_back(index_of_line(a.header.range.start_line));
    }
    for (const auto& s : graph->graph.stages) {
      Json js;
      js["index"] = s.index;
      js["name"] = s.name.empty() ? Json(nullptr) : Json(s.name);
      js["base"] = s.base;
      js["start_line"] = s.from.header.range.start_line;
      js["end_line"] = s.instructions.empty() ? s.from.header.range.end_line
                                              : s.instructions.back().header().range.end_line;
      Json members = Json::array();
      members.push_back(index_of_line(s.from.header.range.start_line));
      for (const auto& inst : s.instructions) {
        members.push_back(index_of_line(inst.header().range.start_line));
      }
      js["instructions"] = members;
      Json deps = Json::array();
      for (const auto& d : s.dependencies) {
        Json jd;
        jd["kind"] = kind_name(d.kind);
        jd["reference"] = d.reference;
        jd["stage"] = d.stage ? Json(*d.stage) : Json(nullptr);
        jd["line"] = d.line;
        jd["forward"] = d.forward;
        deps.push_back(jd);
      }
      js["dependencies"] = deps;
      stages.push_back(js);
    }
  }
  root["global_args"] = global_args;
  root["stages"] = stages;

  // The default target (the last stage) and the stages it needs.
  Json target = nullptr;
  Json needed = Json::array();
  if (graph != nullptr && !graph->graph.stages.empty()) {
    const int last = static_cast<int>(graph->graph.stages.size()) - 1;
    target = last;
    if (auto n = stages_needed(graph->graph, last, file)) {
      needed = *n;
    }
  }
  root["target"] = target;
  root["needed_stages"] = needed;
  Json errors = Json::array();
  for (const auto& e : collect_errors(lowered, graph, file)) {
    errors.push_back(error_json(e));
  }
  root["errors"] = errors;
  return root.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string dockerfile_json(const Ast& ast, std::string_view file, bool& ok) {
  LoweredFile lowered = lower(ast, file);
  StageGraphOptions options;
  options.file = std::string(file);
  StageGraphResult graph = build_stage_graph(lowered.instructions, options);
  ok = collect_errors(lowered, &graph, file).empty();
  return to_json(ast, lowered, &graph, file);
}

}  // namespace imgbuild::parser
