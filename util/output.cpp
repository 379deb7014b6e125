#include "util/output.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <fmt/format.h>

namespace imgbuild::output {

namespace {

constexpr int k_max_links = 40;

Unexpected bad_destination(const std::string& path, const std::string& why) {
  return fail(Errc::invalid_argument, fmt::format("cannot write to {}: {}", path, why));
}

// The directory part of `path` as the kernel would resolve it ("." for a
// bare name, "/" for a name in the root). Not cleaned lexically: ".." after
// a symlink means what the kernel makes of it.
std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) {
    return ".";
  }
  if (slash == 0) {
    return "/";
  }
  return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// When `dir` is our own descriptor directory (/proc/self/fd, /dev/fd,
// /proc/thread-self/fd, /proc/<our pid>/fd), true.
bool is_own_fd_dir(const std::string& dir) {
  char real[PATH_MAX];
  if (::realpath(dir.c_str(), real) == nullptr) {
    return false;
  }
  std::string r = real;
  std::string self = fmt::format("/proc/{}/", ::getpid());
  if (!r.starts_with(self)) {
    return false;
  }
  std::string rest = r.substr(self.size());
  if (rest == "fd") {
    return true;
  }
  // task/<tid>/fd
  return rest.starts_with("task/") && rest.ends_with("/fd") && rest.find('/', 5) == rest.size() - 3;
}

std::optional<int> parse_fd(const std::string& name) {
  if (name.empty() || name.size() > 9 || name.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::atoi(name.c_str());
}

bool on_proc(const std::string& dir) {
  struct statfs sf {};
  return ::statfs(dir.c_str(), &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC;
}

// The checks for a path that does not exist: its directory must.
Result<Destination> new_file(const std::string& given, const std::string& resolved) {
  std::string dir = dir_of(resolved);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT) {
      return fail(Errc::not_found,
                  fmt::format("cannot write to {}: the directory {} does not exist", given, dir));
    }
    return bad_destination(given, fmt::format("{}: {}", dir, std::strerror(e)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return bad_destination(given, fmt::format("{} is not a directory", dir));
  }
  return Destination{given, Kind::replace, resolved, -1};
}

Result<Destination> classify(const std::string& given, const struct stat& st, const std::string& resolved) {
  const std::string shown = resolved == given ? std::string("it") : resolved;
  if (S_ISREG(st.st_mode)) {
    return Destination{given, Kind::replace, resolved, -1};
  }
  if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
    return Destination{given, Kind::stream, resolved, -1};
  }
  if (S_ISDIR(st.st_mode)) {
    return bad_destination(given, shown + " is a directory");
  }
  if (S_ISBLK(st.st_mode)) {
    return bad_destination(given, shown + " is a block device");
  }
  if (S_ISSOCK(st.st_mode)) {
    return bad_destination(given, shown + " is a socket");
  }
  return bad_destination(given, shown + " is not a file, character device or FIFO");
}

std::string temp_name(const std::string& base) {
  static std::atomic<unsigned> counter{0};
  return fmt::format(".{}.imgbuild-tmp-{}-{}", base, ::getpid(), counter.fetch_add(1));
}

}  // namespace

Result<Destination> check_destination(const std::string& path) {
  if (path.empty()) {
    return fail(Errc::invalid_argument, "the output path is empty");
  }
  if (path == "-") {
    return Destination{path, Kind::descriptor, "", STDOUT_FILENO};
  }
  if (path.back() == '/') {
    return bad_destination(path, "the path names a directory");
  }
  std::string cur = path;
  for (int links = 0;; ++links) {
    struct stat st {};
    if (::lstat(cur.c_str(), &st) != 0) {
      int e = errno;
      if (e == ENOENT) {
        return new_file(path, cur);
      }
      if (e == ENOTDIR) {
        return bad_destination(path, fmt::format("a component of {} is not a directory", dir_of(cur)));
      }
      return bad_destination(path, std::strerror(e));
    }
    if (!S_ISLNK(st.st_mode)) {
      return classify(path, st, cur);
    }
    if (links >= k_max_links) {
      return bad_destination(path, "too many levels of symbolic links");
    }
    std::string dir = dir_of(cur);
    if (on_proc(dir)) {
      // A /proc "magic" link (/proc/self/fd/1, /dev/stdout): its target is
      // not a path. Our own descriptor is written as it is; anything else
      // is opened through the link.
      std::optional<int> n = parse_fd(base_of(cur));
      if (n && is_own_fd_dir(dir)) {
        struct stat fst {};
        if (::fstat(*n, &fst) != 0) {
          return bad_destination(path, fmt::format("descriptor {} is not open", *n));
        }
        if (S_ISDIR(fst.st_mode)) {
          return bad_destination(path, fmt::format("descriptor {} is a directory", *n));
        }
        return Destination{path, Kind::descriptor, "", *n};
      }
      struct stat target {};
      if (::stat(cur.c_str(), &target) != 0) {
        return bad_destination(path, std::strerror(errno));
      }
      if (!S_ISCHR(target.st_mode) && !S_ISFIFO(target.st_mode)) {
        return bad_destination(path, fmt::format("{} is a /proc link to something that is not a character device "
                                                 "or FIFO", cur));
      }
      return Destination{path, Kind::stream, cur, -1};
    }
    std::string target(static_cast<size_t>(st.st_size > 0 ? st.st_size : PATH_MAX) + 1, '\0');
    ssize_t n = ::readlink(cur.c_str(), target.data(), target.size());
    if (n < 0) {
      return bad_destination(path, fmt::format("readlink {}: {}", cur, std::strerror(errno)));
    }
    target.resize(static_cast<size_t>(n));
    if (target.empty()) {
      return bad_destination(path, fmt::format("{} is an empty symbolic link", cur));
    }
    cur = target.front() == '/' ? target : (dir == "/" ? "/" : dir + "/") + target;
  }
}

File::~File() {
  if (!m_committed && !m_temp.empty() && m_dir) {
    ::unlinkat(m_dir.get(), m_temp.c_str(), 0);
  }
}

Result<File> File::open(const std::string& path) {
  TRY(Destination dest, check_destination(path));
  File f;
  f.m_dest = dest;
  switch (dest.kind) {
    case Kind::descriptor: {
      f.m_fd.reset(::fcntl(dest.fd, F_DUPFD_CLOEXEC, 0));
      if (!f.m_fd) {
        return fail(Errc::io, fmt::format("cannot write to {}: {}", path, std::strerror(errno)));
      }
      return f;
    }
    case Kind::stream: {
      // Never created or truncated: the node is written as it is. A FIFO
      // blocks here until its reader opens it.
      f.m_fd.reset(::open(dest.resolved.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC));
      if (!f.m_fd) {
        return fail(Errc::io, fmt::format("cannot write to {}: {}", path, std::strerror(errno)));
      }
      struct stat st {};
      if (::fstat(f.m_fd.get(), &st) != 0 || !(S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) {
        return bad_destination(path, "it changed while it was being opened");
      }
      return f;
    }
    case Kind::replace:
      break;
  }
  std::string dir = dir_of(dest.resolved);
  f.m_dir.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!f.m_dir) {
    return fail(Errc::io, fmt::format("cannot write to {}: open {}: {}", path, dir, std::strerror(errno)));
  }
  // An unnamed file: nothing to clean up whatever happens before commit.
  f.m_fd.reset(::openat(f.m_dir.get(), ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666));
  if (!f.m_fd) {
    int e = errno;
    if (e != EOPNOTSUPP && e != EISDIR && e != EINVAL) {
      return fail(Errc::io, fmt::format("cannot write to {}: {}", path, std::strerror(e)));
    }
    // The filesystem has no O_TMPFILE: a named temporary file, removed on
    // failure and on interrupt.
    interrupt::install_handlers();
    f.m_temp = temp_name(base_of(dest.resolved));
    f.m_cleanup = interrupt::unlink_on_interrupt((dir == "/" ? "/" : dir + "/") + f.m_temp);
    f.m_fd.reset(::openat(f.m_dir.get(), f.m_temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
    if (!f.m_fd) {
      int e2 = errno;
      f.m_temp.clear();
      return fail(Errc::io, fmt::format("cannot write to {}: create a temporary file in {}: {}", path, dir,
                                        std::strerror(e2)));
    }
  }
  return f;
}

Result<void> File::commit() {
  if (m_committed) {
    return ok();
  }
  if (m_dest.kind != Kind::replace) {
    m_committed = true;
    return ok();
  }
  const std::string& path = m_dest.path;
  if (::fsync(m_fd.get()) != 0) {
    return fail(Errc::io, fmt::format("cannot write to {}: fsync: {}", path, std::strerror(errno)));
  }
  const std::string dir = dir_of(m_dest.resolved);
  if (m_temp.empty()) {
    // Give the unnamed file a temporary name, then rename it over the
    // destination (linkat cannot replace an existing name).
    std::string name = temp_name(base_of(m_dest.resolved));
    interrupt::install_handlers();
    m_cleanup = interrupt::unlink_on_interrupt((dir == "/" ? "/" : dir + "/") + name);
    if (::linkat(m_fd.get(), "", m_dir.get(), name.c_str(), AT_EMPTY_PATH) != 0) {
      std::string proc = fmt::format("/proc/self/fd/{}", m_fd.get());
      if (::linkat(AT_FDCWD, proc.c_str(), m_dir.get(), name.c_str(), AT_SYMLINK_FOLLOW) != 0) {
        return fail(Errc::io, fmt::format("cannot write to {}: link the new file into {}: {}", path, dir,
                                          std::strerror(errno)));
      }
    }
    m_temp = name;
  }
  if (::renameat(m_dir.get(), m_temp.c_str(), m_dir.get(), base_of(m_dest.resolved).c_str()) != 0) {
    return fail(Errc::io, fmt::format("cannot write to {}: rename: {}", path, std::strerror(errno)));
  }
  m_committed = true;
  m_cleanup.release();
  m_temp.clear();
  if (::fsync(m_dir.get()) != 0 && errno != EINVAL) {
    return fail(Errc::io, fmt::format("cannot write to {}: fsync {}: {}", path, dir, std::strerror(errno)));
  }
  return ok();
}

Result<void> write_file(const std::string& path, std::string_view bytes) {
  TRY(File f, File::open(path));
  TRY_VOID(write_all(f.fd(), bytes.data(), bytes.size(), path));
  return f.commit();
}

}  // namespace imgbuild::output
