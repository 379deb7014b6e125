#pragma once
// Whole-image transfers between the local image store and a registry: pull
// (manifest for one platform, then config and layers into a Staging, verified
// against their digests and the config's diff_ids, committed in one step)
// and push (layers and config with HEAD-exists checks and cross-repository
// mounts, then the manifest).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "image/layer_compression.hpp"
#include "image/reference.hpp"
#include "image/store.hpp"
#include "registry/client.hpp"
#include "registry/platform.hpp"
#include "util/result.hpp"

namespace imgbuild::registry {

/// One progress line: the short blob id and what happened ("Pull complete",
/// "Already exists", "Pushed", "Layer already exists", "Mounted from a/b").
using TransferProgress = std::function<void(const std::string& short_id, const std::string& status)>;

/// What pull_image stored.
struct PullResult {
  /// The image manifest's digest (the stored image; from an index: the
  /// requested platform's, else the first fetched).
  std::string manifest_digest;
  /// The digest the reference resolved to on the registry: the index's when
  /// the image was selected from one, else the manifest's. It is what docker
  /// prints as "Digest:" and records as the RepoDigest.
  std::string repo_digest;
  std::string config_digest;
  /// True when every blob was already in the store (nothing downloaded).
  bool up_to_date = false;
};

/// Which platforms a pull of an image index fetches.
struct PullOptions {
  /// The platform to fetch (none: the host's).
  std::optional<Platform> platform;
  /// Every platform the index lists (docker pull --all-platforms);
  /// attestation manifests are left out.
  bool all_platforms = false;
};

/// Pulls the image `ref` names into `store` and names it `ref`. A
/// single-platform image is stored as it is. An image index is kept (the
/// store's multi-platform image, image/index.hpp) with the platform images
/// `options` selects and those of the same index pulled before; it is also
/// named `repository@<index digest>` (the RepoDigest, as docker records it).
/// An index of indexes keeps only the selected image, as before.
/// Blobs already in the store are not downloaded again; layers download
/// concurrently. Nothing unverified enters the store.
Result<PullResult> pull_image(Client& client, image::ImageStore& store, const image::Reference& ref,
                              const PullOptions& options, const TransferProgress& progress = {});
/// pull_image for one platform.
Result<PullResult> pull_image(Client& client, image::ImageStore& store, const image::Reference& ref,
                              const Platform& platform, const TransferProgress& progress = {});

/// What push_image sent.
struct PushResult {
  /// What the tag now names: the manifest's digest, or the index's.
  std::string manifest_digest;
  uint64_t manifest_size = 0;
  std::string media_type;  ///< of what the tag names
};

/// How push_image sends an image.
struct PushOptions {
  /// Uncompressed layers (a build's) are compressed as this asks before they
  /// go out (made now or reused: image/layer_compression.hpp); layers
  /// already compressed go as they are unless it forces another algorithm.
  /// None: every blob as stored.
  std::optional<image::LayerCompression> compression = image::LayerCompression{};
};

/// Pushes the stored image `source` (anything ImageStore::resolve takes) to
/// `dest`: blobs first (mounted from another repository of the same registry
/// that the store knows holds the image, when there is one), then the
/// manifest under dest's tag (or digest). A multi-platform image pushes
/// every platform image the store holds (by digest) and then its index under
/// the tag; a platform the store lacks must already be in dest's repository.
Result<PushResult> push_image(Client& client, image::ImageStore& store, const std::string& source,
                              const image::Reference& dest, const TransferProgress& progress = {},
                              const PushOptions& options = {});

}  // namespace imgbuild::registry
