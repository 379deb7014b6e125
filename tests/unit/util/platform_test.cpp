#include <catch2/catch.hpp>

#include "util/platform.hpp"

using namespace imgbuild;

namespace {

std::string parsed(std::string_view text) {
  auto p = parse_platform(text);
  return p ? p->str() : "error: " + p.error().message;
}

}  // namespace

TEST_CASE("parse_platform normalises as containerd's Parse and Normalize", "[util][platform]") {
  CHECK(parsed("linux/amd64") == "linux/amd64");
  CHECK(parsed("linux/x86_64") == "linux/amd64");
  CHECK(parsed("linux/x86-64") == "linux/amd64");
  CHECK(parsed("linux/amd64/v1") == "linux/amd64");
  CHECK(parsed("linux/amd64/v3") == "linux/amd64/v3");
  CHECK(parsed("linux/aarch64") == "linux/arm64");
  CHECK(parsed("linux/arm64") == "linux/arm64");
  CHECK(parsed("linux/arm64/v8") == "linux/arm64");
  CHECK(parsed("linux/arm64/8") == "linux/arm64");
  CHECK(parsed("linux/arm64/9.0") == "linux/arm64/v9");
  CHECK(parsed("linux/arm") == "linux/arm/v7");
  CHECK(parsed("linux/arm/7") == "linux/arm/v7");
  CHECK(parsed("linux/arm/v6") == "linux/arm/v6");
  CHECK(parsed("linux/arm/5") == "linux/arm/v5");
  CHECK(parsed("linux/armhf") == "linux/arm/v7");
  CHECK(parsed("linux/armel") == "linux/arm/v6");
  CHECK(parsed("linux/i386") == "linux/386");
  CHECK(parsed("Linux/ARM64") == "linux/arm64");
  CHECK(parsed("macos/arm64") == "darwin/arm64");
  CHECK(parsed("linux/s390x") == "linux/s390x");
  // Two parts: the architecture need not be known (containerd does not check).
  CHECK(parsed("linux/foo") == "linux/foo");
}

TEST_CASE("parse_platform of one word: a known OS or a known architecture", "[util][platform]") {
  Platform host = host_platform();
  CHECK(parsed("linux") == host.str());
  CHECK(parsed("arm64") == host.os + "/arm64");
  CHECK(parsed("aarch64") == host.os + "/arm64");
  CHECK(parsed("armhf") == host.os + "/arm/v7");
  CHECK(parsed("banana").starts_with("error: invalid platform \"banana\": unknown operating system"));
}

TEST_CASE("parse_platform rejects malformed specifiers", "[util][platform]") {
  CHECK(parsed("").starts_with("error: invalid platform \"\""));
  CHECK(parsed("linux/").starts_with("error: invalid platform \"linux/\""));
  CHECK(parsed("/amd64").starts_with("error:"));
  CHECK(parsed("linux/arm64/v8/x").starts_with("error: invalid platform \"linux/arm64/v8/x\": want os/arch"));
  CHECK(parsed("linux/*").starts_with("error: invalid platform \"linux/*\": wildcards"));
  CHECK(parsed("linux/am d64").starts_with("error: invalid platform \"linux/am d64\": component \"am d64\""));
  CHECK(parsed("lin.ux/amd64").starts_with("error:"));
}

TEST_CASE("platform_matches compares normalised platforms", "[util][platform]") {
  CHECK(platform_matches({"linux", "arm64", "v8"}, {"linux", "arm64", ""}));
  CHECK(platform_matches({"linux", "aarch64", ""}, {"linux", "arm64", ""}));
  CHECK(platform_matches({"linux", "arm", ""}, {"linux", "arm", "v7"}));
  CHECK(platform_matches({"linux", "amd64", "v1"}, {"linux", "x86_64", ""}));
  CHECK_FALSE(platform_matches({"linux", "arm", "v6"}, {"linux", "arm", "v7"}));
  CHECK_FALSE(platform_matches({"linux", "arm64", ""}, {"linux", "amd64", ""}));
  CHECK_FALSE(platform_matches({"windows", "amd64", ""}, {"linux", "amd64", ""}));
  CHECK(normalize_platform({"", "amd64", ""}).os == "linux");
}

TEST_CASE("host_platform is normalised and names no default variant", "[util][platform]") {
  Platform host = host_platform();
  CHECK(host.os == "linux");
  CHECK(host == normalize_platform(host));
  CHECK(is_known_architecture(host.architecture));
  auto again = parse_platform(host.str());
  REQUIRE(again);
  CHECK(*again == host);
  if (host.architecture == "arm64" || host.architecture == "amd64") {
    CHECK(host.variant.empty());
  }
}
