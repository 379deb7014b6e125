#pragma once
// A tiny root filesystem generated at test time from the host's static
// busybox (Debian package busybox-static): /bin/busybox, one symlink per
// applet, and /etc/passwd + /etc/group with a few users for USER tests.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/busybox.hpp"
#include "support/scratch_dir.hpp"

namespace imgbuild::test {

/// The passwd file written into generated rootfs trees.
inline const char* k_test_passwd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "app:x:1000:1000:app user:/home/app:/bin/sh\n"
    "svc:x:1001:1001::/srv:/bin/sh\n";

/// The group file written into generated rootfs trees.
inline const char* k_test_group =
    "root:x:0:root\n"
    "daemon:x:1:\n"
    "wheel:x:10:root,app\n"
    "app:x:1000:app\n"
    "audio:x:29:app,svc\n"
    "svc:x:1001:\n";

/// Creates dir (which must not exist or be empty) as a busybox rootfs.
inline void make_busybox_rootfs(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir / "bin");
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  fs::create_directories(dir / "etc");
  fs::create_directories(dir / "root");
  fs::create_directories(dir / "tmp");
  fs::permissions(dir / "tmp", fs::perms::all | fs::perms::sticky_bit);
  fs::copy_file(busybox_path(), dir / "bin" / "busybox", fs::copy_options::overwrite_existing);
  std::string list_cmd = busybox_path().string() + " --list";
  FILE* p = ::popen(list_cmd.c_str(), "r");
  char line[256];
  while (p != nullptr && std::fgets(line, sizeof line, p) != nullptr) {
    std::string name(line);
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) {
      name.pop_back();
    }
    if (name.empty() || name == "busybox") {
      continue;
    }
    std::error_code ec;
    fs::create_symlink("busybox", dir / "bin" / name, ec);
  }
  if (p != nullptr) {
    ::pclose(p);
  }
  std::ofstream(dir / "etc" / "passwd") << k_test_passwd;
  std::ofstream(dir / "etc" / "group") << k_test_group;
}

}  // namespace imgbuild::test
