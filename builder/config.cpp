#include "builder/config.hpp"

#include <cinttypes>
#include <ctime>
#include <map>
#include <set>

#include <fmt/format.h>

#include "parser/lower.hpp"
#include "util/fs.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace {

using parser::Instruction;

std::string env_key(const std::string& entry) {
  size_t eq = entry.find('=');
  return eq == std::string::npos ? entry : entry.substr(0, eq);
}

// The config's Env list with an index from key to position, so that an ENV
// of n pairs costs O(n log n) rather than a scan of the list per pair.
class EnvList {
public:
  explicit EnvList(std::vector<std::string>& env) : m_env(env) {
    for (size_t i = 0; i < env.size(); ++i) {
      m_index.emplace(env_key(env[i]), i);  // the first entry of a key is the one set
    }
  }
  // Replaces the first KEY=… entry, else appends one (Docker's order).
  void set(const std::string& key, const std::string& value) {
    auto [it, added] = m_index.emplace(key, m_env.size());
    if (added) {
      m_env.push_back(key + "=" + value);
    } else {
      m_env[it->second] = key + "=" + value;
    }
  }

private:
  std::vector<std::string>& m_env;
  std::map<std::string, size_t, std::less<>> m_index;
};

Error located(Error e, const parser::InstructionHeader& h) {
  if (!e.location) {
    e.location = SourceLocation{"Dockerfile", h.range.start_line, 0};
  }
  return e;
}

// EXPOSE entry → port keys ("80/tcp"), ranges expanded.
Result<std::vector<std::string>> parse_ports(const std::string& spec) {
  std::string port = spec;
  std::string proto = "tcp";
  size_t slash = spec.rfind('/');
  if (slash != std::string::npos) {
    port = spec.substr(0, slash);
    proto = str::to_lower(spec.substr(slash + 1));
  }
  // ip:hostport:containerport forms keep the container port only.
  size_t colon = port.rfind(':');
  if (colon != std::string::npos) {
    port = port.substr(colon + 1);
  }
  auto parse_num = [&](const std::string& s) -> Result<uint32_t> {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos) {
      return fail(Errc::invalid_argument, fmt::format("invalid containerPort: {}", s));
    }
    uint32_t v = static_cast<uint32_t>(std::stoul(s));
    if (v > 65535) {
      return fail(Errc::invalid_argument, fmt::format("invalid containerPort: {}", s));
    }
    return v;
  };
  std::vector<std::string> out;
  size_t dash = port.find('-');
  if (dash == std::string::npos) {
    TRY(uint32_t p, parse_num(port));
    out.push_back(fmt::format("{}/{}", p, proto));
    return out;
  }
  TRY(uint32_t lo, parse_num(port.substr(0, dash)));
  TRY(uint32_t hi, parse_num(port.substr(dash + 1)));
  if (hi < lo) {
    return fail(Errc::invalid_argument, fmt::format("invalid range specified for containerPort: {}", port));
  }
  for (uint32_t p = lo; p <= hi; ++p) {
    out.push_back(fmt::format("{}/{}", p, proto));
  }
  return out;
}

std::string clean_abs(const std::string& p) { return "/" + fs::clean_path(p); }

}  // namespace

std::string format_rfc3339(int64_t seconds, uint32_t nanos) {
  time_t t = static_cast<time_t>(seconds);
  struct tm tmv {};
  ::gmtime_r(&t, &tmv);
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tmv.tm_year + 1900, tmv.tm_mon + 1,
                                tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec);
  if (nanos != 0) {
    std::string frac = fmt::format("{:09}", nanos);
    while (!frac.empty() && frac.back() == '0') {
      frac.pop_back();
    }
    out += "." + frac;
  }
  return out + "Z";
}

