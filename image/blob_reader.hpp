#pragma once
// Reading a stored blob for export (save, `-o type=docker|oci`, cache export
// to a directory), verified while it streams: the bytes are hashed as they
// are handed out, and the read that would hand out the last bytes checks the
// digest first. A blob that rotted on disk therefore fails the export with
// its digest named, and the consumer never receives it whole; there is no
// second read pass.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "image/content_store.hpp"
#include "util/fd.hpp"
#include "util/hash.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// Receives the bytes of a blob in order.
using BlobChunkFn = std::function<Result<void>(const void* data, size_t size)>;

/// A stored blob read front to back and verified against its digest.
class BlobReader {
public:
  /// Opens the blob `digest` of `store`. A missing blob is Errc::corrupt
  /// (the store's records name it).
  static Result<BlobReader> open(const ContentStore& store, std::string_view digest);
  /// Opens the file `path`, which must hold the blob `digest`.
  static Result<BlobReader> open_file(const std::filesystem::path& path, std::string_view digest);

  BlobReader(BlobReader&&) noexcept = default;
  BlobReader& operator=(BlobReader&&) noexcept = default;
  BlobReader(const BlobReader&) = delete;
  BlobReader& operator=(const BlobReader&) = delete;
  ~BlobReader() = default;

  /// The blob's size (the file's size when opened).
  uint64_t size() const { return m_size; }
  /// The digest the content must hash to.
  const std::string& digest() const { return m_digest; }

  /// Reads up to `n` bytes into `buf`; 0 once the whole blob was read. The
  /// read that reaches the end verifies the digest before it returns: a
  /// mismatch is Errc::corrupt naming the blob, the file and the digest the
  /// content has, and those last bytes are not handed out. A file that
  /// shrinks while it is read is an error too.
  Result<size_t> read(void* buf, size_t n);

  /// Reads the whole blob (from where reading stands) through `sink`, in
  /// chunks of at most 1 MiB.
  Result<void> copy_to(const BlobChunkFn& sink);

private:
  BlobReader(UniqueFd fd, std::filesystem::path path, std::string digest, uint64_t size);
  /// Finishes the hash (once) and compares it with the digest.
  Result<void> check();

  UniqueFd m_fd;
  std::filesystem::path m_path;
  std::string m_digest;
  uint64_t m_size = 0;
  uint64_t m_done = 0;
  Sha256 m_hash;
  bool m_checked = false;
  std::string m_has;  // the content's digest, once checked
};

}  // namespace imgbuild::image
