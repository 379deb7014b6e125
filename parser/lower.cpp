// Lowering the syntax tree to typed instructions.
//
// Each instruction follows the order of checks BuildKit's instruction parser
// uses (argument counts before or after flag parsing, depending on the
// instruction), so the first error reported for an instruction is the one
// BuildKit would report. Messages are BuildKit's, word for word, except where
// a comment says otherwise.

#include "parser/lower.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>

#include "parser/shell.hpp"
#include "util/strings.hpp"

namespace imgbuild::parser {

namespace {

Unexpected error(std::string message) { return fail(Errc::syntax, std::move(message)); }

// ---------------------------------------------------------------- flags

enum class FlagKind { boolean, text, list };

struct FlagDef {
  const char* name;
  FlagKind kind;
};

// BuildKit's BFlags: a fixed set of flags per instruction, parsed from the
// node's flag words.
class Flags {
public:
  Flags(const std::vector<std::string>& words, std::vector<FlagDef> defs)
      : m_words(words), m_defs(std::move(defs)) {}

  Result<std::vector<FlagUse>> parse() {
    std::vector<FlagUse> uses;
    int position = -1;
    for (const auto& word : m_words) {
      ++position;
      if (word == "--") {
        break;
      }
      if (word.rfind("--", 0) != 0) {
        return error("arg should start with -- : " + word);
      }
      size_t eq = word.find('=');
      const std::string flag_name = word.substr(0, eq);
      const std::string name = flag_name.substr(2);
      const bool has_value = eq != std::string::npos;
      const std::string value = has_value ? word.substr(eq + 1) : std::string();
      const FlagDef* def = find(name);
      if (def == nullptr) {
        std::string msg = "unknown flag: " + flag_name;
        std::vector<std::string> names;
        for (const auto& d : m_defs) {
          names.emplace_back(d.name);
        }
        if (auto m = str::closest_match(name, names)) {
          msg += " (did you mean " + *m + "?)";
        }
        return error(msg);
      }
      Value& v = m_values[def->name];
      if (v.used && def->kind != FlagKind::list) {
        return error("duplicate flag specified: " + flag_name);
      }
      v.used = true;
      switch (def->kind) {
        case FlagKind::boolean: {
          if (has_value && value.empty()) {
            return error("missing a value on flag: " + flag_name);
          }
          std::string lower = str::to_lower(value);
          if (lower.empty() || lower == "true") {
            v.text = "true";
          } else if (lower == "false") {
            v.text = "false";
          } else {
            return error("expecting boolean value for flag " + flag_name + ", not: " + value);
          }
          break;
        }
        case FlagKind::text:
          if (!has_value) {
            return error("missing a value on flag: " + flag_name);
          }
          v.text = value;
          break;
        case FlagKind::list:
          if (!has_value) {
            return error("missing a value on flag: " + flag_name);
          }
          v.list.push_back(value);
          break;
      }
      uses.push_back(FlagUse{name, value, has_value, position});
    }
    return uses;
  }

  std::optional<std::string> text(const char* name) const {
    auto it = m_values.find(name);
    if (it == m_values.end() || !it->second.used) {
      return std::nullopt;
    }
    return it->second.text;
  }
  bool boolean(const char* name) const { return text(name).value_or("false") == "true"; }
  std::vector<std::string> list(const char* name) const {
    auto it = m_values.find(name);
    return it == m_values.end() ? std::vector<std::string>{} : it->second.list;
  }

private:
  struct Value {
    bool used = false;
    std::string text;
    std::vector<std::string> list;
  };

  const FlagDef* find(const std::string& name) const {
    for (const auto& d : m_defs) {
      if (name == d.name) {
        return &d;
      }
    }
    return nullptr;
  }

