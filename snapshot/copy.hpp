#pragma once
// The copy snapshotter's machinery, also used by the overlay snapshotter to
// flatten chains deeper than overlayfs stacks:
//  - merge_layer: lays one layer directory (overlay lower form) over a merged
//    tree, as overlayfs would show it;
//  - Baseline / write_changes: records a tree's metadata, and later writes
//    what changed since as an overlayfs upper directory.
//
// Change detection compares, per path, the inode number and birth time
// (inode numbers are reused at once on ext4), type, mode, owner,
// size, rdev, mtime and ctime recorded at prepare time. Any write, chmod,
// chown, xattr change, link or unlink of an inode moves its ctime, so every
// change overlayfs would have copied up is found; a replaced entry (rm +
// create) has a new inode. The upper directory then mirrors overlayfs:
// changed files are hard-linked in (same inode, hardlink pairs stay pairs),
// deleted paths become 0:0 character devices, a directory that replaced
// something gets trusted.overlay.opaque=y, and every directory leading to a
// change is present with the view's metadata. A metadata-preserving rewrite
// (same inode number, times and size, within one clock tick) or an open for
// writing that writes nothing leaves no trace to compare: the caller names
// what it wrote (write_changes' `written`), which covers COPY/ADD; a RUN's
// such rewrites are not seen (overlayfs copies them up). Trees deeper than 1024 levels
// are refused (Errc::limit), as util/fs and the layer diff do.

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "util/result.hpp"

namespace imgbuild::snapshot {

/// Merges layer_dir (0:0 devices = deletions, trusted.overlay.opaque=y =
/// opaque directory) onto merged_dir. Contents, owners, modes, times, xattrs
/// (except trusted.overlay.*) and hardlinks within the layer are kept.
/// Nothing is followed: the walk uses directory fds and never resolves a
/// symlink of either tree. With keep_links false, each path of a hardlink
/// group gets its own copy: a view built so behaves as overlayfs does, where
/// writing one path of a lower hardlink copies up that path alone.
Result<void> merge_layer(const std::filesystem::path& layer_dir, const std::filesystem::path& merged_dir,
                         bool keep_links = true);

/// Metadata of every path of a tree at one moment.
class Baseline {
public:
  /// Records dir recursively.
  static Result<Baseline> record(const std::filesystem::path& dir);
  /// Number of entries recorded (the root excluded).
  size_t size() const { return m_count; }

  /// One recorded entry; children only for directories.
  struct Node {
    ino_t ino = 0;
    mode_t mode = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    off_t size = 0;
    dev_t rdev = 0;
    struct timespec mtime = {};
    struct timespec ctime = {};
    struct timespec btime = {};  ///< birth time; 0 when not kept
    std::map<std::string, Node> children;
  };
  /// The root directory's node.
  const Node& root() const { return m_root; }

private:
  Node m_root;
  size_t m_count = 0;
};

/// Writes the changes of dir since base as an overlay upper directory into
/// upper (an existing, empty directory on the same filesystem as dir).
/// Paths in `written` (relative to dir, no leading "/") are taken as changed
/// even when their metadata match the record — what overlayfs copies up when
/// a step rewrites an entry identically; paths not in dir are ignored.
Result<void> write_changes(const Baseline& base, const std::filesystem::path& dir, const std::filesystem::path& upper,
                           const std::set<std::string>& written = {});

}  // namespace imgbuild::snapshot
