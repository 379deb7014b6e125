#include "parser/checks.hpp"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

#include "parser/shell.hpp"
#include "util/platform.hpp"
#include "util/strings.hpp"

namespace imgbuild::parser {

namespace {

constexpr std::string_view k_default_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::string_view k_check_build_arg = "BUILDKIT_DOCKERFILE_CHECK";
constexpr size_t k_max_suggestion_candidates = 2048;

// ---------------------------------------------------------------------------
// The rule table.

const std::vector<CheckRule> k_rules = {
    {"StageNameCasing", "Stage names should be lowercase", false, true},
    {"FromAsCasing", "The 'as' keyword should match the case of the 'from' keyword", false, true},
    {"NoEmptyContinuation", "Empty continuation lines will become errors in a future release", false,
     true},
    {"ConsistentInstructionCasing",
     "All commands within the Dockerfile should use the same casing (either upper or lower)", false,
     true},
    {"DuplicateStageName", "Stage names should be unique", false, true},
    {"ReservedStageName", "Reserved words should not be used as stage names", false, true},
    {"JSONArgsRecommended",
     "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS "
     "signals",
     false, true},
    {"MaintainerDeprecated",
     "The MAINTAINER instruction is deprecated, use a label instead to define an image author", false,
     true},
    {"UndefinedArgInFrom", "FROM command must use declared ARGs", false, true},
    {"WorkdirRelativePath",
     "Relative workdir without an absolute workdir declared within the build can have unexpected "
     "results if the base image changes",
     false, true},
    {"UndefinedVar", "Variables should be defined before their use", false, true},
    {"MultipleInstructionsDisallowed",
     "Multiple instructions of the same type should not be used in the same stage", false, true},
    {"LegacyKeyValueFormat", "Legacy key/value format with whitespace separator should not be used",
     false, true},
    {"InvalidBaseImagePlatform", "Base image platform does not match expected target platform", false,
     false},
    {"RedundantTargetPlatform",
     "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default "
     "behavior",
     false, true},
    {"SecretsUsedInArgOrEnv", "Sensitive data should not be used in the ARG or ENV commands", false,
     true},
    {"InvalidDefaultArgInFrom",
     "Default value for global ARG results in an empty or invalid base image name", false, true},
    {"FromPlatformFlagConstDisallowed", "FROM --platform flag should not use a constant value", false,
     true},
    {"CopyIgnoredFile", "Attempting to Copy file that is excluded by .dockerignore", true, true},
    {"InvalidDefinitionDescription",
     "Comment for build stage or argument should follow the format: `# <arg/stage name> "
     "<description>`. If this is not intended to be a description comment, add an empty line or "
     "comment between the instruction and the comment.",
     true, true},
    {"ExposeProtoCasing", "Protocol in EXPOSE instruction should be lowercase", false, true},
    {"ExposeInvalidFormat",
     "IP address and host-port mapping should not be used in EXPOSE instruction. This will become "
     "an error in a future release",
     false, true},
};

// ---------------------------------------------------------------------------
// Small helpers.

bool is_lower(std::string_view s) { return str::to_lower(s) == s; }
bool is_upper(std::string_view s) { return str::to_upper(s) == s; }

bool is_alnum_lower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_alnum_lower(c) || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// BuildKit's suggest.Search, case-sensitive: the candidate with the smallest
// Levenshtein distance below 3 (first one wins a tie).
std::string suggest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  // A hint is a convenience: past a few thousand candidates the search would
  // make the check quadratic in the size of the file, so it is skipped.
  if (candidates.size() > k_max_suggestion_candidates) {
    return best;
  }
  size_t best_distance = 3;
  for (const auto& c : candidates) {
    if (c == word) {
      return c;
    }
    // The distance is at least the length difference; very long names are
    // not worth a quadratic comparison.
    size_t diff = c.size() > word.size() ? c.size() - word.size() : word.size() - c.size();
    if (diff >= best_distance || c.size() > 256 || word.size() > 256) {
      continue;
    }
    size_t d = str::edit_distance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

// Go's strconv.ParseBool.
std::optional<bool> go_parse_bool(std::string_view s) {
  if (s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "true" || s == "True") {
    return true;
  }
  if (s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "false" || s == "False") {
    return false;
  }
  return std::nullopt;
}

std::set<std::string> split_rule_list(std::string_view v) {
  std::set<std::string> out;
  for (const auto& part : str::split(v, ',')) {
    out.insert(std::string(str::trim(part)));
  }
  return out;
}

// The secret-name heuristics: a '_'-separated part of the key equal to one
// of the tokens (case-insensitive), unless another part is an allowed token.
bool has_token(std::string_view key, std::initializer_list<std::string_view> tokens) {
  for (const auto& part : str::split(str::to_lower(key), '_')) {
    for (auto t : tokens) {
      if (part == t) {
        return true;
      }
    }
  }
  return false;
}

bool is_secret_name(std::string_view key) {
  return has_token(key, {"apikey", "auth", "credential", "credentials", "key", "password", "pword",
                         "passwd", "secret", "token"}) &&
         !has_token(key, {"public", "file", "version"});
}

// ---------------------------------------------------------------------------
// Image references (distribution/reference ParseNormalizedNamed).

// pathComponent: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
bool valid_path_component(std::string_view s) {
  size_t i = 0;
  auto alnum_run = [&]() {
    size_t start = i;
    while (i < s.size() && is_alnum_lower(s[i])) {
      ++i;
    }
    return i > start;
  };
  if (!alnum_run()) {
    return false;
  }
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && !is_alnum_lower(s[i])) {
      ++i;
    }
    std::string_view sep = s.substr(start, i - start);
    bool dashes = !sep.empty() && std::all_of(sep.begin(), sep.end(), [](char c) { return c == '-'; });
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) {
      return false;
    }
    if (!alnum_run()) {
      return false;
    }
  }
  return true;
}

