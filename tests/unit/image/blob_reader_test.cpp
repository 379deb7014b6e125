// Stored blobs read for export are verified while they stream.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "image/blob_reader.hpp"
#include "image/content_store.hpp"
#include "support/scratch_dir.hpp"
#include "util/hash.hpp"

using namespace imgbuild;
using namespace imgbuild::image;
using imgbuild::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

// Stores `bytes` under the digest `digest` (which may not be theirs).
void put_raw(const ContentStore& cs, const std::string& digest, const std::string& bytes) {
  std::ofstream out(cs.blob_path(digest), std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string content(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 131) % 253);
  }
  return s;
}

}  // namespace

TEST_CASE("a stored blob reads through when it matches its digest", "[image]") {
  ScratchDir dir;
  auto cs = ContentStore::open(dir.path());
  REQUIRE(cs);
  std::string bytes = content(3 * 1024 * 1024 + 17);
  std::string digest = sha256(bytes).str();
  put_raw(*cs, digest, bytes);
  auto reader = BlobReader::open(*cs, digest);
  REQUIRE(reader);
  CHECK(reader->size() == bytes.size());
  std::string got;
  REQUIRE(reader->copy_to([&](const void* d, size_t n) -> Result<void> {
    got.append(static_cast<const char*>(d), n);
    return ok();
  }));
  CHECK(got == bytes);
  char c = 0;
  auto end = reader->read(&c, 1);
  REQUIRE(end);
  CHECK(*end == 0);

  // The empty blob.
  std::string empty = sha256("").str();
  put_raw(*cs, empty, "");
  auto e = BlobReader::open(*cs, empty);
  REQUIRE(e);
  auto n = e->read(&c, 1);
  REQUIRE(n);
  CHECK(*n == 0);
}

TEST_CASE("a stored blob that does not match its digest fails before its last bytes are handed out", "[image]") {
  ScratchDir dir;
  auto cs = ContentStore::open(dir.path());
  REQUIRE(cs);
  std::string bytes = content(2500000);
  std::string digest = sha256(bytes).str();
  std::string rotten = bytes;
  rotten[1000] = static_cast<char>(rotten[1000] ^ 0x10);
  put_raw(*cs, digest, rotten);
  auto reader = BlobReader::open(*cs, digest);
  REQUIRE(reader);
  uint64_t handed = 0;
  auto r = reader->copy_to([&](const void*, size_t n) -> Result<void> {
    handed += n;
    return ok();
  });
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::corrupt);
  CHECK(r.error().message.find(digest) != std::string::npos);
  CHECK(r.error().message.find(sha256(rotten).str()) != std::string::npos);
  CHECK(r.error().message.find(cs->blob_path(digest).string()) != std::string::npos);
  CHECK(handed < bytes.size());

  // An empty file under a non-empty digest, and a missing blob.
  std::string other = sha256("other").str();
  put_raw(*cs, other, "");
  auto e = BlobReader::open(*cs, other);
  REQUIRE(e);
  char c = 0;
  auto n = e->read(&c, 1);
  REQUIRE_FALSE(n);
  CHECK(n.error().code == Errc::corrupt);
  auto missing = BlobReader::open(*cs, sha256("missing").str());
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == Errc::corrupt);
  CHECK(missing.error().message.find("missing from the store") != std::string::npos);
}
