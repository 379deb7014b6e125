// Build context opening, source selection, the source walk and its digest.

#include "builder/context.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <set>
#include <utility>

#include "parser/syntax/parse.hpp"
#include "snapshot/apply.hpp"
#include "util/fs.hpp"
#include "util/strings.hpp"
#include "util/tar.hpp"

namespace imgbuild::builder {
namespace {

constexpr int k_max_symlinks = 40;
// The Dockerfile (and .dockerignore) size limit: the parser's, so that
// build -f, parse -f and check -f refuse the same files.
constexpr size_t k_max_dockerfile = parser::k_max_dockerfile_size;

using str::join_path;

std::string errno_message(int e) { return std::strerror(e); }

// Reads a host file (following symlinks); nullopt when it does not exist.
Result<std::optional<std::string>> read_host_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return std::optional<std::string>();
    }
    return fail(Errc::io, fmt::format("{}: {}", path, errno_message(errno)));
  }
  UniqueFd owned(fd);
  TRY(auto text, io::read_all(fd, path, k_max_dockerfile));
  return std::optional<std::string>(std::move(text));
}

// Reads a file inside a root (contained); nullopt when it does not exist.
Result<std::optional<std::string>> read_root_file(const fs::Root& root, std::string_view path) {
  return root.read_file(path, k_max_dockerfile);
}

// A stdin stream kept in a file so it can be read twice (probe, then apply).
Result<UniqueFd> spool_stdin(int in_fd, const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(Errc::io, fmt::format("creating a temporary file in {}: {}", dir, errno_message(errno)));
  }
  UniqueFd out(fd);
  TRY_VOID(fs::copy_data(in_fd, fd, "the build context from stdin"));
  return out;
}

// Whether the real path is hidden by the tree's ignore patterns.
bool ignored(const SourceTree& tree, std::string_view real) {
  return tree.ignore != nullptr && !real.empty() && tree.ignore->excluded(real);
}

// Whether any entry below the directory at real path `dir` survives the
// ignore patterns (only asked when the directory itself is excluded).
Result<bool> has_included_below(const SourceTree& tree, const std::string& dir) {
  if (tree.ignore == nullptr || !tree.ignore->has_exceptions()) {
    return false;
  }
  SelectedSource s;
  s.path = dir;
  TRY(auto st, tree.root->lstat(dir));
  if (!st) {
    return false;
  }
  s.st = *st;
  bool found = false;
  // walk_source visits the excluded dir itself only when something below is
  // included, so any visit at all answers the question.
  auto r = walk_source(tree, s, nullptr, [&](const WalkEntry&) -> Result<void> {
    found = true;
    return fail(Errc::internal, "stop");
  });
  if (!r && !found) {
    return fail(std::move(r).error());
  }
  return found;
}

struct WalkState {
  const SourceTree& tree;
  const IgnoreMatcher* excludes;
  const SelectedSource& source;
  const std::function<Result<void>(const WalkEntry&)>& visit;
  /// Excluded directories entered but not yet emitted (emitted once
  /// something below them is included). Each holds its own open parent fd.
  std::vector<std::pair<WalkEntry, UniqueFd>> pending;
};

bool entry_excluded(const WalkState& w, const std::string& real, const std::string& rel) {
  if (ignored(w.tree, real)) {
    return true;
  }
  if (w.excludes != nullptr && !w.excludes->empty()) {
    std::string er = join_path(w.source.exclude_rel, rel);
    if (!er.empty() && w.excludes->excluded(er)) {
      return true;
    }
  }
  return false;
}

bool may_include_below(const WalkState& w) {
  return (w.tree.ignore != nullptr && w.tree.ignore->has_exceptions()) ||
         (w.excludes != nullptr && w.excludes->has_exceptions());
}

Result<void> flush_pending(WalkState& w) {
  for (auto& [entry, fd] : w.pending) {
    if (fd.valid()) {
      entry.dirfd = fd.get();
      TRY_VOID(w.visit(entry));
      fd.reset();
    }
  }
  return ok();
}

