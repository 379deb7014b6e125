#include "util/fs.hpp"
#include "util/io.hpp"
#include "util/rootless.hpp"
#include "util/strings.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <cerrno>
#include <cstring>
#include <map>

#include <fmt/format.h>

namespace imgbuild::fs {

namespace {

std::string errno_text(int e) { return std::strerror(e); }

Errc errc_for(int e) {
  switch (e) {
    case ENOENT: return Errc::not_found;
    case EEXIST: return Errc::already_exists;
    case EACCES:
    case EPERM: return Errc::permission;
    default: return Errc::io;
  }
}

Error sys_error(int e, const std::string& where, std::string_view what) {
  if (e == ENOSPC || e == EDQUOT) {  // named as the store's writes name it; the CLI adds what prune frees
    return Error(Errc::no_space, fmt::format("no space left on device while writing {} ({})", where, what));
  }
  return Error(errc_for(e), fmt::format("{}: {}: {}", where, what, errno_text(e)));
}

std::string where_in(const std::string& label, std::string_view path) {
  std::string p = clean_path(path);
  if (p.empty()) {
    return label;
  }
  return label + "/" + p;
}

// /proc/self/fd/N/name: the path-based xattr calls reach dirfd/name without
// resolving anything but that one component (l*xattr do not follow it).
std::string proc_path(int dirfd, const std::string& name) {
  return fmt::format("/proc/self/fd/{}/{}", dirfd, name);
}

Result<std::vector<std::pair<std::string, std::string>>> read_xattrs(const std::string& p, const std::string& name, bool follow);

}  // namespace

std::vector<std::string> clean_components(std::string_view path) {
  std::vector<std::string> out;
  for (std::string_view c : str::split_view(path, '/')) {
    if (c == "..") {
      if (!out.empty()) {
        out.pop_back();
      }
    } else if (!c.empty() && c != ".") {
      out.emplace_back(c);
    }
  }
  return out;
}

std::string join_components(const std::vector<std::string>& comps, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (i > 0) {
      out += '/';
    }
    out += comps[i];
  }
  return out;
}

std::string clean_path(std::string_view path) {
  auto comps = clean_components(path);
  return join_components(comps, comps.size());
}

namespace {

// openat2 of the cleaned path `p` ("." for the root) inside root_fd: the fd,
// or -1 with errno set.
int openat2_in_root(int root_fd, const std::string& p, int flags, mode_t mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0;; ++attempt) {
    long fd = syscall(SYS_openat2, root_fd, p.c_str(), &how, sizeof how);
    // EAGAIN: a concurrent rename raced the lookup; the kernel asks to retry.
    if (fd < 0 && (errno == EAGAIN || errno == EINTR) && attempt < 16) {
      continue;
    }
    return static_cast<int>(fd);
  }
}

}  // namespace

Result<UniqueFd> openat_in_root(int root_fd, std::string_view path, int flags, mode_t mode) {
  std::string p = clean_path(path);
  if (p.empty()) {
    p = ".";
  }
  UniqueFd fd(openat2_in_root(root_fd, p, flags, mode));
  if (!fd) {
    int e = errno;
    return fail(Error(errc_for(e), fmt::format("{}: {}", p, errno_text(e))));
  }
  return fd;
}

Result<std::optional<std::string>> read_file_at(int root_fd, std::string_view path, size_t cap,
                                                const std::string& where) {
  std::string p = clean_path(path);
  UniqueFd fd(openat2_in_root(root_fd, p.empty() ? "." : p, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return std::optional<std::string>();
    }
    return fail(sys_error(errno, where, "open"));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return fail(sys_error(errno, where, "stat"));
  }
  if (S_ISDIR(st.st_mode)) {
    return fail(Error(Errc::invalid_argument, fmt::format("{} is a directory", where)));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(Error(Errc::invalid_argument, fmt::format("{} is not a regular file", where)));
  }
  TRY(std::string text, io::read_all(fd.get(), where, cap));
  return std::optional<std::string>(std::move(text));
}

