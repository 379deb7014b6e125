#pragma once
// Docker's USER semantics as a pure function: "name|uid[:group|gid]" is
// resolved against the text of the rootfs's /etc/passwd and /etc/group (read
// by the caller from inside the root, never from the host).
//
// - No user part means root (uid 0). A name must exist in passwd; a number
//   need not (then gid 0 and HOME=/ unless a group is given).
// - A group part (name or number) sets the primary gid; a name must exist in
//   the group file. Without one, the primary gid comes from passwd and the
//   supplementary groups are every group that lists the user's name as a
//   member, in file order, without the primary gid and without repeats.
// - HOME is the passwd home directory, else "/".

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace imgbuild::sandbox {

/// The identity a process runs as.
struct ExecUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  /// Supplementary group ids (never containing gid).
  std::vector<uint32_t> groups;
  std::string home = "/";
};

/// Resolves a USER spec. passwd/group are the files' contents, or nullopt
/// when the file does not exist in the rootfs. Errors use Docker's words:
/// "unable to find user app: no matching entries in passwd file".
Result<ExecUser> resolve_user(std::string_view spec, const std::optional<std::string>& passwd,
                              const std::optional<std::string>& group);

}  // namespace imgbuild::sandbox