Result<void> walk_dir(WalkState& w, int dirfd, const std::string& real, const std::string& rel) {
  TRY(auto names, fs::list_dir(dirfd));
  for (const auto& name : names) {
    WalkEntry e;
    e.path = join_path(real, name);
    e.rel = join_path(rel, name);
    e.name = name;
    e.dirfd = dirfd;
    if (::fstatat(dirfd, name.c_str(), &e.st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) {
        continue;  // vanished while walking
      }
      return fail(Errc::io, fmt::format("{}: lstat: {}", e.path, errno_message(errno)));
    }
    bool is_dir = S_ISDIR(e.st.st_mode);
    bool excluded = entry_excluded(w, e.path, e.rel);
    if (excluded && !(is_dir && may_include_below(w))) {
      continue;
    }
    if (!excluded) {
      TRY_VOID(flush_pending(w));
      TRY_VOID(w.visit(e));
    }
    if (!is_dir) {
      continue;
    }
    int sub = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      return fail(Errc::io, fmt::format("{}: open: {}", e.path, errno_message(errno)));
    }
    UniqueFd subfd(sub);
    if (excluded) {
      int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
      if (dup < 0) {
        return fail(Errc::io, fmt::format("dup: {}", errno_message(errno)));
      }
      w.pending.emplace_back(e, UniqueFd(dup));
    }
    TRY_VOID(walk_dir(w, subfd.get(), e.path, e.rel));
    if (excluded) {
      w.pending.pop_back();
    }
  }
  return ok();
}

}  // namespace

std::string not_found_message(std::string_view source) {
  return fmt::format("failed to compute cache key: \"/{}\": not found", fs::clean_path(source));
}

// ---------------------------------------------------------------- context

Result<BuildContext> BuildContext::from_dir(const std::string& dir) {
  BuildContext c;
  TRY(c.m_root, fs::Root::open(dir));
  c.m_dir = dir;
  TRY(auto text, read_root_file(c.m_root, ".dockerignore"));
  if (text) {
    TRY(c.m_ignore, IgnoreMatcher::parse(*text, ".dockerignore"));
    c.m_ignore_file = ".dockerignore";
  }
  return c;
}

