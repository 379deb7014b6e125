// The Copier: writes COPY/ADD entries into the destination root with their
// metadata and records them (see builder/copy_writer.hpp).

#include "builder/copy_writer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "util/fd.hpp"
#include "util/io.hpp"
#include "util/rootless.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

void Copier::record(const std::string& path, mode_t type) {
  result.written.push_back(WrittenEntry{"/" + path, type});
}

bool Copier::surely_absent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || fresh_dirs.count(path.substr(0, slash)) == 0) {
    return false;
  }
  return fresh_entries.insert(path).second;
}

Result<void> Copier::make_parents(const std::string& path, uint32_t mode) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || known_dirs.count(path.substr(0, slash)) != 0) {
    return ok();  // top level, or a parent this copy already made or saw
  }
  std::vector<std::string> comps = fs::clean_components(path);
  std::string cur;
  for (size_t i = 0; i + 1 < comps.size(); ++i) {
    cur = str::join_path(cur, comps[i]);
    if (known_dirs.count(cur) != 0) {
      continue;
    }
    TRY(auto st, dest.lstat(cur));
    if (!st) {
      TRY_VOID(make_dir(cur, mode, owner, std::nullopt));
    }
    known_dirs.insert(cur);
  }
  return ok();
}

Result<void> Copier::make_dir(const std::string& path, uint32_t mode, Owner o,
                              std::optional<std::pair<int64_t, uint32_t>> mtime) {
  TRY_VOID(dest.mkdir(path, 0700));
  known_dirs.insert(path);
  fresh_dirs.insert(path);
  fresh_entries.insert(path);  // made: no longer absent
  TRY_VOID(dest.chown(path, o.uid, o.gid));
  TRY_VOID(dest.chmod(path, mode));
  if (mtime) {
    dir_times.emplace_back(path, mtime->first, mtime->second);
  }
  record(path, S_IFDIR);
  return ok();
}

Result<void> Copier::ensure_dir(const std::string& path, uint32_t mode) {
  if (path.empty()) {
    return ok();
  }
  auto existing = dest.open_at(path, O_PATH | O_DIRECTORY);
  if (existing) {
    return ok();
  }
  TRY(auto st, dest.lstat(path));
  if (st) {
    return fail(Errc::invalid_argument, fmt::format("cannot copy to non-directory: /{}", path));
  }
  TRY_VOID(make_parents(path, mode));
  return make_dir(path, mode, owner, std::nullopt);
}

Result<bool> Copier::clear_target(const std::string& path, bool dirs_too) {
  (void)surely_absent(path);  // claims it: written once, looked at again
  TRY(auto st, dest.lstat(path));
  if (!st) {
    return false;
  }
  if (S_ISDIR(st->st_mode) && !dirs_too) {
    return true;  // an existing directory stays
  }
  TRY_VOID(dest.remove_all(path));
  return false;
}

uint32_t Copier::mode_for(uint32_t src_mode, bool is_dir) const {
  return chmod ? chmod_apply(*chmod, src_mode & 07777, is_dir) : (src_mode & 07777);
}

Owner Copier::owner_for(const struct stat& st) const { return keep_owner ? Owner{st.st_uid, st.st_gid} : owner; }

Result<void> Copier::copy_xattrs(int src_dirfd, const std::string& src_name, const std::string& target) {
  auto xs = fs::xattrs_at(src_dirfd, src_name);
  if (!xs) {
    return ok();  // filesystems without xattr support
  }
  for (const auto& [k, v] : *xs) {
    if (k.starts_with("trusted.overlay.") || k.starts_with("user.overlay.") || k == "security.selinux") {
      continue;
    }
    (void)dest.set_xattr(target, k, v);
  }
  return ok();
}

