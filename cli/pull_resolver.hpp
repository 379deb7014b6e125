#pragma once
// The builder's base-image resolver for the command line: the local store
// first, the registry when the image is missing there (or always, with
// --pull), so FROM <registry>/<repo> works with an empty store.

#include <memory>
#include <string>

#include "builder/executor.hpp"
#include "image/store.hpp"

namespace imgbuild::cli {

/// A resolver that pulls missing images (every parseable reference when
/// `pull_always`), and images stored for another platform only, for the
/// platform each stage is built for, and reports each pull on stderr.
std::unique_ptr<builder::ImageResolver> make_pull_resolver(image::ImageStore& store, bool pull_always);

}  // namespace imgbuild::cli
