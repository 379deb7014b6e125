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

#include "builder/executor.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <semaphore>
#include <thread>

#include <fmt/format.h>

#include "builder/cache_steps.hpp"
#include "builder/config.hpp"
#include "builder/context.hpp"
#include "builder/context_filter.hpp"
#include "builder/copy.hpp"
#include "builder/oci_layout.hpp"
#include "builder/secret_mask.hpp"
#include "builder/ssh_forward.hpp"
#include "builder/step_label.hpp"
#include "builder/step_cache.hpp"
#include "parser/lower.hpp"
#include "parser/syntax/parse.hpp"
#include "sandbox/sandbox.hpp"
#include "sandbox/user.hpp"
#include "snapshot/apply.hpp"
#include "snapshot/copy.hpp"
#include "snapshot/diff.hpp"
#include "snapshot/layer_dirs.hpp"
#include "snapshot/snapshotter.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/hash.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

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

// ---- resolver -----------------------------------------------------------------

class StoreResolver final : public ImageResolver {
public:
  explicit StoreResolver(image::ImageStore& store) : m_store(store) {}
  Result<image::LoadedImage> resolve(const std::string& reference) override {
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
    return m_store.load(*rec);
  }

private:
  image::ImageStore& m_store;
};

// ---- helpers ------------------------------------------------------------------

std::string random_hex() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard lock(mu);
  return fmt::format("{:016x}", rng());
}

std::string oci_layer_type(const std::string& media_type) {
  if (media_type == image::media::docker_layer_gzip) {
    return std::string(image::media::oci_layer_gzip);
  }
  if (media_type == image::media::docker_layer) {
    return std::string(image::media::oci_layer);
  }
  return media_type;
}