bool valid_domain(std::string_view d) {
  if (d.empty()) {
    return false;
  }
  std::string_view host = d;
  size_t colon = std::string_view::npos;
  if (d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos) {
      return false;
    }
    std::string_view inner = d.substr(1, close - 1);
    if (inner.empty() || !std::all_of(inner.begin(), inner.end(), [](char c) {
          return is_hex(c) || c == ':';
        })) {
      return false;
    }
    std::string_view rest = d.substr(close + 1);
    if (rest.empty()) {
      return true;
    }
    if (rest.front() != ':') {
      return false;
    }
    std::string_view port = rest.substr(1);
    return !port.empty() && std::all_of(port.begin(), port.end(), is_digit);
  }
  colon = d.rfind(':');
  if (colon != std::string_view::npos) {
    std::string_view port = d.substr(colon + 1);
    if (port.empty() || !std::all_of(port.begin(), port.end(), is_digit)) {
      return false;
    }
    host = d.substr(0, colon);
  }
  for (const auto& comp : str::split(host, '.')) {
    if (comp.empty() || !is_alnum(comp.front()) || !is_alnum(comp.back())) {
      return false;
    }
    if (!std::all_of(comp.begin(), comp.end(), [](char c) { return is_alnum(c) || c == '-'; })) {
      return false;
    }
  }
  return true;
}

bool valid_tag(std::string_view t) {
  auto word = [](char c) { return is_alnum(c) || c == '_'; };
  if (t.empty() || t.size() > 128 || !word(t.front())) {
    return false;
  }
  return std::all_of(t.begin(), t.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

bool valid_digest(std::string_view d) {
  size_t colon = d.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return false;
  }
  std::string_view alg = d.substr(0, colon);
  std::string_view hex = d.substr(colon + 1);
  if (!((alg.front() >= 'a' && alg.front() <= 'z') || (alg.front() >= 'A' && alg.front() <= 'Z'))) {
    return false;
  }
  if (!std::all_of(alg.begin(), alg.end(),
                   [](char c) { return is_alnum(c) || c == '-' || c == '_' || c == '+' || c == '.'; })) {
    return false;
  }
  if (hex.size() < 32 || !std::all_of(hex.begin(), hex.end(), is_hex)) {
    return false;
  }
  if (alg == "sha256") {
    return hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) { return !(c >= 'A' && c <= 'F'); });
  }
  return true;
}

// ---------------------------------------------------------------------------
// Expansion of one word, reporting the unset names.

struct Expanded {
  std::string word;
  std::vector<std::string> words;
  std::vector<std::string> used;
  std::vector<std::string> unset;
};

std::optional<Expanded> expand(const Lexer& lexer, std::string_view word, const ShellEnv& env) {
  auto r = lexer.expand(word, env);
  if (!r) {
    return std::nullopt;
  }
  return Expanded{std::move(r->word), std::move(r->words), std::move(r->used), std::move(r->unset)};
}

// What one stage has accumulated at a point of its dispatch.
struct StageState {
  ShellEnv env;
  bool env_known = true;
  /// Names declared with ARG in the stage (BuildKit's d.buildArgs).
  std::set<std::string> arg_names;
  bool shell_set = false;
  bool workdir_set = false;
};

struct StageInfo {
  const FromInstruction* from = nullptr;
  std::vector<const Instruction*> instructions;
  std::string name;  // lower-cased
  StageState final_state;
};

bool is_non_env_arg(std::string_view name) {
  return name == "BUILDKIT_SBOM_SCAN_CONTEXT" || name == "BUILDKIT_SBOM_SCAN_STAGE";
}