  const std::vector<std::string>& m_words;
  std::vector<FlagDef> m_defs;
  std::map<std::string, Value, std::less<>> m_values;
};

// ---------------------------------------------------------------- messages

Unexpected at_least_one(const char* cmd) { return error(std::string(cmd) + " requires at least one argument"); }
Unexpected exactly_one(const char* cmd) { return error(std::string(cmd) + " requires exactly one argument"); }
Unexpected no_destination(const char* cmd) {
  return error(std::string(cmd) +
               " requires at least two arguments, but only one was provided. Destination could not be determined");
}
Unexpected blank_names(const char* cmd) { return error(std::string(cmd) + " names can not be blank"); }

InstructionHeader make_header(const Node& node, std::vector<FlagUse> flags) {
  InstructionHeader h;
  h.range = SourceRange{node.start.line, node.start.column, node.end_line};
  h.original = node.original;
  h.keyword = node.keyword_as_written;
  h.flags = std::move(flags);
  h.comments = node.comments;
  return h;
}

bool has_variable(std::string_view s) { return s.find('$') != std::string_view::npos; }

// ---------------------------------------------------------------- helpers

// BuildKit's ParseHeredoc on a single argument: `^(\d*)<<(-?)\s*([^<]*)$`,
// the delimiter lexed to exactly one word.
std::optional<std::string> heredoc_reference(const std::string& word) {
  size_t i = 0;
  while (i < word.size() && word[i] >= '0' && word[i] <= '9') {
    ++i;
  }
  if (word.compare(i, 2, "<<") != 0) {
    return std::nullopt;
  }
  i += 2;
  if (i < word.size() && word[i] == '-') {
    ++i;
  }
  while (i < word.size() && (word[i] == ' ' || word[i] == '\t' || word[i] == '\r' ||
                             word[i] == '\n' || word[i] == '\v' || word[i] == '\f')) {
    ++i;
  }
  std::string rest = word.substr(i);
  if (rest.find('<') != std::string::npos) {
    return std::nullopt;
  }
  LexerOptions opts;
  opts.keep_unset = true;
  auto words = Lexer(opts).process_words(rest, ShellEnv());
  if (!words || words->size() != 1) {
    return std::nullopt;
  }
  return (*words)[0];
}

struct SourcesAndDest {
  std::vector<std::string> sources;
  std::vector<Heredoc> inline_sources;
  std::string dest;
};

Result<SourcesAndDest> sources_and_dest(const Node& node, const char* cmd) {
  SourcesAndDest out;
  out.dest = node.args.back();
  if (!node.json_form && heredoc_reference(out.dest)) {
    return error(std::string(cmd) + " cannot accept a heredoc as a destination");
  }
  for (size_t i = 0; i + 1 < node.args.size(); ++i) {
    const std::string& src = node.args[i];
    std::optional<std::string> name = node.json_form ? std::nullopt : heredoc_reference(src);
    if (!name) {
      out.sources.push_back(src);
      continue;
    }
    Heredoc h;
    h.name = *name;
    for (const auto& candidate : node.heredocs) {
      if (candidate.name == *name) {
        h = candidate;
      }
    }
    out.inline_sources.push_back(std::move(h));
  }
  return out;
}

bool parse_go_bool(std::string_view s, bool& out) {
  static const char* const k_true[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char* const k_false[] = {"0", "f", "F", "FALSE", "false", "False"};
  for (const char* t : k_true) {
    if (s == t) {
      out = true;
      return true;
    }
  }
  for (const char* f : k_false) {
    if (s == f) {
      out = false;
      return true;
    }
  }
  return false;
}

// strconv.ParseUint(s, base, 32) for base 8 or 10.
std::optional<uint32_t> parse_uint32(std::string_view s, int base) {
  if (s.empty()) {
    return std::nullopt;
  }
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c >= '0' + base) {
      return std::nullopt;
    }
    n = n * static_cast<uint64_t>(base) + static_cast<uint64_t>(c - '0');
    if (n > std::numeric_limits<uint32_t>::max()) {
      return std::nullopt;
    }
  }
  return static_cast<uint32_t>(n);
}

// docker/go-units RAMInBytes: "128m", "1.5GiB", "512" (binary multipliers).
std::optional<int64_t> parse_ram_size(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) {
    ++i;
  }
  std::string number(s.substr(0, i));
  if (number.empty() || number.front() == '.' || number.back() == '.' ||
      number.find("..") != std::string::npos) {
    return std::nullopt;
  }
  std::string_view unit = s.substr(i);
  if (!unit.empty() && unit.front() == ' ') {
    unit.remove_prefix(1);
  }
  double multiplier = 1;
  if (!unit.empty()) {
    const std::string_view prefixes = "kmgtp";
    size_t p = prefixes.find(static_cast<char>(std::tolower(static_cast<unsigned char>(unit[0]))));
    if (p != std::string_view::npos) {
      multiplier = std::pow(1024.0, static_cast<double>(p + 1));
      unit.remove_prefix(1);
    }
    if (!unit.empty() && (unit[0] == 'i' || unit[0] == 'I')) {
      unit.remove_prefix(1);
    }
    if (!unit.empty() && (unit[0] == 'b' || unit[0] == 'B')) {
      unit.remove_prefix(1);
    }
    if (!unit.empty()) {
      return std::nullopt;
    }
  }
  double value = std::strtod(number.c_str(), nullptr) * multiplier;
  if (!(value < 9.2e18)) {
    return std::nullopt;
  }
  return static_cast<int64_t>(value);
}

