#pragma once
// Parallel, deterministic compression of a byte stream (layer blobs, cache
// tars, image outputs).
//
// The input is cut into fixed-size blocks that compress on every core at
// once; the output depends only on the input, the algorithm and the level —
// never on the thread count, nor on how the input was split into write()
// calls — so the same layer gives the same blob digest on any machine.
//  - gzip: 128 KiB blocks, each deflated raw with the 32 KiB of input before
//    it as dictionary and ended by a sync flush (the last one ends the
//    stream); the concatenation, between one gzip header (no name, mtime 0)
//    and one trailer (CRCs combined), is a single ordinary gzip member that
//    any gunzip reads (the layout pigz uses). Blocks that look incompressible
//    (near-uniform byte histogram) are stored (level 0), which costs a copy
//    instead of a match search.
//  - zstd: 4 MiB chunks, each one zstd frame with its content size;
//    concatenated frames are one valid zstd stream (RFC 8878 §3.1).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "util/result.hpp"

namespace imgbuild::compress {

/// A compression algorithm.
enum class Algorithm { gzip, zstd };

/// "gzip" or "zstd".
std::string_view algorithm_name(Algorithm a);

/// How to compress.
struct Options {
  Algorithm algorithm = Algorithm::gzip;
  /// gzip 1-9, zstd 1-19 (as buildx's compression-level); -1: the default
  /// (gzip 4, zstd 3).
  int level = -1;
  /// Worker threads; 0: one per core. Changes speed only, never the output.
  unsigned threads = 0;
};

/// The level Options::level means for its algorithm (-1 resolved).
int effective_level(const Options& options);

/// Checks the level against the algorithm's range; the error names both.
Result<void> check_level(Algorithm algorithm, int level);

/// Receives the compressed bytes, in order.
using Sink = std::function<Result<void>(const void* data, size_t size)>;

/// A streaming compressor. Not thread-safe (one producer); the blocks it
/// cuts compress on its own worker threads.
class Compressor {
public:
  /// Checks the options and starts the workers.
  static Result<std::unique_ptr<Compressor>> open(Sink sink, Options options = {});
  ~Compressor();
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  /// Adds input. Errors from the sink come back here or from finish().
  Result<void> write(const void* data, size_t size);
  /// Compresses what is buffered, ends the stream and hands everything to
  /// the sink. Call once.
  Result<void> finish();
  /// Input bytes so far.
  uint64_t input_size() const;
  /// Output bytes so far.
  uint64_t output_size() const;

private:
  struct Impl;
  explicit Compressor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> m_impl;
};

/// Pulls up to `cap` bytes into `buf`; 0 at the end of the input.
using Source = std::function<Result<size_t>(void* buf, size_t cap)>;

/// Decompresses a whole gzip (every member) or zstd (every frame) stream from
/// `in` to `out`. Damaged or truncated input is Errc::corrupt naming `what`.
Result<void> decompress(Algorithm algorithm, const Source& in, const Sink& out, std::string_view what);

/// Whether a block of `n` bytes looks incompressible (a near-uniform byte
/// histogram: random, encrypted or already compressed data); integer
/// arithmetic only, so every machine decides the same. Blocks under 64 KiB
/// never do.
bool looks_incompressible(const unsigned char* p, size_t n);

}  // namespace imgbuild::compress
