// The cache side of a step (see builder/cache_steps.hpp for what each key
// holds): keys made from the resolved steps, cached results applied to the
// stage, records written after a miss, and the FROM record of an image base.

#include <ctime>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "builder/build.hpp"
#include "builder/copy.hpp"
#include "builder/run_mounts.hpp"
#include "cache/key.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace {

// The `created` of the last history entry of a cache record's config (the
// time its layer was made); "" when the config does not parse.
std::string layer_created(const std::string& config) {
  auto cfg = image::parse_config(config, "cache record config");
  if (!cfg || cfg->history.empty()) {
    return "";
  }
  return cfg->history.back().created;
}

}  // namespace

std::map<std::string, std::string> key_env(const parser::ShellEnv& env, const std::set<std::string>* only) {
  std::map<std::string, std::string> out;
  for (const auto& k : env.keys()) {
    if (is_proxy_arg(k) || (only != nullptr && only->count(k) == 0)) {
      continue;
    }
    if (const std::string* v = env.get(k)) {
      out[k] = *v;
    }
  }
  return out;
}

std::string Build::label_name(const PlannedStage& stage, const parser::ShellEnv* env) const {
  std::string name = m_plan.stage_names.size() == 1 ? std::string() : stage.display_name;
  if (m_shared == nullptr) {
    return name;
  }
  // Several platforms: BuildKit names the stage's platform first, then the
  // target the step's TARGETPLATFORM names when it is another architecture
  // (just "->arm64" on the same OS) or OS.
  std::string platform = stage.platform.str();
  const std::string* target_text = env != nullptr ? env->get("TARGETPLATFORM") : nullptr;
  if (target_text != nullptr) {
    if (auto target = parse_platform(*target_text)) {
      const Platform base = normalize_platform(stage.platform);
      if (target->os != base.os) {
        platform += "->" + target->str();
      } else if (target->architecture != base.architecture) {
        platform += "->" + target->architecture + (target->variant.empty() ? "" : "/" + target->variant);
      }
    }
  }
  return name.empty() ? platform : platform + " " + name;
}

std::string Build::debug_name(const PlannedStage& stage, int position) const {
  std::string name;
  std::string shown = m_shared != nullptr ? stage.platform.str() + "-" + stage.display_name : stage.display_name;
  for (char c : shown) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    name.push_back(keep ? c : '_');
  }
  return fmt::format("{}-{:03}", name, position + 1);
}

Result<std::optional<StepKey>> Build::run_key(const StageResult& st, const ResolvedRun& run,
                                              std::string& uncacheable) {
  StepKeyBuilder b(st.cache_key, "RUN", run.text);
  b.list("shell", run.shell).field("user", run.user).field("workdir", run.workdir);
  b.field("network", run.network).field("security", run.security);
  b.list("devices", run.devices).list("mounts", run.mount_specs);
  b.field("source-date-epoch", m_plan.source_date_epoch ? std::to_string(*m_plan.source_date_epoch) : "");
  std::map<std::string, std::string> env;
  for (const auto& e : run.env) {
    size_t eq = e.find('=');
    std::string k = e.substr(0, eq);
    if (!is_proxy_arg(k)) {
      env[k] = eq == std::string::npos ? "" : e.substr(eq + 1);
    }
  }
  b.env(env);
  int n = 0;
  for (const auto& m : run.mounts) {
    ++n;
    if (const auto* cache = std::get_if<CacheMount>(&m)) {
      if (cache->source.from.empty() && m_options.cache_io != nullptr) {
        // --cache-to mounts=true exports it even when this step is a hit.
        m_options.cache_io->note_mount(cache->id, cache_mount_path(m_store.content().root(), cache->id));
      }
      continue;
    }
    const auto* bind = std::get_if<BindMount>(&m);
    if (bind == nullptr) {
      continue;
    }
    std::string label = fmt::format("mount{}", n);
    SourceTree tree;
    const std::optional<SourceRef>& ref = bind->source.ref;
    switch (source_origin(ref)) {
      case SourceOrigin::stage: {
        const StageResult* other = wait_stage(ref->stage);
        if (other == nullptr) {
          return fail(Errc::internal, fmt::format("stage {} did not complete", bind->source.from));
        }
        b.field(label + "-stage", other->cache_key);
        continue;
      }
      case SourceOrigin::oci_layout:
        uncacheable = "bind mount source unavailable";
        return std::optional<StepKey>();
      case SourceOrigin::image: {
        auto img = resolve_image(source_image(*ref), ref->platform);
        if (!img) {
          uncacheable = "bind mount source unavailable";
          return std::optional<StepKey>();
        }
        b.field(label + "-image", img->record.config_digest);
        continue;
      }
      case SourceOrigin::context:
        if (ref) {
          auto named = named_context(ref->source);
          if (!named) {
            uncacheable = "bind mount source unavailable";
            return std::optional<StepKey>();
          }
          tree = SourceTree{&(*named)->root(), &(*named)->ignore()};
        } else if (m_options.context == nullptr) {
          return fail(Errc::internal, "no build context");
        } else {
          tree = SourceTree{&m_options.context->root(), &m_options.context->ignore()};
        }
        break;
    }
    auto selected = select_sources(tree, bind->source.path.empty() ? "." : bind->source.path);
    if (!selected) {
      uncacheable = "bind mount source unavailable";
      return std::optional<StepKey>();
    }
    TRY(auto files, hash_sources(tree, *selected, nullptr, m_cache->index()));
    b.files(label, files.digest, files.files);
  }
  return std::optional<StepKey>(b.finish());
}

