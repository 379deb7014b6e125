// Rootless mode's pure parts: reading /etc/subuid-style files and the id
// maps made from them.

#include <catch2/catch.hpp>

#include "sandbox/userns.hpp"

using namespace imgbuild::sandbox;

TEST_CASE("subordinate ranges: by name or id, the first valid line", "[sandbox][rootless]") {
  const std::string text =
      "# comment\n"
      "other:100000:65536\n"
      "bad:x:10\n"
      "tester:zero:5\n"
      "  tester:200000:65536  \n"
      "1000:300000:1000\n"
      "tester:400000:10\n";
  auto r = find_subordinate_range(text, "tester", 1000);
  REQUIRE(r);
  CHECK(r->inside == 1);
  CHECK(r->outside == 200000);
  CHECK(r->count == 65536);
  // By id when the name is not listed.
  auto by_id = find_subordinate_range(text, "nobody-else", 1000);
  REQUIRE(by_id);
  CHECK(by_id->outside == 300000);
  CHECK(by_id->count == 1000);
  CHECK_FALSE(find_subordinate_range(text, "missing", 4242));
  CHECK_FALSE(find_subordinate_range("", "tester", 1000));
  // A zero count, or a range that would pass 2^32, is no range.
  CHECK_FALSE(find_subordinate_range("u:100:0\n", "u", 1));
  CHECK_FALSE(find_subordinate_range("u:4294967295:2\n", "u", 1));
}

TEST_CASE("rootless id maps: the user is 0, the range follows from 1", "[sandbox][rootless]") {
  auto single = rootless_mappings(1000, std::nullopt);
  REQUIRE(single.size() == 1);
  CHECK(single[0].inside == 0);
  CHECK(single[0].outside == 1000);
  CHECK(single[0].count == 1);
  auto full = rootless_mappings(1000, IdMapping{1, 200000, 65536});
  REQUIRE(full.size() == 2);
  CHECK(full[1].inside == 1);
  CHECK(full[1].outside == 200000);
  CHECK(full[1].count == 65536);
}
