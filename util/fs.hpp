#pragma once
// Contained filesystem access: a Root is a directory fd, and every operation
// on a path inside it resolves that path afresh from the root fd with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so ".." and symlinks —
// absolute or relative — are resolved as if the root were "/": nothing can
// reach outside. Intermediate components follow symlinks (inside the root);
// the final component is never followed by the operations that act on an
// entry itself (symlink, link, mknod, chown, chmod, set_times, xattrs, remove).
// No resolved path string is ever reused: each call resolves its own path.
//
// Paths are cleaned lexically first (empty and "." components dropped, ".."
// removes the previous component, never climbing above the root), so "/x",
// "./x" and "../x" all name <root>/x.

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/fd.hpp"
#include "util/result.hpp"

namespace imgbuild::fs {

/// Deepest directory nesting copy_tree (and the layer diff) accept; deeper
/// trees fail with Errc::limit instead of exhausting the stack.
inline constexpr size_t k_max_depth = 1024;

/// Extended attributes of one inode as (name, value), sorted by name.
using Xattrs = std::vector<std::pair<std::string, std::string>>;

/// Splits a path into components, dropping "", "." and resolving ".."
/// lexically (clamped at the root).
std::vector<std::string> clean_components(std::string_view path);

/// The first `count` of `comps` joined with "/" ("" for none).
std::string join_components(const std::vector<std::string>& comps, size_t count);

/// clean_components joined with "/"; "" for the root itself.
std::string clean_path(std::string_view path);

/// Whether to create missing parent directories.
enum class Parents { create, existing };

/// A directory fd plus a final name inside it: the handle for acting on one
/// entry without following it.
struct ParentRef {
  UniqueFd dir;      ///< O_PATH directory fd of the parent
  std::string name;  ///< single component, never "", "." or ".."
};

/// A directory that paths are confined to.
class Root {
public:
  /// Opens `dir` (an ordinary host path, followed) as a root.
  static Result<Root> open(const std::string& dir);
  /// Wraps an already open directory fd (O_PATH is enough).
  static Root from_fd(UniqueFd fd, std::string label);

  /// The root's directory fd (O_PATH).
  int fd() const { return m_fd.get(); }
  /// The host path (or label) the root was opened with, for messages.
  const std::string& label() const { return m_label; }

  /// openat2 of `path` inside the root with open(2) `flags` (O_CLOEXEC is
  /// added). The final component is followed unless flags has O_NOFOLLOW.
  Result<UniqueFd> open_at(std::string_view path, int flags, mode_t mode = 0) const;
  /// The parent directory of `path` (resolved inside the root, creating it as
  /// 0755 directories when asked) and the final component. Fails for the
  /// root itself.
  Result<ParentRef> parent(std::string_view path, Parents parents = Parents::existing) const;
  /// Creates `path` and missing parents as directories (an existing directory,
  /// or a symlink to one inside the root, is fine); returns an O_PATH fd.
  Result<UniqueFd> mkdir_all(std::string_view path, mode_t mode = 0755) const;

