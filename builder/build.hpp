#pragma once
// The executor's internals, shared by its files (not an interface of the
// module: only builder/executor.cpp, stage_sources.cpp, step_keys.cpp and
// step_exec.cpp include it). Build runs one Plan:
//  - executor.cpp: stage threads and scheduling, layer commits, the per-step
//    flow (resolve, key, hit or execute), the final image;
//  - stage_sources.cpp: stage bases (scratch, stage, image, named context)
//    and the source roots COPY --from and RUN --mount read;
//  - step_keys.cpp: the cache side of a step (keys from the resolved steps,
//    cached results, records);
//  - step_exec.cpp: the filesystem steps (WORKDIR, COPY/ADD, RUN) executed
//    from their resolved values.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "builder/cache_steps.hpp"
#include "builder/config.hpp"
#include "builder/context.hpp"
#include "builder/copy_share.hpp"
#include "builder/copy_step.hpp"
#include "builder/events.hpp"
#include "builder/executor.hpp"
#include "builder/plan.hpp"
#include "builder/run_mounts.hpp"
#include "builder/run_step.hpp"
#include "builder/step_cache.hpp"
#include "cache/records.hpp"
#include "image/store.hpp"
#include "sandbox/sandbox.hpp"
#include "snapshot/layer_dirs.hpp"
#include "snapshot/snapshotter.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// Where a build's snapshotter keeps its views and mount records in `store`.
snapshot::SnapshotterConfig snapshotter_config(image::ImageStore& store);

/// One layer of a stage's chain: its record and its unpacked directory.
struct Layer {
  image::LayerRecord record;
  std::filesystem::path dir;
};

/// What a stage has built so far (and, when done, its result).
struct StageResult {
  StageState state;
  std::vector<Layer> layers;
  /// The cache key of the last step (the parent of the next one).
  std::string cache_key;
  /// True once a step of this chain missed the cache.
  bool cache_broken = false;
  /// A miss reason waiting for the next reported step ("base image changed").
  std::string cache_reason;
  /// True when cache_reason is not worth a progress note ("first build").
  bool cache_reason_quiet = false;
  /// This stage's chain so far: its start, then each step's key.
  std::vector<TraceStep> trace;
  /// The platform the stage is built for (RUN checks it can run it).
  Platform platform;
};

/// The layer directories of a chain, lowest first; a directory that occurs
/// twice is kept only at its topmost position (overlayfs refuses a lower
/// twice).
std::vector<std::filesystem::path> dirs_of(const std::vector<Layer>& layers);

/// The stage environment's variables as key inputs: without the proxy
/// variables, only those in `only` when it is given.
std::map<std::string, std::string> key_env(const parser::ShellEnv& env, const std::set<std::string>* only);

using snapshot::LayerDirs;

/// What the Builds of one multi-platform build share (one Build per target
/// platform, builder/executor.cpp execute_platforms): the staging area their
/// blobs go to (one commit at the end), the failure flag, and the stages
/// whose PlannedStage::share_key is the same in several plans (a stage
/// `FROM --platform=$BUILDPLATFORM` that does not read the target): the
/// first Build to reach one runs it (its progress lines, its step records),
/// the others wait and take its result.
struct SharedBuild {
  /// One shared stage: done once its owner finished it.
  struct Stage {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::optional<StageResult> result;  ///< nullopt: it failed
  };
  image::Staging* staging = nullptr;
  std::mutex staging_mu;
  /// The store's metadata and the resolver are used by every Build.
  std::mutex resolve_mu;
  std::atomic<bool> failed{false};
  /// Progress step ids, unique across the Builds.
  std::atomic<int> step_counter{0};
  std::mutex mu;
  std::map<std::string, std::shared_ptr<Stage>> stages;  ///< by share_key
  /// COPY source digests and layers made once for every platform.
  CopyShare copies;

