// Layer apply. Each entry is handled on its own: its parent directory is
// resolved afresh from the root fd (nothing cached between entries, since a
// later entry may replace a directory with a symlink), and the entry is then
// created with *at() calls relative to that parent fd and never followed.
// Directory mtimes are set at the end, because creating children changes them.
// Times out of range are set to the epoch, as Docker's and containerd's
// untar do (bound_time).

#include "snapshot/apply.hpp"
#include "snapshot/mounts.hpp"
#include "util/rootless.hpp"
#include "util/strings.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

namespace imgbuild::snapshot {

namespace {

constexpr size_t k_body_chunk = 256 * 1024;

// The latest time a signed 64-bit count of nanoseconds since the epoch holds
// (Go's time.Unix(0, 1<<63-1), the bound of Docker's and containerd's untar).
constexpr int64_t k_max_time_sec = 9'223'372'036;
constexpr uint32_t k_max_time_nsec = 854'775'807;

// An entry's time as Docker's and containerd's untar set it: one before the
// epoch or past k_max_time_* becomes the epoch itself.
void bound_time(tar::Entry& e) {
  bool before = e.mtime_sec < 0;
  bool after = e.mtime_sec > k_max_time_sec || (e.mtime_sec == k_max_time_sec && e.mtime_nsec > k_max_time_nsec);
  if (before || after) {
    e.mtime_sec = 0;
    e.mtime_nsec = 0;
  }
}

struct DirTime {
  int64_t sec = 0;
  uint32_t nsec = 0;
};

class Applier {
public:
  Applier(const fs::Root& root, tar::Reader& reader, const ApplyOptions& options)
      : m_root(root), m_reader(reader), m_options(options), m_buf(k_body_chunk) {}

  Result<ApplyResult> run() {
    ApplyResult out;
    while (true) {
      TRY(auto entry, m_reader.next());
      if (!entry) {
        break;
      }
      ++out.entries;
      bound_time(*entry);
      TRY_VOID(apply_entry(*entry));
    }
    TRY_VOID(set_dir_times());
    TRY(auto summary, m_reader.finish());
    out.diff_id = summary.diff_id;
    out.uncompressed_size = summary.uncompressed_size;
    out.compression = summary.compression;
    return out;
  }

private:
  Error entry_error(const tar::Entry& e, std::string what, Errc code = Errc::corrupt) const {
    return Error(code, fmt::format("{}: entry \"{}\": {}", m_reader.name(), e.path, what));
  }
  Error entry_errno(const tar::Entry& e, std::string_view op, int err) const {
    return Error(err == EPERM || err == EACCES ? Errc::permission : Errc::io,
                 fmt::format("{}: entry \"{}\": {}: {}", m_reader.name(), e.path, op, std::strerror(err)));
  }

  // Archive path → components. Leading "/" is root-relative; ".." refused.
  Result<std::vector<std::string>> components(const tar::Entry& e, std::string_view path, std::string_view what) {
    std::vector<std::string> comps;
    for (std::string_view c : str::split_view(path, '/')) {
      if (c == "..") {
        return fail(entry_error(e, fmt::format("{} \"{}\" contains \"..\" (would leave the root)", what, path)));
      }
      if (c.find('\0') != std::string_view::npos) {
        return fail(entry_error(e, fmt::format("{} contains a NUL byte", what)));
      }
      if (!c.empty() && c != ".") {
        comps.emplace_back(c);
      }
    }
    return comps;
  }

