#pragma once
// The builder's side of the build cache: what goes into each step's key and
// into the inputs summary that explains a miss. The key encoding itself is
// cache::KeyBuilder; the records are cache::CacheDb.
//
// Key fields per step (after the version salt and the parent key):
//  - every instruction: its kind and its text as written (header.original,
//    heredoc bodies included);
//  - metadata instructions (ENV, LABEL, USER, WORKDIR, HEALTHCHECK, ONBUILD,
//    CMD, …): the whole container config after the step (so every config
//    change misses, CVE-2024-24557), plus the author; ARG adds nothing else,
//    so a changed ARG value misses only where it is used;
//  - RUN: the environment the process gets (config Env and every ARG in
//    scope, without the proxy variables), the shell, user, working dir,
//    network, security, SOURCE_DATE_EPOCH (layer times are clamped to it),
//    and per bind mount its source (a content digest of
//    the selected context files, another stage's key, or an image);
//  - COPY/ADD: the expanded request (sources, dest, workdir, chown, chmod,
//    checksum, unpack, parents, excludes, link, heredoc bodies,
//    SOURCE_DATE_EPOCH) and the
//    origin of the sources: a per-file content digest of exactly the
//    selected files (path, type, mode, uid/gid, content, link target,
//    xattrs — never times), another stage's key, or an image's config digest.
// The stage's start: scratch (platform), an image (config digest, after a
// FROM record whose parent is the reference as written), another stage's
// final key.
//
// The inputs summary (JSON) holds the same values in readable form: the
// instruction, the fields, the env the step can see, the files by path.
// explain_miss compares two summaries and names the first difference.

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "builder/context.hpp"
#include "builder/plan.hpp"
#include "cache/key.hpp"
#include "cache/stat_index.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// A step key with its transcript and inputs summary.
struct StepKey {
  std::string key;
  std::string transcript;
  nlohmann::json inputs;
};

/// Builds a StepKey: each key field also goes to the inputs summary.
class StepKeyBuilder {
public:
  /// Starts a key on `parent` for an instruction of `kind` written as `text`.
  StepKeyBuilder(const std::string& parent, std::string_view kind, std::string_view text);
  /// A string field.
  StepKeyBuilder& field(std::string_view name, std::string_view value);
  /// A list field.
  StepKeyBuilder& list(std::string_view name, const std::vector<std::string>& items);
  /// The environment the step sees (in the key).
  StepKeyBuilder& env(const std::map<std::string, std::string>& vars);
  /// Environment values shown in the summary only (not in the key).
  StepKeyBuilder& note_env(const std::map<std::string, std::string>& vars);
  /// Files (path → entry digest) under a label, with their total digest.
  StepKeyBuilder& files(std::string_view label, const std::string& digest,
                        const std::map<std::string, std::string>& by_path);
  /// The base image digest.
  StepKeyBuilder& base(std::string_view digest);
  /// The key.
  StepKey finish();

private:
  cache::KeyBuilder m_key;
  nlohmann::json m_inputs;
};

/// Per-file digests of selected sources.
struct SourceFiles {
  /// Digest over every entry (source order and named paths included).
  std::string digest;
  /// Entry path ("named/rel") → digest of that entry's metadata and content.
  std::map<std::string, std::string> files;
};

/// Which source metadata can reach the copied files.
struct HashOptions {
  /// False when every copied entry gets one fixed mode (an octal --chmod):
  /// the source mode bits are then left out of the entry digests, so a
  /// checkout with another umask still hits.
  bool modes = true;
};

/// Hashes exactly what a COPY of `sources` would read: for every entry the
/// path, type, mode (unless options.modes is false), uid/gid, content digest
/// (through `index`), link target, device numbers and xattrs — never mtime,
/// atime or ctime.
Result<SourceFiles> hash_sources(const SourceTree& tree, const std::vector<SelectedSource>& sources,
                                 const IgnoreMatcher* excludes, cache::StatIndex& index,
                                 const HashOptions& options = {});

/// The key a stage built on scratch starts from.
std::string scratch_base_key(const Platform& platform);
/// The parent key of a FROM record: the reference as written and the platform.
std::string from_parent_key(std::string_view reference, const Platform& platform);
/// The key a stage built on another stage (final key `parent`) starts from.
std::string stage_base_key(const std::string& parent);

/// Names of the variables `text` references ($NAME, ${NAME…}).
std::set<std::string> referenced_vars(std::string_view text);

/// The first difference between the inputs of a previous record and the
/// current step, as a short sentence ("ARG VERSION changed: 1.2 → 1.3",
/// "COPY . /src: src/main.c changed", "base image changed"); `args` are the
/// ARG names in scope (an env difference on one of them reads ARG).
std::string explain_miss(const nlohmann::json& previous, const nlohmann::json& current,
                         const std::set<std::string>& args);

}  // namespace imgbuild::builder
