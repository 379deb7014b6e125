// The ignore filter of a context directory as a whiteout layer.

#include "builder/context_filter.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <system_error>

#include "builder/context.hpp"
#include "util/fs.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {
namespace {

constexpr int k_max_depth = 1024;

struct Scan {
  const IgnoreMatcher& ignore;
  std::vector<std::string>& hidden;
};

// Collects the ignored entries below the directory `dirfd` (path `rel`);
// returns whether anything below it is kept.
Result<bool> scan_dir(Scan& s, int dirfd, const std::string& rel, int depth) {
  if (depth > k_max_depth) {
    return fail(Errc::limit, fmt::format("/{}: directories nested deeper than {} levels", rel, k_max_depth));
  }
  TRY(auto names, fs::list_dir(dirfd));
  bool kept = false;
  for (const auto& name : names) {
    std::string path = str::join_path(rel, name);
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        continue;  // vanished meanwhile
      }
      return fail(Errc::io, fmt::format("/{}: lstat: {}", path, std::strerror(errno)));
    }
    bool is_dir = S_ISDIR(st.st_mode);
    bool excluded = s.ignore.excluded(path);
    if (!excluded) {
      kept = true;
    }
    if (excluded && !(is_dir && s.ignore.has_exceptions())) {
      s.hidden.push_back(std::move(path));
      continue;
    }
    if (!is_dir) {
      continue;
    }
    UniqueFd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) {
      return fail(Errc::io, fmt::format("/{}: open: {}", path, std::strerror(errno)));
    }
    size_t mark = s.hidden.size();
    TRY(bool below, scan_dir(s, sub.get(), path, depth + 1));
    if (excluded) {
      if (below) {
        kept = true;  // an ignored directory kept for what is re-included in it
      } else {
        s.hidden.resize(mark);
        s.hidden.push_back(std::move(path));
      }
    }
  }
  return kept;
}

Result<void> copy_dir_owner_mode(const struct stat& st, const std::filesystem::path& dir) {
  if (::lchown(dir.c_str(), st.st_uid, st.st_gid) != 0 && ::geteuid() == 0) {
    return fail(Errc::io, fmt::format("{}: chown: {}", dir.string(), std::strerror(errno)));
  }
  if (::chmod(dir.c_str(), st.st_mode & 07777) != 0) {
    return fail(Errc::io, fmt::format("{}: chmod: {}", dir.string(), std::strerror(errno)));
  }
  return ok();
}

}  // namespace

Result<std::vector<std::string>> ignored_entries(const fs::Root& root, const IgnoreMatcher& ignore,
                                                 std::string_view sub_path) {
  std::vector<std::string> hidden;
  if (ignore.empty()) {
    return hidden;
  }
  std::string sub = fs::clean_path(sub_path);
  TRY(auto st, root.lstat(sub));
  if (!st) {
    return hidden;  // a missing source fails where it is used
  }
  bool is_dir = S_ISDIR(st->st_mode);
  bool excluded = !sub.empty() && ignore.excluded(sub);
  if (excluded && !(is_dir && ignore.has_exceptions())) {
    hidden.push_back(sub);
    return hidden;
  }
  if (!is_dir) {
    return hidden;
  }
  TRY(UniqueFd dir, root.open_at(sub, O_RDONLY | O_DIRECTORY));
  Scan s{ignore, hidden};
  TRY(bool kept, scan_dir(s, dir.get(), sub, 0));
  if (excluded && !kept) {
    hidden.assign(1, sub);
  }
  return hidden;
}