// Go's encoding/csv reading one record (no lazy quotes, no space trimming).
Result<std::vector<std::string>> read_csv_record(std::string_view s) {
  std::vector<std::string> fields;
  if (s.empty()) {
    return error("EOF");
  }
  size_t i = 0;
  for (;;) {
    std::string field;
    if (i < s.size() && s[i] == '"') {
      const size_t quote_col = i + 1;
      ++i;
      bool closed = false;
      while (i < s.size()) {
        if (s[i] == '"') {
          if (i + 1 < s.size() && s[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          closed = true;
          ++i;
          break;
        }
        field += s[i++];
      }
      if (!closed || (i < s.size() && s[i] != ',')) {
        return error("parse error on line 1, column " + std::to_string(closed ? i + 1 : quote_col) +
                     ": extraneous or missing \" in quoted-field");
      }
    } else {
      while (i < s.size() && s[i] != ',') {
        if (s[i] == '"') {
          return error("parse error on line 1, column " + std::to_string(i + 1) +
                       ": bare \" in non-quoted-field");
        }
        field += s[i++];
      }
    }
    fields.push_back(std::move(field));
    if (i >= s.size()) {
      break;
    }
    ++i;  // ','
  }
  return fields;
}

bool valid_symbolic_chmod(std::string_view s) {
  // [ugoa]*([-+=]([rwxXst]*|[ugo]))+ (',' clause)*
  if (s.empty()) {
    return false;
  }
  for (const auto& clause : str::split(s, ',')) {
    size_t i = 0;
    while (i < clause.size() && std::string_view("ugoa").find(clause[i]) != std::string_view::npos) {
      ++i;
    }
    if (i >= clause.size()) {
      return false;
    }
    while (i < clause.size()) {
      if (std::string_view("+-=").find(clause[i]) == std::string_view::npos) {
        return false;
      }
      ++i;
      if (i < clause.size() && std::string_view("ugo").find(clause[i]) != std::string_view::npos) {
        ++i;
        continue;
      }
      while (i < clause.size() && std::string_view("rwxXst").find(clause[i]) != std::string_view::npos) {
        ++i;
      }
    }
  }
  return true;
}

// ---------------------------------------------------------------- instructions

Result<InstructionVariant> lower_from(const Node& node) {
  FromInstruction out;
  const auto& args = node.args;
  if (args.size() == 3 && str::iequals(args[1], "as")) {
    out.stage_name_as_written = args[2];
    out.stage_name = str::to_lower(args[2]);
    out.as_keyword = args[1];
    bool valid = !out.stage_name.empty() && out.stage_name[0] >= 'a' && out.stage_name[0] <= 'z';
    for (char c : out.stage_name) {
      valid = valid && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                        c == '.');
    }
    if (!valid) {
      return error("invalid name for build stage: " + str::go_quote(args[2]) +
                   ", name can't start with a number or contain symbols");
    }
  } else if (args.size() != 1) {
    return error("FROM requires either one or three arguments");
  }
  Flags flags(node.flags, {{"platform", FlagKind::text}});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  out.image = args[0];
  out.platform = flags.text("platform");
  return InstructionVariant(std::move(out));
}

CommandLine command_line(const Node& node, size_t skip = 0) {
  CommandLine c;
  c.json_form = node.json_form;
  c.args.assign(node.args.begin() + static_cast<std::ptrdiff_t>(std::min(skip, node.args.size())),
                node.args.end());
  return c;
}

Result<InstructionVariant> lower_run(const Node& node) {
  RunInstruction out;
  Flags flags(node.flags, {{"mount", FlagKind::list},
                           {"network", FlagKind::text},
                           {"security", FlagKind::text},
                           {"device", FlagKind::list}});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  out.command = command_line(node);
  out.heredocs = node.heredocs;
  out.mount_specs = flags.list("mount");
  for (const auto& spec : out.mount_specs) {
    TRY(Mount m, parse_mount(spec));
    out.mounts.push_back(std::move(m));
  }
  out.network = flags.text("network");
  if (out.network && *out.network != "default" && *out.network != "none" && *out.network != "host") {
    return error("invalid network mode " + str::go_quote(*out.network));
  }
  out.security = flags.text("security");
  if (out.security && *out.security != "sandbox" && *out.security != "insecure") {
    return error("security " + str::go_quote(*out.security) + " is not valid");
  }
  out.devices = flags.list("device");
  return InstructionVariant(std::move(out));
}

template <class T>
Result<InstructionVariant> lower_cmd_like(const Node& node) {
  T out;
  Flags flags(node.flags, {});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  out.command = command_line(node);
  return InstructionVariant(std::move(out));
}

template <class T>
Result<InstructionVariant> lower_key_values(const Node& node, const char* cmd) {
  T out;
  Flags flags(node.flags, {});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  if (node.args.empty()) {
    return at_least_one(cmd);
  }
  if (node.args.size() % 3 != 0) {
    return error(std::string("Bad input to ") + cmd + ", too many arguments");
  }
  for (size_t i = 0; i < node.args.size(); i += 3) {
    if (node.args[i].empty()) {
      return blank_names(cmd);
    }
    out.pairs.push_back(KeyValue{node.args[i], node.args[i + 1]});
    out.legacy_form = out.legacy_form || node.args[i + 2].empty();
  }
  return InstructionVariant(std::move(out));
}

Result<InstructionVariant> lower_expose(const Node& node) {
  ExposeInstruction out;
  if (node.args.empty()) {
    return at_least_one("EXPOSE");
  }
  Flags flags(node.flags, {});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  for (const auto& port : node.args) {
    if (!has_variable(port)) {
      TRY_VOID(validate_port_spec(port));
    }
  }
  out.ports = node.args;
  return InstructionVariant(std::move(out));
}

Result<InstructionVariant> lower_volume(const Node& node) {
  VolumeInstruction out;
  if (node.args.empty()) {
    return at_least_one("VOLUME");
  }
  Flags flags(node.flags, {});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  out.json_form = node.json_form;
  for (const auto& v : node.args) {
    std::string_view t = str::trim(v);
    if (t.empty()) {
      return error("VOLUME specified can not be an empty string");
    }
    out.paths.emplace_back(t);
  }
  return InstructionVariant(std::move(out));
}

template <class T>
Result<InstructionVariant> lower_single(const Node& node, const char* cmd, std::string T::*field) {
  T out;
  if (node.args.size() != 1) {
    return exactly_one(cmd);
  }
  Flags flags(node.flags, {});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  out.*field = node.args[0];
  return InstructionVariant(std::move(out));
}

Result<InstructionVariant> lower_arg(const Node& node) {
  ArgInstruction out;
  if (node.args.empty()) {
    return at_least_one("ARG");
  }
  out.header = make_header(node, {});  // ARG never parses flags
  for (const auto& a : node.args) {
    ArgDecl d;
    size_t eq = a.find('=');
    if (eq == std::string::npos) {
      d.name = a;
    } else {
      if (eq == 0) {
        return blank_names("ARG");
      }
      d.name = a.substr(0, eq);
      d.default_value = a.substr(eq + 1);
    }
    out.args.push_back(std::move(d));
  }
  return InstructionVariant(std::move(out));
}

Result<InstructionVariant> lower_stopsignal(const Node& node) {
  StopsignalInstruction out;
  if (node.args.size() != 1) {
    return exactly_one("STOPSIGNAL");
  }
  out.header = make_header(node, {});  // STOPSIGNAL never parses flags
  out.signal = node.args[0];
  if (!has_variable(out.signal)) {
    TRY_VOID(validate_signal(out.signal));
  }
  return InstructionVariant(std::move(out));
}

Result<std::optional<int64_t>> interval(const Flags& flags, const char* name) {
  std::optional<std::string> v = flags.text(name);
  if (!v || v->empty()) {
    return std::optional<int64_t>();
  }
  TRY(int64_t d, parse_go_duration(*v));
  if (d == 0) {
    return std::optional<int64_t>();
  }
  if (d < 1000000) {
    return error(std::string("Interval ") + str::go_quote(name) + " cannot be less than 1ms");
  }
  return std::optional<int64_t>(d);
}

Result<InstructionVariant> lower_healthcheck(const Node& node) {
  HealthcheckInstruction out;
  if (node.args.empty()) {
    return at_least_one("HEALTHCHECK");
  }
  std::string type = str::to_upper(node.args[0]);
  if (type == "NONE") {
    if (node.args.size() != 1) {
      return error("HEALTHCHECK NONE takes no arguments");
    }
    out.header = make_header(node, {});  // HEALTHCHECK NONE never parses flags
    out.none = true;
    out.test = {"NONE"};
    return InstructionVariant(std::move(out));
  }
  Flags flags(node.flags, {{"interval", FlagKind::text},
                           {"timeout", FlagKind::text},
                           {"start-period", FlagKind::text},
                           {"start-interval", FlagKind::text},
                           {"retries", FlagKind::text}});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  if (type != "CMD") {
    return error("Unknown type " + str::go_quote(type) + " in HEALTHCHECK (try CMD)");
  }
  out.command = command_line(node, 1);
  if (out.command.args.empty()) {
    return error("Missing command after HEALTHCHECK CMD");
  }
  out.test.push_back(node.json_form ? "CMD" : "CMD-SHELL");
  out.test.insert(out.test.end(), out.command.args.begin(), out.command.args.end());
  TRY(out.interval_ns, interval(flags, "interval"));
  TRY(out.timeout_ns, interval(flags, "timeout"));
  TRY(out.start_period_ns, interval(flags, "start-period"));
  TRY(out.start_interval_ns, interval(flags, "start-interval"));
  if (auto r = flags.text("retries"); r && !r->empty()) {
    std::string_view digits = *r;
    bool negative = !digits.empty() && (digits[0] == '-' || digits[0] == '+');
    if (negative) {
      negative = digits[0] == '-';
      digits.remove_prefix(1);
    }
    auto n = parse_uint32(digits, 10);
    if (!n) {
      return error("strconv.ParseInt: parsing " + str::go_quote(*r) + ": invalid syntax");
    }
    if (*n > static_cast<uint32_t>(std::numeric_limits<int32_t>::max()) + (negative ? 1U : 0U)) {
      return error("strconv.ParseInt: parsing " + str::go_quote(*r) + ": value out of range");
    }
    int64_t value = negative ? -static_cast<int64_t>(*n) : static_cast<int64_t>(*n);
    if (value < 0) {
      return error("--retries cannot be negative (" + std::to_string(value) + ")");
    }
    out.retries = static_cast<int>(value);
  }
  return InstructionVariant(std::move(out));
}

Result<InstructionVariant> lower_shell(const Node& node) {
  ShellInstruction out;
  Flags flags(node.flags, {});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  if (node.args.empty()) {
    return at_least_one("SHELL");
  }
  if (!node.json_form) {
    return error("SHELL requires the arguments to be in JSON form");
  }
  out.shell = node.args;
  return InstructionVariant(std::move(out));
}

Result<void> check_chmod_flag(const std::optional<std::string>& chmod) {
  if (chmod && !chmod->empty()) {
    return validate_chmod(*chmod);
  }
  return ok();
}

Result<InstructionVariant> lower_copy(const Node& node) {
  CopyInstruction out;
  if (node.args.size() < 2) {
    return no_destination("COPY");
  }
  Flags flags(node.flags, {{"exclude", FlagKind::list},
                           {"parents", FlagKind::boolean},
                           {"chown", FlagKind::text},
                           {"from", FlagKind::text},
                           {"chmod", FlagKind::text},
                           {"link", FlagKind::boolean}});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  TRY(SourcesAndDest sd, sources_and_dest(node, "COPY"));
  out.sources = std::move(sd.sources);
  out.inline_sources = std::move(sd.inline_sources);
  out.dest = std::move(sd.dest);
  out.json_form = node.json_form;
  out.from = flags.text("from");
  out.chown = flags.text("chown");
  out.chmod = flags.text("chmod");
  out.link = flags.boolean("link");
  out.parents = flags.boolean("parents");
  out.excludes = flags.list("exclude");
  TRY_VOID(check_chmod_flag(out.chmod));
  return InstructionVariant(std::move(out));
}

Result<InstructionVariant> lower_add(const Node& node) {
  AddInstruction out;
  if (node.args.size() < 2) {
    return no_destination("ADD");
  }
  Flags flags(node.flags, {{"exclude", FlagKind::list},
                           {"chown", FlagKind::text},
                           {"chmod", FlagKind::text},
                           {"link", FlagKind::boolean},
                           {"keep-git-dir", FlagKind::boolean},
                           {"checksum", FlagKind::text},
                           {"unpack", FlagKind::boolean}});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  TRY(SourcesAndDest sd, sources_and_dest(node, "ADD"));
  out.sources = std::move(sd.sources);
  out.inline_sources = std::move(sd.inline_sources);
  out.dest = std::move(sd.dest);
  out.json_form = node.json_form;
  out.chown = flags.text("chown");
  out.chmod = flags.text("chmod");
  out.checksum = flags.text("checksum");
  out.link = flags.boolean("link");
  out.keep_git_dir = flags.boolean("keep-git-dir");
  if (flags.text("unpack")) {
    out.unpack = flags.boolean("unpack");
  }
  out.excludes = flags.list("exclude");
  TRY_VOID(check_chmod_flag(out.chmod));
  return InstructionVariant(std::move(out));
}

Result<InstructionVariant> lower_impl(const Node& node);

// Gives a lowered RUN/COPY/ADD the heredoc bodies its node did not carry
// (an ONBUILD trigger's, which the parser keeps on the ONBUILD node).
void attach_heredocs(InstructionVariant& ins, const std::vector<Heredoc>& heredocs) {
  auto fill = [&](std::vector<Heredoc>& sources) {
    for (auto& src : sources) {
      for (const auto& h : heredocs) {
        if (h.name == src.name) {
          src = h;
        }
      }
    }
  };
  if (auto* run = std::get_if<RunInstruction>(&ins)) {
    run->heredocs = heredocs;
  } else if (auto* copy = std::get_if<CopyInstruction>(&ins)) {
    fill(copy->inline_sources);
  } else if (auto* add = std::get_if<AddInstruction>(&ins)) {
    fill(add->inline_sources);
  }
}

Result<InstructionVariant> lower_onbuild(const Node& node) {
  OnbuildInstruction out;
  if (node.children.empty()) {
    return at_least_one("ONBUILD");
  }
  Flags flags(node.flags, {});
  TRY(auto uses, flags.parse());
  out.header = make_header(node, std::move(uses));
  const Node& trigger = node.children.front();
  // The parser attaches an ONBUILD line's heredocs to the ONBUILD node, as
  // BuildKit's does: the stored text and the lowered trigger take them.
  const std::vector<Heredoc>& heredocs = trigger.heredocs.empty() ? node.heredocs : trigger.heredocs;
  std::string keyword = str::to_upper(str::trim(trigger.keyword_as_written));
  if (keyword == "ONBUILD") {
    return error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  }
  if (keyword == "MAINTAINER" || keyword == "FROM") {
    return error(keyword + " isn't allowed as an ONBUILD trigger");
  }
  // The original text without `^\s*ONBUILD\s*` (case-insensitive), then the
  // heredoc bodies and terminators.
  std::string_view text = node.original;
  size_t i = 0;
  auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  };
  while (i < text.size() && is_space(text[i])) {
    ++i;
  }
  if (text.size() - i >= 7 && str::iequals(text.substr(i, 7), "onbuild")) {
    i += 7;
    while (i < text.size() && is_space(text[i])) {
      ++i;
    }
    text.remove_prefix(i);
  }
  out.trigger = std::string(text);
  for (const auto& h : heredocs) {
    out.trigger += "\n" + h.content + h.name;
  }
  // BuildKit only parses the trigger when a downstream stage runs it, so a
  // broken trigger does not fail this build: the lowering error is kept for
  // checks and for the downstream FROM.
  auto lowered = lower_impl(trigger);
  if (lowered && trigger.heredocs.empty()) {
    attach_heredocs(*lowered, heredocs);
  }
  if (lowered) {
    out.lowered.push_back(Instruction{std::move(*lowered)});
  } else {
    out.trigger_error = lowered.error().message;
  }
  return InstructionVariant(std::move(out));
}