std::optional<std::string> read_text(const fs::Root& root, std::string_view path) {
  auto fd = root.open_at(path, O_RDONLY | O_NOFOLLOW);
  if (!fd) {
    return std::nullopt;
  }
  std::string out;
  char buf[8192];
  ssize_t n = 0;
  while ((n = ::read(fd->get(), buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (size_t{16} << 20)) {
      break;
    }
  }
  return out;
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

// The directory of a RUN --mount=type=cache with this id in the store.
fsys::path cache_mount_path(const fsys::path& store_root, const std::string& id) {
  return store_root / "cache-mounts" / sha256(id).hex().substr(0, 32);
}

// ---- layers -------------------------------------------------------------------

struct Layer {
  image::LayerRecord record;
  fsys::path dir;
};

struct StageResult {
  StageState state;
  std::vector<Layer> layers;
  /// The cache key of the last step (the parent of the next one).
  std::string cache_key;
  /// True once a step of this chain missed the cache.
  bool cache_broken = false;
  /// A miss reason waiting for the next reported step ("base image changed").
  std::string cache_reason;
};

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

using snapshot::LayerDirs;

// ---- the build ----------------------------------------------------------------

class Build {
public:
  Build(const Plan& plan, image::ImageStore& store, ImageResolver& resolver, const ExecuteOptions& options,
        ProgressSink& progress)
      : m_plan(plan),
        m_store(store),
        m_resolver(resolver),
        m_options(options),
        m_progress(progress),
        m_layer_dirs(store.content().root() / "snapshots") {}

  Result<BuiltImage> run();

private:
  struct StageSlot {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool failed = false;
    StageResult result;
  };

  Result<void> setup();
  void stage_thread(const PlannedStage& stage);
  Result<StageResult> run_stage(const PlannedStage& stage);
  const StageResult* wait_stage(int index);
  Result<StageResult> base_from_image(const image::LoadedImage& img, const std::string& created);
  /// Unpacks the base-image layers a step is about to mount (FROM leaves them
  /// packed: a build that only adds metadata never reads them).
  Result<void> unpack_layers(const std::vector<Layer>& layers);
  Result<image::LoadedImage> resolve_image(const std::string& reference);
  Result<StageResult> base_of(const PlannedStage& stage, const std::string& created, StepInfo& info);
  Result<image::LoadedImage> oci_layout_image(const std::string& source);
  Result<StageResult> base_from_dir(const std::string& name, const std::string& dir, const std::string& created);
  /// The named context directory `dir`, opened once per build.
  Result<const BuildContext*> named_context(const std::string& dir);

  struct SourceRoot {
    fsys::path path;
    std::unique_ptr<TempTree> filter;      // the ignore whiteouts under view (outlives it)
    std::unique_ptr<snapshot::View> view;  // kept alive while the source is in use
  };
  /// The root `from` names ("" = the build context); a context directory is
  /// seen through its .dockerignore (only `sub` below it needs to be right).
  Result<SourceRoot> source_root(const std::string& from, int current, std::string_view sub = "");
  /// The context's directory as is when its .dockerignore hides nothing
  /// below `sub`, else a view of it with the ignored entries whited out
  /// (builder/context_filter.hpp).
  Result<SourceRoot> filtered_root(const BuildContext& context, std::string_view sub);

  Result<void> run_step(const PlannedStage& stage, StageResult& st, const parser::Instruction& ins,
                        const StepInfo& info, int position);
  // Build cache (the methods after run_step).
  Result<std::optional<StepKey>> run_key(const PlannedStage& stage, const StageResult& st,
                                         const parser::RunInstruction& run, std::string& uncacheable);
  // The COPY or ADD request of ins, expanded in the stage's env and WORKDIR
  // (one parse for the cache key and the copy itself).
  Result<CopyRequest> copy_request_of(const StageResult& st, const parser::Instruction& ins);
  Result<std::optional<StepKey>> copy_key(const PlannedStage& stage, const StageResult& st,
                                          const parser::Instruction& ins, std::string& uncacheable);
  StepKey metadata_key(const StageResult& st, const parser::Instruction& ins);
  Result<void> apply_cached(StageResult& st, const cache::CacheRecord& rec);
  Result<void> record_cache(const StageResult& st, const StepKey& key, const std::string& parent, int position,
                            const parser::Instruction& ins, const StepRecord& record);
  Result<void> base_cache(const PlannedStage& stage, StageResult& res, const image::LoadedImage& img);
  std::string debug_name(const PlannedStage& stage, int position) const;
  // The stage name step labels show: none when the Dockerfile has one stage.
  std::string label_name(const PlannedStage& stage) const;
  Result<void> finish_layer(StageResult& st, snapshot::View& view, const std::string& created_by,
                            StepRecord& record, bool independent = false);
  Result<void> do_run(const PlannedStage& stage, StageResult& st, const parser::RunInstruction& run,
                      const StepInfo& info, StepRecord& record);
  Result<void> do_copy(const PlannedStage& stage, StageResult& st, const parser::Instruction& ins,
                       StepRecord& record);
  Result<void> do_workdir(StageResult& st, const std::string& wd, StepRecord& record);
  Result<fsys::path> cache_mount_dir(const PlannedStage& stage, const parser::Mount& m,
                                     std::vector<UniqueFd>& locks, std::vector<SourceRoot>& sources,
                                     const std::function<Result<fsys::path>()>& make_temp);

  StepInfo new_step(std::string name, int line) {
    std::lock_guard lock(m_mu);
    return StepInfo{++m_step_counter, std::move(name), line};
  }
  void record_step(StepRecord rec) {
    std::lock_guard lock(m_mu);
    m_steps.push_back(std::move(rec));
  }

  std::string created_text() const {
    if (m_plan.source_date_epoch) {
      return format_rfc3339(*m_plan.source_date_epoch);
    }
    return format_rfc3339(m_options.now_sec, m_options.now_nsec);
  }

  const Plan& m_plan;
  image::ImageStore& m_store;
  ImageResolver& m_resolver;
  const ExecuteOptions& m_options;
  ProgressSink& m_progress;
  LayerDirs m_layer_dirs;
  std::unique_ptr<snapshot::Snapshotter> m_snapshotter;
  std::unique_ptr<sandbox::Sandbox> m_sandbox;
  std::unique_ptr<image::Staging> m_staging;
  std::unique_ptr<StepCache> m_cache;
  std::mutex m_staging_mu;
  std::mutex m_resolve_mu;
  std::mutex m_mu;
  int m_step_counter = 0;
  std::vector<StepRecord> m_steps;
  std::map<int, std::unique_ptr<StageSlot>> m_slots;
  std::mutex m_named_mu;
  std::map<std::string, std::unique_ptr<BuildContext>> m_named;
  std::atomic<bool> m_failed{false};
  std::optional<Error> m_error;
  std::unique_ptr<std::counting_semaphore<>> m_jobs;
};

Result<void> Build::setup() {
  fsys::path root = m_store.content().root();
  snapshot::SnapshotterConfig cfg;
  cfg.work_dir = root / "snapshots" / "work";
  cfg.runtime_dir = root / "run";
  std::error_code ec;
  fsys::create_directories(root / "snapshots", ec);
  // Made on first use: a fully cached build mounts nothing.
  TRY(m_snapshotter, snapshot::make_lazy_snapshotter(m_options.snapshotter, cfg));
  TRY(m_staging, image::Staging::create(m_store.content()));
  TRY(m_cache, StepCache::open(root / "meta.db", m_options.cache_keys_dir));
  m_cache->attach(m_options.cache_io, &m_store.content());
  m_cache->hold_with(&m_store.lease());  // leases: no prune removes what this build uses
  int jobs = m_options.jobs > 0 ? m_options.jobs : static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  m_jobs = std::make_unique<std::counting_semaphore<>>(jobs);
  return ok();
}

Result<image::LoadedImage> Build::resolve_image(const std::string& reference) {
  std::lock_guard lock(m_resolve_mu);
  return m_resolver.resolve(reference);
}

Result<StageResult> Build::base_from_image(const image::LoadedImage& img, const std::string& created) {
  TRY_VOID(m_store.hold(img));  // leased: no prune removes it while the build runs
  StageResult res;
  res.state = start_stage(img.config, m_plan.platform, created);
  const auto& diff_ids = img.config.rootfs.diff_ids;
  if (diff_ids.size() != img.manifest.layers.size()) {
    return fail(Errc::corrupt, fmt::format("image {} has {} layers but {} diff_ids", img.record.config_digest,
                                           img.manifest.layers.size(), diff_ids.size()));
  }
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    const image::Descriptor& d = img.manifest.layers[i];
    image::LayerRecord rec;
    std::unique_lock db_lock(m_resolve_mu);
    TRY(auto known, m_store.db().layer(d.digest));
    db_lock.unlock();
    if (known) {
      rec = *known;
    } else {
      rec.blob_digest = d.digest;
      rec.blob_size = d.size;
      rec.diff_id = diff_ids[i];
    }
    rec.media_type = d.media_type;
    res.layers.push_back(Layer{rec, m_layer_dirs.dir_for(rec.diff_id)});
  }
  return res;
}

Result<void> Build::unpack_layers(const std::vector<Layer>& layers) {
  for (const auto& l : layers) {
    std::error_code ec;
    if (!fsys::is_directory(l.dir, ec)) {
      TRY(fsys::path dir, m_layer_dirs.ensure(m_store.content().blob_path(l.record.blob_digest),
                                              l.record.blob_digest, l.record.diff_id));
      (void)dir;
    }
  }
  return ok();
}

Result<StageResult> Build::base_of(const PlannedStage& stage, const std::string& created, StepInfo& info) {
  switch (stage.base.kind) {
    case BaseKind::scratch: {
      StageResult res;
      res.state = start_stage(std::nullopt, m_plan.platform, created);
      res.cache_key = scratch_base_key(m_plan.platform);
      return res;
    }
    case BaseKind::stage: {
      const StageResult* parent = wait_stage(stage.base.stage);
      if (parent == nullptr) {
        return fail(Errc::internal, "parent stage failed");
      }
      StageResult res = *parent;
      res.state.created = created;
      res.state.cmd_set = false;  // "CMD set in this stage" starts over
      res.cache_key = stage_base_key(parent->cache_key);
      if (m_options.cache_io != nullptr) {
        m_options.cache_io->note_link(res.cache_key, parent->cache_key);
      }
      if (parent->cache_broken) {
        const PlannedStage* ps = m_plan.stage(stage.base.stage);
        res.cache_reason = fmt::format("stage {} changed", ps != nullptr ? ps->display_name : "?");
      }
      res.cache_broken = false;
      return res;
    }
    case BaseKind::image: {
      auto ref = image::parse_reference(stage.base.name);
      info = new_step(step_label(label_name(stage), 1, 0) + "FROM " + (ref ? ref->str() : stage.base.name),
                      stage.from.header.range.start_line);
      TRY(auto img, resolve_image(stage.base.name));
      TRY(auto res, base_from_image(img, created));
      TRY_VOID(base_cache(stage, res, img));
      return res;
    }
    case BaseKind::context: {
      const std::string& src = stage.base.source;
      if (src.starts_with("docker-image://")) {
        TRY(auto img, resolve_image(src.substr(std::strlen("docker-image://"))));
        TRY(auto res, base_from_image(img, created));
        TRY_VOID(base_cache(stage, res, img));
        return res;
      }
      if (src.starts_with("oci-layout://")) {
        TRY(auto img, oci_layout_image(src));
        TRY(auto res, base_from_image(img, created));
        TRY_VOID(base_cache(stage, res, img));
        return res;
      }
      TRY(auto res, base_from_dir(stage.base.name, src, created));
      // The directory's content (its layer's diff_id) keys the steps after it.
      res.cache_key = stage_base_key(from_parent_key(src + "@" + res.state.image.rootfs.diff_ids.back(), m_plan.platform));
      return res;
    }
  }
  return fail(Errc::internal, "unknown base kind");
}

Result<image::LoadedImage> Build::oci_layout_image(const std::string& source) {
  std::lock_guard lock(m_resolve_mu);
  return load_oci_layout_image(m_store, source);
}

// A named context directory as a base: an empty config and one layer with
// the directory's files as its .dockerignore leaves them (owners and modes
// kept), as BuildKit's local source. BuildKit's exporter gives that layer a
// history entry of its own with the source's description (it appends the
// entry after the frontend's; here it stays at the layer's position).
Result<StageResult> Build::base_from_dir(const std::string& name, const std::string& dir, const std::string& created) {
  StageResult res;
  res.state = start_stage(std::nullopt, m_plan.platform, created);
  std::error_code ec;
  if (!fsys::is_directory(dir, ec)) {
    return fail(Errc::not_found, fmt::format("named context directory {} does not exist", str::go_quote(dir)));
  }
  TRY(const BuildContext* context, named_context(dir));
  TRY(SourceRoot src, filtered_root(*context, ""));
  TRY(auto view, m_snapshotter->prepare({}));
  TRY_VOID(snapshot::merge_layer(src.path, view->root()));
  if (src.view) {
    TRY_VOID(src.view->remove());
  }
  StepRecord record;
  TRY_VOID(finish_layer(res, *view, "", record, true));
  res.state.image.history.back().created_by = "local source for " + name;
  res.state.image.history.back().comment = "buildkit.exporter.image.v0";
  return res;
}

Result<const BuildContext*> Build::named_context(const std::string& dir) {
  std::lock_guard lock(m_named_mu);
  auto it = m_named.find(dir);
  if (it == m_named.end()) {
    TRY(auto c, BuildContext::from_dir(dir));
    it = m_named.emplace(dir, std::make_unique<BuildContext>(std::move(c))).first;
  }
  return it->second.get();
}

Result<Build::SourceRoot> Build::filtered_root(const BuildContext& context, std::string_view sub) {
  SourceRoot out;
  out.path = context.dir();
  if (context.ignore().empty()) {
    return out;
  }
  TRY(std::string real, resolve_real_path(context.root(), sub, false));
  TRY(auto hidden, ignored_entries(context.root(), context.ignore(), real));
  if (hidden.empty()) {
    return out;
  }
  // A store inside the context cannot sit above it in an overlay (the
  // kernel refuses overlapping layers), nor be copied into itself: then the
  // filtered files are copied outside the context.
  std::error_code ec;
  auto inside = [&](const fsys::path& p, const fsys::path& dir) {
    fsys::path a = fsys::weakly_canonical(p, ec);
    fsys::path b = fsys::weakly_canonical(dir, ec);
    auto [end, rest] = std::mismatch(b.begin(), b.end(), a.begin(), a.end());
    return end == b.end();
  };
  if (inside(m_store.content().root(), context.dir())) {
    fsys::path parent = fsys::temp_directory_path(ec);
    if (ec || inside(parent, context.dir())) {
      return fail(Errc::unsupported, fmt::format("cannot apply {} to {}: the store and the temporary directory are "
                                                 "inside it (set TMPDIR elsewhere)",
                                                 context.ignore_file(), context.dir()));
    }
    fsys::path copy = parent / ("imgbuild-filtered-" + random_hex());
    if (::mkdir(copy.c_str(), 0700) != 0) {
      return fail(Errc::io, fmt::format("cannot create {}: {}", copy.string(), std::strerror(errno)));
    }
    out.filter = std::make_unique<TempTree>(copy);
    TRY_VOID(copy_filtered(context.root(), context.ignore(), real, copy));
    out.path = copy;
    return out;
  }
  fsys::path dir = m_store.content().root() / "tmp" / ("ignore-" + random_hex());
  fsys::create_directories(dir, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  }
  out.filter = std::make_unique<TempTree>(dir);
  TRY(size_t n, write_whiteouts(context.root(), hidden, dir));
  (void)n;
  TRY(out.view, m_snapshotter->prepare({fsys::path(context.dir()), dir}));
  out.path = out.view->root();
  return out;
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

Result<Build::SourceRoot> Build::source_root(const std::string& from, int current, std::string_view sub) {
  SourceRoot out;
  if (from.empty()) {
    if (m_options.context == nullptr) {
      return fail(Errc::internal, "no build context");
    }
    return filtered_root(*m_options.context, sub);
  }
  SourceRef ref = m_plan.resolve_source(from, current);
  std::vector<fsys::path> dirs;
  if (ref.kind == BaseKind::stage) {
    const StageResult* st = wait_stage(ref.stage);
    if (st == nullptr) {
      return fail(Errc::internal, fmt::format("stage {} did not complete", from));
    }
    TRY_VOID(unpack_layers(st->layers));
    dirs = dirs_of(st->layers);
  } else if (ref.kind == BaseKind::context && !ref.source.starts_with("docker-image://") &&
             !ref.source.starts_with("oci-layout://")) {
    TRY(const BuildContext* context, named_context(ref.source));
    return filtered_root(*context, sub);
  } else if (ref.kind == BaseKind::context && ref.source.starts_with("oci-layout://")) {
    TRY(auto img, oci_layout_image(ref.source));
    TRY(auto base, base_from_image(img, ""));
    dirs = dirs_of(base.layers);
  } else {
    std::string name = ref.kind == BaseKind::context ? ref.source.substr(std::strlen("docker-image://")) : ref.name;
    TRY(auto img, resolve_image(name));
    TRY(auto base, base_from_image(img, ""));
    TRY_VOID(unpack_layers(base.layers));
    dirs = dirs_of(base.layers);
  }
  TRY(out.view, m_snapshotter->prepare(dirs));
  out.path = out.view->root();
  return out;
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
  snapshot::DiffOptions dopts;
  dopts.source_date_epoch = m_plan.source_date_epoch;
  dopts.written = &view.written();
  std::optional<image::BlobWriter> writer;
  {
    std::lock_guard lock(m_staging_mu);
    TRY(auto w, m_staging->writer());
    writer.emplace(std::move(w));
  }
  TRY(auto diff, snapshot::diff_overlay(
                     upper.string(), lowers,
                     [&](const void* data, size_t size) -> Result<void> { return writer->write(data, size); },
                     dopts));
  std::string digest;
  {
    std::lock_guard lock(m_staging_mu);
    TRY(digest, writer->commit());
  }
  image::LayerRecord rec;
  rec.blob_digest = digest;
  rec.diff_id = diff.layer.diff_id.str();
  rec.media_type = std::string(image::media::oci_layer_gzip);
  rec.blob_size = static_cast<int64_t>(diff.layer.size);
  rec.diff_size = static_cast<int64_t>(diff.layer.uncompressed_size);
  TRY_VOID(m_store.lease().hold({{image::LeaseKind::blob, digest}, {image::LeaseKind::layer, rec.diff_id}}));
  fsys::path dir = m_layer_dirs.dir_for(rec.diff_id);
  std::error_code ec;
  if (fsys::is_directory(dir, ec)) {
    TRY_VOID(view.remove());
  } else {
    fsys::path tmp = m_layer_dirs.root() / (".commit-" + random_hex());
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

// A RUN --mount=type=cache directory: <store>/cache-mounts/<hash of id>,
// created (mode/uid/gid, default 0755 0:0) and seeded from `from`/`source`
// the first time. Sharing, through a lock file next to it (flock, so it
// holds across imgbuild processes): shared users hold it shared; locked
// waits for it exclusively; private takes it exclusively when free and
// otherwise gets a fresh directory of its own, discarded afterwards.
Result<fsys::path> Build::cache_mount_dir(const PlannedStage& stage, const parser::Mount& m,
                                          std::vector<UniqueFd>& locks, std::vector<SourceRoot>& sources,
                                          const std::function<Result<fsys::path>()>& make_temp) {
  std::string id = m.id.empty() ? fs::clean_path(m.target) : m.id;
  fsys::path dir = cache_mount_path(m_store.content().root(), id);
  fsys::path parent = dir.parent_path();
  std::string safe = dir.filename().string();
  TRY_VOID(m_store.lease().hold(image::LeaseKind::cache_mount, safe));  // cache prune --all keeps it
  std::error_code ec;
  fsys::create_directories(parent, ec);
  fsys::path lock_path = parent / (safe + ".lock");
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) {
    return fail(Errc::io, fmt::format("cache mount {}: cannot open {}: {}", id, lock_path.string(), std::strerror(errno)));
  }
  parser::CacheSharing sharing = m.sharing.value_or(parser::CacheSharing::shared);
  bool fresh = false;
  int op = sharing == parser::CacheSharing::shared ? LOCK_SH : LOCK_EX;
  if (sharing == parser::CacheSharing::private_) {
    op |= LOCK_NB;
  }
  while (::flock(lock.get(), op) != 0) {
    if (errno == EINTR) {
      continue;
    }
    if (errno == EWOULDBLOCK && sharing == parser::CacheSharing::private_) {
      fresh = true;
      break;
    }
    return fail(Errc::io, fmt::format("cache mount {}: cannot lock {}: {}", id, lock_path.string(), std::strerror(errno)));
  }
  if (!fresh) {
    locks.push_back(std::move(lock));
  }

  // The seed: a stage, image or context path.
  auto prepare = [&](const fsys::path& into) -> Result<void> {
    if (!m.from.empty()) {
      TRY(auto src, source_root(m.from, stage.index, m.source));
      std::string sub = fs::clean_path(m.source);
      {
        TRY(fs::Root sroot, fs::Root::open(src.path.string()));
        // The seed is copied through a host path: no component may be a
        // symlink, or the copy could read outside the source.
        std::string prefix;
        for (const auto& comp : fs::clean_components(sub)) {
          prefix += (prefix.empty() ? "" : "/") + comp;
          TRY(auto cst, sroot.lstat(prefix));
          if (cst && S_ISLNK(cst->st_mode)) {
            return fail(Errc::invalid_argument,
                        fmt::format("cache mount {}: source \"/{}\" of {} goes through the symlink \"/{}\"", id,
                                    sub, m.from, prefix));
          }
        }
        TRY(auto st, sroot.lstat(sub));
        if (!sub.empty() && !st) {
          return fail(Errc::not_found, fmt::format("cache mount {}: \"/{}\" not found in {}", id, sub, m.from));
        }
        if (st && !S_ISDIR(st->st_mode)) {
          return fail(Errc::invalid_argument,
                      fmt::format("cache mount {}: source \"/{}\" of {} is not a directory", id, sub, m.from));
        }
      }
      TRY_VOID(snapshot::merge_layer(sub.empty() ? src.path : src.path / sub, into));
      sources.push_back(std::move(src));
    }
    if (m.mode || m.from.empty()) {
      ::chmod(into.c_str(), m.mode.value_or(0755));
    }
    if (m.uid || m.gid || m.from.empty()) {
      if (::chown(into.c_str(), m.uid.value_or(0), m.gid.value_or(0)) != 0) {
        return fail(Errc::io, fmt::format("cannot prepare cache mount {}: {}", id, std::strerror(errno)));
      }
    }
    return ok();
  };
  if (fresh) {
    TRY(fsys::path d, make_temp());
    fsys::path into = d / "cache";
    fsys::create_directory(into, ec);
    TRY_VOID(prepare(into));
    return into;
  }
  if (!fsys::exists(dir, ec)) {
    // Made aside and renamed, so that a shared user never sees it half-seeded.
    fsys::path tmp = parent / (".new-" + random_hex());
    fsys::create_directory(tmp, ec);
    auto prepared = prepare(tmp);
    if (prepared && m_options.cache_io != nullptr && m.from.empty()) {
      m_options.cache_io->seed_mount(id, tmp);  // --cache-from with mounts
    }
    if (!prepared) {
      fsys::remove_all(tmp, ec);
      return fail(std::move(prepared).error());
    }
    if (::rename(tmp.c_str(), dir.c_str()) != 0) {
      fsys::remove_all(tmp, ec);  // another build made it first
    }
  } else if (m_options.cache_io != nullptr && m.from.empty()) {
    m_options.cache_io->seed_mount_if_empty(id, dir);
  }
  return dir;
}

Result<void> Build::do_workdir(StageResult& st, const std::string& wd, StepRecord& record) {
  if (wd == "/") {
    add_history(st.state, "WORKDIR /", false, false);
    return ok();
  }
  TRY_VOID(unpack_layers(st.layers));
  TRY(auto view, m_snapshotter->prepare(dirs_of(st.layers)));
  {
    // Scoped: the directory fd must be closed before the view is unmounted,
    // or the unmount is refused (EBUSY) and falls back to a lazy detach.
    TRY(fs::Root root, fs::Root::open(view->root().string()));
    uint32_t uid = 0;
    uint32_t gid = 0;
    const std::string& user = st.state.image.config->user;
    if (!user.empty()) {
      TRY(auto eu, sandbox::resolve_user(user, read_text(root, "etc/passwd"), read_text(root, "etc/group")));
      uid = eu.uid;
      gid = eu.gid;
    }
    std::string path;
    for (const auto& comp : fs::clean_components(wd)) {
      path += (path.empty() ? "" : "/") + comp;
      TRY(auto existing, root.lstat(path));
      if (existing) {
        continue;
      }
      TRY_VOID(root.mkdir(path, 0755));
      TRY_VOID(root.chown(path, uid, gid));
      if (m_plan.source_date_epoch) {
        TRY_VOID(root.set_mtime(path, *m_plan.source_date_epoch, 0));
      }
    }
  }
  return finish_layer(st, *view, "WORKDIR " + wd, record);
}

Result<void> Build::do_copy(const PlannedStage& stage, StageResult& st, const parser::Instruction& ins,
                            StepRecord& record) {
  const auto* copy = ins.as<parser::CopyInstruction>();
  std::string from = copy && copy->from ? *copy->from : "";
  TRY(CopyRequest req, copy_request_of(st, ins));
  req.heredoc_mtime = m_plan.source_date_epoch.value_or(0);

  // The source tree: the context (with .dockerignore), a named context dir,
  // or a stage / image rootfs.
  std::optional<fs::Root> source_fs;
  SourceTree tree;
  SourceRoot src;
  if (from.empty()) {
    if (m_options.context == nullptr) {
      return fail(Errc::internal, "no build context");
    }
    tree = SourceTree{&m_options.context->root(), &m_options.context->ignore()};
  } else {
    SourceRef ref = m_plan.resolve_source(from, stage.index);
    if (ref.kind == BaseKind::context && !ref.source.starts_with("docker-image://") &&
        !ref.source.starts_with("oci-layout://")) {
      TRY(const BuildContext* named, named_context(ref.source));
      tree = SourceTree{&named->root(), &named->ignore()};
    } else {
      TRY(src, source_root(from, stage.index));
      TRY(auto r, fs::Root::open(src.path.string()));
      source_fs.emplace(std::move(r));
      tree = SourceTree{&*source_fs, nullptr};
    }
  }
  // --link: the files go into an empty view whose diff does not depend on
  // the stage's rootfs; --chown names still resolve in the rootfs.
  bool linked = req.link_mode == LinkMode::linked;
  std::unique_ptr<snapshot::View> rootfs_view;
  TRY_VOID(unpack_layers(st.layers));
  if (linked) {
    TRY(rootfs_view, m_snapshotter->prepare(dirs_of(st.layers)));
  }
  TRY(auto view, m_snapshotter->prepare(linked ? std::vector<fsys::path>{} : dirs_of(st.layers)));
  // The directory fds into the views are closed (reset) before the views are
  // unmounted below, or the unmount is refused (EBUSY).
  std::optional<fs::Root> dest;
  {
    TRY(auto d, fs::Root::open(view->root().string()));
    dest.emplace(std::move(d));
  }
  std::optional<fs::Root> user_db;
  if (linked) {
    TRY(auto r, fs::Root::open(rootfs_view->root().string()));
    user_db.emplace(std::move(r));
  }
  CopyEnv env;
  env.source = tree;
  env.keep_source_owner = source_fs.has_value();
  env.user_db = linked ? &*user_db : &*dest;
  parser::LexerOptions lo;
  lo.escape = m_plan.escape;
  lo.process_quotes = false;
  parser::Lexer heredoc_lexer(lo);
  env.expand_heredoc = [&](const std::string& body) -> Result<std::string> {
    return heredoc_lexer.process_word(body, st.state.env);
  };
  env.temp_parent = (m_store.content().root() / "tmp").string();
  TRY(auto written, apply_copy(req, env, *dest));
  view->note_written(written_paths(written));  // unchanged rewrites stay in the layer
  env.user_db = nullptr;
  user_db.reset();
  dest.reset();
  source_fs.reset();
  if (src.view) {
    TRY_VOID(src.view->remove());
  }
  std::vector<std::string> shown = req.sources;
  for (const auto& h : req.heredocs) {
    shown.push_back("<<" + h.name);
  }
  std::string text = std::string(copy ? "COPY " : "ADD ") + str::join(shown, " ") + " " + req.dest;
  if (rootfs_view) {
    TRY_VOID(rootfs_view->remove());
  }
  return finish_layer(st, *view, text, record, linked);
}

Result<void> Build::do_run(const PlannedStage& stage, StageResult& st, const parser::RunInstruction& run,
                           const StepInfo& info, StepRecord& record) {
  (void)stage;
  if (run.security && *run.security == "insecure" && m_options.allow.count("security.insecure") == 0) {
    return fail(Errc::permission,
                "security.insecure is not allowed: pass --allow security.insecure to run RUN --security=insecure");
  }
  std::string network = run.network.value_or(m_options.network);
  if (network == "host" && m_options.network != "host" && m_options.allow.count("network.host") == 0 &&
      run.network) {
    // docker buildx needs --allow network.host; BuildKit's docker driver grants it.
  }
  sandbox::RunSpec spec;
  SecretMask secret_mask;
  std::vector<std::unique_ptr<SshForwarder>> ssh_forwarders;  // relay until the step is done
  std::vector<std::string> argv;
  std::vector<fsys::path> temp_dirs;
  auto cleanup_temps = [&] {
    std::error_code ec;
    for (const auto& d : temp_dirs) {
      fsys::remove_all(d, ec);
    }
  };
  fsys::path tmp_root = m_store.content().root() / "tmp";
  auto make_temp = [&]() -> Result<fsys::path> {
    fsys::path d = tmp_root / ("run-" + random_hex());
    std::error_code ec;
    fsys::create_directories(d, ec);
    if (ec) {
      return fail(Errc::io, fmt::format("cannot create {}: {}", d.string(), ec.message()));
    }
    temp_dirs.push_back(d);
    return d;
  };

  // Command line, heredocs included.
  if (!run.heredocs.empty() && !run.command.json_form) {
    std::string line = str::join(run.command.args, " ");
    const parser::Heredoc& first = run.heredocs.front();
    bool only_heredoc = run.heredocs.size() == 1 && str::trim(line).starts_with("<<") &&
                        str::trim(line).find(' ') == std::string_view::npos;
    if (only_heredoc) {
      std::string body = parser::heredoc_body(first);
      if (body.starts_with("#!")) {
        TRY(fsys::path d, make_temp());
        fsys::path script = d / first.name;
        {
          std::ofstream out(script, std::ios::binary);
          out << body;
        }
        fsys::permissions(script, fsys::perms::owner_all | fsys::perms::group_read | fsys::perms::group_exec |
                                      fsys::perms::others_read | fsys::perms::others_exec);
        spec.mounts.push_back(sandbox::BindMount{script, "/dev/pipes/" + first.name, sandbox::Access::read_only});
        argv = {"/dev/pipes/" + first.name};
      } else {
        parser::CommandLine cl;
        cl.args = {body};
        argv = with_shell(st.state, cl);
      }
    } else {
      std::string script = line;
      for (const auto& h : run.heredocs) {
        script += "\n" + h.content + h.name;
      }
      parser::CommandLine cl;
      cl.args = {script};
      argv = with_shell(st.state, cl);
    }
  } else {
    argv = with_shell(st.state, run.command);
  }

  spec.argv = argv;
  spec.env = run_environment(st.state, m_plan.build_args);
  spec.user = st.state.image.config->user;
  spec.workdir = st.state.image.config->working_dir.empty() ? "/" : st.state.image.config->working_dir;
  spec.network = network == "none" ? sandbox::NetworkMode::none : sandbox::NetworkMode::host;
  spec.hostname = "buildkitsandbox";
  spec.privileged = run.security && *run.security == "insecure";

  // RUN --mount.
  parser::Lexer lexer(m_plan.escape);
  std::vector<SourceRoot> mount_sources;
  std::vector<UniqueFd> cache_locks;  // held until the process ends
  int ssh_index = 0;
  for (const auto& ms : run.mount_specs) {
    auto mount = parser::parse_mount(ms, [&](const std::string& w) { return lexer.process_word(w, st.state.env); });
    if (!mount) {
      cleanup_temps();
      return fail(std::move(mount).error());
    }
    parser::Mount m = *mount;
    std::string target = m.target;
    if (!target.empty() && !target.starts_with("/")) {
      target = spec.workdir + "/" + target;
    }
    switch (m.type) {
      case parser::MountType::bind: {
        auto src = source_root(m.from, stage.index, m.source);
        if (!src) {
          cleanup_temps();
          return fail(std::move(src).error());
        }
        TRY(fs::Root sroot, fs::Root::open(src->path.string()));
        // Symlinks on the way are followed inside the source, never on the host.
        TRY(std::string sub, resolve_real_path(sroot, m.source, false));
        fsys::path host = src->path / sub;
        TRY(auto exists, sroot.lstat(sub));
        if (!sub.empty() && !exists) {
          cleanup_temps();
          return fail(Errc::not_found,
                      fmt::format("failed to mount {}: \"/{}\": not found", target, fs::clean_path(m.source)));
        }
        if (!sub.empty() && exists && S_ISLNK(exists->st_mode)) {
          cleanup_temps();
          return fail(Errc::unsupported, fmt::format("bind mount source {} is a symlink", m.source));
        }
        if (!m.read_only) {
          // Writes are discarded: mount a copy.
          TRY(fsys::path d, make_temp());
          std::error_code ec;
          fsys::copy(host, d / "src", fsys::copy_options::recursive | fsys::copy_options::copy_symlinks, ec);
          host = d / "src";
        }
        spec.mounts.push_back(sandbox::BindMount{host, target, m.read_only ? sandbox::Access::read_only
                                                                           : sandbox::Access::read_write});
        mount_sources.push_back(std::move(*src));
        break;
      }
      case parser::MountType::cache: {
        auto dir = cache_mount_dir(stage, m, cache_locks, mount_sources, make_temp);
        if (!dir) {
          cleanup_temps();
          return fail(std::move(dir).error());
        }
        spec.mounts.push_back(sandbox::BindMount{*dir, target, m.read_only ? sandbox::Access::read_only
                                                                           : sandbox::Access::read_write});
        break;
      }
      case parser::MountType::tmpfs: {
        std::optional<uint64_t> size;
        if (m.size_limit && *m.size_limit > 0) {
          size = static_cast<uint64_t>(*m.size_limit);
        }
        spec.tmpfs.push_back(sandbox::TmpfsMount{target, size});
        break;
      }
      case parser::MountType::secret: {
        std::string id = m.id.empty() ? fsys::path(m.target).filename().string() : m.id;
        auto it = m_options.secrets.find(id);
        if (it == m_options.secrets.end()) {
          if (m.required) {
            cleanup_temps();
            return fail(Errc::not_found, fmt::format("secret {}: not found", id));
          }
          break;
        }
        std::string value;
        if (it->second.env) {
          const char* v = std::getenv(it->second.env->c_str());
          value = v != nullptr ? v : "";
        } else if (it->second.file) {
          UniqueFd in(::open(it->second.file->c_str(), O_RDONLY | O_CLOEXEC));
          if (!in) {
            cleanup_temps();
            return fail(Errc::not_found, fmt::format("secret {}: cannot read {}: {}", id, *it->second.file,
                                                     std::strerror(errno)));
          }
          char buf[8192];
          ssize_t n = 0;
          while ((n = ::read(in.get(), buf, sizeof buf)) > 0) {
            value.append(buf, static_cast<size_t>(n));
          }
        }
        secret_mask.add(value);
        if (m.env) {
          spec.env.push_back(*m.env + "=" + value);
          if (m.target.empty()) {
            break;
          }
        }
        TRY(fsys::path d, make_temp());
        fsys::path file = d / "secret";
        {
          std::ofstream out(file, std::ios::binary);
          out << value;
        }
        ::chmod(file.c_str(), m.mode.value_or(0400));
        if (::chown(file.c_str(), m.uid.value_or(0), m.gid.value_or(0)) != 0) {
          cleanup_temps();
          return fail(Errc::io, "cannot prepare secret " + id);
        }
        if (target.empty()) {
          target = "/run/secrets/" + id;
        }
        spec.mounts.push_back(sandbox::BindMount{file, target, sandbox::Access::read_only});
        break;
      }
      case parser::MountType::ssh: {
        if (m_options.ssh_socket.empty()) {
          if (m.required) {
            cleanup_temps();
            return fail(Errc::not_found, "no SSH key \"default\" forwarded from the client (use --ssh default)");
          }
          break;
        }
        if (target.empty()) {
          target = fmt::format("/run/buildkit/ssh_agent.{}", ssh_index++);
        }
        TRY(fsys::path d, make_temp());
        auto forwarder = SshForwarder::start(m_options.ssh_socket, d, m.uid.value_or(0), m.gid.value_or(0),
                                             m.mode.value_or(0600));
        if (!forwarder) {
          cleanup_temps();
          return fail(std::move(forwarder).error());
        }
        spec.mounts.push_back(sandbox::BindMount{(*forwarder)->path(), target, sandbox::Access::read_write});
        ssh_forwarders.push_back(std::move(*forwarder));
        spec.env.push_back("SSH_AUTH_SOCK=" + target);
        break;
      }
    }
  }

  auto unpacked = unpack_layers(st.layers);
  if (!unpacked) {
    cleanup_temps();
    return fail(std::move(unpacked).error());
  }
  auto view = m_snapshotter->prepare(dirs_of(st.layers));
  if (!view) {
    cleanup_temps();
    return fail(std::move(view).error());
  }
  spec.rootfs = (*view)->root();
  auto emit = [&](OutputStream stream, std::string_view line) {
    if (secret_mask.empty()) {
      m_progress.output(info, stream, line);
    } else {
      m_progress.output(info, stream, secret_mask.apply(line));
    }
  };
  spec.on_stdout = [&](std::string_view line) { emit(OutputStream::stdout_, line); };
  spec.on_stderr = [&](std::string_view line) { emit(OutputStream::stderr_, line); };
  auto result = m_sandbox->run(spec);
  cleanup_temps();
  for (auto& s : mount_sources) {
    if (s.view) {
      (void)s.view->remove();
    }
  }
  if (!result) {
    return fail(std::move(result).error());
  }
  if (result->exit_code != 0) {
    return fail(Errc::internal, fmt::format("process {} did not complete successfully: exit code: {}",
                                            str::go_quote(str::join(argv, " ")), result->exit_code));
  }
  return finish_layer(st, **view, run_history_text(st.state, argv), record);
}

Result<void> Build::run_step(const PlannedStage& stage, StageResult& st, const parser::Instruction& ins,
                             const StepInfo& info, int position) {
  StepRecord record;
  record.name = info.name;
  record.line = info.line;
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
    if (run != nullptr) {
      TRY(key, run_key(stage, st, *run, uncacheable));
    } else if (is_copy) {
      TRY(key, copy_key(stage, st, ins, uncacheable));
    } else {
      ArgInputs inputs{&m_plan.build_args, &m_plan.global_args};
      TRY(eff, apply_metadata(st.state, ins, inputs, m_plan.escape));
      key = metadata_key(st, ins);
    }
    bool fs_step = run != nullptr || is_copy || eff->mkdir.has_value();
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
      record.cache_source = m_cache->source_of(key->key);
      return ok();
    }
    // A miss: explain the first one of the chain.
    std::string reason;
    if (!st.cache_broken) {
      st.cache_broken = true;
      if (!uncacheable.empty()) {
        reason = uncacheable;
      } else if (stage.no_cache && fs_step) {
        reason = "cache disabled (--no-cache)";
      } else {
        std::set<std::string> args;
        for (const auto& a : st.state.args) {
          args.insert(a.name);
        }
        TRY(reason, m_cache->explain(parent, position, *key, args));
        if (reason.empty()) {
          reason = st.cache_reason.empty() ? "not in the cache" : st.cache_reason;
        }
      }
      st.cache_reason = reason;
    } else if (!uncacheable.empty() && fs_step) {
      st.cache_reason = uncacheable;
    }
    if (fs_step) {
      record.cache_reason = st.cache_reason.empty() ? "a previous step changed" : st.cache_reason;
      if (!st.cache_reason.empty() && info.id != 0) {
        m_progress.output(info, OutputStream::stderr_, "cache miss: " + st.cache_reason);
      }
      st.cache_reason.clear();
    }
    if (run != nullptr) {
      TRY_VOID(do_run(stage, st, *run, info, record));
    } else if (is_copy) {
      TRY_VOID(do_copy(stage, st, ins, record));
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

// ---- build cache --------------------------------------------------------------

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

std::string Build::label_name(const PlannedStage& stage) const {
  return m_plan.stage_names.size() == 1 ? std::string() : stage.display_name;
}

std::string Build::debug_name(const PlannedStage& stage, int position) const {
  std::string name;
  for (char c : stage.display_name) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    name.push_back(keep ? c : '_');
  }
  return fmt::format("{}-{:03}", name, position + 1);
}

Result<std::optional<StepKey>> Build::run_key(const PlannedStage& stage, const StageResult& st,
                                              const parser::RunInstruction& run, std::string& uncacheable) {
  std::string text = run.header.original;
  for (const auto& h : run.heredocs) {
    text += "\n" + h.content + h.name;
  }
  StepKeyBuilder b(st.cache_key, "RUN", text);
  const image::ContainerConfig& cfg = *st.state.image.config;
  b.list("shell", cfg.shell).field("user", cfg.user).field("workdir", cfg.working_dir);
  b.field("network", run.network.value_or(m_options.network)).field("security", run.security.value_or("sandbox"));
  b.list("devices", run.devices).list("mounts", run.mount_specs);
  b.field("source-date-epoch", m_plan.source_date_epoch ? std::to_string(*m_plan.source_date_epoch) : "");
  std::map<std::string, std::string> env;
  for (const auto& e : run_environment(st.state, m_plan.build_args)) {
    size_t eq = e.find('=');
    std::string k = e.substr(0, eq);
    if (!is_proxy_arg(k)) {
      env[k] = eq == std::string::npos ? "" : e.substr(eq + 1);
    }
  }
  b.env(env);
  parser::Lexer lexer(m_plan.escape);
  int n = 0;
  for (const auto& ms : run.mount_specs) {
    ++n;
    auto mount = parser::parse_mount(ms, [&](const std::string& w) { return lexer.process_word(w, st.state.env); });
    if (mount && mount->type == parser::MountType::cache && mount->from.empty() && m_options.cache_io != nullptr) {
      // --cache-to mounts=true exports it even when this step is a hit.
      std::string id = mount->id.empty() ? fs::clean_path(mount->target) : mount->id;
      m_options.cache_io->note_mount(id, cache_mount_path(m_store.content().root(), id));
    }
    if (!mount || mount->type != parser::MountType::bind) {
      continue;  // a bad spec fails in do_run with its own message
    }
    std::string label = fmt::format("mount{}", n);
      SourceTree tree;
    if (!mount->from.empty()) {
      SourceRef ref = m_plan.resolve_source(mount->from, stage.index);
      if (ref.kind == BaseKind::stage) {
        const StageResult* other = wait_stage(ref.stage);
        if (other == nullptr) {
          return fail(Errc::internal, fmt::format("stage {} did not complete", mount->from));
        }
        b.field(label + "-stage", other->cache_key);
        continue;
      }
      if (ref.kind == BaseKind::context && !ref.source.starts_with("docker-image://") &&
          !ref.source.starts_with("oci-layout://")) {
        auto named = named_context(ref.source);
        if (!named) {
          uncacheable = "bind mount source unavailable";
          return std::optional<StepKey>();
        }
        tree = SourceTree{&(*named)->root(), &(*named)->ignore()};
      } else {
        std::string name = ref.kind == BaseKind::context ? ref.source.substr(ref.source.find("://") + 3) : ref.name;
        auto img = resolve_image(name);
        if (!img) {
          uncacheable = "bind mount source unavailable";
          return std::optional<StepKey>();
        }
        b.field(label + "-image", img->record.config_digest);
        continue;
      }
    } else {
      if (m_options.context == nullptr) {
        return fail(Errc::internal, "no build context");
      }
      tree = SourceTree{&m_options.context->root(), &m_options.context->ignore()};
    }
    auto selected = select_sources(tree, mount->source.empty() ? "." : mount->source);
    if (!selected) {
      uncacheable = "bind mount source unavailable";
      return std::optional<StepKey>();
    }
    TRY(auto files, hash_sources(tree, *selected, nullptr, m_cache->index()));
    b.files(label, files.digest, files.files);
  }
  return std::optional<StepKey>(b.finish());
}

Result<CopyRequest> Build::copy_request_of(const StageResult& st, const parser::Instruction& ins) {
  parser::Lexer lexer(m_plan.escape);
  WordExpander expand = [&](std::string_view w) -> Result<std::string> {
    return lexer.process_word(w, st.state.env);
  };
  const std::string& wd = st.state.image.config->working_dir;
  std::string workdir = wd.empty() ? "/" : wd;
  if (const auto* copy = ins.as<parser::CopyInstruction>()) {
    return copy_request(*copy, expand, workdir);
  }
  return add_request(*ins.as<parser::AddInstruction>(), expand, workdir);
}

Result<std::optional<StepKey>> Build::copy_key(const PlannedStage& stage, const StageResult& st,
                                               const parser::Instruction& ins, std::string& uncacheable) {
  const auto* copy = ins.as<parser::CopyInstruction>();
  std::string from = copy && copy->from ? *copy->from : "";
  TRY(CopyRequest req, copy_request_of(st, ins));
  std::string text = ins.header().original;
  for (const auto& h : req.heredocs) {
    text += "\n" + h.content + h.name;
  }
  StepKeyBuilder b(st.cache_key, copy != nullptr ? "COPY" : "ADD", text);
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
    std::set<std::string> used = referenced_vars(text);
    b.note_env(key_env(st.state.env, &used));
  }
  for (const auto& s : req.sources) {
    if (classify_source(s) != SourceKind::local && !req.checksum) {
      uncacheable = fmt::format("{} is not cached: a URL or git source needs --checksum", str::go_quote(s));
      return std::optional<StepKey>();
    }
  }
  SourceTree tree;
  if (from.empty()) {
    if (m_options.context == nullptr) {
      return fail(Errc::internal, "no build context");
    }
    tree = SourceTree{&m_options.context->root(), &m_options.context->ignore()};
  } else {
    SourceRef ref = m_plan.resolve_source(from, stage.index);
    if (ref.kind == BaseKind::stage) {
      const StageResult* other = wait_stage(ref.stage);
      if (other == nullptr) {
        return fail(Errc::internal, fmt::format("stage {} did not complete", from));
      }
      b.field("from-stage", other->cache_key);
      return std::optional<StepKey>(b.finish());
    }
    if (ref.kind == BaseKind::context && !ref.source.starts_with("docker-image://") &&
        !ref.source.starts_with("oci-layout://")) {
      TRY(const BuildContext* named, named_context(ref.source));
      tree = SourceTree{&named->root(), &named->ignore()};
    } else {
      if (ref.kind == BaseKind::context && ref.source.starts_with("oci-layout://")) {
        uncacheable = "oci-layout sources are not cached";
        return std::optional<StepKey>();
      }
      std::string name = ref.kind == BaseKind::context ? ref.source.substr(std::strlen("docker-image://")) : ref.name;
      TRY(auto img, resolve_image(name));
      b.field("from-image", img.record.config_digest);
      return std::optional<StepKey>(b.finish());
    }
  }
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
  TRY(auto files, hash_sources(tree, all, &excludes, m_cache->index(), hash_options));
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
      std::lock_guard lock(m_staging_mu);
      TRY(bool added, m_staging->publish_one(rec.layer.blob_digest));
      (void)added;
    }
    return ok();
  });
}

