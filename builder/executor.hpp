#pragma once
// The executor: runs a Plan. Stages run as soon as the stages they need are
// done (up to `jobs` at a time); each RUN / COPY / ADD / WORKDIR runs in a
// snapshot view over the stage's layer directories and is diffed into one
// layer blob staged in the content store; metadata instructions only change
// the config (builder/config.hpp). The target's image is committed to the
// store in one transaction at the end; a failure commits nothing.
//
// Base images come through an ImageResolver (the local store today; the
// registry wires pulls in behind the same interface). Unpacked base layers
// live under <store>/snapshots/<diff_id hex>/fs, applied once and shared.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "builder/context.hpp"
#include "builder/events.hpp"
#include "builder/plan.hpp"
#include "image/store.hpp"
#include "util/result.hpp"

namespace imgbuild::snapshot {
class Snapshotter;
}
namespace imgbuild::sandbox {
class Sandbox;
}

namespace imgbuild::builder {

class CacheIo;

/// Finds base images by reference.
class ImageResolver {
public:
  virtual ~ImageResolver() = default;
  /// The image `reference` names for `platform`, present in the store
  /// afterwards. Errc::not_found names the image when it cannot be found
  /// (or is there for another platform only).
  virtual Result<image::LoadedImage> resolve(const std::string& reference, const Platform& platform) = 0;
};

/// Checks that a stored image can be the base of a stage built for
/// `platform`: os and architecture equal once normalised, and the variant
/// when the image names one (an image with no architecture fits any).
/// Errc::not_found names the image and both platforms.
Result<void> check_image_platform(const std::string& reference, const image::LoadedImage& img,
                                  const Platform& platform);

/// A resolver that looks only in the local store.
std::unique_ptr<ImageResolver> make_store_resolver(image::ImageStore& store);

/// A --secret: id and where its value comes from.
struct SecretSource {
  std::string id;
  std::optional<std::string> file;  ///< src=FILE
  std::optional<std::string> env;   ///< env=VAR
};

/// Implementations a build uses instead of making its own (tests pass
/// fakes). Null: the build makes the real one (the snapshotter of kind
/// ExecuteOptions::snapshotter, the "auto" sandbox).
struct BuildServices {
  snapshot::Snapshotter* snapshotter = nullptr;
  sandbox::Sandbox* sandbox = nullptr;
};

/// One executed step, for --metadata-file.
struct StepRecord {
  std::string name;
  int line = 0;
  double seconds = 0;
  bool cached = false;
  /// Why the step was not cached ("" for a hit): the first differing input
  /// at the first miss of a chain, "a previous step changed" after it.
  std::string cache_reason;
  std::string layer_digest;  ///< "" for metadata-only steps
  /// Bytes of the layer blob this step wrote (0 when cached or no layer).
  int64_t layer_bytes = 0;
  /// The layer's content size as Docker counts it (-1: no layer or not known).
  int64_t layer_content = -1;
  /// The stage the step belongs to (PlannedStage::index) and its name.
  int stage = 0;
  std::string stage_name;
  /// Where a hit came from: "" = the local cache, else the imported cache.
  std::string cache_source;
};

/// How the executor runs.
struct ExecuteOptions {
  /// The build context (COPY sources, RUN --mount type=bind default).
  const BuildContext* context = nullptr;
  /// Names for the final image (-t), already normalised by the caller.
  std::vector<image::Reference> tags;
  /// Parallel stages (0 = number of cores).
  int jobs = 0;
  /// Snapshotter kind: auto, overlay, copy.
  std::string snapshotter = "auto";
  /// RUN isolation (sandbox::make_sandbox's kind): auto, namespaces, chroot.
  std::string isolation = "auto";
  /// The snapshotter and sandbox to use (null members: made by the build).
  BuildServices services;
  /// --secret values by id.
  std::map<std::string, SecretSource> secrets;
  /// --ssh default: the agent socket to forward ("" = none).
  std::string ssh_socket;
  /// --allow entitlements ("security.insecure", "network.host").
  std::set<std::string> allow;
  /// --network default for RUN: default, none, host.
  std::string network = "default";
  /// What makes two builds "the same Dockerfile and target" (the CLI: the
  /// Dockerfile's path and the target): a miss is explained against the
  /// closest earlier build of the same identity.
  std::string build_identity;
  /// --debug cache-keys=DIR: one text file per step key ("" = none).
  std::string cache_keys_dir;
  /// --cache-from imports and the record of what --cache-to exports
  /// (builder/cache_io.hpp); null = neither.
  CacheIo* cache_io = nullptr;
  /// When set, receives the steps the build finished (run or cached), also
  /// when the build fails (the summary line of a failed build).
  std::vector<StepRecord>* steps_seen = nullptr;
  /// Build start (unix seconds) for created times without SOURCE_DATE_EPOCH.
  int64_t now_sec = 0;
  uint32_t now_nsec = 0;
};

/// The result of a build.
struct BuiltImage {
  std::string manifest_digest;
  std::string manifest_bytes;
  std::string config_digest;  ///< the image ID
  std::string config_bytes;
  image::ImageConfig config;
  image::ImageRecord record;
  /// Layers of the image, lowest first.
  std::vector<image::LayerRecord> layers;
  /// Their layer directories, lowest first (overlay-lower form); a base-image
  /// layer no step mounted may not be unpacked there.
  std::vector<std::filesystem::path> layer_dirs;
  std::vector<StepRecord> steps;
  /// The cache key of the target stage's last step (--cache-to mode=min).
  std::string cache_key;
  /// Each stage the build ran, in plan order: when it started (after the
  /// stages it needs) and finished, in seconds since the build began.
  struct StageTiming {
    int index = 0;
    std::string name;
    std::vector<int> needs;
    double started = 0;
    double finished = 0;
  };
  std::vector<StageTiming> stages;
  /// The target stage's index.
  int target = 0;
  /// The platform the image was built for.
  Platform platform;
};

/// A build failure: the error plus the failing step's exit code, if a RUN.
struct BuildFailure {
  Error error;
  std::optional<int> exit_code;
};

/// Runs the plan and commits the target image to the store (named with
/// options.tags). On failure the store holds nothing new but layer
/// directories.
Result<BuiltImage> execute(const Plan& plan, image::ImageStore& store, ImageResolver& resolver,
                           const ExecuteOptions& options, ProgressSink& progress);

/// Runs one plan per target platform (make_plan with each --platform) as
/// one build: each platform's stages run as soon as what they need is done,
/// a stage with the same PlannedStage::share_key in several plans (a
/// `FROM --platform=$BUILDPLATFORM` stage that does not read the target
/// platform) runs once and serves them all, and the images are committed
/// together, in plan order, unnamed (options.tags are for the caller's
/// index). One plan: execute(). On failure nothing is committed.
Result<std::vector<BuiltImage>> execute_platforms(const std::vector<Plan>& plans, image::ImageStore& store,
                                                  ImageResolver& resolver, const ExecuteOptions& options,
                                                  ProgressSink& progress);

/// Applies the image's layer blobs in order to `dest` (an empty or missing
/// directory): the final root filesystem, for the local and tar outputs.
Result<void> export_rootfs(const image::ImageStore& store, const BuiltImage& image, const std::filesystem::path& dest);

}  // namespace imgbuild::builder
