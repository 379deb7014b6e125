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

TempTree::~TempTree() {
  if (!m_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(m_dir, ec);
  }
}

}  // namespace imgbuild::builder
