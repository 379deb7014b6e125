// Several target platforms in one build (--platform a,b): one Build per
// plan, all sharing a SharedBuild (build.hpp: the staging area, progress ids
// and the stages by share_key), their images committed in one transaction;
// and the platform check of a stored base image. Kept apart from
// executor.cpp, which schedules the stages of one plan.

#include <optional>
#include <thread>

#include <fmt/format.h>

#include "builder/build.hpp"
#include "builder/executor.hpp"
#include "image/metadata.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

Result<void> check_image_platform(const std::string& reference, const image::LoadedImage& img,
                                  const Platform& platform) {
  const image::ImageConfig& c = img.config;
  if (c.architecture.empty()) {
    return ok();  // no platform recorded: usable for any
  }
  Platform have = normalize_platform({c.os, c.architecture, c.variant});
  Platform want = normalize_platform(platform);
  if (have.os == want.os && have.architecture == want.architecture &&
      (have.variant == want.variant || c.variant.empty())) {
    return ok();
  }
  return fail(Errc::not_found, fmt::format("base image {} in the local store is for {}, not {}",
                                           str::go_quote(reference), have.str(), want.str()));
}

Result<std::vector<BuiltImage>> execute_platforms(const std::vector<Plan>& plans, image::ImageStore& store,
                                                  ImageResolver& resolver, const ExecuteOptions& options,
                                                  ProgressSink& progress) {
  if (plans.size() == 1) {
    TRY(BuiltImage one, execute(plans.front(), store, resolver, options, progress));
    return std::vector<BuiltImage>{std::move(one)};
  }
  TRY(std::unique_ptr<image::Staging> staging, image::Staging::create(store.content()));
  SharedBuild shared;
  shared.staging = staging.get();
  // One snapshotter and one sandbox for every platform's Build (one overlay
  // probe, one seccomp compile), unless the caller gave its own.
  ExecuteOptions common = options;
  std::unique_ptr<snapshot::Snapshotter> snapshotter;
  std::unique_ptr<sandbox::Sandbox> sandbox;
  if (common.services.snapshotter == nullptr) {
    TRY(snapshotter, snapshot::make_lazy_snapshotter(options.snapshotter, snapshotter_config(store)));
    common.services.snapshotter = snapshotter.get();
  }
  if (common.services.sandbox == nullptr) {
    TRY(sandbox, sandbox::make_sandbox(options.isolation));
    common.services.sandbox = sandbox.get();
  }
  std::vector<ExecuteOptions> opts(plans.size(), common);
  std::vector<std::unique_ptr<Build>> builds;
  for (size_t i = 0; i < plans.size(); ++i) {
    opts[i].steps_seen = nullptr;
    opts[i].tags.clear();  // one name cannot hold several images (an index does: the caller's part)
    opts[i].build_identity = options.build_identity + "@" + plans[i].platform.str();
    builds.push_back(std::make_unique<Build>(plans[i], store, resolver, opts[i], progress, &shared));
  }
  std::vector<Result<void>> ran(plans.size(), ok());
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < plans.size(); ++i) {
      threads.emplace_back([&, i] { ran[i] = builds[i]->run_stages(); });
    }
    for (auto& t : threads) {
      t.join();
    }
  }
  if (options.steps_seen != nullptr) {
    options.steps_seen->clear();
    for (const auto& b : builds) {
      options.steps_seen->insert(options.steps_seen->end(), b->steps().begin(), b->steps().end());
    }
  }
  // The first real error in plan order ("a shared stage failed" only when
  // nothing better is known).
  std::optional<Error> first;
  for (auto& r : ran) {
    if (!r && (!first || first->message == "a shared stage failed")) {
      first = r.error();
    }
  }
  if (first) {
    return fail(*first);
  }
  std::vector<BuiltImage> out;
  std::vector<image::NewImage> images(plans.size());
  for (size_t i = 0; i < plans.size(); ++i) {
    TRY(BuiltImage img, builds[i]->assemble(images[i]));
    out.push_back(std::move(img));
  }
  TRY_VOID(store.commit(*staging, images));
  for (size_t i = 0; i < plans.size(); ++i) {
    TRY_VOID(builds[i]->finish(out[i]));
  }
  return out;
}

}  // namespace imgbuild::builder