Result<void> Copier::write_entry(const WalkEntry& e, const std::string& target) {
  const struct stat& st = e.st;
  if (target.empty()) {
    // The destination root itself: only directories can land there.
    if (!S_ISDIR(st.st_mode)) {
      return fail(Errc::invalid_argument, "cannot copy a file onto /");
    }
    return ok();
  }
  TRY_VOID(make_parents(target, dir_mode));
  const bool absent = surely_absent(target);
  if (S_ISDIR(st.st_mode)) {
    if (!absent) {
      // Follow a symlink to a directory inside the root (var/run -> /run).
      auto existing = dest.open_at(target, O_PATH | O_DIRECTORY);
      if (existing) {
        known_dirs.insert(target);
        if (!e.rel.empty()) {
          TRY_VOID(overwrite_dir_meta(e, target));
        }
        return ok();
      }
      TRY(bool is_dir, clear_target(target, false));
      (void)is_dir;
    }
    TRY_VOID(make_dir(target, mode_for(st.st_mode, true), owner_for(st),
                      std::make_pair(static_cast<int64_t>(st.st_mtim.tv_sec),
                                     static_cast<uint32_t>(st.st_mtim.tv_nsec))));
    TRY_VOID(copy_xattrs(e.dirfd, e.name, target));
    return ok();
  }
  if (!absent) {
    TRY(bool is_dir, clear_target(target, false));
    if (is_dir) {
      return fail(Errc::invalid_argument, fmt::format("cannot replace directory /{} with a non-directory", target));
    }
  }
  if (S_ISSOCK(st.st_mode)) {
    // BuildKit turns a socket into an empty regular file.
    TRY(auto out, dest.create_file(target, 0600));
    TRY_VOID(finish_file(out.get(), target, mode_for(st.st_mode, false), st.st_mtim, owner_for(st)));
    result.files += 1;
    record(target, S_IFREG);
    return ok();
  }
  if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
    auto it = links.find({st.st_dev, st.st_ino});
    if (it != links.end()) {
      TRY_VOID(dest.link(it->second, target));
      record(target, S_IFREG);
      return ok();
    }
    links[{st.st_dev, st.st_ino}] = target;
  }
  if (S_ISREG(st.st_mode)) {
    UniqueFd in(::openat(e.dirfd, e.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!in) {
      return fail(Errc::io, fmt::format("/{}: open: {}", e.path, std::strerror(errno)));
    }
    TRY(auto out, dest.create_file(target, 0600));
    TRY_VOID(fs::copy_data(in.get(), out.get(), "/" + target, &copy_range_ok, static_cast<uint64_t>(st.st_size)));
    TRY_VOID(finish_file(out.get(), target, mode_for(st.st_mode, false), st.st_mtim, owner_for(st)));
    TRY_VOID(copy_xattrs(e.dirfd, e.name, target));
    result.files += 1;
    result.bytes += static_cast<uint64_t>(st.st_size);
    record(target, S_IFREG);
    return ok();
  }
  if (S_ISLNK(st.st_mode)) {
    std::string link_target(4096, '\0');
    ssize_t n = ::readlinkat(e.dirfd, e.name.c_str(), link_target.data(), link_target.size());
    if (n < 0) {
      return fail(Errc::io, fmt::format("/{}: readlink: {}", e.path, std::strerror(errno)));
    }
    link_target.resize(static_cast<size_t>(n));
    TRY_VOID(dest.symlink(target, link_target));
    TRY_VOID(dest.chown(target, owner_for(st).uid, owner_for(st).gid));
    TRY_VOID(dest.set_mtime(target, st.st_mtim.tv_sec, static_cast<uint32_t>(st.st_mtim.tv_nsec)));
    record(target, S_IFLNK);
    return ok();
  }
  // Devices and fifos.
  TRY_VOID(dest.mknod(target, (st.st_mode & S_IFMT) | 0600, st.st_rdev));
  TRY_VOID(dest.chown(target, owner_for(st).uid, owner_for(st).gid));
  TRY_VOID(dest.chmod(target, mode_for(st.st_mode, false)));
  TRY_VOID(dest.set_mtime(target, st.st_mtim.tv_sec, static_cast<uint32_t>(st.st_mtim.tv_nsec)));
  record(target, st.st_mode & S_IFMT);
  return ok();
}

