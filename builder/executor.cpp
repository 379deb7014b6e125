// The executor walks a Plan. Each planned stage gets a thread that waits for
// the stages it needs, then takes one of `jobs` slots and runs its steps in
// order. A stage's result is its StageState (config, history, env, args) and
// its layer chain (records + unpacked layer directories), which a child
// stage (FROM <stage>) copies and COPY --from / RUN --mount from= read.
//
// Filesystem steps: a snapshot View over the chain, the work inside it, the
// View's changes diffed into a gzip layer blob staged in the content store,
// and the View committed as the new layer's directory (or discarded when a
// directory for that diff_id exists already). Views are always ended: the
// View destructor removes an uncommitted one.
//
// This file holds the scheduling, the layer commit, each step's flow and
// the final image: a step is resolved (builder/run_step.hpp,
// copy_step.hpp), keyed and looked up (step_keys.cpp), and executed on a
// miss (step_exec.cpp); bases and source roots are in stage_sources.cpp.
// The Build class is declared in builder/build.hpp.

#include "builder/executor.hpp"
#include "builder/build.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <semaphore>
#include <thread>
#include <tuple>

#include <fmt/format.h>

#include "builder/cache_steps.hpp"
#include "builder/config.hpp"
#include "builder/layer_blob.hpp"
#include "builder/context.hpp"
#include "builder/copy_step.hpp"
#include "builder/run_mounts.hpp"
#include "builder/step_label.hpp"
#include "builder/step_cache.hpp"
#include "image/assemble.hpp"
#include "image/metadata.hpp"
#include "parser/lower.hpp"
#include "parser/syntax/parse.hpp"
#include "sandbox/sandbox.hpp"
#include "snapshot/apply.hpp"
#include "snapshot/diff.hpp"
#include "snapshot/layer_dirs.hpp"
#include "snapshot/snapshotter.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

namespace {

// ---- resolver -----------------------------------------------------------------

class StoreResolver final : public ImageResolver {
public:
  explicit StoreResolver(image::ImageStore& store) : m_store(store) {}
  Result<image::LoadedImage> resolve(const std::string& reference, const Platform& platform) override {
    auto rec = m_store.resolve(reference);
    if (!rec) {
      if (rec.error().code == Errc::not_found) {
        return fail(Errc::not_found,
                    fmt::format("base image {} not found in the local store (pulling from a registry is not "
                                "supported yet; load or import it first)",
                                str::go_quote(reference)));
      }
      return fail(std::move(rec).error());
    }
    TRY(image::LoadedImage img, m_store.load(*rec));
    TRY_VOID(check_image_platform(reference, img, platform));
    return img;
  }

private:
  image::ImageStore& m_store;
};

// ---- helpers ------------------------------------------------------------------

std::string oci_layer_type(const std::string& media_type) {
  if (media_type == image::media::docker_layer_gzip) {
    return std::string(image::media::oci_layer_gzip);
  }
  if (media_type == image::media::docker_layer) {
    return std::string(image::media::oci_layer);
  }
  return media_type;
}

std::string instruction_text(const parser::Instruction& ins) {
  const std::string& original = ins.header().original;
  size_t sp = original.find_first_of(" \t");
  std::string keyword = str::to_upper(original.substr(0, sp));
  return sp == std::string::npos ? keyword : keyword + original.substr(sp);
}

bool is_fs_step(const parser::Instruction& ins) {
  return ins.as<parser::RunInstruction>() || ins.as<parser::CopyInstruction>() ||
         ins.as<parser::AddInstruction>() || ins.as<parser::WorkdirInstruction>();
}

Error at_line(Error e, const parser::Instruction& ins, const std::string& file) {
  if (!e.location || e.location->line == 0) {
    e.location = SourceLocation{file, ins.header().range.start_line, 0};
  } else {
    e.location->file = file;
  }
  return e;
}

}  // namespace