  /// The slot for `key` and whether the caller owns it (must run the stage
  /// and call finish).
  std::pair<std::shared_ptr<Stage>, bool> claim(const std::string& key) {
    std::lock_guard lock(mu);
    auto [it, added] = stages.try_emplace(key, nullptr);
    if (added) {
      it->second = std::make_shared<Stage>();
    }
    return {it->second, added};
  }
  /// Publishes the owner's result (nullopt: failed) and wakes the waiters.
  static void finish(Stage& stage, std::optional<StageResult> result) {
    std::lock_guard lock(stage.mu);
    stage.result = std::move(result);
    stage.done = true;
    stage.cv.notify_all();
  }
  /// Waits for the owner's result (nullopt: it failed).
  static std::optional<StageResult> wait(Stage& stage) {
    std::unique_lock lock(stage.mu);
    stage.cv.wait(lock, [&] { return stage.done; });
    return stage.result;
  }
};

/// One build: runs the stages of a Plan (see builder/executor.cpp).
class Build final : public SourceRoots {
public:
  Build(const Plan& plan, image::ImageStore& store, ImageResolver& resolver, const ExecuteOptions& options,
        ProgressSink& progress, SharedBuild* shared = nullptr)
      : m_plan(plan),
        m_store(store),
        m_resolver(resolver),
        m_options(options),
        m_progress(progress),
        m_layer_dirs(store.content().root() / "snapshots"),
        m_shared(shared) {
    if (shared != nullptr) {
      m_resolve_mu = &shared->resolve_mu;
      m_copies = &shared->copies;
    }
  }

  /// Runs the stages, assembles the target's image and commits it.
  Result<BuiltImage> run();
  /// Runs the stages (the target's and what it needs); nothing committed.
  Result<void> run_stages();
  /// The target's image (config and manifest put in the staging area) and
  /// the record that commits it; `out.record` is filled by the caller.
  Result<BuiltImage> assemble(image::NewImage& ni);
  /// After the commit: the cache's bookkeeping and the stored record.
  Result<void> finish(BuiltImage& out);
  /// The steps this Build ran or found cached (not those of shared stages
  /// another Build ran).
  const std::vector<StepRecord>& steps() const { return m_steps; }

private:
  struct StageSlot {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool failed = false;
    StageResult result;
    double started = 0;   // seconds since the build began
    double finished = 0;
  };

