#include <catch2/catch.hpp>

#include "util/hash.hpp"

using namespace imgbuild;

TEST_CASE("sha256 known answers", "[util]") {
  CHECK(sha256("").str() ==
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 h;
  h.update("ab");
  h.update("c");
  CHECK(h.finish().hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("digest parsing round-trips and rejects junk", "[util]") {
  auto d = sha256("x");
  auto parsed = Sha256Digest::parse(d.str());
  REQUIRE(parsed);
  CHECK(*parsed == d);
  CHECK_FALSE(Sha256Digest::parse(d.hex()));
  CHECK(Sha256Digest::parse(d.hex(), Sha256Digest::Bare::allowed));
  CHECK_FALSE(Sha256Digest::parse("sha256:XYZ"));
  CHECK_FALSE(Sha256Digest::parse("sha256:" + std::string(64, 'G')));
}