std::string go_duration(int64_t ns) {
  if (ns == 0) {
    return "0s";
  }
  bool neg = ns < 0;
  uint64_t u = neg ? static_cast<uint64_t>(-(ns + 1)) + 1 : static_cast<uint64_t>(ns);
  std::string out;
  auto frac = [](uint64_t v, int digits) {
    // v holds `digits` fractional digits; trim trailing zeros.
    std::string s = fmt::format("{:0{}}", v, digits);
    while (!s.empty() && s.back() == '0') {
      s.pop_back();
    }
    return s.empty() ? std::string() : "." + s;
  };
  if (u < 1000000000ULL) {
    if (u < 1000ULL) {
      out = fmt::format("{}ns", u);
    } else if (u < 1000000ULL) {
      out = fmt::format("{}{}µs", u / 1000, frac(u % 1000, 3));
    } else {
      out = fmt::format("{}{}ms", u / 1000000, frac(u % 1000000, 6));
    }
  } else {
    uint64_t secs = u / 1000000000ULL;
    uint64_t rem = u % 1000000000ULL;
    uint64_t h = secs / 3600;
    uint64_t m = (secs / 60) % 60;
    uint64_t s = secs % 60;
    if (h > 0) {
      out += fmt::format("{}h", h);
    }
    if (h > 0 || m > 0) {
      out += fmt::format("{}m", m);
    }
    out += fmt::format("{}{}s", s, frac(rem, 9));
  }
  return neg ? "-" + out : out;
}

std::string go_quote_list(const std::vector<std::string>& items) {
  std::vector<std::string> q;
  q.reserve(items.size());
  for (const auto& i : items) {
    q.push_back(str::go_quote(i));
  }
  return "[" + str::join(q, " ") + "]";
}

StageState start_stage(const std::optional<image::ImageConfig>& base, const Platform& platform,
                       std::string created) {
  StageState st;
  st.created = std::move(created);
  if (base) {
    st.image = *base;
    if (!st.image.config) {
      st.image.config = image::ContainerConfig{};
    }
  } else {
    st.image.architecture = platform.architecture;
    st.image.os = platform.os;
    st.image.variant = platform.variant;
    st.image.config = image::ContainerConfig{};
    st.image.config->working_dir = "/";
  }
  st.image.rootfs.type = "layers";
  bool has_path = false;
  for (const auto& e : st.image.config->env) {
    if (env_key(e) == "PATH") {
      has_path = true;
    }
  }
  if (!has_path) {
    st.image.config->env.push_back(std::string("PATH=") + k_default_path);
  }
  st.env = parser::ShellEnv(st.image.config->env);
  return st;
}

void add_history(StageState& state, std::string created_by, bool with_layer, bool buildkit_suffix) {
  image::HistoryEntry h;
  if (with_layer || !state.defer_empty_created) {
    h.created = state.created;
  }
  h.created_by = std::move(created_by);
  if (buildkit_suffix) {
    h.created_by += " # buildkit";
  }
  h.comment = k_history_comment;
  h.empty_layer = !with_layer;
  state.image.history.push_back(std::move(h));
}

std::string fill_history_created(std::vector<image::HistoryEntry>& history) {
  // The time undated entries at the start take: the first dated entry after
  // an undated one, else the last dated entry.
  std::string fill;
  bool seen_undated = false;
  for (const auto& h : history) {
    if (h.created.empty()) {
      seen_undated = true;
    } else {
      fill = h.created;
      if (seen_undated) {
        break;
      }
    }
  }
  seen_undated = false;
  for (auto& h : history) {
    if (h.created.empty()) {
      seen_undated = true;
      h.created = fill;
    } else if (seen_undated) {
      fill = h.created;
    }
  }
  return history.empty() ? "" : history.back().created;
}

std::vector<std::string> with_shell(const StageState& state, const parser::CommandLine& command) {
  if (!command.prepend_shell()) {
    return command.args;
  }
  std::vector<std::string> out = state.image.config->shell;
  if (out.empty()) {
    out = {"/bin/sh", "-c"};
  }
  out.push_back(str::join(command.args, " "));
  return out;
}

std::string run_history_text(const StageState& state, const std::vector<std::string>& argv) {
  std::vector<std::string> pairs;
  std::map<std::string, size_t> index;
  for (const auto& a : state.args) {
    const std::string* v = state.env.get(a.name);
    std::string value = v != nullptr ? *v : a.value.value_or("");
    std::string kv = a.name + "=" + value;
    auto it = index.find(a.name);
    if (it != index.end()) {
      pairs[it->second] = kv;
    } else {
      index[a.name] = pairs.size();
      pairs.push_back(kv);
    }
  }
  std::vector<std::string> parts;
  if (!pairs.empty()) {
    parts.push_back(fmt::format("|{}", pairs.size()));
    parts.insert(parts.end(), pairs.begin(), pairs.end());
  }
  parts.insert(parts.end(), argv.begin(), argv.end());
  return "RUN " + str::join(parts, " ");
}