Result<InstructionVariant> lower_impl(const Node& node) {
  const std::string k = str::to_lower(node.keyword_as_written.empty() ? node.keyword
                                                                      : node.keyword_as_written);
  if (k == "from") return lower_from(node);
  if (k == "run") return lower_run(node);
  if (k == "cmd") return lower_cmd_like<CmdInstruction>(node);
  if (k == "entrypoint") return lower_cmd_like<EntrypointInstruction>(node);
  if (k == "env") return lower_key_values<EnvInstruction>(node, "ENV");
  if (k == "label") return lower_key_values<LabelInstruction>(node, "LABEL");
  if (k == "expose") return lower_expose(node);
  if (k == "volume") return lower_volume(node);
  if (k == "user") return lower_single<UserInstruction>(node, "USER", &UserInstruction::user);
  if (k == "workdir") return lower_single<WorkdirInstruction>(node, "WORKDIR", &WorkdirInstruction::path);
  if (k == "maintainer") {
    return lower_single<MaintainerInstruction>(node, "MAINTAINER", &MaintainerInstruction::maintainer);
  }
  if (k == "arg") return lower_arg(node);
  if (k == "onbuild") return lower_onbuild(node);
  if (k == "stopsignal") return lower_stopsignal(node);
  if (k == "healthcheck") return lower_healthcheck(node);
  if (k == "shell") return lower_shell(node);
  if (k == "copy") return lower_copy(node);
  if (k == "add") return lower_add(node);
  const std::string& written = node.keyword_as_written.empty() ? node.keyword : node.keyword_as_written;
  std::string msg = "unknown instruction: " + written;
  if (auto m = str::closest_match(written, instruction_names())) {
    msg += " (did you mean " + *m + "?)";
  }
  return error(msg);
}

