#pragma once
// Docker's USER semantics as a pure function: "name|uid[:group|gid]" is
// resolved against the text of the rootfs's /etc/passwd and /etc/group (read
// by the caller from inside the root, never from the host).
//
// - No user part means root (uid 0). A name must exist in passwd; a number
//   need not (then gid 0 and HOME=/ unless a group is given).
// - A group part (name or number) sets the primary gid; a name must exist in
//   the group file. Without one, the primary gid comes from passwd.
// - The supplementary groups are the primary gid, then (without an explicit
//   group, and for a user found in passwd) every group that lists the user's
//   name as a member, in file order, without repeats: BuildKit v0.22 gives a
//   RUN its primary gid as a supplementary group (`id` prints groups=0(root)).
// - HOME is the passwd home directory, else "/".

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace imgbuild::sandbox {

/// The most bytes of a rootfs's /etc/passwd or /etc/group that are read to
/// resolve a user (a larger file is an error naming it and the limit).
inline constexpr size_t k_max_user_db_file = size_t{16} << 20;

/// The identity a process runs as.
struct ExecUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  /// Supplementary group ids: gid first, then the member groups.
  std::vector<uint32_t> groups;
  std::string home = "/";
};

/// Resolves a USER spec. passwd/group are the files' contents, or nullopt
/// when the file does not exist in the rootfs. Errors use Docker's words:
/// "unable to find user app: no matching entries in passwd file".
Result<ExecUser> resolve_user(std::string_view spec, const std::optional<std::string>& passwd,
                              const std::optional<std::string>& group);

}  // namespace imgbuild::sandbox
