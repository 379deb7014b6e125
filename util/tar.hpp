#pragma once
// Tar archives for layers, docker-save/load and import: a streaming reader
// (plain, gzip, zstd, bzip2 or xz, detected by magic) and a deterministic PAX
// writer with optional reproducible gzip. Both hash the uncompressed stream
// (the OCI diff_id) as it passes; neither ever holds an entry body in memory.
//
// Reading:
//   TRY(auto r, tar::Reader::open_fd(fd, "layer.tar.gz"));
//   while (true) {
//     TRY(auto e, r->next());          // std::nullopt at the end
//     if (!e) break;
//     ... r->read_data(buf, n) until 0, or r->skip_data() ...
//   }
//   TRY(auto info, r->finish());       // diff_id covers trailing bytes too
//
// Writing (callers sort entries, see layer_path_less):
//   TRY(auto w, tar::Writer::open_fd(out_fd, {.compression = tar::Compression::gzip}));
//   TRY_VOID(w->add(entry));           // header; for files then write_data()
//   TRY_VOID(w->write_data(p, n));     // exactly entry.size bytes in total
//   TRY(auto digests, w->finish());    // diff_id, blob digest, sizes

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/hash.hpp"
#include "util/result.hpp"

namespace imgbuild::tar {

/// What an archive entry is.
enum class EntryType { file, dir, symlink, hardlink, char_device, block_device, fifo };

/// Name of an entry type for messages ("file", "directory", …).
std::string_view entry_type_name(EntryType t);

/// Stream compression, read (detected) or written (chosen).
enum class Compression { none, gzip, zstd, bzip2, xz };

/// Name for messages and media types ("none", "gzip", …).
std::string_view compression_name(Compression c);

/// One archive entry's header.
struct Entry {
  /// Path as stored (reader: raw, possibly with "./", "/" or a trailing "/";
  /// writer: relative path without leading "/" — a trailing "/" on
  /// directories is added by the writer).
  std::string path;
  EntryType type = EntryType::file;
  /// Permission bits including setuid/setgid/sticky (07777).
  uint32_t mode = 0644;
  uint32_t uid = 0;
  uint32_t gid = 0;
  /// Body size; only regular files carry a body.
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  /// Symlink target, or hardlink target path (as stored in the archive).
  std::string link_target;
  /// Extended attributes (name, value), e.g. "security.capability".
  std::vector<std::pair<std::string, std::string>> xattrs;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
};

/// The bytes an entry adds to a layer's content size as Docker counts it:
/// overlay2's walk of the unpacked layer adds each regular file's size once
/// per inode and each symlink's size (its target's length); directories,
/// hardlinks (their file is counted where it is stored), devices, FIFOs and
/// whiteouts add nothing.
uint64_t content_bytes(const Entry& e);

/// Prefix of an OCI whiteout file name.
inline constexpr std::string_view k_whiteout_prefix = ".wh.";
/// Name of the OCI opaque-directory marker.
inline constexpr std::string_view k_opaque_marker = ".wh..wh..opq";

/// Orders layer paths the way layer tars are sorted: component by component
/// (a directory is followed by its whole subtree before its next sibling), and
/// within one directory the opaque marker first, then whiteouts, then the
/// other names in byte order. Leading "./" and "/" and trailing "/" ignored.
bool layer_path_less(std::string_view a, std::string_view b);

/// Sorts paths in place with layer_path_less.
void sort_layer_paths(std::vector<std::string>& paths);

/// Pulls up to `cap` bytes into `buf`; returns the count, 0 at end of input.
using ReadFn = std::function<Result<size_t>(void* buf, size_t cap)>;
/// Pushes `size` bytes somewhere (a file, a socket, a hash).
using WriteFn = std::function<Result<void>(const void* data, size_t size)>;

/// What a finished read saw.
struct ReadSummary {
  /// sha256 of the whole decompressed stream, trailing bytes included.
  Sha256Digest diff_id;
  /// Length of the decompressed stream.
  uint64_t uncompressed_size = 0;
  Compression compression = Compression::none;
};

/// True when the seekable file at `fd` starts with a readable tar entry (any
/// compression): ADD's "is this a local archive" and the stdin context's
/// "a tar or a Dockerfile" probe. Rewinds fd before and after.
bool starts_with_archive(int fd);

/// Streaming tar reader. Errors name the archive (the `name` given at open)
/// and, once known, the entry.
class Reader {
public:
  /// Reads from fd (not owned, not closed), which must stay open until the
  /// reader is destroyed.
  static Result<std::unique_ptr<Reader>> open_fd(int fd, std::string name);
  /// Reads through a callback.
  static Result<std::unique_ptr<Reader>> open(ReadFn read, std::string name);
  /// Reads from fd like open_fd and hands every decompressed byte, in order
  /// and trailing bytes included, to `tee` as it is read (import keeps the
  /// tar it reads as the layer). A `tee` error fails the read.
  static Result<std::unique_ptr<Reader>> open_fd_tee(int fd, std::string name, WriteFn tee);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  /// The next entry, or std::nullopt after the last one. An unread body of
  /// the previous entry is skipped.
  Result<std::optional<Entry>> next();
  /// Reads the current entry's body in chunks; 0 at its end.
  Result<size_t> read_data(void* buf, size_t cap);
  /// Skips the rest of the current body.
  Result<void> skip_data();
  /// Reads the remainder of the stream (after the end marker) and returns
  /// the diff_id. Call after next() returned std::nullopt (or earlier: the
  /// remaining entries are then read and discarded).
  Result<ReadSummary> finish();
  /// Caps the decompressed stream (decompression bombs): reading past
  /// `bytes` fails with Errc::limit. 0 (the default) = no cap.
  void set_max_uncompressed(uint64_t bytes);
  /// Stops hashing the decompressed stream: for a caller that already knows
  /// the diff_id (an uncompressed stream whose digest it verified). finish()
  /// then returns an all-zero diff_id; the size still counts every byte.
  void stop_hashing();
  /// Compression detected at open.
  Compression compression() const;
  /// The name given at open, for messages.
  const std::string& name() const;

