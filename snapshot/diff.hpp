#pragma once
// Layer diff: the changes between a parent filesystem and a child one as an
// OCI layer tar, streamed to util/tar's deterministic writer.
//
// Two sources, one canonical output — the same changes give the same bytes:
//  - diff_overlay: an overlayfs upper dir over its lower layers (each lower in
//    overlay-lower format, as apply_layer(overlay_lower) writes them). Only
//    the upper dir is walked, plus lookups in the lowers for what it touches.
//  - diff_trees: an old tree against a new tree (rootfs tar output).
//
// The canonical layer follows BuildKit v0.22's differ. An entry is emitted
// when it is new, its type changed, or it is not the same as the old one:
// mode, owner, device numbers or security.capability differ, or (not for
// directories) size or mtime seconds; when both mtimes lack nanoseconds
// (both may come from a tar) the link target or the file's bytes decide,
// else the nanoseconds (times compared as the layer records them: with
// source_date_epoch, a later time is the epoch). So a rewrite that changes nothing (`cp -p` of a file
// onto itself, a `chmod 644` of a 0644 file, a COPY of the same file again)
// is not in the layer, nor is a directory whose mtime alone changed. A
// directory is emitted when anything beneath it is. Deletions become
// explicit ".wh.name" whiteouts, also inside a directory deleted and made
// again (`rm -rf d && mkdir d`; overlay marks it opaque), which is compared
// name by name with the old one: no ".wh..wh..opq" marker is written.
// Whiteouts are empty files, mode 0644, 0:0, mtime 0. Non-directories
// sharing an inode (files, and symlinks, devices and fifos too) are written
// once, then as hardlinks (typeflag 1) to the first path in sort order.
// Sockets are skipped; the root directory itself is never an entry. Entries
// are sorted with tar::layer_path_less.
//
// overlay specifics: a 0:0 character device is a deletion (dropped when no
// lower has the path); trusted.overlay.opaque=y (or user.overlay.opaque) makes
// a directory opaque; trusted.overlay.redirect / metacopy are refused (mount
// with redirect_dir=off, metacopy=off).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/result.hpp"
#include "util/tar.hpp"

namespace imgbuild::snapshot {

/// Whether entry mtimes keep nanoseconds (PAX) or are truncated to seconds
/// (what Docker writes).
enum class MtimePrecision { seconds, nanoseconds };

/// Settings for a diff.
struct DiffOptions {
  /// Compression of the written layer (none or gzip).
  tar::Compression compression = tar::Compression::gzip;
  int gzip_level = 6;
  /// SOURCE_DATE_EPOCH: mtimes later than this are clamped to it.
  std::optional<int64_t> source_date_epoch{};
  MtimePrecision mtime_precision = MtimePrecision::seconds;
};

/// A written layer: digests, sizes, entry count.
struct DiffResult {
  tar::WriteSummary layer;
  /// Entries written (whiteouts included); 0 = nothing changed (the tar
  /// then holds only its end marker).
  uint64_t entries = 0;
  /// The layer's content size as Docker counts it (tar::content_bytes of
  /// every entry), counted while writing.
  uint64_t content_size = 0;
};

/// Diffs an overlay upper dir against its lower layers (top first) and writes
/// the layer to `out`.
Result<DiffResult> diff_overlay(const std::string& upper, const std::vector<std::string>& lowers,
                                const tar::WriteFn& out, const DiffOptions& options = {});

/// Diffs `new_root` against `old_root` ("" = empty parent) and writes the
/// layer to `out`.
Result<DiffResult> diff_trees(const std::string& old_root, const std::string& new_root, const tar::WriteFn& out,
                              const DiffOptions& options = {});

}  // namespace imgbuild::snapshot
