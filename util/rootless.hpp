#pragma once
// The marker of rootless mode, shared by every module that must know whether
// imgbuild runs as the root of its own user namespace (sandbox/userns.hpp
// sets it; the store picks its default location and the snapshotter its
// overlay xattrs from it).

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace imgbuild::rootless {

/// Environment variable holding the real user's id inside the rootless
/// user namespace (absent outside it).
inline constexpr const char* k_uid_env = "IMGBUILD_ROOTLESS_UID";
/// Set to "1" when only the user's own id is mapped (no subordinate ids).
inline constexpr const char* k_single_env = "IMGBUILD_ROOTLESS_SINGLE_ID";

/// True inside the rootless user namespace.
inline bool active() {
  const char* v = std::getenv(k_uid_env);
  return v != nullptr && *v != '\0';
}

/// The words for a failed chown to uid:gid with errno `err`: "chown U:G:
/// <strerror>", or, where the ids are not mapped in the rootless user
/// namespace (EINVAL there), what is wrong and the fix.
inline std::string chown_failure(int err, unsigned uid, unsigned gid) {
  std::string ids = std::to_string(uid) + ":" + std::to_string(gid);
  if (err == EINVAL && active()) {
    const char* single = std::getenv(k_single_env);
    bool one_id = single != nullptr && std::string_view(single) == "1";
    return "cannot give it the owner " + ids + ": rootless mode maps " +
           (one_id ? std::string("only your own id (no subordinate ids in /etc/subuid, /etc/subgid)")
                   : std::string("no id that high (the subordinate range in /etc/subuid, /etc/subgid is too small)")) +
           "; give your user a range of 65536 ids: `usermod --add-subuids 100000-165535 --add-subgids "
           "100000-165535 $USER`";
  }
  return "chown " + ids + ": " + std::strerror(err);
}

}  // namespace imgbuild::rootless