Result<std::optional<std::string>> Root::read_file(std::string_view path, size_t cap) const {
  return read_file_at(m_fd.get(), path, cap, where_in(m_label, path));
}

Root Root::from_fd(UniqueFd fd, std::string label) { return Root(std::move(fd), std::move(label)); }

Result<Root> Root::open(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fail(sys_error(errno, dir, "open root directory"));
  }
  return Root(UniqueFd(fd), dir);
}

Result<UniqueFd> Root::open_at(std::string_view path, int flags, mode_t mode) const {
  auto r = openat_in_root(m_fd.get(), path, flags, mode);
  if (!r) {
    Error e = std::move(r).error();
    e.message = m_label + "/" + e.message;
    return fail(std::move(e));
  }
  return r;
}

Result<UniqueFd> Root::mkdir_all(std::string_view path, mode_t mode) const {
  auto comps = clean_components(path);
  // Fast path: the whole directory usually exists already.
  if (auto whole = openat_in_root(m_fd.get(), join_components(comps, comps.size()), O_PATH | O_DIRECTORY)) {
    return whole;
  }
  UniqueFd cur;
  {
    TRY(cur, open_at("", O_PATH | O_DIRECTORY));
  }
  for (size_t i = 0; i < comps.size(); ++i) {
    std::string prefix = join_components(comps, i + 1);
    auto next = openat_in_root(m_fd.get(), prefix, O_PATH | O_DIRECTORY);
    if (next) {
      cur = std::move(*next);
      continue;
    }
    if (next.error().code != Errc::not_found) {
      return fail(Error(next.error().code,
                        fmt::format("{}: cannot create directory: {} (a component is not a directory)",
                                    where_in(m_label, prefix), next.error().message)));
    }
    if (::mkdirat(cur.get(), comps[i].c_str(), mode) != 0 && errno != EEXIST) {
      return fail(sys_error(errno, where_in(m_label, prefix), "mkdir"));
    }
    int fd = ::openat(cur.get(), comps[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == ENOTDIR || e == ELOOP) {
        return fail(Error(Errc::invalid_argument,
                          fmt::format("{}: cannot create directory: a dangling symlink or non-directory is in the way",
                                      where_in(m_label, prefix))));
      }
      return fail(sys_error(e, where_in(m_label, prefix), "open new directory"));
    }
    cur.reset(fd);
  }
  return cur;
}

Result<ParentRef> Root::parent(std::string_view path, Parents parents) const {
  auto comps = clean_components(path);
  if (comps.empty()) {
    return fail(Errc::invalid_argument, fmt::format("{}: the root itself has no parent", m_label));
  }
  std::string dir = join_components(comps, comps.size() - 1);
  ParentRef out;
  out.name = comps.back();
  if (parents == Parents::create) {
    TRY(out.dir, mkdir_all(dir));
  } else {
    TRY(out.dir, open_at(dir, O_PATH | O_DIRECTORY));
  }
  return out;
}

Result<std::optional<struct stat>> Root::lstat(std::string_view path) const {
  auto comps = clean_components(path);
  struct stat st {};
  if (comps.empty()) {
    if (::fstat(m_fd.get(), &st) != 0) {
      return fail(sys_error(errno, m_label, "stat"));
    }
    return std::optional<struct stat>(st);
  }
  auto p = parent(path);
  if (!p) {
    if (p.error().code == Errc::not_found || p.error().message.find("Not a directory") != std::string::npos) {
      return std::optional<struct stat>();
    }
    return fail(std::move(p).error());
  }
  if (::fstatat(p->dir.get(), p->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) {
      return std::optional<struct stat>();
    }
    return fail(sys_error(errno, where_in(m_label, path), "lstat"));
  }
  return std::optional<struct stat>(st);
}