Result<ResolvedCopy> Build::resolve_copy_step(const PlannedStage& stage, const StageResult& st,
                                              const parser::Instruction& ins) {
  TRY(ResolvedCopy copy, resolve_copy(ins, st.state, m_plan, stage.index));
  if (copy.origin == SourceOrigin::context) {
    if (copy.ref) {
      TRY(copy.context, named_context(copy.ref->source));
    } else if (m_options.context == nullptr) {
      return fail(Errc::internal, "no build context");
    } else {
      copy.context = m_options.context;
    }
  }
  return copy;
}

Result<std::optional<StepKey>> Build::copy_key(const StageResult& st, const ResolvedCopy& copy,
                                               std::string& uncacheable) {
  const CopyRequest& req = copy.request;
  StepKeyBuilder b(st.cache_key, copy.keyword, copy.text);
  b.list("sources", req.sources).field("dest", req.dest).field("workdir", req.workdir);
  b.field("chown", req.chown.value_or("")).field("chmod", req.chmod.value_or(""));
  b.field("checksum", req.checksum.value_or(""));
  b.field("unpack", req.unpack ? (*req.unpack ? "true" : "false") : "");
  b.field("keep-git-dir", req.keep_git_dir ? "true" : "false").field("parents", req.parents ? "true" : "false");
  b.list("excludes", req.excludes).field("link", req.link_mode == LinkMode::linked ? "true" : "false");
  b.field("source-date-epoch", m_plan.source_date_epoch ? std::to_string(*m_plan.source_date_epoch) : "");
  if (!req.heredocs.empty()) {
    b.env(key_env(st.state.env, nullptr));  // heredoc bodies expand with the whole env
  } else {
    std::set<std::string> used = referenced_vars(copy.text);
    b.note_env(key_env(st.state.env, &used));
  }
  for (const auto& s : req.sources) {
    if (classify_source(s) != SourceKind::local && !req.checksum) {
      uncacheable = fmt::format("{} is not cached: a URL or git source needs --checksum", str::go_quote(s));
      return std::optional<StepKey>();
    }
  }
  // What the copy reads, hashed: the selected entries of `tree` (their
  // paths, types, modes, owners, contents, link targets, xattrs — never
  // times), as BuildKit keys a copy by the checksum of what it copies.
  auto hash_selected = [&](const SourceTree& tree, cache::StatIndex& index) -> Result<SourceFiles> {
    TRY(auto excludes, IgnoreMatcher::from_patterns(req.excludes));
    std::vector<SelectedSource> all;
    for (const auto& s : req.sources) {
      if (classify_source(s) != SourceKind::local) {
        continue;
      }
      TRY(auto matches, select_sources(tree, s, &excludes));
      for (auto& m : matches) {
        all.push_back(std::move(m));
      }
    }
    // An octal --chmod gives every copied entry its mode: the sources' modes
    // cannot change the result, so they stay out of the key.
    HashOptions hash_options;
    if (req.chmod) {
      TRY(ChmodSpec chmod, parse_chmod(*req.chmod));
      hash_options.modes = !chmod.octal.has_value();
    }
    return hash_sources(tree, all, &excludes, index, hash_options);
  };
  // The digest of a stage's selected files, remembered by the stage's layer
  // directories and what selects and hashes them: every platform's COPY
  // from one shared stage reads it once.
  auto memo_key = [&](const StageResult& other) {
    cache::KeyBuilder k(cache::KeyBuilder::Transcript::skipped);
    std::vector<std::string> dirs;
    for (const auto& d : dirs_of(other.layers)) {
      dirs.push_back(d.string());
    }
    k.list("layer-dirs", dirs).list("sources", req.sources).list("excludes", req.excludes);
    k.str("chmod", req.chmod.value_or("")).boolean("parents", req.parents);
    return k.finish();
  };
  switch (copy.origin) {
    case SourceOrigin::stage: {
      // Keyed by the content copied, not by the stage's identity: a stage
      // rebuilt for an unrelated change (a comment in main.c) that yields
      // the same artifact leaves this COPY and the steps after it cached.
      // No stat index: the stage's files are read and hashed.
      const StageResult* other = wait_stage(copy.ref->stage);
      if (other == nullptr) {
        return fail(Errc::internal, fmt::format("stage {} did not complete", copy.from));
      }
      const std::string memo = memo_key(*other);
      if (std::optional<SourceFiles> known = m_copies->digest(memo)) {
        b.files("from-stage-content", known->digest, known->files);
        return std::optional<StepKey>(b.finish());
      }
      TRY(SourceRoot src, source_root(copy.from, copy.ref, ""));
      TRY(fs::Root root, fs::Root::open(src.path.string()));
      cache::StatIndex no_index;
      TRY(SourceFiles files, hash_selected(SourceTree{&root, nullptr}, no_index));
      m_copies->remember_digest(memo, files);
      b.files("from-stage-content", files.digest, files.files);
      return std::optional<StepKey>(b.finish());
    }
    case SourceOrigin::oci_layout:
      uncacheable = "oci-layout sources are not cached";
      return std::optional<StepKey>();
    case SourceOrigin::image: {
      TRY(auto img, resolve_image(source_image(*copy.ref), copy.ref->platform));
      b.field("from-image", img.record.config_digest);
      return std::optional<StepKey>(b.finish());
    }
    case SourceOrigin::context:
      break;
  }
  TRY(SourceFiles files, hash_selected(SourceTree{&copy.context->root(), &copy.context->ignore()}, m_cache->index()));
  b.files("sources-digest", files.digest, files.files);
  return std::optional<StepKey>(b.finish());
}