std::vector<std::string> run_environment(const StageState& state,
                                         const std::map<std::string, std::string>& build_args) {
  std::vector<std::string> env = state.env.entries();
  for (const auto& [k, v] : build_args) {
    if (is_proxy_arg(k) && state.env.get(k) == nullptr) {
      env.push_back(k + "=" + v);
    }
  }
  return env;
}

bool is_metadata(const Instruction& instruction) {
  return !(instruction.as<parser::RunInstruction>() || instruction.as<parser::CopyInstruction>() ||
           instruction.as<parser::AddInstruction>() || instruction.as<parser::FromInstruction>());
}

void apply_build_labels(StageState& state, const std::map<std::string, std::string>& labels) {
  for (const auto& [k, v] : labels) {
    state.image.config->labels[k] = v;
  }
}

Result<MetadataEffect> apply_metadata(StageState& state, const Instruction& instruction, const ArgInputs& inputs,
                                      char escape) {
  parser::Lexer lexer(escape);
  image::ContainerConfig& cfg = *state.image.config;
  MetadataEffect effect;
  const parser::InstructionHeader& header = instruction.header();
  auto word = [&](const std::string& w) -> Result<std::string> {
    auto r = lexer.process_word(w, state.env);
    if (!r) {
      return fail(located(std::move(r).error(), header));
    }
    return std::move(r).value();
  };

  if (const auto* env = instruction.as<parser::EnvInstruction>()) {
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& kv : env->pairs) {
      TRY(std::string k, word(kv.key));
      TRY(std::string v, word(kv.value));
      pairs.emplace_back(std::move(k), std::move(v));
    }
    std::string msg = "ENV";
    EnvList env_list(cfg.env);
    for (const auto& [k, v] : pairs) {
      msg += " " + k + "=" + v;
      env_list.set(k, v);
      state.env.set(k, v);
    }
    add_history(state, msg, false, false);
  } else if (const auto* label = instruction.as<parser::LabelInstruction>()) {
    std::string msg = "LABEL";
    std::vector<std::pair<std::string, std::string>> pairs;
    for (const auto& kv : label->pairs) {
      TRY(std::string k, word(kv.key));
      TRY(std::string v, word(kv.value));
      pairs.emplace_back(std::move(k), std::move(v));
    }
    for (const auto& [k, v] : pairs) {
      cfg.labels[k] = v;
      msg += " " + k + "=" + v;
    }
    add_history(state, msg, false, false);
  } else if (const auto* expose = instruction.as<parser::ExposeInstruction>()) {
    std::set<std::string> ports;
    for (const auto& p : expose->ports) {
      auto words = lexer.process_words(p, state.env);
      if (!words) {
        return fail(located(std::move(words).error(), header));
      }
      for (const auto& w : *words) {
        auto keys = parse_ports(w);
        if (!keys) {
          return fail(located(std::move(keys).error(), header));
        }
        ports.insert(keys->begin(), keys->end());
      }
    }
    std::vector<std::string> shown;
    for (const auto& p : ports) {
      cfg.exposed_ports.insert(p);
      shown.push_back(p + ":{}");
    }
    add_history(state, "EXPOSE map[" + str::join(shown, " ") + "]", false, false);
  } else if (const auto* volume = instruction.as<parser::VolumeInstruction>()) {
    std::vector<std::string> vols;
    for (const auto& p : volume->paths) {
      TRY(std::string v, word(p));
      v = std::string(str::trim(v));
      if (v.empty()) {
        return fail(located(Error(Errc::invalid_argument, "VOLUME specified can not be an empty string"), header));
      }
      vols.push_back(v);
    }
    for (const auto& v : vols) {
      cfg.volumes.insert(v);
    }
    add_history(state, "VOLUME [" + str::join(vols, " ") + "]", false, false);
  } else if (const auto* user = instruction.as<parser::UserInstruction>()) {
    TRY(std::string u, word(user->user));
    cfg.user = u;
    add_history(state, "USER " + u, false, false);
  } else if (const auto* workdir = instruction.as<parser::WorkdirInstruction>()) {
    TRY(std::string p, word(workdir->path));
    // BuildKit's rule: an absolute path is kept as written ("/a/b/../c",
    // "/srv/"), a relative one is joined to the current directory and
    // cleaned; an empty one leaves the current directory. The directory
    // made, and a RUN's cwd, are the cleaned path.
    const std::string& cur = cfg.working_dir;
    std::string wd = p.starts_with("/")                  ? p
                     : p.empty() && cur.starts_with("/") ? cur
                                                         : clean_abs(cur + "/" + p);
    cfg.working_dir = wd;
    effect.mkdir = wd;
  } else if (const auto* stop = instruction.as<parser::StopsignalInstruction>()) {
    TRY(std::string s, word(stop->signal));
    auto valid = parser::validate_signal(s);
    if (!valid) {
      return fail(located(std::move(valid).error(), header));
    }
    cfg.stop_signal = s;
    add_history(state, "STOPSIGNAL " + s, false, false);
  } else if (const auto* shell = instruction.as<parser::ShellInstruction>()) {
    cfg.shell = shell->shell;
    add_history(state, "SHELL [" + str::join(shell->shell, " ") + "]", false, false);
  } else if (const auto* maint = instruction.as<parser::MaintainerInstruction>()) {
    state.image.author = maint->maintainer;
    add_history(state, "MAINTAINER " + maint->maintainer, false, false);
  } else if (const auto* onbuild = instruction.as<parser::OnbuildInstruction>()) {
    cfg.on_build.push_back(onbuild->trigger);
  } else if (const auto* cmd = instruction.as<parser::CmdInstruction>()) {
    std::vector<std::string> args = with_shell(state, cmd->command);
    cfg.cmd = args;
    cfg.args_escaped = true;
    state.cmd_set = true;
    add_history(state, "CMD " + go_quote_list(args), false, false);
  } else if (const auto* ep = instruction.as<parser::EntrypointInstruction>()) {
    std::vector<std::string> args = with_shell(state, ep->command);
    cfg.entrypoint = args;
    if (!state.cmd_set) {
      cfg.cmd.reset();
    }
    add_history(state, "ENTRYPOINT " + go_quote_list(args), false, false);
  } else if (const auto* hc = instruction.as<parser::HealthcheckInstruction>()) {
    image::Healthcheck h;
    h.test = hc->test;
    if (hc->none) {
      h.test = {"NONE"};
    }
    h.interval = hc->interval_ns.value_or(0);
    h.timeout = hc->timeout_ns.value_or(0);
    h.start_period = hc->start_period_ns.value_or(0);
    h.start_interval = hc->start_interval_ns.value_or(0);
    h.retries = hc->retries.value_or(0);
    cfg.healthcheck = h;
    std::string retries = h.retries >= 0x20 && h.retries < 0x7f
                              ? fmt::format("'{}'", static_cast<char>(h.retries))
                              : fmt::format("'\\x{:02x}'", h.retries);
    add_history(state,
                fmt::format("HEALTHCHECK &{{{} {} {} {} {} {}}}", go_quote_list(h.test),
                            str::go_quote(go_duration(h.interval)), str::go_quote(go_duration(h.timeout)),
                            str::go_quote(go_duration(h.start_period)),
                            str::go_quote(go_duration(h.start_interval)), retries),
                false, false);
  } else if (const auto* arg = instruction.as<parser::ArgInstruction>()) {
    std::vector<std::string> shown;
    for (const auto& decl : arg->args) {
      std::optional<std::string> value;
      bool has_build_arg = inputs.build_args != nullptr && inputs.build_args->count(decl.name) > 0;
      if (has_build_arg) {
        value = inputs.build_args->at(decl.name);
      } else if (decl.default_value) {
        TRY(std::string v, word(*decl.default_value));
        value = v;
      } else if (inputs.global_args != nullptr) {
        for (const auto& [k, v] : *inputs.global_args) {
          if (k == decl.name) {
            value = v;
          }
        }
      }
      if (value) {
        state.env.set(decl.name, *value);
      }
      state.args.push_back(DeclaredArg{decl.name, value});
      shown.push_back(value ? decl.name + "=" + *value : decl.name);
    }
    add_history(state, "ARG " + str::join(shown, " "), false, false);
  } else {
    return fail(Errc::internal, fmt::format("{} is not a metadata instruction", instruction.name()));
  }
  return effect;
}

}  // namespace imgbuild::builder