Result<std::string> Root::readlink(std::string_view path) const {
  TRY(auto p, parent(path));
  std::string buf(256, '\0');
  while (true) {
    ssize_t n = ::readlinkat(p.dir.get(), p.name.c_str(), buf.data(), buf.size());
    if (n < 0) {
      return fail(sys_error(errno, where_in(m_label, path), "readlink"));
    }
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);
  }
}

Result<UniqueFd> Root::create_file(std::string_view path, mode_t mode) const {
  TRY(auto p, parent(path));
  int fd = ::openat(p.dir.get(), p.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) {
    return fail(sys_error(errno, where_in(m_label, path), "create file"));
  }
  return UniqueFd(fd);
}

Result<void> Root::mkdir(std::string_view path, mode_t mode) const {
  TRY(auto p, parent(path));
  if (::mkdirat(p.dir.get(), p.name.c_str(), mode) != 0) {
    return fail(sys_error(errno, where_in(m_label, path), "mkdir"));
  }
  return ok();
}

Result<void> Root::symlink(std::string_view path, std::string_view target) const {
  TRY(auto p, parent(path));
  std::string t(target);
  if (::symlinkat(t.c_str(), p.dir.get(), p.name.c_str()) != 0) {
    return fail(sys_error(errno, where_in(m_label, path), "symlink"));
  }
  return ok();
}

Result<void> Root::link(std::string_view target, std::string_view path) const {
  TRY(auto from, parent(target));
  TRY(auto to, parent(path));
  if (::linkat(from.dir.get(), from.name.c_str(), to.dir.get(), to.name.c_str(), 0) != 0) {
    return fail(sys_error(errno, where_in(m_label, path), fmt::format("hardlink to \"{}\"", clean_path(target))));
  }
  return ok();
}

Result<void> Root::mknod(std::string_view path, mode_t mode, dev_t dev) const {
  TRY(auto p, parent(path));
  if (::mknodat(p.dir.get(), p.name.c_str(), mode, dev) != 0) {
    return fail(sys_error(errno, where_in(m_label, path), "mknod"));
  }
  return ok();
}

Result<void> Root::chown(std::string_view path, uid_t uid, gid_t gid) const {
  auto comps = clean_components(path);
  if (comps.empty()) {
    if (::fchownat(m_fd.get(), "", uid, gid, AT_EMPTY_PATH) != 0) {
      const int err = errno;
      return fail(Error(errc_for(err), m_label + ": " + rootless::chown_failure(err, uid, gid)));
    }
    return ok();
  }
  TRY(auto p, parent(path));
  if (::fchownat(p.dir.get(), p.name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
    const int err = errno;
    return fail(Error(errc_for(err), where_in(m_label, path) + ": " + rootless::chown_failure(err, uid, gid)));
  }
  return ok();
}

Result<void> Root::chmod(std::string_view path, mode_t mode) const {
  // Open the entry itself (O_PATH|O_NOFOLLOW), check it, then chmod that
  // inode through its fd: no second lookup of the name.
  TRY(auto fd, open_at(path, O_PATH | O_NOFOLLOW));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return fail(sys_error(errno, where_in(m_label, path), "stat"));
  }
  if (S_ISLNK(st.st_mode)) {
    return fail(Errc::invalid_argument, fmt::format("{}: cannot chmod a symlink", where_in(m_label, path)));
  }
  std::string proc = fmt::format("/proc/self/fd/{}", fd.get());
  if (::chmod(proc.c_str(), mode) != 0) {
    return fail(sys_error(errno, where_in(m_label, path), "chmod"));
  }
  return ok();
}

