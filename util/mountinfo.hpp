#pragma once
// /proc/<pid>/mountinfo (proc(5)), parsed once for every module that reads
// it (the snapshotter's mount checks, the sandbox's cgroup lookup):
//
//   36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//   (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
//
// Fields 4, 5 and 10 escape space, tab, newline and backslash as three
// octal digits ("\040"); parse undoes that. The optional fields (7) end at
// the " - " separator.

#include <string>
#include <string_view>
#include <vector>

namespace imgbuild::mountinfo {

/// One mount of a mountinfo table.
struct Mount {
  /// Field 4: the directory of the filesystem that forms this mount's root.
  std::string root;
  /// Field 5: the mount point, relative to the process's root.
  std::string mount_point;
  /// Field 9: the filesystem type ("overlay", "cgroup2", …).
  std::string fs_type;
  /// Field 10: the mount source.
  std::string source;
};

/// Undoes mountinfo's octal escapes ("\040" → ' '); a backslash not followed
/// by three octal digits is kept as it is.
std::string unescape(std::string_view field);

/// The mounts of a mountinfo text, in its order; malformed lines (fewer
/// than five fields, no " - " separator) are skipped.
std::vector<Mount> parse(std::string_view text);

/// parse() of /proc/self/mountinfo; empty when it cannot be read.
std::vector<Mount> read_self();

}  // namespace imgbuild::mountinfo