// ---------------------------------------------------------------- signals

const std::vector<std::string>& signal_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v = {"ABRT", "ALRM", "BUS",  "CHLD", "CLD",    "CONT",   "FPE",
                                  "HUP",  "ILL",  "INT",  "IO",   "IOT",    "KILL",   "PIPE",
                                  "POLL", "PROF", "PWR",  "QUIT", "SEGV",   "STKFLT", "STOP",
                                  "SYS",  "TERM", "TRAP", "TSTP", "TTIN",   "TTOU",   "UNUSED",
                                  "URG",  "USR1", "USR2", "VTALRM", "WINCH", "XCPU",  "XFSZ",
                                  "RTMIN", "RTMAX"};
    for (int i = 1; i <= 15; ++i) {
      v.push_back("RTMIN+" + std::to_string(i));
      v.push_back("RTMAX-" + std::to_string(i));
    }
    return v;
  }();
  return names;
}

}  // namespace

// ---------------------------------------------------------------- public

const std::vector<std::string>& instruction_names() {
  static const std::vector<std::string> names = {
      "ADD",  "ARG",     "CMD",     "COPY",       "ENTRYPOINT", "ENV",   "EXPOSE",
      "FROM", "HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD",  "RUN",   "SHELL",
      "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"};
  return names;
}