Result<BuildContext> BuildContext::open(const ContextOptions& options) {
  if (options.context.empty()) {
    return fail(Errc::invalid_argument, "no build context given");
  }
  BuildContext c;
  bool ignore_next_to_dockerfile = false;
  std::string dockerfile_host_path;  // set when the Dockerfile is a host path

  if (options.context == "-") {
    if (options.dockerfile == "-") {
      return fail(Errc::invalid_argument, "can't use stdin for both build context and dockerfile");
    }
    TRY(c.m_temp_dir, io::TempDir::create(options.temp_parent, "imgbuild-context-"));
    c.m_dir = c.m_temp_dir.path() + "/context";
    if (::mkdir(c.m_dir.c_str(), 0755) != 0) {
      return fail(Errc::io, fmt::format("{}: mkdir: {}", c.m_dir, errno_message(errno)));
    }
    TRY(auto spool, spool_stdin(options.stdin_fd, c.m_temp_dir.path()));
    TRY(c.m_root, fs::Root::open(c.m_dir));
    if (tar::starts_with_archive(spool.get())) {
      if (::lseek(spool.get(), 0, SEEK_SET) != 0) {
        return fail(Errc::io, "rewinding the stdin context failed");
      }
      TRY(auto reader, tar::Reader::open_fd(spool.get(), "build context from stdin"));
      snapshot::ApplyOptions ao;
      ao.mode = snapshot::ApplyMode::merged;
      ao.ownership = ::geteuid() == 0 ? snapshot::Ownership::apply : snapshot::Ownership::ignore;
      TRY(auto applied, snapshot::apply_layer(c.m_root, *reader, ao));
      (void)applied;
      std::string name = options.dockerfile.empty() ? "Dockerfile" : options.dockerfile;
      TRY(auto text, read_root_file(c.m_root, name));
      if (!text && options.dockerfile.empty()) {
        TRY(text, read_root_file(c.m_root, "dockerfile"));
        if (text) {
          name = "dockerfile";
        }
      }
      if (!text) {
        return fail(Errc::not_found,
                    fmt::format("failed to read dockerfile: open {}: no such file or directory", name));
      }
      c.m_dockerfile_text = std::move(*text);
      c.m_dockerfile_name = name;
      ignore_next_to_dockerfile = true;
    } else {
      // Not an archive: the stream is the Dockerfile, the context is empty.
      if (::lseek(spool.get(), 0, SEEK_SET) != 0) {
        return fail(Errc::io, "rewinding stdin failed");
      }
      TRY(c.m_dockerfile_text, io::read_all(spool.get(), "the Dockerfile from stdin", k_max_dockerfile));
      c.m_dockerfile_name = "-";
    }
  } else {
    // As buildx words it; checked first, so that a mistyped context (or a
    // subcommand taken for one) is named as such.
    struct stat st {};
    if (::stat(options.context.c_str(), &st) != 0) {
      return fail(Errc::not_found, fmt::format("unable to prepare context: path {} not found",
                                               str::go_quote(options.context)));
    }
    if (!S_ISDIR(st.st_mode)) {
      return fail(Errc::invalid_argument, fmt::format("context {} is not a directory", options.context));
    }
    TRY(c.m_root, fs::Root::open(options.context));
    c.m_dir = options.context;
    if (options.dockerfile == "-") {
      TRY(c.m_dockerfile_text, io::read_all(options.stdin_fd, "the Dockerfile from stdin", k_max_dockerfile));
      c.m_dockerfile_name = "-";
    } else if (options.dockerfile.empty()) {
      TRY(auto text, read_root_file(c.m_root, "Dockerfile"));
      std::string name = "Dockerfile";
      if (!text) {
        TRY(text, read_root_file(c.m_root, "dockerfile"));
        name = "dockerfile";
      }
      if (!text) {
        return fail(Errc::not_found, fmt::format("failed to read dockerfile: open {}/Dockerfile: no such file or directory",
                                                 options.context));
      }
      c.m_dockerfile_text = std::move(*text);
      c.m_dockerfile_name = name;
      ignore_next_to_dockerfile = true;
    } else {
      TRY(auto text, read_host_file(options.dockerfile));
      if (!text) {
        return fail(Errc::not_found, fmt::format("failed to read dockerfile: open {}: no such file or directory",
                                                 options.dockerfile));
      }
      c.m_dockerfile_text = std::move(*text);
      c.m_dockerfile_name = options.dockerfile;
      dockerfile_host_path = options.dockerfile;
    }
  }

  // <Dockerfile>.dockerignore next to the Dockerfile wins over .dockerignore.
  std::optional<std::string> ignore_text;
  if (!dockerfile_host_path.empty()) {
    TRY(ignore_text, read_host_file(dockerfile_host_path + ".dockerignore"));
    if (ignore_text) {
      c.m_ignore_file = dockerfile_host_path + ".dockerignore";
    }
  } else if (ignore_next_to_dockerfile) {
    TRY(ignore_text, read_root_file(c.m_root, c.m_dockerfile_name + ".dockerignore"));
    if (ignore_text) {
      c.m_ignore_file = c.m_dockerfile_name + ".dockerignore";
    }
  }
  if (!ignore_text) {
    TRY(ignore_text, read_root_file(c.m_root, ".dockerignore"));
    if (ignore_text) {
      c.m_ignore_file = ".dockerignore";
    }
  }
  if (ignore_text) {
    TRY(c.m_ignore, IgnoreMatcher::parse(*ignore_text, c.m_ignore_file));
  }
  return c;
}

// ---------------------------------------------------------------- selection

