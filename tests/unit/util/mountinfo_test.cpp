#include <catch2/catch.hpp>

#include <string>

#include "util/mountinfo.hpp"

using namespace imgbuild;

TEST_CASE("mountinfo parses fields, optional fields and escapes", "[util]") {
  const std::string text =
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
      "35 22 0:30 /sub\\040dir /mnt/with\\040space\\134back rw master:1 propagation_from:2 - overlay over\\011lay rw\n"
      "36 22 0:31 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\r\n"
      "broken line without separator\n"
      "1 2 - ext4 /dev/x rw\n"
      "37 22 0:32 / /odd\\09x rw - tmpfs tmpfs rw";
  auto mounts = mountinfo::parse(text);
  REQUIRE(mounts.size() == 4);
  CHECK(mounts[0].root == "/");
  CHECK(mounts[0].mount_point == "/");
  CHECK(mounts[0].fs_type == "ext4");
  CHECK(mounts[0].source == "/dev/sda1");
  CHECK(mounts[1].root == "/sub dir");
  CHECK(mounts[1].mount_point == "/mnt/with space\\back");
  CHECK(mounts[1].fs_type == "overlay");
  CHECK(mounts[1].source == "over\tlay");
  CHECK(mounts[2].mount_point == "/sys/fs/cgroup");
  CHECK(mounts[2].fs_type == "cgroup2");
  CHECK(mounts[2].source == "cgroup2");
  // "\09x" is not an octal escape: kept as written (no exception, no cut).
  CHECK(mounts[3].mount_point == "/odd\\09x");
}

TEST_CASE("mountinfo unescape keeps a trailing or short backslash", "[util]") {
  CHECK(mountinfo::unescape("a\\040b") == "a b");
  CHECK(mountinfo::unescape("end\\") == "end\\");
  CHECK(mountinfo::unescape("end\\04") == "end\\04");
  CHECK(mountinfo::unescape("\\134\\012") == "\\\n");
}
