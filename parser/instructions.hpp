#pragma once
// Typed Dockerfile instructions: what lowering (parser/lower.hpp) makes of
// the syntax tree, and what the stage graph, the build checks and the builder
// consume. Plain structs in a std::variant; every struct starts with the same
// header (where it came from, its original text, its keyword as written and
// its flags as written).
//
// Words stay unexpanded: the builder expands them with the stage environment
// (parser/shell.hpp) when it dispatches the instruction. Key/value lists keep
// their source order. Values that can only be validated after expansion are
// kept as text and validated again by the builder (parse_mount with an
// expander, for instance).

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "parser/ast.hpp"

namespace imgbuild::parser {

/// Where an instruction sits in the Dockerfile (1-based).
struct SourceRange {
  int start_line = 0;
  int start_column = 0;
  int end_line = 0;
};

/// One `--name[=value]` flag as written, after BuildKit's flag parsing.
struct FlagUse {
  std::string name;    ///< without the leading "--"
  std::string value;   ///< "" when no '=' was given
  bool has_value = false;
  int position = 0;    ///< index among the instruction's flag words
};

/// What every instruction carries.
struct InstructionHeader {
  SourceRange range;
  /// BuildKit's Node.Original: the logical line, continuations joined.
  std::string original;
  /// The keyword exactly as written ("Run"), for casing checks.
  std::string keyword;
  /// Flags in source order, validated against the instruction's flag set.
  std::vector<FlagUse> flags;
  /// Comment lines directly above the instruction.
  std::vector<std::string> comments;
};

/// A command line for RUN, CMD, ENTRYPOINT, HEALTHCHECK CMD.
struct CommandLine {
  /// Exec form: the JSON array elements. Shell form: one element, the rest of
  /// the line as written (the builder prepends the stage's SHELL).
  std::vector<std::string> args;
  /// True for the exec (JSON) form.
  bool json_form = false;
  /// True when the shell must be prepended (shell form).
  bool prepend_shell() const { return !json_form; }
};

/// RUN --mount types.
enum class MountType { bind, cache, tmpfs, secret, ssh };

/// Cache-mount sharing modes.
enum class CacheSharing { shared, private_, locked };

/// One parsed RUN --mount. Fields are the values as written (or, when the
/// builder re-parses with an expander, as expanded).
struct Mount {
  MountType type = MountType::bind;
  std::string from;     ///< stage name/index or image; never expanded
  std::string source;
  std::string target;
  bool read_only = true;
  std::string id;       ///< BuildKit CacheID (cache, secret, ssh)
  std::optional<CacheSharing> sharing;
  bool required = false;
  std::optional<int64_t> size_limit;  ///< tmpfs size in bytes
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<std::string> env;     ///< secret exposed as this env variable
};

/// FROM [--platform=p] image [AS name].
struct FromInstruction {
  InstructionHeader header;
  std::string image;                    ///< unexpanded base name
  std::optional<std::string> platform;  ///< --platform, unexpanded
  std::string stage_name;               ///< lower-cased; "" when unnamed
  std::string stage_name_as_written;
  std::string as_keyword;               ///< "AS" as written; "" when unnamed
};

/// RUN.
struct RunInstruction {
  InstructionHeader header;
  CommandLine command;
  std::vector<Heredoc> heredocs;
  /// --mount values as written, in order.
  std::vector<std::string> mount_specs;
  /// The mounts parsed without expansion (values with variables are still
  /// raw; the builder re-parses mount_specs with its expander).
  std::vector<Mount> mounts;
  std::optional<std::string> network;   ///< default|none|host
  std::optional<std::string> security;  ///< sandbox|insecure
  std::vector<std::string> devices;     ///< --device values
};

/// CMD.
struct CmdInstruction {
  InstructionHeader header;
  CommandLine command;
};

/// ENTRYPOINT.
struct EntrypointInstruction {
  InstructionHeader header;
  CommandLine command;
};

/// One KEY=VALUE of ENV or LABEL, raw (quotes and escapes kept).
struct KeyValue {
  std::string key;
  std::string value;
};

/// ENV.
struct EnvInstruction {
  InstructionHeader header;
  std::vector<KeyValue> pairs;
  bool legacy_form = false;  ///< `ENV key value` (LegacyKeyValueFormat)
};

/// LABEL.
struct LabelInstruction {
  InstructionHeader header;
  std::vector<KeyValue> pairs;
  bool legacy_form = false;
};

/// EXPOSE.
struct ExposeInstruction {
  InstructionHeader header;
  std::vector<std::string> ports;  ///< in source order, unexpanded
};

/// VOLUME.
struct VolumeInstruction {
  InstructionHeader header;
  std::vector<std::string> paths;  ///< trimmed, unexpanded
  bool json_form = false;
};

/// USER.
struct UserInstruction {
  InstructionHeader header;
  std::string user;
};

/// WORKDIR.
struct WorkdirInstruction {
  InstructionHeader header;
  std::string path;
};

/// One ARG declaration.
struct ArgDecl {
  std::string name;
  std::optional<std::string> default_value;  ///< raw, unexpanded
};

/// ARG.
struct ArgInstruction {
  InstructionHeader header;
  std::vector<ArgDecl> args;
};

/// STOPSIGNAL.
struct StopsignalInstruction {
  InstructionHeader header;
  std::string signal;
};

/// HEALTHCHECK.
struct HealthcheckInstruction {
  InstructionHeader header;
  /// True for HEALTHCHECK NONE.
  bool none = false;
  /// The command (empty for NONE).
  CommandLine command;
  /// Docker's HealthConfig.Test: ["NONE"], ["CMD", args…] or ["CMD-SHELL", cmd].
  std::vector<std::string> test;
  std::optional<int64_t> interval_ns;
  std::optional<int64_t> timeout_ns;
  std::optional<int64_t> start_period_ns;
  std::optional<int64_t> start_interval_ns;
  std::optional<int> retries;
};

/// SHELL.
struct ShellInstruction {
  InstructionHeader header;
  std::vector<std::string> shell;
};

/// MAINTAINER.
struct MaintainerInstruction {
  InstructionHeader header;
  std::string maintainer;
};

/// COPY.
struct CopyInstruction {
  InstructionHeader header;
  std::vector<std::string> sources;      ///< paths/patterns, unexpanded
  std::vector<Heredoc> inline_sources;   ///< `<<EOF` sources, in order
  std::string dest;
  bool json_form = false;
  std::optional<std::string> from;
  std::optional<std::string> chown;
  std::optional<std::string> chmod;
  bool link = false;
  bool parents = false;
  std::vector<std::string> excludes;
};

/// ADD.
struct AddInstruction {
  InstructionHeader header;
  std::vector<std::string> sources;
  std::vector<Heredoc> inline_sources;
  std::string dest;
  bool json_form = false;
  std::optional<std::string> chown;
  std::optional<std::string> chmod;
  std::optional<std::string> checksum;
  bool link = false;
  bool keep_git_dir = false;
  /// --unpack: unset means the default (local archives yes, URLs no).
  std::optional<bool> unpack;
  std::vector<std::string> excludes;
};

struct Instruction;

/// ONBUILD.
struct OnbuildInstruction {
  InstructionHeader header;
  /// The trigger as stored in the image config: the original text without
  /// the ONBUILD keyword, heredoc bodies appended (BuildKit's Expression).
  std::string trigger;
  /// The trigger lowered: one element, or none when it does not lower (see
  /// trigger_error).
  std::vector<Instruction> lowered;
  /// Why the trigger did not lower. BuildKit parses triggers only when a
  /// downstream FROM runs them, so this is not an error of this Dockerfile.
  std::optional<std::string> trigger_error;
};

/// Any instruction.
using InstructionVariant =
    std::variant<FromInstruction, RunInstruction, CmdInstruction, EntrypointInstruction,
                 EnvInstruction, LabelInstruction, ExposeInstruction, VolumeInstruction,
                 UserInstruction, WorkdirInstruction, ArgInstruction, OnbuildInstruction,
                 StopsignalInstruction, HealthcheckInstruction, ShellInstruction,
                 MaintainerInstruction, CopyInstruction, AddInstruction>;

/// One instruction (a wrapper so that ONBUILD can hold one recursively).
struct Instruction {
  InstructionVariant node;

  /// The shared header.
  const InstructionHeader& header() const {
    return std::visit([](const auto& i) -> const InstructionHeader& { return i.header; }, node);
  }
  /// The upper-case instruction name ("RUN").
  const char* name() const;
  /// The instruction as T, or nullptr.
  template <class T>
  const T* as() const {
    return std::get_if<T>(&node);
  }
  /// The instruction as T; throws std::bad_variant_access when it is not.
  template <class T>
  const T& get() const {
    return std::get<T>(node);
  }
};

/// A heredoc body as it is used: leading tabs stripped from each line when
/// the heredoc was written `<<-`.
std::string heredoc_body(const Heredoc& heredoc);

/// The name of a mount type as BuildKit spells it ("bind").
const char* to_string(MountType type);
/// The name of a sharing mode ("private").
const char* to_string(CacheSharing sharing);

}  // namespace imgbuild::parser