Result<void> Root::set_mtime(std::string_view path, int64_t sec, uint32_t nsec) const {
  timespec ts[2];
  ts[0].tv_sec = static_cast<time_t>(sec);
  ts[0].tv_nsec = static_cast<long>(nsec);
  ts[1] = ts[0];
  auto comps = clean_components(path);
  if (comps.empty()) {
    if (::utimensat(m_fd.get(), "", ts, AT_EMPTY_PATH) != 0) {
      // AT_EMPTY_PATH for utimensat is recent; fall back to the fd's proc link.
      std::string proc = fmt::format("/proc/self/fd/{}", m_fd.get());
      if (::utimensat(AT_FDCWD, proc.c_str(), ts, 0) != 0) {
        return fail(sys_error(errno, m_label, "set times"));
      }
    }
    return ok();
  }
  TRY(auto p, parent(path));
  if (::utimensat(p.dir.get(), p.name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return fail(sys_error(errno, where_in(m_label, path), "set times"));
  }
  return ok();
}

Result<void> Root::set_xattr(std::string_view path, const std::string& name, std::string_view value) const {
  auto comps = clean_components(path);
  if (comps.empty()) {
    std::string proc = fmt::format("/proc/self/fd/{}", m_fd.get());
    if (::setxattr(proc.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      return fail(sys_error(errno, m_label, "set xattr " + name));
    }
    return ok();
  }
  TRY(auto p, parent(path));
  auto r = set_xattr_at(p.dir.get(), p.name, name, value);
  if (!r) {
    return fail(sys_error(errno, where_in(m_label, path), "set xattr " + name));
  }
  return ok();
}

Result<Xattrs> Root::xattrs(std::string_view path) const {
  auto comps = clean_components(path);
  if (comps.empty()) {
    return read_xattrs(fmt::format("/proc/self/fd/{}", m_fd.get()), m_label, true);
  }
  TRY(auto p, parent(path));
  return xattrs_at(p.dir.get(), p.name);
}

Result<void> Root::remove(std::string_view path) const {
  TRY(auto p, parent(path));
  if (::unlinkat(p.dir.get(), p.name.c_str(), 0) != 0) {
    if (errno != EISDIR) {
      return fail(sys_error(errno, where_in(m_label, path), "remove"));
    }
    if (::unlinkat(p.dir.get(), p.name.c_str(), AT_REMOVEDIR) != 0) {
      return fail(sys_error(errno, where_in(m_label, path), "remove directory"));
    }
  }
  return ok();
}

Result<void> Root::remove_all(std::string_view path) const {
  if (clean_components(path).empty()) {
    return fail(Errc::invalid_argument, m_label + ": refusing to remove the root itself");
  }
  auto p = parent(path);
  if (!p) {
    if (p.error().code == Errc::not_found) {
      return ok();
    }
    return fail(std::move(p).error());
  }
  auto r = remove_all_at(p->dir.get(), p->name);
  if (!r) {
    return fail(std::move(r).error().with_context("removing " + where_in(m_label, path)));
  }
  return ok();
}

// ---------------------------------------------------------------- fd-relative

Result<std::vector<std::string>> list_dir(int dirfd) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fail(sys_error(errno, "directory", "open for listing"));
  }
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    int e = errno;
    ::close(fd);
    return fail(sys_error(e, "directory", "fdopendir"));
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* ent = ::readdir(d)) {
    std::string_view n = ent->d_name;
    if (n != "." && n != "..") {
      names.emplace_back(n);
    }
    errno = 0;
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) {
    return fail(sys_error(e, "directory", "readdir"));
  }
  std::sort(names.begin(), names.end());
  return names;
}

