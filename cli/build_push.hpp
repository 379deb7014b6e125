#pragma once
// Pushing a build's result to registries: `-o type=image,name=REG/REPO:TAG,push=true`,
// `-o type=registry` and `--push` (buildx semantics: --push is
// `-o type=image,push=true` for every -t name).

#include <string>
#include <vector>

#include "image/reference.hpp"
#include "image/store.hpp"

namespace imgbuild::cli {

/// Where and how a built image is pushed.
struct PushTarget {
  std::vector<image::Reference> names;
  /// registry.insecure=true: speak plain HTTP (and skip TLS verification).
  bool insecure = false;
};

/// Pushes the stored image `manifest_digest` to every name of `target`,
/// reporting progress on stderr unless `quiet`. Throws CommandError naming
/// the destination when a push fails.
void push_built_image(image::ImageStore& store, const std::string& manifest_digest, const PushTarget& target,
                      bool quiet);

}  // namespace imgbuild::cli