// Go's path.Clean for the CopyIgnoredFile source path.
std::string clean_path(std::string_view p) {
  if (p.empty()) {
    return ".";
  }
  bool rooted = p.front() == '/';
  std::vector<std::string> out;
  for (const auto& part : str::split(p, '/')) {
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      if (!out.empty() && out.back() != "..") {
        out.pop_back();
      } else if (!rooted) {
        out.push_back(part);
      }
      continue;
    }
    out.push_back(part);
  }
  std::string joined = str::join(out, "/");
  if (rooted) {
    return "/" + joined;
  }
  return joined.empty() ? "." : joined;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool is_remote_source(std::string_view s) {
  return starts_with(s, "http://") || starts_with(s, "https://") || starts_with(s, "git@") ||
         starts_with(s, "git://") || starts_with(s, "ssh://");
}

// ---------------------------------------------------------------------------
// The analysis: everything the rule functions look at.

class Analysis {
public:
  Analysis(const Ast& ast, const LoweredFile& lowered, const CheckOptions& options, CheckReport& report)
      : m_ast(ast), m_lowered(lowered), m_options(options), m_report(report),
        m_lexer(lowered.escape) {
    for (const auto& kv : options.build_args) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos) {
        m_build_args.set(kv, "");
      } else {
        m_build_args.set(kv.substr(0, eq), kv.substr(eq + 1));
      }
    }
    split_stages();
  }

  void parse_time_rules();
  void stage_rules();
  void from_rules();
  void dispatch_rules();

private:
  void emit(std::string_view rule, std::string message, const InstructionHeader& h) {
    m_report.report(rule, std::move(message), h.range.start_line, h.range.end_line);
  }

  void split_stages();
  ShellEnv predefined_args() const;
  // Global ARG values (BuildKit's buildMetaArgs); with_build_args=false
  // uses defaults only. Returns nullopt when a default fails to expand.
  std::optional<ShellEnv> meta_args(bool with_build_args) const;
  std::vector<std::string> declared_meta_args() const;

  void definition_description(const char* instruction, const std::vector<std::string>& keys,
                              const InstructionHeader& h);
  void report_unmatched(const std::vector<std::string>& unset, const StageState& st,
                        const InstructionHeader& h);
  // Expands a word for an instruction of the stage, reporting unset names.
  std::string expand_word(std::string_view word, const StageState& st, const InstructionHeader& h,
                          const Lexer& lexer);
  void dispatch(StageInfo& stage, StageState& st, bool lint);
  void dispatch_instruction(const Instruction& inst, StageState& st, bool lint,
                            std::map<std::string, const InstructionHeader*>& once);

  const Ast& m_ast;
  const LoweredFile& m_lowered;
  const CheckOptions& m_options;
  CheckReport& m_report;
  Lexer m_lexer;
  ShellEnv m_build_args;
  std::vector<const ArgInstruction*> m_global_args;
  std::vector<StageInfo> m_stages;
  std::optional<ShellEnv> m_global_env;
};

void Analysis::split_stages() {
  for (const auto& inst : m_lowered.instructions) {
    if (const auto* from = inst.as<FromInstruction>()) {
      StageInfo s;
      s.from = from;
      s.name = from->stage_name;
      m_stages.push_back(std::move(s));
      continue;
    }
    if (m_stages.empty()) {
      if (const auto* arg = inst.as<ArgInstruction>()) {
        m_global_args.push_back(arg);
      }
      continue;
    }
    m_stages.back().instructions.push_back(&inst);
  }
}

ShellEnv Analysis::predefined_args() const {
  auto platform_or_host = [](const std::string& text) {
    auto p = text.empty() ? Result<Platform>(host_platform()) : parse_platform(text);
    return p ? *p : host_platform();
  };
  Platform tp = platform_or_host(m_options.target_platform);
  Platform bp = platform_or_host(m_options.build_platform);
  std::string stage = m_options.target;
  if (stage.empty() && !m_stages.empty()) {
    stage = m_stages.back().name;
  }
  const std::pair<const char*, std::string> values[] = {
      {"BUILDPLATFORM", bp.str()},  {"BUILDOS", bp.os},           {"BUILDARCH", bp.architecture},
      {"BUILDVARIANT", bp.variant}, {"TARGETPLATFORM", tp.str()}, {"TARGETOS", tp.os},
      {"TARGETARCH", tp.architecture}, {"TARGETVARIANT", tp.variant}, {"TARGETSTAGE", stage},
  };
  ShellEnv env;
  for (const auto& [key, value] : values) {
    const std::string* over = m_build_args.get(key);
    env.set(key, over != nullptr ? *over : value);
  }
  return env;
}

std::optional<ShellEnv> Analysis::meta_args(bool with_build_args) const {
  ShellEnv env = predefined_args();
  for (const auto* a : m_global_args) {
    for (const auto& decl : a->args) {
      const std::string* given = with_build_args ? m_build_args.get(decl.name) : nullptr;
      if (given != nullptr) {
        env.set(decl.name, *given);
      } else if (decl.default_value) {
        auto v = m_lexer.process_word(*decl.default_value, env);
        if (!v) {
          return std::nullopt;
        }
        env.set(decl.name, *v);
      }
    }
  }
  return env;
}

