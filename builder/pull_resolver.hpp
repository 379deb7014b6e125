#pragma once
// The builder's base-image resolver of a build session: the local store
// first, the registry when the image is missing there (or always, with
// --pull), so FROM <registry>/<repo> works with an empty store.

#include <memory>
#include <string>

#include "builder/executor.hpp"
#include "builder/session_messages.hpp"
#include "image/store.hpp"

namespace imgbuild::builder {

/// A resolver that pulls missing images (every parseable reference when
/// `pull_always`), and images stored for another platform only, for the
/// platform each stage is built for (a multi-platform base: its image for
/// that platform), and reports each pull to `messages`.
std::unique_ptr<ImageResolver> make_pull_resolver(image::ImageStore& store, bool pull_always, MessageSink messages);

}  // namespace imgbuild::builder
