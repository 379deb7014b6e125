#include <catch2/catch.hpp>

#include "image/reference.hpp"

using imgbuild::Errc;
using imgbuild::image::DefaultTag;
using imgbuild::image::parse_reference;

namespace {

std::string norm(const std::string& s) {
  auto r = parse_reference(s);
  REQUIRE(r.has_value());
  return r->str();
}

std::string error_of(const std::string& s) {
  auto r = parse_reference(s);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code == Errc::invalid_argument);
  return r.error().message;
}

const std::string k_hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

}  // namespace

TEST_CASE("official images get docker.io/library/ and :latest", "[image]") {
  CHECK(norm("busybox") == "docker.io/library/busybox:latest");
  CHECK(norm("busybox:1.36") == "docker.io/library/busybox:1.36");
  CHECK(norm("library/busybox") == "docker.io/library/busybox:latest");
  CHECK(norm("docker.io/busybox") == "docker.io/library/busybox:latest");
  CHECK(norm("index.docker.io/library/busybox:1") == "docker.io/library/busybox:1");
}

TEST_CASE("user repositories stay on docker.io without library/", "[image]") {
  CHECK(norm("user/app:1.0") == "docker.io/user/app:1.0");
  CHECK(norm("user/sub/app") == "docker.io/user/sub/app:latest");
}

TEST_CASE("registry hosts are recognised by dot, port or localhost", "[image]") {
  CHECK(norm("host:5000/a/b:tag") == "host:5000/a/b:tag");
  CHECK(norm("localhost/app") == "localhost/app:latest");
  CHECK(norm("localhost:5000/app") == "localhost:5000/app:latest");
  CHECK(norm("quay.io/org/app@sha256:" + k_hex) == "quay.io/org/app@sha256:" + k_hex);
  CHECK(norm("[::1]:5000/app:1") == "[::1]:5000/app:1");
  // A port is not a tag.
  auto r = parse_reference("host:5000/app");
  REQUIRE(r);
  CHECK(r->domain == "host:5000");
  CHECK(r->tag == "latest");
}

TEST_CASE("digest references keep the digest and get no default tag", "[image]") {
  auto r = parse_reference("busybox@sha256:" + k_hex);
  REQUIRE(r);
  CHECK(r->tag.empty());
  CHECK(r->digest == "sha256:" + k_hex);
  CHECK(r->familiar() == "busybox@sha256:" + k_hex);
  auto both = parse_reference("busybox:1@sha256:" + k_hex);
  REQUIRE(both);
  CHECK(both->tag == "1");
  CHECK(both->str() == "docker.io/library/busybox:1@sha256:" + k_hex);
}

TEST_CASE("familiar names drop docker.io and library/", "[image]") {
  CHECK(parse_reference("busybox")->familiar() == "busybox:latest");
  CHECK(parse_reference("docker.io/library/busybox:1")->familiar_name() == "busybox");
  CHECK(parse_reference("docker.io/user/app")->familiar_name() == "user/app");
  CHECK(parse_reference("docker.io/library/a/b")->familiar_name() == "library/a/b");
  CHECK(parse_reference("host:5000/a")->familiar_name() == "host:5000/a");
  CHECK(parse_reference("busybox", DefaultTag::none)->tag.empty());
}

TEST_CASE("path components allow . _ __ and dashes as separators", "[image]") {
  CHECK(norm("x/a.b_c__d--e/f-g") == "docker.io/x/a.b_c__d--e/f-g:latest");
  CHECK(error_of("a___b").find("path component") != std::string::npos);
  CHECK(error_of("-ab").find("path component") != std::string::npos);
  CHECK(error_of("ab-").find("path component") != std::string::npos);
  CHECK(error_of("a..b").find("path component") != std::string::npos);
}

TEST_CASE("invalid references give a clear error", "[image]") {
  CHECK(error_of("").find("empty") != std::string::npos);
  CHECK(error_of("Busybox").find("must be lowercase") != std::string::npos);
  CHECK(error_of("bad name").find("whitespace") != std::string::npos);
  CHECK(error_of("busybox:").find("tag") != std::string::npos);
  CHECK(error_of("busybox:.bad").find("tag") != std::string::npos);
  CHECK(error_of("busybox:" + std::string(129, 'a')).find("tag") != std::string::npos);
  CHECK(error_of("busybox@sha256:abc").find("digest") != std::string::npos);
  CHECK(error_of("busybox@md5:" + k_hex).find("digest") != std::string::npos);
  CHECK(error_of("a//b").find("empty path component") != std::string::npos);
  CHECK(error_of("host:port/a").find("registry host") != std::string::npos);
  CHECK(error_of(k_hex).find("image ID") != std::string::npos);
  CHECK(error_of("a/" + std::string(260, 'b')).find("longer than 255") != std::string::npos);
  CHECK(error_of("bad$chars").find("path component") != std::string::npos);
  // The input is quoted in the message.
  CHECK(error_of("Busybox").find("\"Busybox\"") != std::string::npos);
}

TEST_CASE("tags accept 128 word characters, dots and dashes", "[image]") {
  CHECK(parse_reference("a:" + std::string(128, 'x')).has_value());
  CHECK(parse_reference("a:V1.2-rc_3").has_value());
  CHECK(parse_reference("a:_x").has_value());
}