  /// lstat of path (final component not followed); nullopt when it does not
  /// exist (or a parent is missing or not a directory).
  Result<std::optional<struct stat>> lstat(std::string_view path) const;
  /// Reads the regular file at `path` whole (read_file_at's rules; errors
  /// name "<label>/<path>").
  Result<std::optional<std::string>> read_file(std::string_view path, size_t cap) const;
  /// Symlink target of path.
  Result<std::string> readlink(std::string_view path) const;
  /// Creates a new regular file (O_EXCL, never through a symlink), open for
  /// writing. Parents must exist.
  Result<UniqueFd> create_file(std::string_view path, mode_t mode) const;
  /// Creates a directory (parents must exist).
  Result<void> mkdir(std::string_view path, mode_t mode) const;
  /// Creates a symlink at path holding `target` (stored verbatim).
  Result<void> symlink(std::string_view path, std::string_view target) const;
  /// Hard-links existing `target` (not followed: a symlink is linked itself)
  /// at `path`; both inside the root.
  Result<void> link(std::string_view target, std::string_view path) const;
  /// mknod (character/block device, fifo) at path.
  Result<void> mknod(std::string_view path, mode_t mode, dev_t dev) const;
  /// Changes owner without following a final symlink.
  Result<void> chown(std::string_view path, uid_t uid, gid_t gid) const;
  /// Changes permission bits; refuses a symlink.
  Result<void> chmod(std::string_view path, mode_t mode) const;
  /// Sets atime and mtime (both to the given time) without following.
  Result<void> set_mtime(std::string_view path, int64_t sec, uint32_t nsec) const;
  /// Sets one extended attribute without following.
  Result<void> set_xattr(std::string_view path, const std::string& name, std::string_view value) const;
  /// All extended attributes of path (not followed).
  Result<Xattrs> xattrs(std::string_view path) const;
  /// Removes a file, symlink, device or empty directory.
  Result<void> remove(std::string_view path) const;
  /// Removes path and everything under it; missing is fine. The root
  /// itself cannot be removed (its contents can: remove_all of each child).
  Result<void> remove_all(std::string_view path) const;

private:
  Root(UniqueFd fd, std::string label) : m_fd(std::move(fd)), m_label(std::move(label)) {}
  UniqueFd m_fd;
  std::string m_label;
};

// fd-relative primitives for code that walks with directory fds. `name` is a
// single component inside `dirfd`; none of them follows a final symlink.

/// openat2 with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS relative to root_fd.
Result<UniqueFd> openat_in_root(int root_fd, std::string_view path, int flags, mode_t mode = 0);
/// Reads the regular file at `path` inside root_fd (symlinks followed inside
/// the root; opened O_NONBLOCK, so a FIFO never blocks): nullopt when it or
/// a parent does not exist; a directory or any other non-regular file is an
/// Errc::invalid_argument error; more than `cap` bytes is io::read_all's
/// Errc::limit error. Errors name `where`.
Result<std::optional<std::string>> read_file_at(int root_fd, std::string_view path, size_t cap,
                                                const std::string& where);
/// Names in a directory (without "." and ".."), sorted bytewise.
Result<std::vector<std::string>> list_dir(int dirfd);
/// Extended attributes of dirfd/name, sorted by name.
Result<Xattrs> xattrs_at(int dirfd, const std::string& name);
/// Sets one extended attribute on dirfd/name.
Result<void> set_xattr_at(int dirfd, const std::string& name, const std::string& key, std::string_view value);
/// Removes dirfd/name recursively (missing is fine), at any depth.
Result<void> remove_all_at(int dirfd, const std::string& name);
/// Removes everything inside the directory dirfd, keeping it.
Result<void> clear_dir(int dirfd);
/// The bytes of the regular files under `dir` (symlinks not followed,
/// unreadable parts skipped; 0 when it does not exist).
uint64_t tree_bytes(const std::string& dir);

/// Copies the rest of `in` to `out` (copy_file_range where the kernel can,
/// else read/write); errors name `what`. `range_ok`, when given, carries
/// across calls that copy_file_range cannot work between these two
/// filesystems (a context on ext4 into an overlay is EXDEV every time), so
/// later files skip the failing call; `size`, when known from stat, lets a
/// file that fits one read skip the read that would only confirm EOF.
Result<void> copy_data(int in, int out, const std::string& what, bool* range_ok = nullptr,
                       std::optional<uint64_t> size = std::nullopt);

/// Copies the whole tree under `src` into `dst` (an existing directory):
/// files (data, sparse holes not kept), directories, symlinks, devices, fifos,
/// owners, modes, mtimes, xattrs, and hardlinks within the tree as hardlinks.
/// Existing non-directory entries in dst are replaced. The root directory's
/// own metadata is copied too.
Result<void> copy_tree(const Root& src, const Root& dst);

}  // namespace imgbuild::fs
