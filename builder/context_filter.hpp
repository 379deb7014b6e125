#pragma once
// The .dockerignore-filtered view of a context directory, for the places
// that need it as a host directory rather than through select_sources: RUN
// --mount=type=bind from the context or a named context dir, a cache mount
// seeded from one, and a named context dir used as a FROM base. BuildKit
// sends only the filtered files, so ignored entries are absent there.
//
// The filter is a layer directory in overlayfs lower form holding a 0:0
// character device (a whiteout) for each maximal ignored entry: laid over
// the context directory (a snapshot view with the context as the lower
// layer and the filter above it) it hides exactly what walk_source skips.
// An ignored directory with re-included entries below it (`!` patterns) is
// kept and only its ignored entries are hidden. Every directory the filter
// holds on the way to a whiteout copies the context directory's mode, owner
// and times, since overlayfs shows the upper layer's directory metadata.

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "builder/dockerignore.hpp"
#include "util/fs.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// The maximal ignored entries below `sub` (a real path in root, "" = the
/// whole tree; sub itself when it is ignored with nothing re-included below
/// it), in byte order. Empty when `ignore` hides nothing there.
Result<std::vector<std::string>> ignored_entries(const fs::Root& root, const IgnoreMatcher& ignore,
                                                 std::string_view sub);

/// Writes a whiteout for each path of `hidden` into `layer_dir` (an existing
/// empty directory), with the parent directories' metadata copied from
/// `root`. Returns how many whiteouts it wrote.
Result<size_t> write_whiteouts(const fs::Root& root, const std::vector<std::string>& hidden,
                               const std::filesystem::path& layer_dir);

/// Copies what `ignore` leaves of `sub` (a real path in root) and its parent
/// directories into `dest` (an existing empty directory standing for the
/// root): the fallback for a context directory that cannot be an overlay
/// lower layer (the store lies inside it). Contents, owners, modes and
/// mtimes are kept; hardlinks become separate copies; sockets are skipped.
Result<void> copy_filtered(const fs::Root& root, const IgnoreMatcher& ignore, std::string_view sub,
                           const std::filesystem::path& dest);

}  // namespace imgbuild::builder
