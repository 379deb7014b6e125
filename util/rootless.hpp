#pragma once
// The marker of rootless mode, shared by every module that must know whether
// imgbuild runs as the root of its own user namespace (sandbox/userns.hpp
// sets it; the store picks its default location and the snapshotter its
// overlay xattrs from it).

#include <cstdlib>

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

}  // namespace imgbuild::rootless
