#pragma once
// Helpers shared by the snapshotter implementations (not a public API).

#include <filesystem>
#include <memory>
#include <string>

#include "snapshot/snapshotter.hpp"
#include "util/result.hpp"

namespace imgbuild::snapshot {

/// Moves dir to dest (which must not exist): a rename, or a copy and delete
/// across filesystems.
Result<void> move_dir(const std::filesystem::path& dir, const std::filesystem::path& dest);

/// The copy snapshotter (copy.cpp).
Result<std::unique_ptr<Snapshotter>> make_copy_snapshotter(const SnapshotterConfig& config);
/// The overlay snapshotter (overlay.cpp); fails when overlay mounts do not
/// work in config.work_dir.
Result<std::unique_ptr<Snapshotter>> make_overlay_snapshotter(const SnapshotterConfig& config);

}  // namespace imgbuild::snapshot
