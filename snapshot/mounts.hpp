#pragma once
// Mount plumbing for the snapshotters: overlayfs through the new mount API,
// unmounting, and the mount records that let a later process clean up after
// one that was killed while holding mounts.
//
// A record is a small text file <runtime_dir>/mounts/<id> written (to a temp
// file, then renamed) before the mount is made and deleted after it is
// undone:
//   imgbuild-mount-record 1
//   pid <pid>
//   start <process start time, /proc/<pid>/stat field 22>
//   mount <absolute path>        (any number)
//   remove <absolute path>       (any number; directories to delete)
// A record is stale when its process is gone (no such pid, or the pid was
// reused: different start time). Stale records are undone: every mount is
// detached, every directory removed — but only directories inside the
// configured work directory.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace imgbuild::snapshot::mounts {

/// The record of one view's mounts, deleted when the object goes away.
class MountRecord {
public:
  MountRecord() = default;
  MountRecord(const MountRecord&) = delete;
  MountRecord& operator=(const MountRecord&) = delete;
  MountRecord(MountRecord&& o) noexcept : m_path(std::move(o.m_path)) { o.m_path.clear(); }
  MountRecord& operator=(MountRecord&& o) noexcept;
  ~MountRecord() { erase(); }

  /// Writes the record for id.
  static Result<MountRecord> create(const std::filesystem::path& runtime_dir, const std::string& id,
                                    const std::vector<std::filesystem::path>& mounts,
                                    const std::vector<std::filesystem::path>& remove_dirs);
  /// Deletes the record file (the caller has undone what it lists).
  void erase() noexcept;

private:
  std::filesystem::path m_path;
};

/// Mounts an overlay at target: lowers topmost first (each one "lowerdir+"),
/// upper and work dirs on the same filesystem. redirect_dir, metacopy and
/// index are off so that the upper dir is a plain diff. The error carries the
/// kernel's own message when it gives one.
Result<void> mount_overlay(const std::vector<std::filesystem::path>& lowers_top_first,
                           const std::filesystem::path& upper, const std::filesystem::path& work,
                           const std::filesystem::path& target);

/// The xattr that marks an opaque directory for overlayfs:
/// trusted.overlay.opaque, or user.overlay.opaque in rootless mode (an
/// overlay mounted with userxattr; trusted.* needs the host's root).
const char* opaque_xattr();

/// True when `name` is one of overlayfs's own xattrs (trusted.overlay.* or
/// user.overlay.*).
bool is_overlay_xattr(std::string_view name);

/// Unmounts target; falls back to a lazy unmount when it stays busy. Not
/// mounted is fine.
Result<void> unmount(const std::filesystem::path& target);

/// True when path is a mount point in this mount namespace.
bool is_mount_point(const std::filesystem::path& path);

/// One mount record as read back.
struct RecordInfo {
  std::filesystem::path file;                  ///< the record file
  long pid = 0;                                ///< its owner
  bool live = false;                           ///< the owner still runs
  std::vector<std::filesystem::path> mounts;   ///< mounts it made
  std::vector<std::filesystem::path> removes;  ///< directories to delete
};

/// Every mount record in runtime_dir, sorted by file name.
Result<std::vector<RecordInfo>> list_records(const std::filesystem::path& runtime_dir);

/// Undoes one (stale) record: unmounts, deletes its directories that lie
/// inside work_dir, deletes the record file.
Result<void> undo_record(const RecordInfo& record, const std::filesystem::path& work_dir);

/// Mount points strictly below dir in this mount namespace.
std::vector<std::filesystem::path> mount_points_under(const std::filesystem::path& dir);

/// Undoes stale records in runtime_dir; only deletes directories under
/// work_dir. Returns the number of records reclaimed.
Result<size_t> cleanup_stale(const std::filesystem::path& runtime_dir, const std::filesystem::path& work_dir);

}  // namespace imgbuild::snapshot::mounts