Result<std::string> resolve_real_path(const fs::Root& root, std::string_view path, bool follow_final) {
  std::deque<std::string> pending;
  for (auto& c : fs::clean_components(path)) {
    pending.push_back(std::move(c));
  }
  std::vector<std::string> resolved;
  int links = 0;
  while (!pending.empty()) {
    std::string c = std::move(pending.front());
    pending.pop_front();
    if (c.empty() || c == ".") {
      continue;
    }
    if (c == "..") {
      if (!resolved.empty()) {
        resolved.pop_back();
      }
      continue;
    }
    resolved.push_back(c);
    std::string candidate = fs::join_components(resolved, resolved.size());
    TRY(auto st, root.lstat(candidate));
    if (!st) {
      // Missing: keep the rest as named (cleaned lexically).
      while (!pending.empty()) {
        std::string r = std::move(pending.front());
        pending.pop_front();
        if (r == "..") {
          if (!resolved.empty()) {
            resolved.pop_back();
          }
        } else if (!r.empty() && r != ".") {
          resolved.push_back(std::move(r));
        }
      }
      break;
    }
    if (S_ISLNK(st->st_mode) && (!pending.empty() || follow_final)) {
      if (++links > k_max_symlinks) {
        return fail(Errc::invalid_argument,
                    fmt::format("{}: too many levels of symbolic links", fs::clean_path(path)));
      }
      TRY(auto target, root.readlink(candidate));
      resolved.pop_back();
      if (!target.empty() && target[0] == '/') {
        resolved.clear();
      }
      std::vector<std::string> parts = str::split(target, '/');
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        pending.push_front(std::move(*it));
      }
    }
  }
  return fs::join_components(resolved, resolved.size());
}