std::vector<std::string> Analysis::declared_meta_args() const {
  std::vector<std::string> out;
  for (const auto* a : m_global_args) {
    for (const auto& decl : a->args) {
      out.push_back(decl.name);
    }
  }
  return out;
}

// -- parse-time rules (every instruction, every stage) ------------------------

void Analysis::definition_description(const char* instruction, const std::vector<std::string>& keys,
                                      const InstructionHeader& h) {
  if (h.comments.empty() || keys.empty()) {
    return;
  }
  const std::string& last = h.comments.back();
  std::string first_word = last.substr(0, last.find(' '));
  if (std::find(keys.begin(), keys.end(), first_word) != keys.end()) {
    return;
  }
  std::string example = keys.size() > 1 ? "<arg_key>" : keys.front();
  emit("InvalidDefinitionDescription",
       std::string("Comment for ") + instruction + " should follow the format: `# " + example +
           " <description>`",
       h);
}

void Analysis::parse_time_rules() {
  for (const auto& w : m_ast.warnings) {
    if (w.rule == "NoEmptyContinuation") {
      m_report.report("NoEmptyContinuation", "Empty continuation line", w.line, w.line);
    }
  }
  for (const auto& inst : m_lowered.instructions) {
    const InstructionHeader& h = inst.header();
    if (inst.as<MaintainerInstruction>() != nullptr) {
      emit("MaintainerDeprecated", "Maintainer instruction is deprecated in favor of using label", h);
    } else if (const auto* from = inst.as<FromInstruction>()) {
      if (!from->as_keyword.empty()) {
        if (!is_lower(from->stage_name_as_written)) {
          emit("StageNameCasing", "Stage name '" + from->stage_name_as_written + "' should be lowercase",
               h);
        }
        bool from_lower = is_lower(h.keyword);
        bool from_upper = is_upper(h.keyword);
        if ((from_lower && !is_lower(from->as_keyword)) ||
            (!from_lower && from_upper && !is_upper(from->as_keyword))) {
          emit("FromAsCasing",
               "'" + from->as_keyword + "' and '" + h.keyword + "' keywords' casing do not match", h);
        }
        definition_description("FROM", {from->stage_name}, h);
      }
    } else if (const auto* arg = inst.as<ArgInstruction>()) {
      std::vector<std::string> keys;
      for (const auto& d : arg->args) {
        keys.push_back(d.name);
      }
      definition_description("ARG", keys, h);
    }
  }
}

// -- whole-file stage rules --------------------------------------------------

void Analysis::stage_rules() {
  std::set<std::string> seen;
  for (const auto& s : m_stages) {
    if (s.name.empty()) {
      continue;
    }
    if (s.name == "context" || s.name == "scratch") {
      emit("ReservedStageName",
           "Stage name should not use the same name as reserved stage " + str::go_quote(s.name),
           s.from->header);
    }
    if (!seen.insert(s.name).second) {
      emit("DuplicateStageName",
           "Duplicate stage name " + str::go_quote(s.name) + ", stage names should be unique",
           s.from->header);
    }
  }

  // ConsistentInstructionCasing: FROM and the stage commands (global ARGs
  // are not counted); a tie counts as uppercase.
  int lower = 0;
  int upper = 0;
  auto count = [&](const std::string& kw) {
    if (is_lower(kw)) {
      ++lower;
    } else if (is_upper(kw)) {
      ++upper;
    }
  };
  for (const auto& s : m_stages) {
    count(s.from->header.keyword);
    for (const auto* i : s.instructions) {
      count(i->header().keyword);
    }
  }
  const bool majority_lower = lower > upper;
  auto check = [&](const InstructionHeader& h) {
    const char* casing = nullptr;
    if (majority_lower && !is_lower(h.keyword)) {
      casing = "lowercase";
    } else if (!majority_lower && !is_upper(h.keyword)) {
      casing = "uppercase";
    }
    if (casing != nullptr) {
      emit("ConsistentInstructionCasing",
           "Command '" + h.keyword + "' should match the case of the command majority (" + casing + ")",
           h);
    }
  };
  for (const auto& s : m_stages) {
    check(s.from->header);
    for (const auto* i : s.instructions) {
      check(i->header());
    }
  }

  // InvalidDefaultArgInFrom: the base names with default ARG values only.
  if (auto defaults = meta_args(false)) {
    for (const auto& s : m_stages) {
      auto r = m_lexer.process_word(s.from->image, *defaults);
      if (!r) {
        break;
      }
      if (!is_valid_image_reference(*r)) {
        emit("InvalidDefaultArgInFrom",
             "Default value for ARG " + s.from->image + " results in empty or invalid base image name",
             s.from->header);
      }
    }
  }
}