Result<Mount> parse_mount(std::string_view spec, const MountExpander& expand) {
  auto fields = read_csv_record(spec);
  if (!fields) {
    return error("failed to parse csv mounts: " + fields.error().message);
  }
  Mount m;
  bool ro_auto = true;
  bool deferred = false;
  std::optional<std::string> type_deferred;
  for (const auto& field : *fields) {
    size_t eq = field.find('=');
    const std::string key = str::to_lower(field.substr(0, eq));
    if (eq == std::string::npos) {
      if (key == "readonly" || key == "ro") {
        m.read_only = true;
        ro_auto = false;
        continue;
      }
      if (key == "readwrite" || key == "rw") {
        m.read_only = false;
        ro_auto = false;
        continue;
      }
      if (key == "required") {
        if (m.type == MountType::secret || m.type == MountType::ssh) {
          m.required = true;
          continue;
        }
        return error("unexpected key 'required' for mount type '" + std::string(to_string(m.type)) + "'");
      }
      return error("invalid field '" + field + "' must be a key=value pair");
    }
    std::string value = field.substr(eq + 1);
    if (expand) {
      TRY(value, expand(value));
    } else if (key == "from") {
      for (size_t i = 0; i + 1 < value.size(); ++i) {
        if (value[i] == '$' && value[i + 1] != '\n') {
          return error("'from' doesn't support variable expansion, define alias stage instead");
        }
      }
    } else if (has_variable(value)) {
      // Lowering: keep the raw text; the builder checks it after expansion.
      deferred = true;
      if (key == "source" || key == "src") {
        m.source = value;
      } else if (key == "target" || key == "dst" || key == "destination") {
        m.target = value;
      } else if (key == "id") {
        m.id = value;
      } else if (key == "env") {
        m.env = value;
      } else if (key == "type") {
        type_deferred = value;
      }
      continue;
    }
    bool b = false;
    if (key == "type") {
      const std::string t = str::to_lower(value);
      static const std::vector<std::string> k_types = {"bind", "cache", "tmpfs", "secret", "ssh"};
      auto it = std::find(k_types.begin(), k_types.end(), t);
      if (it == k_types.end()) {
        std::string msg = "unsupported mount type " + str::go_quote(value);
        if (auto s = str::closest_match(value, k_types)) {
          msg += " (did you mean " + *s + "?)";
        }
        return error(msg);
      }
      m.type = static_cast<MountType>(it - k_types.begin());
    } else if (key == "from") {
      m.from = value;
    } else if (key == "source" || key == "src") {
      m.source = value;
    } else if (key == "target" || key == "dst" || key == "destination") {
      m.target = value;
    } else if (key == "readonly" || key == "ro") {
      if (!parse_go_bool(value, b)) {
        return error("invalid value for " + key + ": " + value);
      }
      m.read_only = b;
      ro_auto = false;
    } else if (key == "readwrite" || key == "rw") {
      if (!parse_go_bool(value, b)) {
        return error("invalid value for " + key + ": " + value);
      }
      m.read_only = !b;
      ro_auto = false;
    } else if (key == "required") {
      if (m.type != MountType::secret && m.type != MountType::ssh) {
        return error("unexpected key 'required' for mount type '" + std::string(to_string(m.type)) + "'");
      }
      if (!parse_go_bool(value, b)) {
        return error("invalid value for " + key + ": " + value);
      }
      m.required = b;
    } else if (key == "size") {
      if (m.type != MountType::tmpfs) {
        return error("unexpected key 'size' for mount type '" + std::string(to_string(m.type)) + "'");
      }
      auto size = parse_ram_size(value);
      if (!size) {
        return error("invalid value for " + key + ": " + value);
      }
      m.size_limit = *size;
    } else if (key == "id") {
      m.id = value;
    } else if (key == "sharing") {
      const std::string s = str::to_lower(value);
      if (s == "shared") {
        m.sharing = CacheSharing::shared;
      } else if (s == "private") {
        m.sharing = CacheSharing::private_;
      } else if (s == "locked") {
        m.sharing = CacheSharing::locked;
      } else {
        return error("unsupported sharing value " + str::go_quote(value));
      }
    } else if (key == "mode") {
      m.mode = parse_uint32(value, 8);
      if (!m.mode) {
        return error("invalid value " + value + " for mode");
      }
    } else if (key == "uid") {
      m.uid = parse_uint32(value, 10);
      if (!m.uid) {
        return error("invalid value " + value + " for uid");
      }
    } else if (key == "gid") {
      m.gid = parse_uint32(value, 10);
      if (!m.gid) {
        return error("invalid value " + value + " for gid");
      }
    } else if (key == "env") {
      m.env = value;
    } else {
      static const std::vector<std::string> k_keys = {
          "type", "from", "source", "target", "readonly", "id", "sharing", "required", "size",
          "mode", "uid",  "gid",    "src",    "dst",      "destination", "ro", "rw", "readwrite",
          "env"};
      std::string msg = "unexpected key '" + key + "' in '" + field + "'";
      if (auto s = str::closest_match(key, k_keys)) {
        msg += " (did you mean " + *s + "?)";
      }
      return error(msg);
    }
  }
  if (type_deferred) {
    // Without the type the remaining rules cannot be decided.
    return m;
  }
  const bool file_info = m.type == MountType::secret || m.type == MountType::ssh ||
                         m.type == MountType::cache;
  const std::string type_name = to_string(m.type);
  if (m.mode && !file_info) {
    return error("mode not allowed for " + str::go_quote(type_name) + " type mounts");
  }
  if (m.uid && !file_info) {
    return error("uid not allowed for " + str::go_quote(type_name) + " type mounts");
  }
  if (m.gid && !file_info) {
    return error("gid not allowed for " + str::go_quote(type_name) + " type mounts");
  }
  if (ro_auto) {
    m.read_only = !(m.type == MountType::cache || m.type == MountType::tmpfs);
  }
  if (m.sharing && m.type != MountType::cache) {
    return error("invalid cache sharing set for " + type_name + " mount");
  }
  if (m.type == MountType::secret) {
    if (!m.from.empty()) {
      return error("secret mount should not have a from");
    }
    if (!deferred && m.source.empty() && m.target.empty() && m.id.empty()) {
      return error("invalid secret mount. one of source, target required");
    }
    if (!m.source.empty() && !m.id.empty()) {
      return error("both source and id can't be set");
    }
  }
  return m;
}