namespace {

// Reads every xattr of p (a /proc/self/fd path); l*xattr so a final symlink
// is not followed.
Result<Xattrs> read_xattrs(const std::string& p, const std::string& name, bool follow) {
  auto list_fn = follow ? &::listxattr : &::llistxattr;
  auto get_fn = follow ? &::getxattr : &::lgetxattr;
  Xattrs out;
  std::string list;
  while (true) {
    ssize_t n = list_fn(p.c_str(), nullptr, 0);
    if (n < 0) {
      if (errno == ENOTSUP) {
        return out;
      }
      return fail(sys_error(errno, name, "list xattrs"));
    }
    list.resize(static_cast<size_t>(n));
    if (n == 0) {
      break;
    }
    ssize_t m = list_fn(p.c_str(), list.data(), list.size());
    if (m >= 0) {
      list.resize(static_cast<size_t>(m));
      break;
    }
    if (errno != ERANGE) {
      return fail(sys_error(errno, name, "list xattrs"));
    }
  }
  size_t pos = 0;
  while (pos < list.size()) {
    std::string key(list.c_str() + pos);
    pos += key.size() + 1;
    if (key.empty()) {
      continue;
    }
    std::string value;
    while (true) {
      ssize_t n = get_fn(p.c_str(), key.c_str(), nullptr, 0);
      if (n < 0) {
        if (errno == ENODATA) {
          break;
        }
        return fail(sys_error(errno, name, "get xattr " + key));
      }
      value.resize(static_cast<size_t>(n));
      ssize_t m = get_fn(p.c_str(), key.c_str(), value.data(), value.size());
      if (m >= 0) {
        value.resize(static_cast<size_t>(m));
        out.emplace_back(key, value);
        break;
      }
      if (errno != ERANGE) {
        return fail(sys_error(errno, name, "get xattr " + key));
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Result<Xattrs> xattrs_at(int dirfd, const std::string& name) { return read_xattrs(proc_path(dirfd, name), name, false); }

Result<void> set_xattr_at(int dirfd, const std::string& name, const std::string& key, std::string_view value) {
  std::string p = proc_path(dirfd, name);
  if (::lsetxattr(p.c_str(), key.c_str(), value.data(), value.size(), 0) != 0) {
    return fail(sys_error(errno, name, "set xattr " + key));
  }
  return ok();
}

Result<void> clear_dir(int dirfd) {
  TRY(auto names, list_dir(dirfd));
  for (const auto& n : names) {
    TRY_VOID(remove_all_at(dirfd, n));
  }
  return ok();
}

namespace {

// Lists the directory, unlinks every non-directory in it and returns the
// subdirectory names (last one first to pop).
Result<std::vector<std::string>> unlink_files(int fd, const std::string& where) {
  TRY(auto names, list_dir(fd));
  std::vector<std::string> subdirs;
  for (const auto& n : names) {
    if (::unlinkat(fd, n.c_str(), 0) == 0 || errno == ENOENT) {
      continue;
    }
    if (errno != EISDIR) {
      return fail(sys_error(errno, where + "/" + n, "remove"));
    }
    subdirs.push_back(n);
  }
  std::reverse(subdirs.begin(), subdirs.end());
  return subdirs;
}

}  // namespace

// Iterative depth-first removal: one directory fd is held at a time and the
// walk climbs back through "..", so hostile nesting costs neither stack nor
// file descriptors. (".." is safe here because nothing else moves the tree
// while it is being removed.)
Result<void> remove_all_at(int dirfd, const std::string& name) {
  if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) {
    return ok();
  }
  if (errno != EISDIR) {
    return fail(sys_error(errno, name, "remove"));
  }
  struct Frame {
    std::string name;
    std::vector<std::string> subdirs;
  };
  UniqueFd cur(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!cur) {
    return fail(sys_error(errno, name, "open directory for removal"));
  }
  std::vector<Frame> frames;
  {
    TRY(auto subs, unlink_files(cur.get(), name));
    frames.push_back(Frame{name, std::move(subs)});
  }
  while (true) {
    if (!frames.back().subdirs.empty()) {
      std::string next = std::move(frames.back().subdirs.back());
      frames.back().subdirs.pop_back();
      int fd = ::openat(cur.get(), next.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        if (errno == ENOENT) {
          continue;
        }
        return fail(sys_error(errno, name + "/…/" + next, "open directory for removal"));
      }
      cur.reset(fd);
      TRY(auto subs, unlink_files(cur.get(), name + "/…/" + next));
      frames.push_back(Frame{std::move(next), std::move(subs)});
      continue;
    }
    std::string done = std::move(frames.back().name);
    frames.pop_back();
    if (frames.empty()) {
      cur.reset();
      if (::unlinkat(dirfd, done.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        return fail(sys_error(errno, done, "remove directory"));
      }
      return ok();
    }
    int up = ::openat(cur.get(), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (up < 0) {
      return fail(sys_error(errno, name, "open parent during removal"));
    }
    cur.reset(up);
    if (::unlinkat(cur.get(), done.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return fail(sys_error(errno, name + "/…/" + done, "remove directory"));
    }
  }
}

// ---------------------------------------------------------------- copy

Result<void> copy_data(int in, int out, const std::string& what, bool* range_ok, std::optional<uint64_t> size) {
  uint64_t ranged = 0;
  while (range_ok == nullptr || *range_ok) {
    ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, size_t{1} << 30, 0);
    if (n > 0) {
      ranged += static_cast<uint64_t>(n);
      if (size && ranged == *size) {
        return ok();  // the stat size copied: no call just to see the end
      }
      continue;
    }
    if (n == 0) {
      return ok();
    }
    if (errno == EINTR) {
      continue;
    }
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP && errno != EBADF) {
      return fail(sys_error(errno, what, "copy data"));
    }
    if (range_ok != nullptr) {
      *range_ok = false;
    }
    break;  // read/write from here on
  }
  char buf[1 << 16];
  uint64_t copied = 0;
  while (true) {
    ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(sys_error(errno, what, "read"));
    }
    if (n == 0) {
      return ok();
    }
    TRY_VOID(io::write_all(out, buf, static_cast<size_t>(n), what));
    copied += static_cast<uint64_t>(n);
    if (size && copied == *size && static_cast<size_t>(n) < sizeof buf) {
      return ok();  // a short read that reached the stat size: at EOF
    }
  }
}

namespace {

struct CopyState {
  const Root* dst;
  std::map<std::pair<dev_t, ino_t>, std::string> links;  // first copy of a multiply-linked file
  bool root_user = ::geteuid() == 0;
};


// Owner, mode, xattrs, times of dfd/name from st; the entry was just made by us.
Result<void> copy_meta(const CopyState& cs, int sfd, int dfd, const std::string& name, const struct stat& st,
                       const std::string& what) {
  if (::fchownat(dfd, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0 &&
      (errno != EPERM || cs.root_user)) {
    const int err = errno;
    return fail(Error(errc_for(err), what + ": " + rootless::chown_failure(err, st.st_uid, st.st_gid)));
  }
  if (!S_ISLNK(st.st_mode) && ::fchmodat(dfd, name.c_str(), st.st_mode & 07777, 0) != 0) {
    return fail(sys_error(errno, what, "chmod"));
  }
  TRY(auto xs, xattrs_at(sfd, name));
  for (const auto& [k, v] : xs) {
    auto r = set_xattr_at(dfd, name, k, v);
    if (!r && cs.root_user) {
      return fail(std::move(r).error().with_context("copying " + what));
    }
  }
  timespec ts[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(dfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return fail(sys_error(errno, what, "set times"));
  }
  return ok();
}

Result<void> copy_dir(CopyState& cs, int sfd, int dfd, const std::string& rel, size_t depth) {
  if (depth > k_max_depth) {
    return fail(Errc::limit, fmt::format("{}/{}: directories nested deeper than {} levels", cs.dst->label(), rel,
                                         k_max_depth));
  }
  TRY(auto names, list_dir(sfd));
  for (const auto& name : names) {
    std::string child_rel = rel.empty() ? name : rel + "/" + name;
    std::string what = cs.dst->label() + "/" + child_rel;
    struct stat st {};
    if (::fstatat(sfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(sys_error(errno, child_rel, "lstat source"));
    }
    struct stat dst_st {};
    bool exists = ::fstatat(dfd, name.c_str(), &dst_st, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && !(S_ISDIR(st.st_mode) && S_ISDIR(dst_st.st_mode))) {
      TRY_VOID(remove_all_at(dfd, name));
      exists = false;
    }
    if (S_ISDIR(st.st_mode)) {
      if (!exists && ::mkdirat(dfd, name.c_str(), 0700) != 0) {
        return fail(sys_error(errno, what, "mkdir"));
      }
      UniqueFd s(::openat(sfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      UniqueFd d(::openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!s || !d) {
        return fail(sys_error(errno, what, "open directory"));
      }
      TRY_VOID(copy_dir(cs, s.get(), d.get(), child_rel, depth + 1));
    } else if (S_ISREG(st.st_mode)) {
      if (st.st_nlink > 1) {
        auto key = std::make_pair(st.st_dev, st.st_ino);
        auto it = cs.links.find(key);
        if (it != cs.links.end()) {
          TRY_VOID(cs.dst->link(it->second, child_rel));
          continue;
        }
        cs.links.emplace(key, child_rel);
      }
      UniqueFd in(::openat(sfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!in) {
        return fail(sys_error(errno, child_rel, "open source file"));
      }
      UniqueFd out(::openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!out) {
        return fail(sys_error(errno, what, "create file"));
      }
      TRY_VOID(copy_data(in.get(), out.get(), what));
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = ::readlinkat(sfd, name.c_str(), target.data(), target.size());
      if (n < 0) {
        return fail(sys_error(errno, child_rel, "readlink"));
      }
      target.resize(static_cast<size_t>(n));
      if (::symlinkat(target.c_str(), dfd, name.c_str()) != 0) {
        return fail(sys_error(errno, what, "symlink"));
      }
    } else {
      if (::mknodat(dfd, name.c_str(), st.st_mode & (S_IFMT | 07777), st.st_rdev) != 0) {
        return fail(sys_error(errno, what, "mknod"));
      }
    }
    TRY_VOID(copy_meta(cs, sfd, dfd, name, st, what));
  }
  return ok();
}

}  // namespace

Result<void> copy_tree(const Root& src, const Root& dst) {
  CopyState cs{&dst, {}};
  UniqueFd s(::openat(src.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd d(::openat(dst.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!s || !d) {
    return fail(sys_error(errno, src.label(), "open for copy"));
  }
  TRY_VOID(copy_dir(cs, s.get(), d.get(), "", 0));
  struct stat st {};
  if (::fstat(s.get(), &st) != 0) {
    return fail(sys_error(errno, src.label(), "stat"));
  }
  if (::fchown(d.get(), st.st_uid, st.st_gid) != 0 && (errno != EPERM || cs.root_user)) {
    const int err = errno;
    return fail(Error(errc_for(err), dst.label() + ": " + rootless::chown_failure(err, st.st_uid, st.st_gid)));
  }
  if (::fchmod(d.get(), st.st_mode & 07777) != 0) {
    return fail(sys_error(errno, dst.label(), "chmod"));
  }
  // Root xattrs through ".." of the directory itself is not contained; use
  // the fd's own proc link instead.
  std::string sp = fmt::format("/proc/self/fd/{}", s.get());
  std::string dp = fmt::format("/proc/self/fd/{}", d.get());
  TRY(auto root_xattrs, read_xattrs(sp, src.label(), true));
  for (const auto& [key, value] : root_xattrs) {
    if (::setxattr(dp.c_str(), key.c_str(), value.data(), value.size(), 0) != 0 && cs.root_user) {
      return fail(sys_error(errno, dst.label(), "set xattr " + key));
    }
  }
  timespec ts[2] = {st.st_atim, st.st_mtim};
  if (::futimens(d.get(), ts) != 0) {
    return fail(sys_error(errno, dst.label(), "set times"));
  }
  return ok();
}

uint64_t tree_bytes(const std::string& dir) {
  namespace stdfs = std::filesystem;
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, stdfs::directory_options::skip_permission_denied, ec);
       !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2) && !it->is_symlink(e2)) {
      total += it->file_size(e2);
    }
  }
  return total;
}

}  // namespace imgbuild::fs