Result<void> Build::base_cache(const PlannedStage& stage, StageResult& res, const image::LoadedImage& img) {
  std::string reference = stage.base.kind == BaseKind::image ? stage.base.name : stage.base.source;
  std::string parent = from_parent_key(reference, m_plan.platform);
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
      std::string name = step_label(label_name(stage), index, total) + (i < trigger_count ? "ONBUILD " : "") + text;
      info = new_step(name, ins.header().range.start_line);
      m_progress.started(info);
    }
    auto done = run_step(stage, st, ins, info, static_cast<int>(i));
    if (!done) {
      Error e = std::move(done).error();
      if (i < trigger_count && e.location) {
        e.location->line = stage.from.header.range.start_line;  // a trigger fails at the FROM
      }
      return fail(std::move(e));
    }
  }
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
  if (deps_ok && !m_failed.load()) {
    m_jobs->acquire();
    result = run_stage(stage);
    m_jobs->release();
  }
  if (!result) {
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
  // Entitlements are checked before anything runs, as BuildKit does.
  if (m_options.allow.count("security.insecure") == 0) {
    for (const auto& s : m_plan.stages) {
      for (const auto& ins : s.steps) {
        const auto* r = ins.as<parser::RunInstruction>();
        if (r != nullptr && r->security && *r->security == "insecure") {
          return fail(at_line(Error{Errc::permission, "security.insecure is not allowed: pass --allow "
                                                      "security.insecure to run RUN --security=insecure"},
                              ins, "Dockerfile"));
        }
      }
    }
  }
  TRY_VOID(setup());
  TRY(m_sandbox, sandbox::make_sandbox("auto"));
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
  if (m_error) {
    return fail(*m_error);
  }
  StageSlot& target = *m_slots.at(m_plan.target);
  StageResult& res = target.result;
  apply_build_labels(res.state, m_plan.labels);

  BuiltImage out;
  image::ImageConfig cfg = res.state.image;
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
  out.config_bytes = image::serialize(cfg);
  TRY(out.config_digest, m_staging->put(out.config_bytes));
  image::Manifest m;
  m.media_type = std::string(image::media::oci_manifest);
  m.config.media_type = std::string(image::media::oci_config);
  m.config.digest = out.config_digest;
  m.config.size = static_cast<int64_t>(out.config_bytes.size());
  for (const auto& l : res.layers) {
    image::Descriptor d;
    d.media_type = oci_layer_type(l.record.media_type);
    d.digest = l.record.blob_digest;
    d.size = l.record.blob_size;
    m.layers.push_back(d);
    image::LayerRecord rec = l.record;
    rec.media_type = d.media_type;
    out.layers.push_back(rec);
    out.layer_dirs.push_back(l.dir);
  }
  out.manifest_bytes = image::serialize(m);
  TRY(out.manifest_digest, m_staging->put(out.manifest_bytes));
  out.config = cfg;
  image::NewImage ni;
  ni.manifest_digest = out.manifest_digest;
  ni.media_type = m.media_type;
  ni.config_digest = out.config_digest;
  ni.created = cfg.created;
  ni.layers = out.layers;
  ni.names = m_options.tags;
  TRY_VOID(m_store.commit(*m_staging, {ni}));
  TRY_VOID(m_cache->finish(m_options.now_sec));
  TRY(auto rec, m_store.db().image(out.manifest_digest));
  if (rec) {
    out.record = *rec;
  }
  out.steps = m_steps;
  out.cache_key = res.cache_key;
  return out;
}

}  // namespace

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
