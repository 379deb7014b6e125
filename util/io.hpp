#pragma once
// Whole reads and writes, temporary directories and random names: the one
// copy of each that every module uses (no module keeps its own read loop,
// mkdtemp wrapper or random-suffix generator).
//
// read_all reads to EOF and either returns everything or fails: a cap, when
// given, is an error naming the file and the limit, never a silent cut.
// write_all retries short writes and EINTR. TempDir removes its directory
// (and everything under it) when it goes out of scope, on every path out of
// the scope, exceptions included.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

#include "util/result.hpp"

namespace imgbuild::io {

/// read_all's cap when there is none.
inline constexpr size_t k_unlimited = std::numeric_limits<size_t>::max();

/// Reads `fd` from its current offset to EOF. More than `cap` bytes is an
/// Errc::limit error "<what> is larger than the limit of <cap> bytes"
/// (it reads at most one buffer past the cap, so a FIFO or /dev/zero is not
/// read without bound when a cap is given); a directory is an error saying
/// so; EINTR is retried; other errors name `what`.
Result<std::string> read_all(int fd, std::string_view what, size_t cap = k_unlimited);

/// Receives one chunk of a stream; an error stops the stream.
using ChunkSink = std::function<Result<void>(const void* data, size_t size)>;

/// Reads `fd` from its current offset to EOF in chunks, handing each to
/// `sink` (never holding more than one chunk); EINTR is retried, read
/// errors name `what`. Returns the bytes read.
Result<uint64_t> read_chunks(int fd, std::string_view what, const ChunkSink& sink);

/// Opens `path` (symlinks followed, O_CLOEXEC) and reads it whole by the
/// rules of read_all(fd); a missing file is Errc::not_found naming it.
Result<std::string> read_all(const std::string& path, size_t cap = k_unlimited);

/// Writes all of `data` to `fd`, retrying short writes and EINTR; errors
/// name `what` (ENOSPC/EDQUOT as Errc::no_space).
Result<void> write_all(int fd, std::string_view data, std::string_view what);

/// The same for `size` bytes at `data`.
Result<void> write_all(int fd, const void* data, size_t size, std::string_view what);

/// Creates or truncates `path` (`mode` for a new file) and writes `data`.
/// Not atomic: output::write_file is the replace-by-rename form.
Result<void> write_all(const std::string& path, std::string_view data, mode_t mode = 0644);

/// `bytes` random bytes from the kernel (getrandom) as lower-case hex
/// (2 × bytes characters): names of temporary files, views and containers.
std::string random_hex(size_t bytes = 8);

/// A private directory (mode 0700, made with mkdtemp) that is removed with
/// everything under it when the object is destroyed. Movable, not copyable.
class TempDir {
public:
  /// Makes `<parent>/<prefix>XXXXXX`; an empty `parent` is $TMPDIR, or /tmp
  /// when that is unset or empty. Errors name the parent.
  static Result<TempDir> create(const std::string& parent, std::string_view prefix);

  /// Takes ownership of `path`, a directory the caller made (when its mode
  /// or place matters: an overlay lower directory, a rename target).
  static TempDir adopt(std::string path) { return TempDir(std::move(path)); }

  /// An empty object (owns nothing).
  TempDir() = default;
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  /// The directory's path ("" for an empty object).
  const std::string& path() const { return m_path; }
  /// Removes the directory now (errors ignored, as in the destructor).
  void remove();

private:
  explicit TempDir(std::string path) : m_path(std::move(path)) {}
  std::string m_path;
};

}  // namespace imgbuild::io
