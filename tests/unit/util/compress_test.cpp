#include "util/compress.hpp"

#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace imgbuild::compress {
namespace {

// Text-like input (compressible) with stretches of random bytes (stored
// blocks), `n` bytes, the same for the same seed.
std::string sample(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(n);
  const std::string words[] = {"layer ", "diff_id ", "sha256 ", "overlay ", "snapshot\n", "COPY ", "RUN "};
  while (out.size() < n) {
    if (rng() % 7 == 0) {
      size_t len = 70000 + rng() % 90000;
      for (size_t i = 0; i < len && out.size() < n; ++i) {
        out.push_back(static_cast<char>(rng()));
      }
    } else {
      out += words[rng() % 7];
    }
  }
  out.resize(n);
  return out;
}

// Compresses `in`, written in pieces of `piece` bytes.
std::string compress_with(const std::string& in, Options o, size_t piece) {
  std::string out;
  auto c = Compressor::open(
      [&](const void* d, size_t n) -> Result<void> {
        out.append(static_cast<const char*>(d), n);
        return ok();
      },
      o);
  REQUIRE(c);
  for (size_t at = 0; at < in.size(); at += piece) {
    REQUIRE((*c)->write(in.data() + at, std::min(piece, in.size() - at)));
  }
  REQUIRE((*c)->finish());
  CHECK((*c)->input_size() == in.size());
  CHECK((*c)->output_size() == out.size());
  return out;
}

std::string gunzip(const std::string& gz) {
  z_stream z{};
  REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
  std::string out;
  std::vector<char> buf(1 << 16);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gz.data()));
  z.avail_in = static_cast<uInt>(gz.size());
  int r = Z_OK;
  while (r != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(buf.data());
    z.avail_out = static_cast<uInt>(buf.size());
    r = inflate(&z, Z_NO_FLUSH);
    REQUIRE((r == Z_OK || r == Z_STREAM_END));
    out.append(buf.data(), buf.size() - z.avail_out);
  }
  CHECK(z.avail_in == 0);  // one member, nothing after it
  inflateEnd(&z);
  return out;
}

std::string unzstd(const std::string& zs) {
  ZSTD_DStream* d = ZSTD_createDStream();
  std::string out;
  std::vector<char> buf(1 << 16);
  ZSTD_inBuffer in{zs.data(), zs.size(), 0};
  while (in.pos < in.size) {
    ZSTD_outBuffer o{buf.data(), buf.size(), 0};
    size_t r = ZSTD_decompressStream(d, &o, &in);
    REQUIRE(ZSTD_isError(r) == 0U);
    out.append(buf.data(), o.pos);
  }
  ZSTD_freeDStream(d);
  return out;
}