// The layer directories of a chain, lowest first. A directory that occurs
// twice (two layers with the same diff_id, e.g. empty ones) is kept only at
// its topmost position: overlayfs refuses a lower twice (ELOOP), and the
// lower copy can change nothing the upper identical copy does not.
std::vector<fsys::path> dirs_of(const std::vector<Layer>& layers) {
  std::vector<fsys::path> out;
  std::set<fsys::path> seen;
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    if (seen.insert(it->dir).second) {
      out.push_back(it->dir);
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

snapshot::SnapshotterConfig snapshotter_config(image::ImageStore& store) {
  fsys::path root = store.content().root();
  snapshot::SnapshotterConfig cfg;
  cfg.work_dir = root / "snapshots" / "work";
  cfg.runtime_dir = root / "run";
  return cfg;
}

Result<void> Build::setup() {
  fsys::path root = m_store.content().root();
  std::error_code ec;
  fsys::create_directories(root / "snapshots", ec);
  m_snapshotter = m_options.services.snapshotter;
  if (m_snapshotter == nullptr) {
    // Made on first use: a fully cached build mounts nothing.
    TRY(m_own_snapshotter, snapshot::make_lazy_snapshotter(m_options.snapshotter, snapshotter_config(m_store)));
    m_snapshotter = m_own_snapshotter.get();
  }
  m_sandbox = m_options.services.sandbox;
  if (m_sandbox == nullptr) {
    TRY(m_own_sandbox, sandbox::make_sandbox(m_options.isolation));
    m_sandbox = m_own_sandbox.get();
  }
  if (m_shared != nullptr) {
    m_staging = m_shared->staging;
    m_staging_mu = &m_shared->staging_mu;
  } else {
    TRY(m_own_staging, image::Staging::create(m_store.content()));
    m_staging = m_own_staging.get();
  }
  TRY(m_cache, StepCache::open(image::meta_db_path(root), m_options.cache_keys_dir));
  TRY_VOID(m_cache->load_traces(m_options.build_identity));
  m_cache->attach(m_options.cache_io, &m_store.content());
  m_cache->hold_with(&m_store.lease());  // leases: no prune removes what this build uses
  int jobs = m_options.jobs > 0 ? m_options.jobs : static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  m_jobs = std::make_unique<std::counting_semaphore<>>(jobs);
  return ok();
}

const StageResult* Build::wait_stage(int index) {
  auto it = m_slots.find(index);
  if (it == m_slots.end()) {
    return nullptr;
  }
  StageSlot& slot = *it->second;
  std::unique_lock lock(slot.mu);
  slot.cv.wait(lock, [&] { return slot.done; });
  return slot.failed ? nullptr : &slot.result;
}

Result<void> Build::finish_layer(StageResult& st, snapshot::View& view, const std::string& created_by,
                                 StepRecord& record, bool independent) {
  TRY(fsys::path upper, view.changes());
  std::vector<std::string> lowers;
  if (!independent) {
    std::vector<fsys::path> chain = dirs_of(st.layers);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      lowers.push_back(it->string());
    }
  }
  // Uncompressed: the blob is the layer tar (digest = diff_id). Compression
  // waits for an output that needs it (image/layer_compression.hpp).
  TRY(image::LayerRecord rec,
      write_layer_blob(*m_staging, m_staging_mu, upper.string(), lowers, m_plan.source_date_epoch));
  const std::string& digest = rec.blob_digest;
  record.layer_bytes = rec.blob_size;
  record.layer_content = rec.content_size;
  TRY_VOID(m_store.lease().hold({{image::LeaseKind::blob, digest}, {image::LeaseKind::layer, rec.diff_id}}));
  fsys::path dir = m_layer_dirs.dir_for(rec.diff_id);
  std::error_code ec;
  if (fsys::is_directory(dir, ec)) {
    TRY_VOID(view.remove());
  } else {
    fsys::path tmp = m_layer_dirs.root() / (".commit-" + io::random_hex());
    fsys::create_directories(tmp, ec);
    TRY_VOID(view.commit(tmp / "fs"));
    if (::rename(tmp.c_str(), dir.parent_path().c_str()) != 0) {
      fsys::remove_all(tmp, ec);
    }
  }
  st.layers.push_back(Layer{rec, dir});
  st.state.image.rootfs.diff_ids.push_back(rec.diff_id);
  add_history(st.state, created_by, true, !created_by.starts_with("WORKDIR "));
  record.layer_digest = digest;
  return ok();
}

Result<void> Build::run_step(const PlannedStage& stage, StageResult& st, const parser::Instruction& ins,
                             const StepInfo& info, int position) {
  StepRecord record;
  record.name = info.name;
  record.line = info.line;
  record.stage = stage.index;
  record.stage_name = stage.display_name;
  auto start = std::chrono::steady_clock::now();
  const auto* run = ins.as<parser::RunInstruction>();
  bool is_copy = ins.as<parser::CopyInstruction>() != nullptr || ins.as<parser::AddInstruction>() != nullptr;
  Result<void> r = [&]() -> Result<void> {
    // The key first (metadata instructions: after applying them, since the
    // config they leave is what their key covers), then hit or execute.
    std::string parent = st.cache_key;
    std::optional<StepKey> key;
    std::optional<MetadataEffect> eff;
    std::string uncacheable;
    std::optional<ResolvedRun> resolved_run;
    std::optional<ResolvedCopy> resolved_copy;
    if (run != nullptr) {
      RunResolveContext rc{&m_plan, stage.index, m_options.network, &m_options.allow};
      TRY(resolved_run, resolve_run(*run, st.state, rc));
      TRY(key, run_key(st, *resolved_run, uncacheable));
    } else if (is_copy) {
      TRY(resolved_copy, resolve_copy_step(stage, st, ins));
      TRY(key, copy_key(st, *resolved_copy, uncacheable));
    } else {
      ArgInputs inputs{&m_plan.build_args, &m_plan.global_args};
      TRY(eff, apply_metadata(st.state, ins, inputs, m_plan.escape));
      key = metadata_key(st, ins);
    }
    bool fs_step = run != nullptr || is_copy || eff->mkdir.has_value();
    st.trace.push_back(TraceStep{position, key ? key->key : "", key ? key->inputs : nlohmann::json()});
    std::optional<cache::CacheRecord> hit;
    if (key) {
      m_cache->debug(debug_name(stage, position), *key);
      if (!stage.no_cache || !fs_step) {
        TRY(hit, m_cache->lookup(key->key, [&](const std::string& d) { return m_store.content().has(d); }));
      }
    }
    if (hit) {
      m_cache->used(key->key);
      st.cache_key = key->key;
      if (!fs_step) {
        return ok();
      }
      TRY_VOID(apply_cached(st, *hit));
      record.cached = true;
      record.layer_digest = hit->layer.blob_digest;
      record.layer_content = hit->layer.content_size;
      record.cache_source = m_cache->source_of(key->key);
      return ok();
    }
    // A miss: explain the first one of the chain.
    if (!st.cache_broken) {
      st.cache_broken = true;
      MissReason why;
      if (!uncacheable.empty()) {
        why.text = uncacheable;
      } else if (stage.no_cache) {
        why.text = "cache disabled (--no-cache)";
      } else {
        std::set<std::string> args;
        for (const auto& a : st.state.args) {
          args.insert(a.name);
        }
        TRY(why, m_cache->explain(stage.display_name, st.trace, st.cache_reason, args));
      }
      st.cache_reason = why.text;
      st.cache_reason_quiet = why.quiet;
    } else if (!uncacheable.empty() && fs_step) {
      st.cache_reason = uncacheable;
      st.cache_reason_quiet = false;
    }
    if (fs_step) {
      if (stage.no_cache) {
        record.cache_reason = "cache disabled (--no-cache)";
      } else {
        record.cache_reason = st.cache_reason.empty() ? "a previous step changed" : st.cache_reason;
      }
      if (!st.cache_reason.empty() && !st.cache_reason_quiet && info.id != 0) {
        m_progress.note(info, "cache miss: " + st.cache_reason);
      }
      if (!st.cache_reason_quiet) {
        st.cache_reason.clear();  // a first build stays one for every step
      }
    }
    if (run != nullptr) {
      TRY_VOID(do_run(st, *resolved_run, info, record));
    } else if (is_copy) {
      TRY_VOID(do_copy(st, *resolved_copy, record));
    } else if (eff->mkdir) {
      TRY_VOID(do_workdir(st, *eff->mkdir, record));
    }
    if (key) {
      TRY_VOID(record_cache(st, *key, parent, position, ins, record));
      st.cache_key = key->key;
    } else {
      // Not cacheable: the chain goes on from what the step produced.
      cache::KeyBuilder after;
      after.key("parent", parent).str("result", st.layers.empty() ? "" : st.layers.back().record.diff_id);
      st.cache_key = after.finish();
      st.trace.back().key = st.cache_key;
    }
    return ok();
  }();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  record.seconds = secs;
  if (info.id != 0) {
    if (!r) {
      m_progress.failed(info, secs, r.error().message);
    } else if (record.cached) {
      m_progress.cached(info);
    } else {
      m_progress.finished(info, secs);
    }
  }
  if (r && info.id != 0) {
    record_step(std::move(record));
  }
  if (!r) {
    return fail(at_line(std::move(r).error(), ins, "Dockerfile"));
  }
  return ok();
}

Result<StageResult> Build::run_stage(const PlannedStage& stage) {
  std::string created = created_text();
  StepInfo from_info;
  auto start = std::chrono::steady_clock::now();
  auto base = base_of(stage, created, from_info);
  if (!base) {
    return fail(at_line(std::move(base).error(), parser::Instruction{stage.from}, "Dockerfile"));
  }
  StageResult st = std::move(base).value();
  st.state.created = created;
  st.trace = {TraceStep{-1, st.cache_key, nlohmann::json()}};
  st.state.defer_empty_created = !m_plan.source_date_epoch.has_value();

  // ONBUILD triggers of the base run first; they are not inherited further.
  std::vector<parser::Instruction> steps;
  std::vector<std::string> triggers = st.state.image.config->on_build;
  st.state.image.config->on_build.clear();
  for (const auto& t : triggers) {
    auto ast = parser::parse_dockerfile(t, "ONBUILD trigger");
    if (!ast) {
      return fail(std::move(ast).error());
    }
    parser::LoweredFile lowered = parser::lower(*ast, "Dockerfile");
    if (!lowered.ok()) {
      return fail(lowered.errors.front());
    }
    for (auto& i : lowered.instructions) {
      steps.push_back(std::move(i));
    }
  }
  size_t trigger_count = steps.size();
  steps.insert(steps.end(), stage.steps.begin(), stage.steps.end());

  // BuildKit counts the FROM of an image base as step 1; scratch and stage
  // bases have no FROM step.
  int from_steps = from_info.id != 0 ? 1 : 0;
  int total = from_steps;
  for (const auto& s : steps) {
    if (is_fs_step(s)) {
      ++total;
    }
  }
  if (from_info.id != 0) {
    from_info.name = step_label(label_name(stage), 1, total) + from_info.name.substr(from_info.name.find("] ") + 2);
    m_progress.started(from_info);
    m_progress.finished(from_info, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  int index = from_steps;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (m_failed.load()) {
      return fail(Errc::internal, "build cancelled");
    }
    const parser::Instruction& ins = steps[i];
    StepInfo info;
    if (is_fs_step(ins)) {
      ++index;
      // The step name shows the instruction with variables expanded, quotes
      // and escapes kept (as BuildKit's progress does).
      std::string text = instruction_text(ins);
      parser::LexerOptions lo;
      lo.escape = m_plan.escape;
      lo.keep_quotes = true;
      lo.keep_escapes = true;
      lo.keep_unset = true;  // `$HTTP_PROXY` not declared: shown as written
      if (auto shown = parser::Lexer(lo).process_word(text, st.state.env)) {
        text = *shown;
      }
      std::string name =
          step_label(label_name(stage, &st.state.env), index, total) + (i < trigger_count ? "ONBUILD " : "") + text;
      info = new_step(name, ins.header().range.start_line);
      m_progress.started(info);
    }
    auto done = run_step(stage, st, ins, info, static_cast<int>(i));
    if (!done) {
      {
        std::lock_guard lock(m_mu);
        m_traces[stage.display_name] = st.trace;  // a failed build is an earlier build too
      }
      Error e = std::move(done).error();
      if (i < trigger_count && e.location) {
        e.location->line = stage.from.header.range.start_line;  // a trigger fails at the FROM
      }
      return fail(std::move(e));
    }
  }
  std::lock_guard lock(m_mu);
  m_traces[stage.display_name] = st.trace;
  return st;
}

void Build::stage_thread(const PlannedStage& stage) {
  StageSlot& slot = *m_slots.at(stage.index);
  bool deps_ok = true;
  for (int need : stage.needs) {
    if (wait_stage(need) == nullptr) {
      deps_ok = false;
    }
  }
  Result<StageResult> result = fail(Errc::internal, "a stage this stage needs failed");
  std::shared_ptr<SharedBuild::Stage> shared;
  bool owner = true;
  if (m_shared != nullptr && !stage.share_key.empty()) {
    std::tie(shared, owner) = m_shared->claim(stage.share_key);
  }
  if (!owner) {
    // Another platform's Build runs this stage: wait for its result.
    slot.started = since_start();
    std::optional<StageResult> theirs = SharedBuild::wait(*shared);
    slot.finished = since_start();
    if (theirs) {
      result = std::move(*theirs);
    } else {
      result = fail(Errc::internal, "a shared stage failed");
    }
  } else if (deps_ok && !m_failed.load() && (m_shared == nullptr || !m_shared->failed.load())) {
    m_jobs->acquire();
    slot.started = since_start();
    result = run_stage(stage);
    slot.finished = since_start();
    m_jobs->release();
  }
  if (owner && shared) {
    SharedBuild::finish(*shared, result ? std::optional<StageResult>(*result) : std::nullopt);
  }
  if (!result) {
    if (m_shared != nullptr) {
      m_shared->failed.store(true);
    }
    bool first = !m_failed.exchange(true);
    std::lock_guard lock(m_mu);
    if (first || !m_error) {
      m_error = result.error();
    }
  }
  std::lock_guard lock(slot.mu);
  slot.done = true;
  if (result) {
    slot.result = std::move(result).value();
  } else {
    slot.failed = true;
  }
  slot.cv.notify_all();
}

Result<BuiltImage> Build::run() {
  TRY_VOID(run_stages());
  image::NewImage ni;
  TRY(BuiltImage out, assemble(ni));
  TRY_VOID(m_store.commit(*m_staging, {ni}));
  TRY_VOID(finish(out));
  return out;
}

Result<void> Build::run_stages() {
  // Entitlements are checked before anything runs, as BuildKit does (a
  // RUN from an ONBUILD trigger is checked when it is resolved).
  for (const auto& s : m_plan.stages) {
    for (const auto& ins : s.steps) {
      if (const auto* r = ins.as<parser::RunInstruction>()) {
        if (auto allowed = check_security(*r, m_options.allow); !allowed) {
          return fail(at_line(std::move(allowed).error(), ins, "Dockerfile"));
        }
      }
    }
  }
  m_began = std::chrono::steady_clock::now();
  TRY_VOID(setup());
  for (const auto& s : m_plan.stages) {
    m_slots[s.index] = std::make_unique<StageSlot>();
  }
  std::vector<std::thread> threads;
  threads.reserve(m_plan.stages.size());
  for (const auto& s : m_plan.stages) {
    threads.emplace_back([this, &s] { stage_thread(s); });
  }
  for (auto& t : threads) {
    t.join();
  }
  auto saved = m_cache->save_trace(m_traces, m_options.now_sec);
  if (m_options.steps_seen != nullptr) {
    *m_options.steps_seen = m_steps;
  }
  if (m_error) {
    return fail(*m_error);  // the build's own error, not the trace's
  }
  TRY_VOID(saved);
  return ok();
}

Result<BuiltImage> Build::assemble(image::NewImage& ni) {
  StageSlot& target = *m_slots.at(m_plan.target);
  StageResult& res = target.result;
  apply_build_labels(res.state, m_plan.labels);

  BuiltImage out;
  image::ImageConfig cfg = res.state.image;
  if (m_plan.explicit_platform) {
    // BuildKit: an explicit target platform is the image's, whatever the
    // target stage's base was (the variant only when given or when the
    // os/architecture changed).
    const Platform& tp = m_plan.platform;
    bool same_os_arch = cfg.os == tp.os && cfg.architecture == tp.architecture;
    cfg.os = tp.os;
    cfg.architecture = tp.architecture;
    if (!tp.variant.empty() || !same_os_arch) {
      cfg.variant = tp.variant;
    }
  }
  {
    Platform normal = normalize_platform({cfg.os, cfg.architecture, cfg.variant});
    if (!cfg.architecture.empty()) {
      cfg.os = normal.os;
      cfg.architecture = normal.architecture;
      cfg.variant = normal.variant;
    }
  }
  if (m_plan.source_date_epoch) {
    cfg.created = created_text();
  } else {
    // BuildKit: undated metadata entries take their neighbours' times and
    // the image is as old as its last entry.
    std::string last = fill_history_created(cfg.history);
    cfg.created = last.empty() ? created_text() : last;
  }
  cfg.rootfs.type = "layers";
  cfg.rootfs.diff_ids.clear();
  for (const auto& l : res.layers) {
    cfg.rootfs.diff_ids.push_back(l.record.diff_id);
  }
  std::vector<image::AssembledLayer> layers;
  for (const auto& l : res.layers) {
    image::AssembledLayer al;
    al.descriptor.media_type = oci_layer_type(l.record.media_type);
    al.descriptor.digest = l.record.blob_digest;
    al.descriptor.size = l.record.blob_size;
    al.record = l.record;
    al.record.media_type = al.descriptor.media_type;
    out.layers.push_back(al.record);
    out.layer_dirs.push_back(l.dir);
    layers.push_back(std::move(al));
  }
  out.config = cfg;
  image::AssembledImage assembled;
  {
    std::lock_guard lock(*m_staging_mu);  // the staging area may be shared (several platforms)
    TRY(assembled, image::stage_image(*m_staging, cfg, layers, m_options.tags, ni));
  }
  out.config_bytes = std::move(assembled.config_bytes);
  out.config_digest = std::move(assembled.config_digest);
  out.manifest_bytes = std::move(assembled.manifest_bytes);
  out.manifest_digest = std::move(assembled.manifest_digest);
  out.steps = m_steps;
  out.cache_key = res.cache_key;
  out.target = m_plan.target;
  out.platform = m_plan.platform;
  for (const auto& s : m_plan.stages) {
    const StageSlot& slot = *m_slots.at(s.index);
    out.stages.push_back(BuiltImage::StageTiming{s.index, s.display_name, s.needs, slot.started, slot.finished});
  }
  return out;
}

Result<void> Build::finish(BuiltImage& out) {
  TRY_VOID(m_cache->finish(m_options.now_sec));
  TRY(auto rec, m_store.db().image(out.manifest_digest));
  if (rec) {
    out.record = *rec;
  }
  return ok();
}


std::unique_ptr<ImageResolver> make_store_resolver(image::ImageStore& store) {
  return std::make_unique<StoreResolver>(store);
}

Result<BuiltImage> execute(const Plan& plan, image::ImageStore& store, ImageResolver& resolver,
                           const ExecuteOptions& options, ProgressSink& progress) {
  Build build(plan, store, resolver, options, progress);
  return build.run();
}

Result<void> export_rootfs(const image::ImageStore& store, const BuiltImage& img, const fsys::path& dest) {
  std::error_code ec;
  fsys::create_directories(dest, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot create {}: {}", dest.string(), ec.message()));
  }
  for (const auto& l : img.layers) {
    fsys::path blob = store.content().blob_path(l.blob_digest);
    int fd = ::open(blob.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return fail(Errc::not_found, fmt::format("layer blob {} is missing", l.blob_digest));
    }
    UniqueFd owned(fd);
    snapshot::ApplyOptions opts;
    opts.mode = snapshot::ApplyMode::merged;
    TRY(auto applied, snapshot::apply_layer_fd(dest.string(), fd, "layer " + l.blob_digest, opts));
    (void)applied;
  }
  return ok();
}

}  // namespace imgbuild::builder
