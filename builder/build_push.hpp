#pragma once
// Pushing a build's result to registries: `-o type=image,name=REG/REPO:TAG,push=true`,
// `-o type=registry` and `--push` (buildx semantics: --push is
// `-o type=image,push=true` for every -t name).

#include <optional>
#include <string>
#include <vector>

#include "image/layer_compression.hpp"
#include "image/reference.hpp"
#include "builder/session_messages.hpp"
#include "image/store.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// Where and how a built image is pushed.
struct PushTarget {
  std::vector<image::Reference> names;
  /// registry.insecure=true: speak plain HTTP (and skip TLS verification).
  bool insecure = false;
  /// compression=, compression-level=, force-compression= (default gzip).
  std::optional<image::LayerCompression> compression = image::LayerCompression{};
};

/// Pushes the stored image `manifest_digest` (a manifest, or a
/// multi-platform image's index) to every name of `target`, reporting
/// progress to `messages`, and returns the descriptor of what the last name
/// now names: the manifest or index as pushed (its layers compressed, so
/// not necessarily in the store). A failed push is an error naming the
/// destination; a target without names is an error.
Result<image::Descriptor> push_built_image(image::ImageStore& store, const std::string& manifest_digest,
                                     const PushTarget& target, const MessageSink& messages);

}  // namespace imgbuild::builder