Result<size_t> write_whiteouts(const fs::Root& root, const std::vector<std::string>& hidden,
                               const std::filesystem::path& layer_dir) {
  // Directories created, with the context's stat to copy their times from
  // once nothing more is created in them.
  std::map<std::string, struct stat> made;
  for (const auto& path : hidden) {
    std::vector<std::string> comps = fs::clean_components(path);
    if (comps.empty()) {
      return fail(Errc::invalid_argument, "cannot hide the root of a context");
    }
    std::string prefix;
    for (size_t i = 0; i + 1 < comps.size(); ++i) {
      prefix = str::join_path(prefix, comps[i]);
      if (made.count(prefix) != 0) {
        continue;
      }
      TRY(auto st, root.lstat(prefix));
      if (!st || !S_ISDIR(st->st_mode)) {
        return fail(Errc::internal, fmt::format("/{}: not a directory in the context", prefix));
      }
      std::filesystem::path dir = layer_dir / prefix;
      if (::mkdir(dir.c_str(), 0700) != 0) {
        return fail(Errc::io, fmt::format("{}: mkdir: {}", dir.string(), std::strerror(errno)));
      }
      TRY_VOID(copy_dir_owner_mode(*st, dir));
      made.emplace(prefix, *st);
    }
    std::filesystem::path node = layer_dir / fs::clean_path(path);
    if (::mknod(node.c_str(), S_IFCHR | 0600, ::makedev(0, 0)) != 0) {
      return fail(Errc::io, fmt::format("{}: cannot create a whiteout: {}", node.string(), std::strerror(errno)));
    }
  }
  for (const auto& [prefix, st] : made) {
    std::filesystem::path dir = layer_dir / prefix;
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (::utimensat(AT_FDCWD, dir.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(Errc::io, fmt::format("{}: utimensat: {}", dir.string(), std::strerror(errno)));
    }
  }
  return hidden.size();
}

namespace {

// One walked entry made again at `target` (not the times of directories).
Result<void> copy_entry(const WalkEntry& e, const std::filesystem::path& target) {
  const struct stat& st = e.st;
  const std::string what = "/" + e.path;
  if (S_ISDIR(st.st_mode)) {
    if (::mkdir(target.c_str(), 0700) != 0 && errno != EEXIST) {
      return fail(Errc::io, fmt::format("{}: mkdir: {}", target.string(), std::strerror(errno)));
    }
  } else if (S_ISREG(st.st_mode)) {
    UniqueFd in(::openat(e.dirfd, e.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!in) {
      return fail(Errc::io, fmt::format("{}: open: {}", what, std::strerror(errno)));
    }
    UniqueFd out(::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) {
      return fail(Errc::io, fmt::format("{}: create: {}", target.string(), std::strerror(errno)));
    }
    TRY_VOID(fs::copy_data(in.get(), out.get(), what));
  } else if (S_ISLNK(st.st_mode)) {
    std::string link(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = ::readlinkat(e.dirfd, e.name.c_str(), link.data(), link.size());
    if (n < 0) {
      return fail(Errc::io, fmt::format("{}: readlink: {}", what, std::strerror(errno)));
    }
    link.resize(static_cast<size_t>(n));
    if (::symlink(link.c_str(), target.c_str()) != 0) {
      return fail(Errc::io, fmt::format("{}: symlink: {}", target.string(), std::strerror(errno)));
    }
  } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) {
    if (::mknod(target.c_str(), st.st_mode & (S_IFMT | 0600), st.st_rdev) != 0) {
      return fail(Errc::io, fmt::format("{}: mknod: {}", target.string(), std::strerror(errno)));
    }
  } else {
    return ok();  // a socket: nothing to copy
  }
  if (::lchown(target.c_str(), st.st_uid, st.st_gid) != 0 && ::geteuid() == 0) {
    return fail(Errc::io, fmt::format("{}: chown: {}", target.string(), std::strerror(errno)));
  }
  if (!S_ISLNK(st.st_mode) && ::chmod(target.c_str(), st.st_mode & 07777) != 0) {
    return fail(Errc::io, fmt::format("{}: chmod: {}", target.string(), std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (::utimensat(AT_FDCWD, target.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(Errc::io, fmt::format("{}: utimensat: {}", target.string(), std::strerror(errno)));
    }
  }
  return ok();
}

}  // namespace

Result<void> copy_filtered(const fs::Root& root, const IgnoreMatcher& ignore, std::string_view sub_path,
                           const std::filesystem::path& dest) {
  std::string sub = fs::clean_path(sub_path);
  SourceTree tree{&root, &ignore};
  // Directories get their times once everything below them exists.
  std::vector<std::pair<std::filesystem::path, struct stat>> dirs;
  // The parents of sub, as they are in the root.
  std::vector<std::string> comps = fs::clean_components(sub);
  std::string prefix;
  for (size_t i = 0; i + 1 < comps.size(); ++i) {
    prefix = str::join_path(prefix, comps[i]);
    TRY(auto st, root.lstat(prefix));
    if (!st || !S_ISDIR(st->st_mode)) {
      return ok();  // sub is missing: nothing to copy
    }
    std::filesystem::path target = dest / prefix;
    if (::mkdir(target.c_str(), 0700) != 0) {
      return fail(Errc::io, fmt::format("{}: mkdir: {}", target.string(), std::strerror(errno)));
    }
    TRY_VOID(copy_dir_owner_mode(*st, target));
    dirs.emplace_back(target, *st);
  }
  TRY(auto top, root.lstat(sub));
  if (!top || (!sub.empty() && ignore.excluded(sub) && !(S_ISDIR(top->st_mode) && ignore.has_exceptions()))) {
    return ok();  // missing or hidden: absent from the copy
  }
  SelectedSource source;
  source.path = sub;
  source.named_path = sub;
  source.st = *top;
  auto visit = [&](const WalkEntry& e) -> Result<void> {
    std::filesystem::path target = e.path.empty() ? dest : dest / e.path;
    TRY_VOID(copy_entry(e, target));
    if (S_ISDIR(e.st.st_mode)) {
      dirs.emplace_back(target, e.st);
    }
    return ok();
  };
  TRY_VOID(walk_source(tree, source, nullptr, visit));
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    struct timespec times[2] = {it->second.st_atim, it->second.st_mtim};
    if (::utimensat(AT_FDCWD, it->first.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(Errc::io, fmt::format("{}: utimensat: {}", it->first.string(), std::strerror(errno)));
    }
  }
  return ok();
}

}  // namespace imgbuild::builder