// -- FROM rules (expansion against the global ARGs) --------------------------

void Analysis::from_rules() {
  m_global_env = meta_args(true);
  if (!m_global_env) {
    return;
  }
  const ShellEnv& env = *m_global_env;
  std::set<std::string> known_set;
  for (const auto& k : declared_meta_args()) {
    known_set.insert(k);
  }
  for (const auto& k : env.keys()) {
    known_set.insert(k);
  }
  const std::vector<std::string> known(known_set.begin(), known_set.end());
  auto undeclared = [&](const std::vector<std::string>& unset, const InstructionHeader& h) {
    for (const auto& name : unset) {
      if (known_set.count(name) != 0) {
        continue;
      }
      std::string msg = "FROM argument '" + name + "' is not declared";
      std::string hint = suggest(name, known);
      if (!hint.empty()) {
        msg += " (did you mean " + hint + "?)";
      }
      emit("UndefinedArgInFrom", std::move(msg), h);
    }
  };
  for (const auto& s : m_stages) {
    const InstructionHeader& h = s.from->header;
    if (auto base = expand(m_lexer, s.from->image, env)) {
      undeclared(base->unset, h);
    }
    if (!s.from->platform) {
      continue;
    }
    auto plat = expand(m_lexer, *s.from->platform, env);
    if (!plat) {
      continue;
    }
    undeclared(plat->unset, h);
    if (plat->used.size() == 1 && plat->unset.empty() && plat->used.front() == "TARGETPLATFORM") {
      const std::string* tp = env.get("TARGETPLATFORM");
      if (tp != nullptr && *tp == plat->word) {
        emit("RedundantTargetPlatform",
             "Setting platform to predefined " + *s.from->platform +
                 " in FROM is redundant as this is the default behavior",
             h);
      }
    }
    if (plat->used.empty() && plat->unset.empty()) {
      if (auto p = parse_platform(plat->word)) {
        if (s.name.find(p->os) == std::string::npos && s.name.find(p->architecture) == std::string::npos) {
          emit("FromPlatformFlagConstDisallowed",
               "FROM --platform flag should not use constant value " + str::go_quote(plat->word), h);
        }
      }
    }
  }
}

// -- dispatch-time rules ----------------------------------------------------

void Analysis::report_unmatched(const std::vector<std::string>& unset, const StageState& st,
                                const InstructionHeader& h) {
  if (!st.env_known) {
    return;
  }
  for (const auto& name : unset) {
    if (st.arg_names.count(name) != 0 || is_non_env_arg(name)) {
      continue;
    }
    std::string msg = "Usage of undefined variable '$" + name + "'";
    std::string hint = suggest(name, st.env.keys());
    if (!hint.empty()) {
      msg += " (did you mean $" + hint + "?)";
    }
    emit("UndefinedVar", std::move(msg), h);
  }
}

std::string Analysis::expand_word(std::string_view word, const StageState& st,
                                  const InstructionHeader& h, const Lexer& lexer) {
  auto r = expand(lexer, word, st.env);
  if (!r) {
    return std::string(word);
  }
  report_unmatched(r->unset, st, h);
  return r->word;
}

