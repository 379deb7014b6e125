#include "sandbox/detail.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/fs.hpp"
#include "util/strings.hpp"

namespace imgbuild::sandbox::detail {

int open_in_root(int root_fd, const std::string& rel, int flags, unsigned long long extra_resolve) {
  struct open_how how {};
  how.flags = static_cast<unsigned long long>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | extra_resolve;
  const char* p = rel.empty() ? "." : rel.c_str();
  long r;
  do {
    r = ::syscall(SYS_openat2, root_fd, p, &how, sizeof how);
  } while (r < 0 && (errno == EINTR || errno == EAGAIN));
  return static_cast<int>(r);
}

bool MountStubs::created(const std::string& rel) const {
  const std::string want = fs::clean_path(rel);
  for (const Stub& s : m_stubs) {
    if (s.rel == want) {
      return true;
    }
  }
  return false;
}

Result<void> MountStubs::ensure(int root_fd, const std::string& rel, StubKind kind, dev_t rdev) {
  std::vector<std::string> parts = str::split(fs::clean_path(rel), '/');
  if (parts.size() == 1 && parts[0].empty()) {
    return ok();  // the root itself
  }
  std::string prefix;
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    std::string parent = prefix;
    prefix = prefix.empty() ? parts[i] : prefix + "/" + parts[i];
    UniqueFd existing(open_in_root(root_fd, prefix, O_PATH));
    if (existing) {
      continue;
    }
    if (errno != ENOENT) {
      return fail(Errc::io, "cannot resolve mount point /" + prefix + ": " + std::strerror(errno));
    }
    UniqueFd parent_fd(open_in_root(root_fd, parent, O_PATH | O_DIRECTORY));
    if (!parent_fd) {
      return fail(Errc::io, "cannot resolve mount point parent /" + parent + ": " + std::strerror(errno));
    }
    Stub stub;
    struct stat pst {};
    if (::fstatat(parent_fd.get(), "", &pst, AT_EMPTY_PATH) != 0) {
      return fail(Errc::io, "cannot stat /" + parent + ": " + std::strerror(errno));
    }
    stub.parent_times_before[0] = pst.st_atim;
    stub.parent_times_before[1] = pst.st_mtim;
    const bool make_dir = !last || kind == StubKind::directory;
    if (make_dir) {
      if (::mkdirat(parent_fd.get(), parts[i].c_str(), 0755) != 0) {
        return fail(Errc::io, "cannot create mount point /" + prefix + ": " +
                                  (errno == EEXIST ? std::string("a dangling symbolic link is in the way")
                                                   : std::string(std::strerror(errno))));
      }
    } else if (kind == StubKind::char_device) {
      if (::mknodat(parent_fd.get(), parts[i].c_str(), S_IFCHR | 0666, rdev) != 0 ||
          ::fchmodat(parent_fd.get(), parts[i].c_str(), 0666, 0) != 0) {
        return fail(Errc::io, "cannot create device node /" + prefix + ": " + std::strerror(errno));
      }
    } else {
      int fd = ::openat(parent_fd.get(), parts[i].c_str(),
                        O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (fd < 0) {
        return fail(Errc::io, "cannot create mount point /" + prefix + ": " +
                                  (errno == EEXIST ? std::string("a dangling symbolic link is in the way")
                                                   : std::string(std::strerror(errno))));
      }
      ::close(fd);
    }
    struct stat st {};
    if (::fstatat(parent_fd.get(), parts[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        ::fstatat(parent_fd.get(), "", &pst, AT_EMPTY_PATH) != 0) {
      return fail(Errc::io, "cannot stat new mount point /" + prefix + ": " + std::strerror(errno));
    }
    stub.parent = std::move(parent_fd);
    stub.name = parts[i];
    stub.dev = st.st_dev;
    stub.ino = st.st_ino;
    stub.is_dir = make_dir;
    stub.kind = make_dir ? StubKind::directory : kind;
    stub.rel = prefix;
    stub.parent_mtime_after = pst.st_mtim;
    m_stubs.push_back(std::move(stub));
  }
  return ok();
}

void MountStubs::remove_all() noexcept {
  while (!m_stubs.empty()) {
    Stub& s = m_stubs.back();
    struct stat st {};
    struct stat pst {};
    const bool parent_untouched =
        ::fstatat(s.parent.get(), "", &pst, AT_EMPTY_PATH) == 0 &&
        pst.st_mtim.tv_sec == s.parent_mtime_after.tv_sec && pst.st_mtim.tv_nsec == s.parent_mtime_after.tv_nsec;
    if (::fstatat(s.parent.get(), s.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == s.dev &&
        st.st_ino == s.ino &&
        (s.kind == StubKind::directory ? S_ISDIR(st.st_mode)
                                       : s.kind == StubKind::char_device ? S_ISCHR(st.st_mode) : S_ISREG(st.st_mode))) {
      if (::unlinkat(s.parent.get(), s.name.c_str(), s.is_dir ? AT_REMOVEDIR : 0) == 0 && parent_untouched) {
        // utimensat needs a real descriptor, not an O_PATH one.
        int dir = ::openat(s.parent.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir >= 0) {
          ::futimens(dir, s.parent_times_before);
          ::close(dir);
        }
      }
    }
    m_stubs.pop_back();
  }
}

}  // namespace imgbuild::sandbox::detail