Result<std::vector<SelectedSource>> select_sources(const SourceTree& tree, std::string_view source,
                                                   const IgnoreMatcher* excludes, bool double_star) {
  if (tree.root == nullptr) {
    return fail(Errc::internal, "select_sources: no source root");
  }
  const fs::Root& root = *tree.root;
  std::vector<std::string> comps = fs::clean_components(source);
  size_t first_wild = comps.size();
  for (size_t i = 0; i < comps.size(); ++i) {
    if (has_wildcards(comps[i])) {
      first_wild = i;
      break;
    }
  }
  std::vector<SelectedSource> out;

  if (first_wild == comps.size()) {
    std::string named = fs::join_components(comps, comps.size());
    TRY(auto real, resolve_real_path(root, named, true));
    TRY(auto st, root.lstat(real));
    if (!st || S_ISLNK(st->st_mode)) {
      return fail(Errc::not_found, not_found_message(named));
    }
    if (ignored(tree, real)) {
      bool keep = false;
      if (S_ISDIR(st->st_mode)) {
        TRY(keep, has_included_below(tree, real));
      }
      if (!keep) {
        return fail(Errc::not_found, not_found_message(named));
      }
    }
    SelectedSource s;
    s.path = real;
    s.named_path = named;
    s.st = *st;
    out.push_back(std::move(s));
    return out;
  }

  for (const auto& c : comps) {
    if (has_wildcards(c)) {
      TRY_VOID(validate_pattern(c));
    }
  }

  // Expand component by component: (named, real) pairs still alive.
  std::vector<std::pair<std::string, std::string>> states;
  {
    std::string base = fs::join_components(comps, first_wild);
    TRY(auto real, resolve_real_path(root, base, true));
    states.emplace_back(base, real);
  }
  for (size_t i = first_wild; i < comps.size(); ++i) {
    std::vector<std::pair<std::string, std::string>> next;
    if (double_star && comps[i] == "**") {
      // The directory itself and every directory below it (not following
      // symlinks), each once.
      std::set<std::string> seen;
      std::vector<std::pair<std::string, std::string>> todo(states.rbegin(), states.rend());
      while (!todo.empty()) {
        auto [named, real] = todo.back();
        todo.pop_back();
        if (!seen.insert(named).second) {
          continue;
        }
        next.emplace_back(named, real);
        auto dir = root.open_at(real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (!dir) {
          continue;
        }
        TRY(auto names, fs::list_dir(dir->get()));
        for (auto it = names.rbegin(); it != names.rend(); ++it) {
          TRY(auto st, root.lstat(join_path(real, *it)));
          if (st && S_ISDIR(st->st_mode)) {
            todo.emplace_back(join_path(named, *it), join_path(real, *it));
          }
        }
      }
      states = std::move(next);
      continue;
    }
    for (const auto& [named, real] : states) {
      if (!has_wildcards(comps[i])) {
        TRY(auto r, resolve_real_path(root, join_path(real, comps[i]), true));
        TRY(auto st, root.lstat(r));
        if (st) {
          next.emplace_back(join_path(named, comps[i]), r);
        }
        continue;
      }
      auto dir = root.open_at(real, O_RDONLY | O_DIRECTORY);
      if (!dir) {
        continue;  // not a directory (or gone): nothing matches below it
      }
      TRY(auto names, fs::list_dir(dir->get()));
      for (const auto& n : names) {
        if (!match_component(comps[i], n)) {
          continue;
        }
        TRY(auto r, resolve_real_path(root, join_path(real, n), true));
        next.emplace_back(join_path(named, n), r);
      }
    }
    states = std::move(next);
  }
  if (double_star) {
    std::sort(states.begin(), states.end());  // ** expands depth first
  }

  std::string base_named = fs::join_components(comps, first_wild);
  for (const auto& [named, real] : states) {
    TRY(auto st, root.lstat(real));
    if (!st || S_ISLNK(st->st_mode)) {
      continue;  // dangling symlink
    }
    if (ignored(tree, real)) {
      bool keep = false;
      if (S_ISDIR(st->st_mode)) {
        TRY(keep, has_included_below(tree, real));
      }
      if (!keep) {
        continue;
      }
    }
    SelectedSource s;
    s.path = real;
    s.named_path = named;
    s.exclude_rel = base_named.empty() ? named : named.substr(base_named.size() + 1);
    s.st = *st;
    if (excludes != nullptr && !excludes->empty() && excludes->excluded(s.exclude_rel) &&
        !(S_ISDIR(st->st_mode) && excludes->has_exceptions())) {
      continue;
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<void> walk_source(const SourceTree& tree, const SelectedSource& source, const IgnoreMatcher* excludes,
                         const std::function<Result<void>(const WalkEntry&)>& visit) {
  const fs::Root& root = *tree.root;
  WalkState w{tree, excludes, source, visit, {}};
  // The source itself: its parent directory fd and name.
  UniqueFd parent_fd;
  std::string name;
  if (source.path.empty()) {
    TRY(parent_fd, root.open_at("", O_PATH | O_DIRECTORY));
    name = ".";
  } else {
    TRY(auto pr, root.parent(source.path));
    parent_fd = std::move(pr.dir);
    name = pr.name;
  }
  WalkEntry top;
  top.path = source.path;
  top.rel = "";
  top.name = name;
  top.dirfd = parent_fd.get();
  if (::fstatat(parent_fd.get(), name.c_str(), &top.st, AT_SYMLINK_NOFOLLOW) != 0) {
    return fail(Errc::not_found, not_found_message(source.named_path));
  }
  if (!S_ISDIR(top.st.st_mode)) {
    return visit(top);
  }
  bool top_excluded = ignored(tree, source.path);
  if (top_excluded) {
    int dup = ::fcntl(parent_fd.get(), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      return fail(Errc::io, fmt::format("dup: {}", errno_message(errno)));
    }
    w.pending.emplace_back(top, UniqueFd(dup));
  } else {
    TRY_VOID(visit(top));
  }
  int sub = ::openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sub < 0) {
    return fail(Errc::io, fmt::format("/{}: open: {}", source.path, errno_message(errno)));
  }
  UniqueFd subfd(sub);
  return walk_dir(w, subfd.get(), source.path, "");
}

}  // namespace imgbuild::builder
