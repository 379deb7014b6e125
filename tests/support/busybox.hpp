#pragma once
// Where tests find the host's static busybox (Debian package busybox-static),
// from which they build root filesystems (support/busybox_rootfs.hpp: a
// directory tree; tests/integration/harness.hpp: a rootfs tar).

#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace imgbuild::test {

/// Where the static busybox is expected.
inline std::filesystem::path busybox_path() { return "/bin/busybox"; }

/// True when a static busybox is available to build rootfs trees from.
inline bool have_busybox() {
  std::error_code ec;
  return std::filesystem::is_regular_file(busybox_path(), ec) && ::access(busybox_path().c_str(), X_OK) == 0;
}

}  // namespace imgbuild::test