Result<void> validate_chmod(std::string_view value) {
  if (has_variable(value)) {
    return ok();
  }
  auto octal = parse_uint32(value, 8);
  if (octal && *octal <= 07777) {
    return ok();
  }
  if (!octal && valid_symbolic_chmod(value)) {
    return ok();
  }
  return error("invalid chmod parameter: '" + std::string(value) +
               "'. it should be octal string and between 0 and 07777");
}

Result<int64_t> parse_go_duration(std::string_view text) {
  const std::string quoted = str::go_quote(text);
  auto invalid = [&] { return error("time: invalid duration " + quoted); };
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") {
    return int64_t{0};
  }
  if (s.empty()) {
    return invalid();
  }
  long double total = 0;
  while (!s.empty()) {
    size_t i = 0;
    long double whole = 0;
    bool digits = false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      whole = whole * 10 + (s[i] - '0');
      digits = true;
      ++i;
    }
    long double frac = 0;
    if (i < s.size() && s[i] == '.') {
      ++i;
      long double scale = 0.1L;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        frac += (s[i] - '0') * scale;
        scale /= 10;
        digits = true;
        ++i;
      }
    }
    if (!digits) {
      return invalid();
    }
    size_t u = i;
    while (u < s.size() && s[u] != '.' && !(s[u] >= '0' && s[u] <= '9')) {
      ++u;
    }
    std::string_view unit = s.substr(i, u - i);
    if (unit.empty()) {
      return error("time: missing unit in duration " + quoted);
    }
    long double mult = 0;
    if (unit == "ns") {
      mult = 1;
    } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
      mult = 1e3L;
    } else if (unit == "ms") {
      mult = 1e6L;
    } else if (unit == "s") {
      mult = 1e9L;
    } else if (unit == "m") {
      mult = 60e9L;
    } else if (unit == "h") {
      mult = 3600e9L;
    } else {
      return error("time: unknown unit " + str::go_quote(unit) + " in duration " + quoted);
    }
    total += (whole + frac) * mult;
    if (total > 9.223372036854775807e18L) {
      return invalid();
    }
    s.remove_prefix(u);
  }
  auto ns = static_cast<int64_t>(total);
  return negative ? -ns : ns;
}

