#pragma once
// Rootless mode: a user who is not root runs imgbuild inside a user
// namespace of its own, where it is root over the user's subordinate ids.
//
// The whole imgbuild process moves in, once, at start (as `podman unshare`
// and rootless BuildKit do): the process forks; the child makes a new user
// namespace, the parent maps it with newuidmap/newgidmap (Debian package
// uidmap) from /etc/subuid and /etc/subgid — container uid 0 is the user,
// 1..N the user's range — then the child becomes root there, makes a mount
// namespace of its own and goes on with the command; the parent waits and
// exits with the child's status. Inside, everything works as for root: the
// store's files keep any owner of the range, overlayfs mounts (with
// userxattr), and the sandbox makes its namespaces below this one.
//
// Without subordinate ranges only the user's own id is mapped (to 0): files
// owned by anyone else cannot be written, and such a build fails naming the
// file and the fix.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/result.hpp"

namespace imgbuild::sandbox {

/// One line of a uid_map/gid_map: `count` ids from `inside` map to `outside`.
struct IdMapping {
  uint32_t inside = 0;
  uint32_t outside = 0;
  uint32_t count = 0;
};

/// The subordinate range of `user` (a name, or a decimal id) in the text of
/// /etc/subuid or /etc/subgid (lines "name_or_id:start:count"); the first
/// line that names the user by name or by id. nullopt when there is none.
std::optional<IdMapping> find_subordinate_range(const std::string& file_text, const std::string& name, uint32_t id);

/// The mappings for a user with id `id` and an optional subordinate range:
/// 0 → id, then 1.. → the range.
std::vector<IdMapping> rootless_mappings(uint32_t id, const std::optional<IdMapping>& range);

/// True when this process is imgbuild's rootless child (inside the user
/// namespace that enter_rootless made).
bool in_rootless_namespace();

/// The real user's id when in_rootless_namespace(), else nullopt.
std::optional<uint32_t> rootless_real_uid();

/// True when only the user's own id is mapped (no subordinate ranges).
bool rootless_single_id();

/// Moves the process into its rootless user namespace when it runs as a
/// user other than root (and is not there already). Returns in the child,
/// which goes on as root of the namespace; the parent never returns (it
/// exits with the child's status). Errors name what is missing and the fix
/// (user namespaces disabled, no newuidmap, seccomp refusing unshare). Must
/// be called before any thread is started.
Result<void> enter_rootless();

}  // namespace imgbuild::sandbox