Result<void> Copier::overwrite_dir_meta(const WalkEntry& e, const std::string& target) {
  TRY(auto now, dest.lstat(target));
  if (!now || !S_ISDIR(now->st_mode)) {
    return ok();
  }
  const struct stat& st = e.st;
  TRY_VOID(dest.chown(target, owner_for(st).uid, owner_for(st).gid));
  TRY_VOID(dest.chmod(target, mode_for(st.st_mode, true)));
  TRY_VOID(copy_xattrs(e.dirfd, e.name, target));
  dir_times.emplace_back(target, static_cast<int64_t>(st.st_mtim.tv_sec), static_cast<uint32_t>(st.st_mtim.tv_nsec));
  record(target, S_IFDIR);
  return ok();
}

Result<void> Copier::finish_file(int fd, const std::string& target, uint32_t mode, struct timespec mtime,
                                 std::optional<Owner> who) {
  Owner o = who.value_or(owner);
  if (::fchown(fd, o.uid, o.gid) != 0) {
    return fail(Errc::io, fmt::format("/{}: {}", target, rootless::chown_failure(errno, o.uid, o.gid)));
  }
  if (::fchmod(fd, mode) != 0) {
    return fail(Errc::io, fmt::format("/{}: chmod: {}", target, std::strerror(errno)));
  }
  struct timespec ts[2] = {mtime, mtime};
  if (::futimens(fd, ts) != 0) {
    return fail(Errc::io, fmt::format("/{}: utimens: {}", target, std::strerror(errno)));
  }
  return ok();
}

Result<void> Copier::write_bytes(const std::string& target, std::string_view data, uint32_t mode,
                                 std::optional<int64_t> mtime) {
  TRY_VOID(make_parents(target, dir_mode));
  TRY(bool is_dir, clear_target(target, false));
  if (is_dir) {
    return fail(Errc::invalid_argument, fmt::format("cannot replace directory /{} with a file", target));
  }
  TRY(auto out, dest.create_file(target, 0600));
  TRY_VOID(io::write_all(out.get(), data, "/" + target));
  struct timespec ts {};
  if (mtime) {
    ts.tv_sec = static_cast<time_t>(*mtime);
  } else {
    ::clock_gettime(CLOCK_REALTIME, &ts);
  }
  TRY_VOID(finish_file(out.get(), target, mode_for(mode, false), ts));
  result.files += 1;
  result.bytes += data.size();
  record(target, S_IFREG);
  return ok();
}

Result<void> Copier::write_file_from(int in, const std::string& target, uint32_t mode, int64_t mtime) {
  TRY_VOID(make_parents(target, dir_mode));
  TRY(bool was_dir, clear_target(target, false));
  if (was_dir) {
    return fail(Errc::invalid_argument, fmt::format("cannot replace directory /{} with a file", target));
  }
  TRY(auto out, dest.create_file(target, 0600));
  TRY_VOID(fs::copy_data(in, out.get(), "/" + target));
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(mtime);
  TRY_VOID(finish_file(out.get(), target, mode_for(mode, false), ts));
  struct stat st {};
  ::fstat(out.get(), &st);
  result.files += 1;
  result.bytes += static_cast<uint64_t>(st.st_size);
  record(target, S_IFREG);
  return ok();
}

Result<void> Copier::finish() {
  std::sort(dir_times.begin(), dir_times.end(), [](const auto& a, const auto& b) {
    return std::count(std::get<0>(a).begin(), std::get<0>(a).end(), '/') >
           std::count(std::get<0>(b).begin(), std::get<0>(b).end(), '/');
  });
  for (const auto& [path, sec, nsec] : dir_times) {
    TRY_VOID(dest.set_mtime(path, sec, nsec));
  }
  return ok();
}

}  // namespace imgbuild::builder
