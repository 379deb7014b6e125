#pragma once
// Output destinations the user names on the command line: `save -o PATH`,
// `build -o type=docker|oci|tar,dest=PATH`, `--iidfile`, `--metadata-file`.
// One set of rules for all of them, decided by what PATH is:
//
//   - "-" is standard output, written directly;
//   - a symlink is followed (up to 40 links), so a link to a device or FIFO
//     writes that node; a link to one of our own descriptors
//     (/proc/self/fd/N, /dev/fd/N, /dev/stdout) writes that descriptor, at
//     its current offset, as a shell redirection would;
//   - a character device or a FIFO is opened and written in place, streaming
//     (never created, truncated or replaced);
//   - a regular file, or a new name in an existing directory, is replaced
//     atomically: the bytes go to an unnamed file (O_TMPFILE) in the same
//     directory, which is flushed and renamed over PATH only when the writer
//     commits. The new file is a new inode with the mode a new file gets
//     (0666 less the umask); nothing of the old file (mode, owner, hard
//     links) is kept. A failure, an interrupt or a SIGKILL before the commit
//     leaves the old file as it was and no temporary name behind (where the
//     filesystem has no O_TMPFILE, a named temporary file is used and removed
//     on failure and on SIGINT/SIGTERM/SIGHUP);
//   - a directory, a missing parent directory, a block device or a socket is
//     an error naming PATH, reported by check_destination before any work.

#include <string>
#include <string_view>

#include "util/fd.hpp"
#include "util/io.hpp"
#include "util/interrupt.hpp"
#include "util/result.hpp"

namespace imgbuild::output {

/// How a destination is written.
enum class Kind {
  descriptor,  ///< one of our open descriptors (standard output for "-")
  stream,      ///< a character device or FIFO, opened and written in place
  replace,     ///< a regular file (or a new one), replaced atomically
};

/// What a destination path turned out to be.
struct Destination {
  /// The path as the user gave it (for messages).
  std::string path;
  Kind kind = Kind::replace;
  /// stream, replace: the node to open or the name to replace, symlinks
  /// followed.
  std::string resolved;
  /// descriptor: the descriptor to write (1 for "-").
  int fd = -1;
};

/// Classifies `path` by the rules at the top of this file without opening or
/// creating anything. Errors (Errc::invalid_argument, Errc::not_found) name
/// `path` and say what is wrong with it; commands call this before they start
/// their work so that a bad destination fails at once.
Result<Destination> check_destination(const std::string& path);

/// An open output destination. Bytes written to fd() reach the destination
/// when commit() succeeds (a replaced file) or as they are written (a
/// descriptor or stream). Destroying it without a commit discards a
/// replacement and leaves the old file untouched.
class File {
public:
  /// Checks `path` (check_destination) and opens it for writing.
  static Result<File> open(const std::string& path);

  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  /// The descriptor to write to.
  int fd() const { return m_fd.get(); }
  /// The destination as checked.
  const Destination& destination() const { return m_dest; }
  /// Finishes the output: a replacement is flushed to disk and renamed over
  /// the destination; a stream or descriptor is left open for nothing more.
  /// Idempotent once it succeeded.
  Result<void> commit();

private:
  File() = default;
  Destination m_dest;
  UniqueFd m_fd;
  UniqueFd m_dir;          // replace: the directory the file goes into
  std::string m_temp;      // replace without O_TMPFILE: the named temporary file
  interrupt::Registration m_cleanup;  // removes m_temp on SIGINT/SIGTERM/SIGHUP
  bool m_committed = false;
};

/// Writes `bytes` to `path` by the rules above (open, write, commit).
Result<void> write_file(const std::string& path, std::string_view bytes);

/// io::write_all (all bytes, short writes and EINTR retried), under the
/// name output's callers use.
using io::write_all;

}  // namespace imgbuild::output