void Analysis::dispatch_instruction(const Instruction& inst, StageState& st, bool lint,
                                    std::map<std::string, const InstructionHeader*>& once) {
  const InstructionHeader& h = inst.header();
  // Without lint the state is still advanced (a later stage may build on
  // this one) but nothing is reported.
  auto word = [&](std::string_view w) {
    if (lint) {
      return expand_word(w, st, h, m_lexer);
    }
    auto r = m_lexer.process_word(w, st.env);
    return r ? *r : std::string(w);
  };
  auto used_once = [&](const char* kind) {
    auto it = once.find(kind);
    if (it != once.end() && lint) {
      const InstructionHeader& prev = *it->second;
      emit("MultipleInstructionsDisallowed",
           "Multiple " + h.keyword +
               " instructions should not be used in the same stage because only the last one will be used",
           prev);
    }
    once[kind] = &h;
  };
  auto legacy = [&](bool legacy_form) {
    if (legacy_form && lint) {
      emit("LegacyKeyValueFormat",
           "\"" + h.keyword + " key=value\" should be used instead of legacy \"" + h.keyword +
               " key value\" format",
           h);
    }
  };
  auto secret = [&](const char* instruction, const std::string& key) {
    if (lint && is_secret_name(key)) {
      emit("SecretsUsedInArgOrEnv",
           std::string("Do not use ARG or ENV instructions for sensitive data (") + instruction + " " +
               str::go_quote(key) + ")",
           h);
    }
  };
  auto copy_sources = [&](const char* cmd, const std::vector<std::string>& sources,
                          const std::vector<Heredoc>& inline_sources, bool from_context) {
    std::vector<std::string> expanded;
    for (const auto& s : sources) {
      expanded.push_back(word(s));
    }
    LexerOptions raw;
    raw.escape = '\\';
    raw.process_quotes = false;
    const Lexer raw_lexer(raw);
    for (const auto& hd : inline_sources) {
      if (hd.expand && lint) {
        expand_word(heredoc_body(hd), st, h, raw_lexer);
      }
    }
    if (!lint || !from_context || !m_options.dockerignore_excludes) {
      return;
    }
    for (const auto& s : expanded) {
      if (is_remote_source(s)) {
        continue;
      }
      std::string p = clean_path(s);
      if (p == "." || p == "/") {
        continue;
      }
      std::string rel = p.front() == '/' ? p.substr(1) : p;
      if (m_options.dockerignore_excludes(rel)) {
        emit("CopyIgnoredFile",
             std::string("Attempting to ") + cmd + " file " + str::go_quote(p) +
                 " that is excluded by .dockerignore",
             h);
      }
    }
  };

  if (const auto* env = inst.as<EnvInstruction>()) {
    std::vector<std::pair<std::string, std::string>> values;
    for (const auto& kv : env->pairs) {
      values.emplace_back(word(kv.key), word(kv.value));
    }
    for (const auto& [k, v] : values) {
      legacy(env->legacy_form);
      secret("ENV", k);
      st.env.set(k, v);
    }
  } else if (const auto* label = inst.as<LabelInstruction>()) {
    for (const auto& kv : label->pairs) {
      word(kv.key);
      word(kv.value);
    }
    for (size_t i = 0; i < label->pairs.size(); ++i) {
      legacy(label->legacy_form);
    }
  } else if (const auto* arg = inst.as<ArgInstruction>()) {
    for (const auto& d : arg->args) {
      secret("ARG", d.name);
      std::optional<std::string> value;
      if (const std::string* given = m_build_args.get(d.name)) {
        value = *given;
      } else if (d.default_value) {
        value = word(*d.default_value);
      } else if (m_global_env) {
        if (const std::string* g = m_global_env->get(d.name)) {
          value = *g;
        }
      }
      if (value && !is_non_env_arg(d.name)) {
        st.env.set(d.name, *value);
      }
      st.arg_names.insert(d.name);
    }
  } else if (const auto* copy = inst.as<CopyInstruction>()) {
    if (copy->chown) {
      word(*copy->chown);
    }
    if (copy->chmod) {
      word(*copy->chmod);
    }
    copy_sources("Copy", copy->sources, copy->inline_sources, !copy->from.has_value());
    word(copy->dest);
  } else if (const auto* add = inst.as<AddInstruction>()) {
    if (add->chown) {
      word(*add->chown);
    }
    if (add->chmod) {
      word(*add->chmod);
    }
    if (add->checksum) {
      word(*add->checksum);
    }
    copy_sources("Add", add->sources, add->inline_sources, true);
    word(add->dest);
  } else if (const auto* wd = inst.as<WorkdirInstruction>()) {
    std::string path = word(wd->path);
    if (lint && !st.workdir_set && (path.empty() || path.front() != '/')) {
      emit("WorkdirRelativePath",
           "Relative workdir " + str::go_quote(path) +
               " can have unexpected results if the base image changes",
           h);
    }
    st.workdir_set = true;
  } else if (const auto* user = inst.as<UserInstruction>()) {
    word(user->user);
  } else if (const auto* vol = inst.as<VolumeInstruction>()) {
    for (const auto& p : vol->paths) {
      word(p);
    }
  } else if (const auto* sig = inst.as<StopsignalInstruction>()) {
    word(sig->signal);
  } else if (const auto* expose = inst.as<ExposeInstruction>()) {
    if (!lint) {
      return;
    }
    for (const auto& p : expose->ports) {
      auto words = m_lexer.process_words(p, st.env);
      if (!words) {
        continue;
      }
      for (const auto& port : *words) {
        // BuildKit's splitParts: [ip:]hostPort:containerPort.
        std::vector<std::string> parts = str::split(port, ':');
        std::string ip;
        std::string host_port;
        std::string container = parts.back();
        if (parts.size() == 2) {
          host_port = parts[0];
        } else if (parts.size() >= 3) {
          host_port = parts[parts.size() - 2];
          ip = str::join(std::vector<std::string>(parts.begin(), parts.end() - 2), ":");
        }
        const bool mapping = !ip.empty() || !host_port.empty();
        size_t slash = container.find('/');
        std::string proto =
            slash == std::string::npos || slash == 0 ? "" : container.substr(slash + 1);
        if (!proto.empty() && !is_lower(proto)) {
          emit("ExposeProtoCasing",
               "Defined protocol '" + port + "' in EXPOSE instruction should be lowercase", h);
        }
        if (mapping) {
          emit("ExposeInvalidFormat",
               "EXPOSE instruction should not define an IP address or host-port mapping, found '" +
                   port + "'",
               h);
        }
      }
    }
  } else if (const auto* cmd = inst.as<CmdInstruction>()) {
    used_once("cmd");
    if (lint && !cmd->command.json_form && !st.shell_set) {
      emit("JSONArgsRecommended",
           "JSON arguments recommended for " + h.keyword +
               " to prevent unintended behavior related to OS signals",
           h);
    }
  } else if (const auto* ep = inst.as<EntrypointInstruction>()) {
    used_once("entrypoint");
    if (lint && !ep->command.json_form && !st.shell_set) {
      emit("JSONArgsRecommended",
           "JSON arguments recommended for " + h.keyword +
               " to prevent unintended behavior related to OS signals",
           h);
    }
  } else if (inst.as<HealthcheckInstruction>() != nullptr) {
    used_once("healthcheck");
  } else if (const auto* sh = inst.as<ShellInstruction>()) {
    st.shell_set = !sh->shell.empty();
  }
}