  // The directory at comps[0..n) resolved inside the root without following
  // any symlink (whiteouts must not act through one). Missing directories
  // are created when `create` is set; otherwise a missing one yields an
  // invalid fd.
  Result<UniqueFd> open_dir_no_symlinks(const tar::Entry& e, const std::vector<std::string>& comps, size_t n,
                                         bool create) {
    UniqueFd cur(::openat(m_root.fd(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cur) {
      return fail(entry_errno(e, "open root", errno));
    }
    for (size_t i = 0; i < n; ++i) {
      int fd = ::openat(cur.get(), comps[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT && create) {
        if (::mkdirat(cur.get(), comps[i].c_str(), 0755) != 0 && errno != EEXIST) {
          return fail(entry_errno(e, "create parent directory " + fs::join_components(comps, i + 1), errno));
        }
        fd = ::openat(cur.get(), comps[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (fd < 0) {
        int err = errno;
        if (err == ENOENT) {
          return UniqueFd();
        }
        if (err == ELOOP || err == ENOTDIR) {
          return fail(entry_error(e, fmt::format("parent \"{}\" is a symlink or not a directory; a whiteout may "
                                                 "not act through it",
                                                 fs::join_components(comps, i + 1))));
        }
        return fail(entry_errno(e, "open parent " + fs::join_components(comps, i + 1), err));
      }
      cur.reset(fd);
    }
    return cur;
  }

  Result<void> apply_entry(const tar::Entry& e) {
    TRY(auto comps, components(e, e.path, "path"));
    if (comps.empty()) {
      if (m_options.skip_root_entry && e.type == tar::EntryType::dir) {
        return ok();
      }
      if (e.type != tar::EntryType::dir) {
        return fail(entry_error(e, fmt::format("names the root directory but is a {}", tar::entry_type_name(e.type))));
      }
      UniqueFd rootdir(::openat(m_root.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!rootdir) {
        return fail(entry_errno(e, "open root", errno));
      }
      TRY_VOID(set_fd_meta(e, rootdir.get()));
      m_dir_times[""] = DirTime{e.mtime_sec, e.mtime_nsec};
      return ok();
    }
    const std::string& name = comps.back();
    if (name.rfind(tar::k_whiteout_prefix, 0) == 0) {
      // A whiteout is one by name whatever its type (Docker writes empty files).
      TRY_VOID(m_reader.skip_data());
      if (name == tar::k_opaque_marker) {
        return apply_opaque(e, comps);
      }
      std::string victim = name.substr(tar::k_whiteout_prefix.size());
      if (victim.empty() || victim == "." || victim == ".." ||
          victim.rfind(tar::k_whiteout_prefix, 0) == 0) {
        return fail(entry_error(e, fmt::format("invalid whiteout \"{}\"", name)));
      }
      return apply_whiteout(e, comps, victim);
    }
    std::string path = fs::join_components(comps, comps.size());
    auto parent_r = m_root.parent(path, fs::Parents::create);
    if (!parent_r) {
      return fail(entry_error(e, parent_r.error().message, parent_r.error().code));
    }
    fs::ParentRef parent = std::move(*parent_r);
    int pfd = parent.dir.get();
    const char* cname = parent.name.c_str();

    struct stat existing {};
    bool exists = ::fstatat(pfd, cname, &existing, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && !(e.type == tar::EntryType::dir && S_ISDIR(existing.st_mode))) {
      auto r = fs::remove_all_at(pfd, parent.name);
      if (!r) {
        return fail(entry_error(e, "cannot replace existing entry: " + r.error().message, r.error().code));
      }
      forget_dir_times(path);
      exists = false;
    }
    if (m_written.insert(path).second && m_options.written_paths != nullptr) {
      m_options.written_paths->push_back(path);
    }

    switch (e.type) {
      case tar::EntryType::file: {
        UniqueFd fd(::openat(pfd, cname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd) {
          return fail(entry_errno(e, "create file", errno));
        }
        TRY_VOID(copy_body(e, fd.get()));
        TRY_VOID(set_fd_meta(e, fd.get()));
        timespec ts[2] = {{e.mtime_sec, static_cast<long>(e.mtime_nsec)}, {e.mtime_sec, static_cast<long>(e.mtime_nsec)}};
        if (::futimens(fd.get(), ts) != 0) {
          return fail(entry_errno(e, "set times", errno));
        }
        return ok();
      }
      case tar::EntryType::dir: {
        if (!exists && ::mkdirat(pfd, cname, 0700) != 0) {
          return fail(entry_errno(e, "mkdir", errno));
        }
        UniqueFd fd(::openat(pfd, cname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd) {
          return fail(entry_errno(e, "open directory", errno));
        }
        TRY_VOID(set_fd_meta(e, fd.get()));
        m_dir_times[path] = DirTime{e.mtime_sec, e.mtime_nsec};
        return ok();
      }
      case tar::EntryType::symlink: {
        if (e.link_target.empty()) {
          return fail(entry_error(e, "symlink with an empty target"));
        }
        if (::symlinkat(e.link_target.c_str(), pfd, cname) != 0) {
          return fail(entry_errno(e, "symlink", errno));
        }
        return set_at_meta(e, pfd, parent.name, false);
      }
      case tar::EntryType::hardlink: return apply_hardlink(e, path, pfd, parent.name);
      case tar::EntryType::char_device:
      case tar::EntryType::block_device:
      case tar::EntryType::fifo: {
        mode_t type = e.type == tar::EntryType::fifo ? S_IFIFO
                      : e.type == tar::EntryType::char_device ? S_IFCHR
                                                              : S_IFBLK;
        dev_t dev = e.type == tar::EntryType::fifo ? 0 : makedev(e.dev_major, e.dev_minor);
        if (::mknodat(pfd, cname, type | 0600, dev) != 0) {
          return fail(entry_errno(e, "mknod", errno));
        }
        return set_at_meta(e, pfd, parent.name, true);
      }
    }
    return fail(entry_error(e, "unknown entry type", Errc::internal));
  }

  Result<void> apply_hardlink(const tar::Entry& e, const std::string& path, int pfd, const std::string& name) {
    TRY(auto tcomps, components(e, e.link_target, "hardlink target"));
    if (tcomps.empty()) {
      return fail(entry_error(e, "hardlink to the root directory"));
    }
    std::string target = fs::join_components(tcomps, tcomps.size());
    if (target == path) {
      return fail(entry_error(e, "hardlink to itself"));
    }
    auto tparent = m_root.parent(target);
    struct stat st {};
    if (!tparent || ::fstatat(tparent->dir.get(), tparent->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(entry_error(e, fmt::format("hardlink target \"{}\" does not exist", e.link_target), Errc::not_found));
    }
    if (S_ISDIR(st.st_mode)) {
      return fail(entry_error(e, fmt::format("hardlink target \"{}\" is a directory", e.link_target)));
    }
    if (::linkat(tparent->dir.get(), tparent->name.c_str(), pfd, name.c_str(), 0) != 0) {
      return fail(entry_errno(e, fmt::format("hardlink to \"{}\"", e.link_target), errno));
    }
    return ok();
  }

  Result<void> apply_whiteout(const tar::Entry& e, const std::vector<std::string>& comps, const std::string& victim) {
    std::string victim_path = fs::join_components(comps, comps.size() - 1);
    victim_path = victim_path.empty() ? victim : victim_path + "/" + victim;
    bool overlay = m_options.mode == ApplyMode::overlay_lower;
    TRY(auto dir, open_dir_no_symlinks(e, comps, comps.size() - 1, overlay));
    if (m_written.count(victim_path) != 0) {
      return ok();  // hides lower layers only; this layer's own entry stays
    }
    if (!dir) {
      return ok();  // merged mode, parent missing: nothing to delete
    }
    forget_dir_times(victim_path);
    auto r = fs::remove_all_at(dir.get(), victim);
    if (!r) {
      return fail(entry_error(e, "cannot delete whited-out entry: " + r.error().message, r.error().code));
    }
    if (overlay) {
      if (::mknodat(dir.get(), victim.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
        return fail(entry_errno(e, "create whiteout device", errno));
      }
    }
    return ok();
  }

  Result<void> apply_opaque(const tar::Entry& e, const std::vector<std::string>& comps) {
    std::string dir_path = fs::join_components(comps, comps.size() - 1);
    bool overlay = m_options.mode == ApplyMode::overlay_lower;
    TRY(auto dir, open_dir_no_symlinks(e, comps, comps.size() - 1, overlay));
    if (!dir) {
      return ok();
    }
    if (overlay) {
      UniqueFd rd(::openat(dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!rd || ::fsetxattr(rd.get(), mounts::opaque_xattr(), "y", 1, 0) != 0) {
        return fail(entry_errno(e, std::string("set ") + mounts::opaque_xattr(), errno));
      }
      return ok();
    }
    TRY(auto names, fs::list_dir(dir.get()));
    for (const auto& n : names) {
      std::string child = dir_path.empty() ? n : dir_path + "/" + n;
      if (m_written.count(child) != 0) {
        continue;
      }
      forget_dir_times(child);
      auto r = fs::remove_all_at(dir.get(), n);
      if (!r) {
        return fail(entry_error(e, "cannot empty opaque directory: " + r.error().message, r.error().code));
      }
    }
    return ok();
  }

  Result<void> copy_body(const tar::Entry& e, int fd) {
    uint64_t written = 0;
    while (true) {
      TRY(size_t n, m_reader.read_data(m_buf.data(), m_buf.size()));
      if (n == 0) {
        break;
      }
      const char* p = m_buf.data();
      size_t left = n;
      while (left > 0) {
        ssize_t w = ::write(fd, p, left);
        if (w < 0) {
          if (errno == EINTR) {
            continue;
          }
          return fail(entry_errno(e, "write", errno));
        }
        p += w;
        left -= static_cast<size_t>(w);
      }
      written += n;
      m_body_bytes += n;
      if (m_options.max_bytes != 0 && m_body_bytes > m_options.max_bytes) {
        return fail(entry_error(e, fmt::format("the archive's files exceed the limit of {} bytes", m_options.max_bytes),
                                Errc::limit));
      }
    }
    if (written != e.size) {
      return fail(entry_error(e, fmt::format("body is {} bytes, header says {}", written, e.size)));
    }
    return ok();
  }

  static bool dropped_xattr(const std::string& name) {
    return mounts::is_overlay_xattr(name);
  }

  // Owner, mode, xattrs of an open file or directory (order matters: chown
  // clears setuid bits and file capabilities).
  Result<void> set_fd_meta(const tar::Entry& e, int fd) {
    if (m_options.ownership == Ownership::apply && ::fchown(fd, e.uid, e.gid) != 0) {
      return fail(entry_error(e, rootless::chown_failure(errno, e.uid, e.gid), Errc::io));
    }
    if (::fchmod(fd, static_cast<mode_t>(e.mode & 07777)) != 0) {
      return fail(entry_errno(e, "chmod", errno));
    }
    for (const auto& [k, v] : e.xattrs) {
      if (dropped_xattr(k)) {
        continue;
      }
      if (::fsetxattr(fd, k.c_str(), v.data(), v.size(), 0) != 0) {
        return fail(entry_errno(e, "set xattr " + k, errno));
      }
    }
    return ok();
  }

  // The same for an entry we cannot open (symlink, device, fifo), by name.
  Result<void> set_at_meta(const tar::Entry& e, int pfd, const std::string& name, bool chmod) {
    if (m_options.ownership == Ownership::apply &&
        ::fchownat(pfd, name.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(entry_error(e, rootless::chown_failure(errno, e.uid, e.gid), Errc::io));
    }
    // Just created by us and not a symlink: fchmodat cannot be redirected.
    if (chmod && ::fchmodat(pfd, name.c_str(), static_cast<mode_t>(e.mode & 07777), 0) != 0) {
      return fail(entry_errno(e, "chmod", errno));
    }
    for (const auto& [k, v] : e.xattrs) {
      if (dropped_xattr(k)) {
        continue;
      }
      auto r = fs::set_xattr_at(pfd, name, k, v);
      if (!r) {
        return fail(entry_error(e, r.error().message, r.error().code));
      }
    }
    timespec ts[2] = {{e.mtime_sec, static_cast<long>(e.mtime_nsec)}, {e.mtime_sec, static_cast<long>(e.mtime_nsec)}};
    if (::utimensat(pfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(entry_errno(e, "set times", errno));
    }
    return ok();
  }

  // Drops recorded times at and under path (it is being replaced).
  void forget_dir_times(const std::string& path) {
    m_dir_times.erase(path);
    std::string prefix = path + "/";
    auto it = m_dir_times.lower_bound(prefix);
    while (it != m_dir_times.end() && it->first.compare(0, prefix.size(), prefix) == 0) {
      it = m_dir_times.erase(it);
    }
  }

  Result<void> set_dir_times() {
    // Deepest first is not needed: setting a time does not change the parent.
    for (const auto& [path, t] : m_dir_times) {
      auto r = m_root.set_mtime(path, t.sec, t.nsec);
      if (!r && r.error().code != Errc::not_found) {
        return fail(std::move(r).error().with_context("setting directory times of " + m_reader.name()));
      }
    }
    return ok();
  }

  const fs::Root& m_root;
  tar::Reader& m_reader;
  ApplyOptions m_options;
  uint64_t m_body_bytes = 0;
  std::vector<char> m_buf;
  std::set<std::string> m_written;
  std::map<std::string, DirTime> m_dir_times;
};

}  // namespace

Result<ApplyResult> apply_layer(const fs::Root& root, tar::Reader& reader, const ApplyOptions& options) {
  Applier applier(root, reader, options);
  return applier.run();
}

Result<ApplyResult> apply_layer_fd(const std::string& dir, int fd, const std::string& name,
                                   const ApplyOptions& options) {
  TRY(auto root, fs::Root::open(dir));
  TRY(auto reader, tar::Reader::open_fd(fd, name));
  return apply_layer(root, *reader, options);
}

}  // namespace imgbuild::snapshot
