#include <catch2/catch.hpp>

#include "sandbox/user.hpp"

using imgbuild::sandbox::resolve_user;

namespace {

const std::optional<std::string> k_passwd =
    std::string("# comment\nroot:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n"
                "nohome:x:1002:1002:::/bin/sh\nbroken line\n");
const std::optional<std::string> k_group =
    std::string("root:x:0:root\nwheel:x:10:root,app\napp:x:1000:app\naudio:x:29: app , other\n"
                "again:x:10:app\nstaff:x:50:\n");

}  // namespace

TEST_CASE("empty user is root with root's groups", "[sandbox]") {
  auto u = resolve_user("", k_passwd, k_group);
  REQUIRE(u);
  CHECK(u->uid == 0);
  CHECK(u->gid == 0);
  CHECK(u->home == "/root");
  // The primary gid first (BuildKit v0.22), then wheel; root(0) lists root.
  CHECK(u->groups == std::vector<uint32_t>{0, 10});
}

TEST_CASE("user name gives passwd ids, home, the primary gid and member groups", "[sandbox]") {
  auto u = resolve_user("app", k_passwd, k_group);
  REQUIRE(u);
  CHECK(u->uid == 1000);
  CHECK(u->gid == 1000);
  CHECK(u->home == "/home/app");
  // app(1000) is the primary, first; wheel(10), audio(29); "again" repeats gid 10.
  CHECK(u->groups == std::vector<uint32_t>{1000, 10, 29});
}

TEST_CASE("numeric uid found in passwd behaves like the name", "[sandbox]") {
  auto u = resolve_user("1000", k_passwd, k_group);
  REQUIRE(u);
  CHECK(u->gid == 1000);
  CHECK(u->groups == std::vector<uint32_t>{1000, 10, 29});
}

TEST_CASE("unknown numeric uid and gid are used as given", "[sandbox]") {
  auto u = resolve_user("4242:4343", k_passwd, k_group);
  REQUIRE(u);
  CHECK(u->uid == 4242);
  CHECK(u->gid == 4343);
  CHECK(u->home == "/");
  CHECK(u->groups == std::vector<uint32_t>{4343});
  auto v = resolve_user("4242", std::nullopt, std::nullopt);
  REQUIRE(v);
  CHECK(v->uid == 4242);
  CHECK(v->gid == 0);
  CHECK(v->groups == std::vector<uint32_t>{0});
}

TEST_CASE("an explicit group sets the primary gid, the only supplementary group", "[sandbox]") {
  auto u = resolve_user("app:staff", k_passwd, k_group);
  REQUIRE(u);
  CHECK(u->uid == 1000);
  CHECK(u->gid == 50);
  CHECK(u->groups == std::vector<uint32_t>{50});
  auto w = resolve_user("app:29", k_passwd, k_group);
  REQUIRE(w);
  CHECK(w->gid == 29);
}

TEST_CASE("empty home falls back to /", "[sandbox]") {
  auto u = resolve_user("nohome", k_passwd, k_group);
  REQUIRE(u);
  CHECK(u->home == "/");
}

TEST_CASE("unknown names are errors in Docker's words", "[sandbox]") {
  auto u = resolve_user("nobody", k_passwd, k_group);
  REQUIRE_FALSE(u);
  CHECK(u.error().message == "unable to find user nobody: no matching entries in passwd file");
  auto missing_file = resolve_user("app", std::nullopt, k_group);
  REQUIRE_FALSE(missing_file);
  CHECK(missing_file.error().message == "unable to find user app: no matching entries in passwd file");
  auto g = resolve_user("app:nogroup", k_passwd, k_group);
  REQUIRE_FALSE(g);
  CHECK(g.error().message == "unable to find group nogroup: no matching entries in group file");
  auto range = resolve_user("4294967296", k_passwd, k_group);
  REQUIRE_FALSE(range);
  CHECK(range.error().message == "uids and gids must be in range 0-2147483647");
}