void Analysis::dispatch(StageInfo& stage, StageState& st, bool lint) {
  std::map<std::string, const InstructionHeader*> once;
  for (const auto* inst : stage.instructions) {
    dispatch_instruction(*inst, st, lint, once);
  }
}

void Analysis::dispatch_rules() {
  if (!m_global_env) {
    return;
  }
  std::set<int> selected(m_options.stages.begin(), m_options.stages.end());
  // First the base of every stage: an earlier stage (by name, the last
  // definition so far wins) or an image. A stage's final state is kept only
  // while later stages still build on it, and moved to the last of them, so
  // long FROM chains stay linear in memory.
  std::vector<std::optional<size_t>> base_stage(m_stages.size());
  std::vector<std::string> base_names(m_stages.size());
  std::vector<int> pending_refs(m_stages.size(), 0);
  {
    std::map<std::string, size_t> by_name;
    for (size_t i = 0; i < m_stages.size(); ++i) {
      auto base = m_lexer.process_word(m_stages[i].from->image, *m_global_env);
      base_names[i] = base ? *base : std::string();
      auto named = by_name.find(str::to_lower(base_names[i]));
      if (named != by_name.end()) {
        base_stage[i] = named->second;
        ++pending_refs[named->second];
      }
      if (!m_stages[i].name.empty()) {
        by_name[m_stages[i].name] = i;
      }
    }
  }
  for (size_t i = 0; i < m_stages.size(); ++i) {
    StageInfo& stage = m_stages[i];
    StageState st;
    const std::string& base_name = base_names[i];
    if (base_stage[i]) {
      const size_t b = *base_stage[i];
      if (--pending_refs[b] == 0) {
        st = std::move(m_stages[b].final_state);
        m_stages[b].final_state = StageState{};
      } else {
        st = m_stages[b].final_state;
      }
    } else if (base_name == "scratch") {
      st.env.set("PATH", k_default_path);
    } else if (auto cfg = m_options.base_image ? m_options.base_image(base_name) : std::nullopt) {
      st.env = ShellEnv(cfg->env);
      if (st.env.get("PATH") == nullptr) {
        st.env.set("PATH", k_default_path);
      }
      st.shell_set = !cfg->shell.empty();
    } else {
      st.env_known = false;
      st.env.set("PATH", k_default_path);
    }
    const bool lint = selected.empty() || selected.count(static_cast<int>(i)) != 0;
    dispatch(stage, st, lint);
    if (pending_refs[i] > 0) {
      stage.final_state = std::move(st);
    }
  }
}

}  // namespace

const std::vector<CheckRule>& check_rules() { return k_rules; }

const CheckRule* find_check_rule(std::string_view name) {
  for (const auto& r : k_rules) {
    if (r.name == name) {
      return &r;
    }
  }
  return nullptr;
}

Result<CheckConfig> parse_check_config(std::string_view text) {
  CheckConfig config;
  std::string_view trimmed = str::trim(text);
  if (trimmed.empty()) {
    return config;
  }
  // Go's strings.SplitN(s, ";", 3).
  std::vector<std::string> parts;
  std::string_view rest = trimmed;
  while (parts.size() < 2) {
    size_t semi = rest.find(';');
    if (semi == std::string_view::npos) {
      break;
    }
    parts.emplace_back(rest.substr(0, semi));
    rest = rest.substr(semi + 1);
  }
  parts.emplace_back(rest);
  for (const auto& p : parts) {
    size_t eq = p.find('=');
    if (eq == std::string::npos) {
      return fail(Errc::invalid_argument, "invalid check option " + str::go_quote(p));
    }
    std::string key(str::trim(std::string_view(p).substr(0, eq)));
    std::string value(str::trim(std::string_view(p).substr(eq + 1)));
    if (key == "skip") {
      if (value == "all") {
        config.skip_all = true;
      } else {
        config.skip = split_rule_list(value);
      }
    } else if (key == "experimental") {
      if (value == "all") {
        config.experimental_all = true;
      } else {
        config.experimental = split_rule_list(value);
      }
    } else if (key == "error") {
      auto b = go_parse_bool(value);
      if (!b) {
        return fail(Errc::invalid_argument, "failed to parse check option " + str::go_quote(p) +
                                                ": strconv.ParseBool: parsing " + str::go_quote(value) +
                                                ": invalid syntax");
      }
      config.error = *b;
    } else {
      return fail(Errc::invalid_argument, "invalid check option " + str::go_quote(key));
    }
  }
  return config;
}

