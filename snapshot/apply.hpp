#pragma once
// Layer apply: unpacks a layer tar (any compression util/tar reads) into a
// directory, contained: every entry path is resolved inside the target with
// util/fs (openat2 RESOLVE_IN_ROOT), so no "..", absolute symlink or hardlink
// can write outside it.
//
// Two modes:
//  - overlay_lower: the directory becomes one overlayfs lower layer. A
//    whiteout ".wh.name" becomes a 0:0 character device "name"; the opaque
//    marker ".wh..wh..opq" becomes the xattr trusted.overlay.opaque=y on its
//    directory. Expects an empty directory.
//  - merged: the directory holds the merged tree of all layers so far (copy
//    snapshotter, flattening): whiteouts delete from it, the opaque marker
//    empties its directory of everything lower layers put there.
//
// Entry rules (OCI image spec): leading "/" and "./" are root-relative; a ".."
// component is refused; directory over directory updates attributes, anything
// else replaces what is there; hardlink targets are paths inside the root
// (absolute ones too) and must exist in this or (merged mode) a lower layer; a
// hardlink to a symlink links the symlink; a hardlink to a directory is
// refused; whiteouts never act through a symlinked parent; a whiteout or opaque
// marker hides only lower layers, never entries of the same archive.
// xattrs named trusted.overlay.* or user.overlay.* in an archive are dropped.
// Errors name the archive and the entry.

#include <cstdint>
#include <string>
#include <vector>

#include "util/fs.hpp"
#include "util/hash.hpp"
#include "util/result.hpp"
#include "util/tar.hpp"

namespace imgbuild::snapshot {

/// How whiteouts are represented in the target directory.
enum class ApplyMode { overlay_lower, merged };

/// Whether entry owners are applied (needs root) or left as the caller's.
enum class Ownership { apply, ignore };

/// Settings for apply_layer.
struct ApplyOptions {
  ApplyMode mode = ApplyMode::merged;
  Ownership ownership = Ownership::apply;
  /// Skip an entry naming the root directory ("." or "/"), leaving the
  /// root's own metadata alone, as Docker's untar does for an existing
  /// destination (ADD of a local archive).
  bool skip_root_entry = false;
  /// When set, receives the root-relative path of every entry written
  /// (whiteouts, opaque markers and the root excluded), in archive order.
  std::vector<std::string>* written_paths = nullptr;
  /// Refuse the archive (Errc::limit) once its file bodies add up to
  /// more than this many bytes; 0 = no limit. For archives from elsewhere
  /// that must not fill the disk (an imported cache mount).
  uint64_t max_bytes = 0;
};

/// What an apply did.
struct ApplyResult {
  /// sha256 of the uncompressed tar, trailing bytes included.
  Sha256Digest diff_id;
  uint64_t uncompressed_size = 0;
  tar::Compression compression = tar::Compression::none;
  /// Number of archive entries processed.
  uint64_t entries = 0;
};

/// Applies every entry of `reader` (freshly opened) under `root`, then
/// finishes the reader. On error the directory holds a partial result.
Result<ApplyResult> apply_layer(const fs::Root& root, tar::Reader& reader, const ApplyOptions& options = {});

/// Opens `dir` as the root and applies the tar read from `fd` (named `name`
/// in messages).
Result<ApplyResult> apply_layer_fd(const std::string& dir, int fd, const std::string& name,
                                   const ApplyOptions& options = {});

}  // namespace imgbuild::snapshot