StepKey Build::metadata_key(const StageResult& st, const parser::Instruction& ins) {
  const std::string& text = ins.header().original;
  std::string kind = str::to_upper(text.substr(0, text.find_first_of(" \t")));
  StepKeyBuilder b(st.cache_key, kind, text);
  b.field("config", nlohmann::json(*st.state.image.config).dump());
  b.field("author", st.state.image.author);
  // WORKDIR's directory mtime is clamped to SOURCE_DATE_EPOCH.
  b.field("source-date-epoch", m_plan.source_date_epoch ? std::to_string(*m_plan.source_date_epoch) : "");
  std::set<std::string> used = referenced_vars(text);
  b.note_env(key_env(st.state.env, &used));
  return b.finish();
}

Result<void> Build::apply_cached(StageResult& st, const cache::CacheRecord& rec) {
  if (!rec.has_layer()) {
    add_history(st.state, rec.created_by, false, false);
    return ok();
  }
  // Unpacked by the first step that mounts it (unpack_layers), like a base
  // layer: a chain that is cached to its end never unpacks anything.
  st.layers.push_back(Layer{rec.layer, m_layer_dirs.dir_for(rec.layer.diff_id)});
  st.state.image.rootfs.diff_ids.push_back(rec.layer.diff_id);
  add_history(st.state, rec.created_by, true, !rec.created_by.starts_with("WORKDIR "));
  if (!m_plan.source_date_epoch) {
    // The layer's own time, from the build that made it (BuildKit keeps it
    // too: a fully cached rebuild gives the same image).
    std::string made = layer_created(rec.config);
    if (!made.empty()) {
      st.state.image.history.back().created = made;
    }
  }
  return ok();
}

Result<void> Build::record_cache(const StageResult& st, const StepKey& key, const std::string& parent, int position,
                                 const parser::Instruction& ins, const StepRecord& record) {
  (void)ins;
  cache::CacheRecord rec;
  rec.key = key.key;
  rec.parent_key = parent;
  rec.position = position;
  rec.kind = key.inputs.value("kind", "");
  if (!record.layer_digest.empty() && !st.layers.empty()) {
    rec.layer = st.layers.back().record;
  }
  rec.config = image::serialize(st.state.image);
  if (!st.state.image.history.empty()) {
    std::string by = st.state.image.history.back().created_by;
    constexpr std::string_view suffix = " # buildkit";
    if (by.ends_with(suffix)) {
      by.resize(by.size() - suffix.size());
    }
    rec.created_by = by;
  }
  rec.inputs = key.inputs.dump();
  rec.created_at = static_cast<int64_t>(std::time(nullptr));
  rec.last_used = rec.created_at;
  return m_cache->record(rec, [&]() -> Result<void> {
    if (rec.has_layer()) {
      std::lock_guard lock(*m_staging_mu);
      TRY(bool added, m_staging->publish_one(rec.layer.blob_digest));
      (void)added;
    }
    return ok();
  });
}

Result<void> Build::base_cache(const PlannedStage& stage, StageResult& res, const image::LoadedImage& img) {
  std::string reference = stage.base.kind == BaseKind::image ? stage.base.name : stage.base.source;
  std::string parent = from_parent_key(reference, stage.platform);
  StepKeyBuilder b(parent, "FROM", reference);
  b.base(img.record.config_digest);
  StepKey key = b.finish();
  m_cache->debug(debug_name(stage, -1), key);
  res.cache_key = key.key;
  TRY(auto known, m_cache->lookup(key.key, [](const std::string&) { return true; }));
  if (known) {
    m_cache->used(key.key);
    return ok();
  }
  TRY(auto prev, m_cache->db().previous(parent, -1));
  if (prev) {
    res.cache_reason = "base image changed";
  }
  cache::CacheRecord rec;
  rec.key = key.key;
  rec.parent_key = parent;
  rec.position = -1;
  rec.kind = "FROM";
  rec.config = img.config_bytes;
  rec.created_by = "FROM " + reference;
  rec.inputs = key.inputs.dump();
  rec.created_at = static_cast<int64_t>(std::time(nullptr));
  rec.last_used = rec.created_at;
  return m_cache->record(rec, {});
}

}  // namespace imgbuild::builder