  double since_start() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - m_began).count();
  }

  Result<void> setup();
  void stage_thread(const PlannedStage& stage);
  Result<StageResult> run_stage(const PlannedStage& stage);
  const StageResult* wait_stage(int index);
  Result<StageResult> base_from_image(const image::LoadedImage& img, const std::string& created,
                                      const Platform& platform);
  /// Unpacks the base-image layers a step is about to mount (FROM leaves them
  /// packed: a build that only adds metadata never reads them).
  Result<void> unpack_layers(const std::vector<Layer>& layers);
  Result<image::LoadedImage> resolve_image(const std::string& reference, const Platform& platform);
  Result<StageResult> base_of(const PlannedStage& stage, const std::string& created, StepInfo& info);
  Result<image::LoadedImage> oci_layout_image(const std::string& source, const Platform& platform);
  Result<StageResult> base_from_dir(const std::string& name, const std::string& dir, const std::string& created,
                                    const Platform& platform);
  /// The named context directory `dir`, opened once per build.
  Result<const BuildContext*> named_context(const std::string& dir);

  /// The root a resolved --from / from= reference names (nullopt = the build
  /// context; `from` as written, for messages); a context directory is seen
  /// through its .dockerignore (only `sub` below it needs to be right).
  Result<SourceRoot> source_root(const std::string& from, const std::optional<SourceRef>& ref, std::string_view sub);
  Result<SourceRoot> open_source(const MountSource& source, std::string_view sub) override {
    return source_root(source.from, source.ref, sub);
  }
  /// The context's directory as is when its .dockerignore hides nothing
  /// below `sub`, else a view of it with the ignored entries whited out
  /// (builder/context_filter.hpp).
  Result<SourceRoot> filtered_root(const BuildContext& context, std::string_view sub);

  Result<void> run_step(const PlannedStage& stage, StageResult& st, const parser::Instruction& ins,
                        const StepInfo& info, int position);
  // Build cache (the methods after run_step).
  Result<std::optional<StepKey>> run_key(const StageResult& st, const ResolvedRun& run, std::string& uncacheable);
  // The COPY or ADD `ins` resolved in the stage's env and WORKDIR, with the
  // context directory it reads from (one resolution for the key and the copy).
  Result<ResolvedCopy> resolve_copy_step(const PlannedStage& stage, const StageResult& st,
                                         const parser::Instruction& ins);
  Result<std::optional<StepKey>> copy_key(const StageResult& st, const ResolvedCopy& copy, std::string& uncacheable);
  StepKey metadata_key(const StageResult& st, const parser::Instruction& ins);
  Result<void> apply_cached(StageResult& st, const cache::CacheRecord& rec);
  Result<void> record_cache(const StageResult& st, const StepKey& key, const std::string& parent, int position,
                            const parser::Instruction& ins, const StepRecord& record);
  Result<void> base_cache(const PlannedStage& stage, StageResult& res, const image::LoadedImage& img);
  std::string debug_name(const PlannedStage& stage, int position) const;
  // The stage name step labels show: none when the Dockerfile has one stage;
  // with several platforms, the stage's platform first, and when `env` (the
  // step's environment) holds a TARGETPLATFORM other than the stage's
  // platform, "->" and that target (BuildKit: "linux/amd64->arm64 cross").
  std::string label_name(const PlannedStage& stage, const parser::ShellEnv* env = nullptr) const;
  Result<void> finish_layer(StageResult& st, snapshot::View& view, const std::string& created_by,
                            StepRecord& record, bool independent = false);
  Result<void> do_run(StageResult& st, const ResolvedRun& run, const StepInfo& info, StepRecord& record);
  Result<void> do_copy(StageResult& st, const ResolvedCopy& copy, StepRecord& record);
  /// The copy itself: a view over the stage, the files, the layer; the
  /// paths it wrote (as it named them) into `targets` when given.
  Result<void> copy_into_layer(StageResult& st, const ResolvedCopy& copy, StepRecord& record,
                               std::vector<std::string>* targets = nullptr);
  /// The CopyShare key of a COPY whose layer other platforms' Builds may
  /// take (builder/copy_share.hpp); nullopt when it is not shared: one
  /// platform only, ADD, heredocs, remote sources, a --chown by name (read
  /// from the stage's rootfs), sources other than the context or a stage.
  std::optional<std::string> copy_share_key(const ResolvedCopy& copy);
  /// Takes the layer the owner of `slot` made when it is the one this
  /// stage's copy would make (true), else leaves st as it was (false).
  Result<bool> take_shared_copy(StageResult& st, const ResolvedCopy& copy, CopyShare::Slot& slot,
                                StepRecord& record);
  Result<void> do_workdir(StageResult& st, const std::string& wd, StepRecord& record);

  StepInfo new_step(std::string name, int line) {
    if (m_shared != nullptr) {
      return StepInfo{++m_shared->step_counter, std::move(name), line};
    }
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
  std::unique_ptr<snapshot::Snapshotter> m_own_snapshotter;  // when not injected
  std::unique_ptr<sandbox::Sandbox> m_own_sandbox;
  snapshot::Snapshotter* m_snapshotter = nullptr;
  sandbox::Sandbox* m_sandbox = nullptr;
  std::unique_ptr<image::Staging> m_own_staging;  // when not shared
  image::Staging* m_staging = nullptr;
  std::unique_ptr<StepCache> m_cache;
  std::mutex m_own_staging_mu;
  std::mutex* m_staging_mu = &m_own_staging_mu;
  SharedBuild* m_shared = nullptr;
  CopyShare m_own_copies;
  /// The Build's own, or the SharedBuild's for several platforms.
  CopyShare* m_copies = &m_own_copies;
  std::mutex m_own_resolve_mu;
  /// Serialises the store's metadata reads (one SQLite connection) and the
  /// resolver: the Build's own, or the SharedBuild's for several platforms.
  std::mutex* m_resolve_mu = &m_own_resolve_mu;
  std::mutex m_mu;
  int m_step_counter = 0;
  std::vector<StepRecord> m_steps;
  std::map<std::string, std::vector<TraceStep>> m_traces;  // by stage, of the stages that ran
  std::map<int, std::unique_ptr<StageSlot>> m_slots;
  std::mutex m_named_mu;
  std::map<std::string, std::unique_ptr<BuildContext>> m_named;
  std::atomic<bool> m_failed{false};
  std::chrono::steady_clock::time_point m_began;
  std::optional<Error> m_error;
  std::unique_ptr<std::counting_semaphore<>> m_jobs;
};

}  // namespace imgbuild::builder
