#pragma once
// The builder's base-image resolver for the command line: the local store
// first, the registry when the image is missing there (or always, with
// --pull), so FROM <registry>/<repo> works with an empty store.

#include <memory>
#include <string>

#include "builder/executor.hpp"
#include "image/store.hpp"

namespace imgbuild::builder {

/// A resolver that pulls missing images (every parseable reference when
/// `pull_always`) for `platform` ("" = the host's) and reports each pull on stderr.
std::unique_ptr<builder::ImageResolver> make_pull_resolver(image::ImageStore& store, bool pull_always,
                                                           const std::string& platform);

}  // namespace imgbuild::builder
