// The key builder: typed field boundaries, what changes a key and what
// does not, known answers.
#include <catch2/catch.hpp>

#include "cache/key.hpp"

using imgbuild::cache::KeyBuilder;

namespace {

std::string key_of(const std::function<void(KeyBuilder&)>& fill) {
  KeyBuilder b;
  fill(b);
  return b.finish();
}

}  // namespace

TEST_CASE("key builder: field boundaries are part of the key", "[cache]") {
  // The same concatenated bytes split differently never give the same key.
  CHECK(key_of([](KeyBuilder& b) { b.str("a", "bc"); }) != key_of([](KeyBuilder& b) { b.str("ab", "c"); }));
  CHECK(key_of([](KeyBuilder& b) { b.str("a", "x").str("b", "y"); }) !=
        key_of([](KeyBuilder& b) { b.str("a", "xb").str("", "y"); }));
  CHECK(key_of([](KeyBuilder& b) { b.list("l", {"a b"}); }) != key_of([](KeyBuilder& b) { b.list("l", {"a", "b"}); }));
  CHECK(key_of([](KeyBuilder& b) { b.list("l", {"a", ""}); }) != key_of([](KeyBuilder& b) { b.list("l", {"a"}); }));
  CHECK(key_of([](KeyBuilder& b) { b.map("m", {{"a", "b=c"}}); }) !=
        key_of([](KeyBuilder& b) { b.map("m", {{"a=b", "c"}}); }));
  // The type of a field counts: a string "1" is not the integer 1 or true.
  CHECK(key_of([](KeyBuilder& b) { b.str("n", "1"); }) != key_of([](KeyBuilder& b) { b.integer("n", 1); }));
  CHECK(key_of([](KeyBuilder& b) { b.str("n", "1"); }) != key_of([](KeyBuilder& b) { b.boolean("n", true); }));
  CHECK(key_of([](KeyBuilder& b) { b.key("p", "sha256:00"); }) !=
        key_of([](KeyBuilder& b) { b.digest("p", "sha256:00"); }));
  // Field order counts.
  CHECK(key_of([](KeyBuilder& b) { b.str("a", "1").str("b", "2"); }) !=
        key_of([](KeyBuilder& b) { b.str("b", "2").str("a", "1"); }));
}

TEST_CASE("key builder: same fields give the same key and any changed value a different one", "[cache]") {
  auto base = [](KeyBuilder& b) {
    b.key("parent", "sha256:aa").str("kind", "RUN").list("argv", {"/bin/sh", "-c", "make"});
    b.map("env", {{"PATH", "/bin"}, {"VERSION", "1.2"}});
  };
  std::string k = key_of(base);
  CHECK(k == key_of(base));
  CHECK(k.rfind("sha256:", 0) == 0);
  CHECK(k.size() == 71);
  CHECK(k != key_of([](KeyBuilder& b) {
          b.key("parent", "sha256:ab").str("kind", "RUN").list("argv", {"/bin/sh", "-c", "make"});
          b.map("env", {{"PATH", "/bin"}, {"VERSION", "1.2"}});
        }));
  CHECK(k != key_of([](KeyBuilder& b) {
          b.key("parent", "sha256:aa").str("kind", "RUN").list("argv", {"/bin/sh", "-c", "make"});
          b.map("env", {{"PATH", "/bin"}, {"VERSION", "1.3"}});
        }));
  CHECK(k != key_of([](KeyBuilder& b) {
          b.key("parent", "sha256:aa").str("kind", "RUN").list("argv", {"/bin/sh", "-c", "make"});
          b.map("env", {{"PATH", "/bin"}});
        }));
}

TEST_CASE("key builder: known answers pin the encoding", "[cache]") {
  // Changing the salt, the delimiter or the length encoding changes these.
  // Computed by hand: sha256 of the salt followed by the records.
  std::string expected_bytes = std::string(imgbuild::cache::k_key_version);
  expected_bytes += std::string("\x1e" "s", 2) + std::string("\0\0\0\x04", 4) + "kind" +
                    std::string("\0\0\0\0\0\0\0\x03", 8) + "RUN";
  CHECK(key_of([](KeyBuilder& b) { b.str("kind", "RUN"); }) == imgbuild::sha256(expected_bytes).str());
  CHECK(key_of([](KeyBuilder&) {}) == imgbuild::sha256(imgbuild::cache::k_key_version).str());
  CHECK(key_of([](KeyBuilder&) {}) ==
        "sha256:" + imgbuild::sha256("imgbuild-cache-key-v2").hex());
}

TEST_CASE("key builder: the transcript names every field on its own line", "[cache]") {
  KeyBuilder b;
  b.str("instruction", "RUN echo a\necho b").list("argv", {"x", "y"}).map("env", {{"A", "1"}}).integer("pos", 3);
  const std::string& t = b.transcript();
  CHECK(t.find("version: imgbuild-cache-key-v2\n") == 0);
  CHECK(t.find("instruction: RUN echo a\\necho b\n") != std::string::npos);
  CHECK(t.find("argv: [2 items]\n  - x\n  - y\n") != std::string::npos);
  CHECK(t.find("env: [1 entries]\n  A=1\n") != std::string::npos);
  CHECK(t.find("pos: 3\n") != std::string::npos);
}

TEST_CASE("key builder: a builder without transcript gives the same keys", "[cache]") {
  auto fill = [](KeyBuilder& b) {
    b.str("type", "file").integer("mode", 0644).integer("uid", -1).boolean("x", true);
    b.digest("content", "sha256:ab").key("parent", "sha256:cd").list("argv", {"a", "b c"});
    b.map("xattrs", {{"user.k", "v"}});
  };
  KeyBuilder kept;
  fill(kept);
  KeyBuilder skipped(KeyBuilder::Transcript::skipped);
  fill(skipped);
  CHECK(skipped.transcript().empty());
  CHECK(!kept.transcript().empty());
  CHECK(kept.finish() == skipped.finish());
  // Integers are written as decimal text: -1 and 420 (0644) as the hand-made bytes.
  std::string expected = std::string(imgbuild::cache::k_key_version) + std::string("\x1e" "i", 2) +
                         std::string("\0\0\0\x04", 4) + "mode" + std::string("\0\0\0\0\0\0\0\x03", 8) + "420";
  CHECK(key_of([](KeyBuilder& b) { b.integer("mode", 0644); }) == imgbuild::sha256(expected).str());
}