Result<void> validate_signal(std::string_view value) {
  std::string v(value);
  bool numeric = !v.empty();
  size_t start = (!v.empty() && (v[0] == '-' || v[0] == '+')) ? 1 : 0;
  numeric = v.size() > start;
  for (size_t i = start; i < v.size(); ++i) {
    numeric = numeric && v[i] >= '0' && v[i] <= '9';
  }
  if (numeric) {
    if (v.find_first_not_of("+-0") == std::string::npos) {
      return error("invalid signal: " + v);
    }
    return ok();
  }
  std::string upper = str::to_upper(v);
  if (upper.rfind("SIG", 0) == 0) {
    upper.erase(0, 3);
  }
  const auto& names = signal_names();
  if (std::find(names.begin(), names.end(), upper) == names.end()) {
    return error("invalid signal: " + v);
  }
  return ok();
}

Result<void> validate_port_spec(std::string_view value) {
  std::string_view port = value;
  std::string_view proto = "tcp";
  if (size_t slash = port.rfind('/'); slash != std::string_view::npos) {
    proto = port.substr(slash + 1);
    port = port.substr(0, slash);
  }
  const std::string lp = str::to_lower(proto);
  if (lp != "tcp" && lp != "udp" && lp != "sctp") {
    return error("invalid proto: " + std::string(proto));
  }
  // `ip:hostPort:containerPort` forms are accepted (ExposeInvalidFormat
  // warns about them); only the container port is checked.
  if (size_t colon = port.rfind(':'); colon != std::string_view::npos) {
    port = port.substr(colon + 1);
  }
  auto bad = [&] { return error("invalid containerPort: " + std::string(port)); };
  std::string_view first = port;
  std::string_view last;
  if (size_t dash = port.find('-'); dash != std::string_view::npos) {
    first = port.substr(0, dash);
    last = port.substr(dash + 1);
    if (last.empty()) {
      return bad();
    }
  }
  auto a = parse_uint32(first, 10);
  if (!a || *a > 65535) {
    return bad();
  }
  if (!last.empty()) {
    auto b = parse_uint32(last, 10);
    if (!b || *b > 65535 || *b < *a) {
      return bad();
    }
  }
  return ok();
}

Result<Instruction> lower_node(const Node& node, std::string_view file) {
  auto r = lower_impl(node);
  if (!r) {
    Error e = std::move(r).error();
    e.location = SourceLocation{std::string(file), node.start.line, node.start.column};
    return e;
  }
  return Instruction{std::move(*r)};
}

LoweredFile lower(const Ast& ast, std::string_view file) {
  LoweredFile out;
  out.escape = ast.escape;
  for (const auto& node : ast.children) {
    auto r = lower_node(node, file);
    if (r) {
      out.instructions.push_back(std::move(*r));
    } else {
      out.errors.push_back(std::move(r).error());
    }
  }
  return out;
}

}  // namespace imgbuild::parser
