#pragma once
// The writing half of COPY/ADD (internal to builder/copy*.cpp): a Copier
// writes entries into the destination root with the metadata the rules in
// builder/copy.hpp give them — owner (--chown, or the source's), mode
// (--chmod), mtime, xattrs, hardlinks kept within one source — creates the
// missing parent directories, and records every entry it writes (the step's
// layer keeps each of them). Directory mtimes are set last (finish), deepest
// first, because writing children changes them. Every write goes through
// fs::Root (openat2 RESOLVE_IN_ROOT), so the destination's own symlinks
// cannot lead outside it.

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "builder/context.hpp"
#include "builder/copy.hpp"
#include "util/fs.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// Writes one COPY/ADD's entries into `dest` and records them.
struct Copier {
  /// A writer into `dest` with no --chmod, the 0:0 owner.
  explicit Copier(const fs::Root& dest_root) : dest(dest_root) {}

  /// The root written into.
  const fs::Root& dest;
  /// The parsed --chmod (nullopt: modes kept).
  std::optional<ChmodSpec> chmod;
  /// The --chown owner (0:0 without).
  Owner owner;
  /// What was written so far.
  CopyResult result;
  /// Keep each source entry's uid/gid instead of `owner` (COPY --from a
  /// stage or image without --chown, the context export).
  bool keep_owner = false;
  /// Directories (relative paths) known to exist in dest during this copy.
  std::set<std::string> known_dirs;
  /// Directories this copy made (they were absent): nothing is in them but
  /// what it wrote, so their entries need no look before being written.
  std::set<std::string> fresh_dirs;
  /// The entries of fresh_dirs written so far (a second source writing the
  /// same name looks first).
  std::set<std::string> fresh_entries;
  /// Directories whose mtime is set at the end: (path, sec, nsec).
  std::vector<std::tuple<std::string, int64_t, uint32_t>> dir_times;
  /// (dev, ino) of multiply-linked source files → first destination path.
  std::map<std::pair<dev_t, ino_t>, std::string> links;
  /// False once copy_file_range failed between source and dest (one COPY
  /// reads one tree into one view): the rest use read/write directly.
  bool copy_range_ok = true;
  /// Mode of the directories a copy makes on the way to its destination (and
  /// of a directory source's missing destination): an octal --chmod's mode,
  /// else 0755 — BuildKit v0.22 creates them with CopyInfo.Mode (a symbolic
  /// --chmod leaves it unset), permission bits only.
  uint32_t dir_mode = 0755;

  /// Notes that `path` (relative) was written as an entry of `type`.
  void record(const std::string& path, mode_t type);
  /// True when `path` (relative) cannot exist yet: its parent is one of
  /// fresh_dirs and nothing was written at it; claims it.
  bool surely_absent(const std::string& path);

  /// Creates missing parents of `path` (relative) as `mode` dirs owned by
  /// the --chown owner (0:0 without). Existing ones, and symlinks to
  /// directories inside the root, are left alone.
  Result<void> make_parents(const std::string& path, uint32_t mode);

  /// Makes the directory `path` (parents must exist) with `mode` and owner
  /// `o`; `mtime`, when given, is set by finish().
  Result<void> make_dir(const std::string& path, uint32_t mode, Owner o,
                        std::optional<std::pair<int64_t, uint32_t>> mtime);

  /// Makes sure `path` (relative; "" = the root) is a directory: an existing
  /// one (or a symlink to one) is kept, a missing one is made with `mode`
  /// and the --chown owner, anything else fails ("cannot copy to
  /// non-directory").
  Result<void> ensure_dir(const std::string& path, uint32_t mode);

  /// Removes a non-directory at path (a directory too when `dirs_too`);
  /// true when an existing directory was left in place.
  Result<bool> clear_target(const std::string& path, bool dirs_too);

  /// The mode an entry gets from its source mode (--chmod applied).
  uint32_t mode_for(uint32_t src_mode, bool is_dir) const;

  /// The owner an entry with source stat `st` gets.
  Owner owner_for(const struct stat& st) const;

  /// Copies the xattrs of src_dirfd/src_name to `target` (overlay and
  /// SELinux attributes left out; filesystems without xattrs are fine).
  Result<void> copy_xattrs(int src_dirfd, const std::string& src_name, const std::string& target);

  /// Writes one walked entry at `target` (relative path in dest). An empty
  /// e.rel marks the source itself (an existing directory there keeps its
  /// metadata; below it, an existing directory takes the source's).
  Result<void> write_entry(const WalkEntry& e, const std::string& target);

  /// Gives an existing directory below the source the source's owner, mode,
  /// xattrs and mtime, as BuildKit's copier does.
  Result<void> overwrite_dir_meta(const WalkEntry& e, const std::string& target);

  /// Sets owner (`who`, else the --chown owner), mode and mtime of a file
  /// just written through `fd`.
  Result<void> finish_file(int fd, const std::string& target, uint32_t mode, struct timespec mtime,
                           std::optional<Owner> who = std::nullopt);

  /// Writes a regular file holding `data` (heredocs). `mtime`: none keeps
  /// the time of writing.
  Result<void> write_bytes(const std::string& target, std::string_view data, uint32_t mode,
                           std::optional<int64_t> mtime);

  /// Copies the file at `in` to the regular file `target` with `mode` (the
  /// --chmod applied) and `mtime` (ADD <url> downloads).
  Result<void> write_file_from(int in, const std::string& target, uint32_t mode, int64_t mtime);

  /// Sets the recorded directory mtimes, deepest first.
  Result<void> finish();
};

}  // namespace imgbuild::builder