TEST_CASE("parallel gzip round-trips and never depends on threads or write sizes", "[compress]") {
  // Around the block size: empty, tiny, exactly one block, one more byte,
  // several blocks with stored (random) stretches.
  for (size_t n : {size_t{0}, size_t{1}, size_t{128 * 1024}, size_t{128 * 1024 + 1}, size_t{1900 * 1024}}) {
    std::string in = sample(n, static_cast<unsigned>(n));
    std::string one = compress_with(in, {Algorithm::gzip, -1, 1}, 1 << 20);
    CHECK(gunzip(one) == in);
    CHECK(compress_with(in, {Algorithm::gzip, -1, 2}, 4096) == one);
    CHECK(compress_with(in, {Algorithm::gzip, -1, 7}, 100000) == one);
    // Header: gzip magic, deflate, no flags, mtime 0, OS unix.
    REQUIRE(one.size() >= 18);
    CHECK(one.substr(0, 8) == std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00", 8));
    CHECK(one[9] == '\x03');
  }
}

TEST_CASE("gzip levels change the bytes and not the content - text compresses", "[compress]") {
  std::string in = sample(600 * 1024, 3);
  std::string fast = compress_with(in, {Algorithm::gzip, 1, 2}, 65536);
  std::string best = compress_with(in, {Algorithm::gzip, 9, 2}, 65536);
  CHECK(fast != best);
  CHECK(gunzip(fast) == in);
  CHECK(gunzip(best) == in);
  std::string text(1 << 20, 'a');
  CHECK(compress_with(text, {Algorithm::gzip, -1, 2}, 1 << 16).size() < text.size() / 100);
}

TEST_CASE("zstd frames round-trip and never depend on threads", "[compress]") {
  for (size_t n : {size_t{0}, size_t{5}, size_t{4 * 1024 * 1024}, size_t{9 * 1024 * 1024 + 17}}) {
    std::string in = sample(n, static_cast<unsigned>(n) + 1);
    std::string one = compress_with(in, {Algorithm::zstd, -1, 1}, 1 << 20);
    CHECK(unzstd(one) == in);
    CHECK(compress_with(in, {Algorithm::zstd, -1, 3}, 7000) == one);
    CHECK(one.substr(0, 4) == std::string("\x28\xb5\x2f\xfd", 4));
  }
}

TEST_CASE("compression levels out of range are refused by name", "[compress]") {
  auto sink = [](const void*, size_t) -> Result<void> { return ok(); };
  auto bad = Compressor::open(sink, {Algorithm::gzip, 10, 1});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "gzip compression level 10 is out of range 1-9");
  auto bad_zstd = Compressor::open(sink, {Algorithm::zstd, 20, 1});
  REQUIRE_FALSE(bad_zstd);
  CHECK(bad_zstd.error().message == "zstd compression level 20 is out of range 1-19");
}

TEST_CASE("a failing sink fails the write or finish that reached it", "[compress]") {
  int calls = 0;
  auto c = Compressor::open(
      [&](const void*, size_t) -> Result<void> {
        ++calls;
        return fail(Errc::io, "disk full");
      },
      {Algorithm::gzip, -1, 2});
  REQUIRE(c);
  std::string in = sample(3 * 1024 * 1024, 9);
  bool failed = false;
  for (size_t at = 0; at < in.size() && !failed; at += 65536) {
    failed = !(*c)->write(in.data() + at, 65536);
  }
  if (!failed) {
    auto r = (*c)->finish();
    REQUIRE_FALSE(r);
    CHECK(r.error().message == "disk full");
  }
  CHECK(calls == 1);
}

}  // namespace
}  // namespace imgbuild::compress

namespace imgbuild::compress {
namespace {

Source from_string(const std::string& s) {
  auto at = std::make_shared<size_t>(0);
  return [&s, at](void* buf, size_t cap) -> Result<size_t> {
    size_t n = std::min(cap, s.size() - *at);
    std::memcpy(buf, s.data() + *at, n);
    *at += n;
    return n;
  };
}

TEST_CASE("decompress reads what the compressor wrote, every member and frame", "[compress]") {
  std::string in = sample(5 * 1024 * 1024 + 3, 11);
  for (Algorithm a : {Algorithm::gzip, Algorithm::zstd}) {
    std::string packed = compress_with(in, {a, -1, 2}, 1 << 20);
    // Two streams back to back: gzip members / zstd frames, both read.
    std::string twice = packed + packed;
    std::string out;
    auto r = decompress(a, from_string(twice), [&](const void* d, size_t n) -> Result<void> {
      out.append(static_cast<const char*>(d), n);
      return ok();
    }, "layer");
    REQUIRE(r);
    CHECK(out == in + in);
    std::string cut = packed.substr(0, packed.size() - 9);
    auto bad = decompress(a, from_string(cut), [](const void*, size_t) -> Result<void> { return ok(); }, "layer");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == Errc::corrupt);
    CHECK(bad.error().message.starts_with("layer: " + std::string(algorithm_name(a)) + " stream is damaged"));
  }
}

}  // namespace
}  // namespace imgbuild::compress
