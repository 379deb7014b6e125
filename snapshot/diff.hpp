#pragma once
// Layer diff: the changes between a parent filesystem and a child one as an
// OCI layer tar, streamed to util/tar's deterministic writer.
//
// Two sources, one canonical output — the same changes give the same bytes:
//  - diff_overlay: an overlayfs upper dir over its lower layers (each lower in
//    overlay-lower format, as apply_layer(overlay_lower) writes them). Only
//    the upper dir is walked, plus lookups in the lowers for what it touches.
//  - diff_trees: an old tree against a new tree (rootfs tar output); it
//    cannot tell an identical rewrite from no change (see below).
//
// The canonical layer: an entry is emitted when it is new, its type changed,
// or its metadata differs (mode, owner, size, mtime with ns, link target,
// device numbers, xattrs other than trusted.overlay.*/user.overlay.*);
// content is not compared when all of those are equal. A directory is also
// emitted when anything beneath it is. Besides, diff_overlay emits every
// non-directory of the upper dir — the step wrote it or overlayfs copied it
// up, so it belongs to the layer even when it equals the lower one (a
// `COPY . .` rewriting files an earlier COPY wrote, a `chmod 644` of a 0644
// file), as dockerd's BuildKit does; and both emit what
// DiffOptions::written names (COPY gave an existing directory its metadata
// again). An upper directory otherwise unchanged with nothing emitted
// beneath (the parent of a removed mount stub) is left out, as current
// BuildKit leaves it. Deletions inside a directory present
// on both sides become explicit ".wh.name" whiteouts. A directory deleted and
// made again (`rm -rf d && mkdir d`) becomes the directory, a ".wh..wh..opq"
// marker and everything now inside it: overlay knows such a directory by its
// opaque xattr, the tree diff by a birth time (statx btime) later than
// DiffOptions::copied_at — the copy snapshotter passes filesystem_now() taken
// right after copying the parent. Whiteouts and markers are empty files, mode 0644,
// 0:0, mtime 0. Files sharing an inode are written once, then as hardlinks
// (typeflag 1) to the first path in sort order. Sockets are skipped; the root
// directory itself is never an entry. Entries are sorted with
// tar::layer_path_less.
//
// overlay specifics: a 0:0 character device is a deletion (dropped when no
// lower has the path); trusted.overlay.opaque=y (or user.overlay.opaque) makes
// a directory opaque; trusted.overlay.redirect / metacopy are refused (mount
// with redirect_dir=off, metacopy=off).

#include <ctime>
#include <cstdint>
#include <optional>
#include <set>
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
  /// diff_trees only: when the new tree was copied from the old one. New-tree
  /// directories born later that also exist in the old tree were re-created
  /// and are written as opaque. Unset: never opaque (explicit whiteouts).
  std::optional<timespec> copied_at{};
  /// Paths (clean, relative, no leading "/") the step wrote: emitted even
  /// when they equal the old side (View::written()). nullptr = none.
  const std::set<std::string>* written = nullptr;
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

/// The current time of the filesystem holding `dir`, read from a probe
/// directory's birth time (its clock may lag the system clock): the value
/// for DiffOptions::copied_at.
Result<timespec> filesystem_now(const std::string& dir);

}  // namespace imgbuild::snapshot