  struct Impl;

private:
  explicit Reader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> m_impl;
};

/// A layer's content size (content_bytes of every entry) read from fd (any
/// compression; the fd is read to its end, not closed). `name` for messages.
Result<uint64_t> content_size(int fd, std::string name);

/// Writer settings.
struct WriterOptions {
  /// none, gzip or zstd (others are read-only).
  Compression compression = Compression::none;
  /// zlib level for gzip (1-9); part of the output's identity.
  int gzip_level = 6;
  /// zstd level (1-19, -1: zstd's default 3); part of the output's identity.
  int level = -1;
  /// Compression threads (0: one per core); never changes the output.
  unsigned threads = 0;
};

/// Digests and sizes of a finished archive.
struct WriteSummary {
  /// sha256 of the uncompressed tar (the OCI diff_id).
  Sha256Digest diff_id;
  uint64_t uncompressed_size = 0;
  /// sha256 of the bytes written (the blob digest); == diff_id uncompressed.
  Sha256Digest digest;
  uint64_t size = 0;
};

/// Deterministic PAX writer: entries in the order given, numeric ids only (no
/// user/group names), xattrs as SCHILY.xattr records sorted by name, no atime
/// or ctime, hardlinks as typeflag 1, output ends right after the end marker.
/// gzip/zstd output comes from util/compress (fixed level, no name, a zero header
/// timestamp, any thread count): the same entries give the same bytes.
class Writer {
public:
  /// Writes to fd (not owned).
  static Result<std::unique_ptr<Writer>> open_fd(int fd, WriterOptions options = {});
  /// Writes through a callback.
  static Result<std::unique_ptr<Writer>> open(WriteFn write, WriterOptions options = {});
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  /// Writes an entry header. A file's body (entry.size bytes) must follow
  /// through write_data before the next add.
  Result<void> add(const Entry& entry);
  /// Writes body bytes of the current file entry.
  Result<void> write_data(const void* data, size_t size);
  /// Adds a regular file entry and copies its body from fd (entry.size bytes,
  /// read from the fd's current offset).
  Result<void> add_file_from_fd(const Entry& entry, int fd);
  /// Writes the end marker, flushes compression and returns the digests.
  Result<WriteSummary> finish();

  struct Impl;

private:
  explicit Writer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> m_impl;
};

}  // namespace imgbuild::tar