void CheckReport::report(std::string_view rule, std::string message, int line, int end_line) {
  const CheckRule* r = find_check_rule(rule);
  const std::string name(rule);
  if (r != nullptr && r->experimental) {
    if (!m_config.experimental_all && m_config.experimental.count(name) == 0) {
      return;
    }
  } else if (m_config.skip_all || m_config.skip.count(name) != 0) {
    return;
  }
  m_warnings.push_back(CheckWarning{name, std::move(message), line, end_line == 0 ? line : end_line});
}

std::vector<CheckWarning> CheckReport::warnings() const {
  std::vector<CheckWarning> out;
  std::set<std::tuple<std::string_view, std::string_view, int>> seen;
  for (const auto& w : m_warnings) {
    if (seen.emplace(w.rule, w.message, w.line).second) {
      out.push_back(w);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const CheckWarning& a, const CheckWarning& b) { return a.line < b.line; });
  return out;
}

std::optional<std::string> CheckReport::error_message() const {
  if (!m_config.error || m_warnings.empty()) {
    return std::nullopt;
  }
  std::vector<std::string> rules;
  std::set<std::string> seen;
  for (const auto& w : warnings()) {
    if (seen.insert(w.rule).second) {
      rules.push_back(w.rule);
    }
  }
  return "lint violation found for rules: " + str::join(rules, ", ");
}

Result<CheckReport> run_checks(const Ast& ast, const LoweredFile& lowered, const CheckOptions& options) {
  std::optional<std::string> config_text = ast.directive("check");
  for (const auto& kv : options.build_args) {
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) == k_check_build_arg) {
      config_text = eq == std::string::npos ? std::string() : kv.substr(eq + 1);
    }
  }
  auto config = parse_check_config(config_text.value_or(""));
  if (!config) {
    return fail(Errc::invalid_argument, "failed to parse check options: " + config.error().message);
  }
  CheckReport report(std::move(*config));
  Analysis analysis(ast, lowered, options, report);
  analysis.parse_time_rules();
  analysis.stage_rules();
  analysis.from_rules();
  analysis.dispatch_rules();
  return report;
}

std::string format_invalid_base_image_platform(std::string_view image, std::string_view expected,
                                               std::string_view actual) {
  return "Base image " + std::string(image) + " was pulled with platform " + str::go_quote(actual) +
         ", expected " + str::go_quote(expected) + " for current build";
}

bool is_valid_image_reference(std::string_view name) {
  if (name.empty() || name.size() > 4096) {
    return false;
  }
  if (name.size() == 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return is_digit(c) || (c >= 'a' && c <= 'f');
      })) {
    return false;  // "cannot specify 64-byte hexadecimal strings"
  }
  std::string_view domain;
  std::string_view remainder = name;
  size_t slash = name.find('/');
  if (slash != std::string_view::npos) {
    std::string_view first = name.substr(0, slash);
    bool is_domain = first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
                     !is_lower(first);
    if (is_domain) {
      domain = first;
      remainder = name.substr(slash + 1);
    }
  }
  std::string_view digest;
  size_t at = remainder.find('@');
  if (at != std::string_view::npos) {
    digest = remainder.substr(at + 1);
    remainder = remainder.substr(0, at);
    if (!valid_digest(digest)) {
      return false;
    }
  }
  std::string_view tag;
  bool has_tag = false;
  size_t colon = remainder.rfind(':');
  if (colon != std::string_view::npos && remainder.find('/', colon) == std::string_view::npos) {
    tag = remainder.substr(colon + 1);
    remainder = remainder.substr(0, colon);
    has_tag = true;
  }
  if (has_tag && !valid_tag(tag)) {
    return false;
  }
  if (!domain.empty() && !valid_domain(domain)) {
    return false;
  }
  if (remainder.empty()) {
    return false;
  }
  for (const auto& comp : str::split(remainder, '/')) {
    if (!valid_path_component(comp)) {
      return false;
    }
  }
  size_t name_len = remainder.size() + (domain.empty() ? 0 : domain.size() + 1);
  return name_len <= 255;
}

}  // namespace imgbuild::parser
