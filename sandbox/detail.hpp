#pragma once
// Internal helpers of the namespace sandbox (not part of the public API):
// openat2 inside a root, and the mount stubs that
// are created for bind-mount targets and removed again after the run.

#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "util/fd.hpp"
#include "util/result.hpp"

namespace imgbuild::sandbox::detail {

/// The owning descriptor type of util/fd.hpp.
using imgbuild::UniqueFd;

/// openat2(2) with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS (plus extra
/// resolve flags); O_CLOEXEC is always added. Returns -1 with errno set.
int open_in_root(int root_fd, const std::string& rel, int flags, unsigned long long extra_resolve = 0);

/// The kind of a mount target to create when missing.
enum class StubKind { directory, file, char_device };

/// Mount points created inside a rootfs for a run, removed afterwards so that
/// they never end up in a layer. Every path is resolved inside the root; a
/// stub is removed only if the very inode created is still there (matched by
/// device and inode through the kept parent descriptor) and, for directories,
/// still empty. The parent's timestamps are restored when the run left the
/// parent untouched.
class MountStubs {
public:
  MountStubs() = default;
  MountStubs(const MountStubs&) = delete;
  MountStubs& operator=(const MountStubs&) = delete;
  ~MountStubs() { remove_all(); }

  /// Makes sure rel (relative to root_fd, cleaned by fs::clean_path) exists,
  /// creating missing components (directories 0755, a final file 0644, a
  /// final character device 0666 with `rdev`).
  Result<void> ensure(int root_fd, const std::string& rel, StubKind kind, dev_t rdev = 0);
  /// True when rel was created by ensure() (and is still recorded).
  bool created(const std::string& rel) const;
  /// Removes what ensure() created, deepest first. Idempotent.
  void remove_all() noexcept;
  /// Number of stubs currently recorded (for tests and debugging).
  size_t size() const { return m_stubs.size(); }

private:
  struct Stub {
    UniqueFd parent;
    std::string name;
    dev_t dev = 0;
    ino_t ino = 0;
    bool is_dir = false;
    StubKind kind = StubKind::file;
    std::string rel;
    struct timespec parent_times_before[2] = {};
    struct timespec parent_mtime_after = {};
  };
  std::vector<Stub> m_stubs;
};

}  // namespace imgbuild::sandbox::detail
