// Layer diff. Both sources feed one comparison (see diff.hpp for the rules):
// compare_dir() looks at one directory present on both sides, classifies its
// children (deleted, new, changed, the same, directory on both sides) and
// records changes; afterwards the changes are sorted and written.
// Only headers are kept in memory; file bodies are streamed at write time.
//
// The old side is a Layers view: a stack of directories looked up the way
// overlayfs does (a 0:0 device hides what is below, a non-directory blocks
// paths through it, an opaque directory stops the lookup). A plain tree is a
// stack of one without whiteout semantics. No symlink is ever followed.

#include "snapshot/diff.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "util/fs.hpp"
#include "util/strings.hpp"

namespace imgbuild::snapshot {

namespace {

// A filesystem object found on one side.
struct Node {
  struct stat st {};
  std::string target;  // symlink target
  fs::Xattrs xattrs;   // without overlay-private names
  bool opaque = false; // overlay opaque directory marker was present
};

bool is_whiteout_dev(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0); }

using str::join_path;

Error sys_error(int err, const std::string& where, std::string_view what) {
  return Error(Errc::io, fmt::format("{}: {}: {}", where, what, std::strerror(err)));
}

// Reads the node dirfd/name: stat, link target, xattrs (overlay ones
// interpreted and dropped).
Result<Node> read_node(int dirfd, const std::string& name, const std::string& where, bool overlay_upper) {
  Node n;
  if (::fstatat(dirfd, name.c_str(), &n.st, AT_SYMLINK_NOFOLLOW) != 0) {
    return fail(sys_error(errno, where, "lstat"));
  }
  if (S_ISLNK(n.st.st_mode)) {
    std::string buf(static_cast<size_t>(n.st.st_size) + 1, '\0');
    ssize_t len = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
    if (len < 0) {
      return fail(sys_error(errno, where, "readlink"));
    }
    buf.resize(static_cast<size_t>(len));
    n.target = std::move(buf);
  }
  TRY(auto xs, fs::xattrs_at(dirfd, name));
  for (auto& [k, v] : xs) {
    bool trusted = k.rfind("trusted.overlay.", 0) == 0;
    bool user = k.rfind("user.overlay.", 0) == 0;
    if (!trusted && !user) {
      n.xattrs.emplace_back(std::move(k), std::move(v));
      continue;
    }
    std::string_view key = std::string_view(k).substr(trusted ? 16 : 13);
    if (key == "opaque" && v == "y") {
      n.opaque = true;
    } else if (overlay_upper && (key == "redirect" || key == "metacopy")) {
      return fail(Errc::unsupported,
                  fmt::format("{}: overlay xattr {} is not supported (mount with redirect_dir=off,metacopy=off)",
                              where, k));
    }
  }
  return n;
}

// Opens dirfd/name as a directory without following it.
Result<UniqueFd> open_dir_at(int dirfd, const std::string& name, const std::string& where) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return fail(sys_error(errno, where, "open directory"));
  }
  return UniqueFd(fd);
}

// The old side: a stack of directories, top first.
class Layers {
public:
  Layers(std::vector<fs::Root> roots, bool whiteouts) : m_roots(std::move(roots)), m_whiteouts(whiteouts) {}

  // The node at path, if visible.
  Result<std::optional<Node>> lookup(const std::string& path) {
    auto comps = fs::clean_components(path);
    for (auto& root : m_roots) {
      TRY(auto p, probe(root, comps));
      if (p.state == State::present) {
        return std::optional<Node>(std::move(p.node));
      }
      if (p.state == State::hidden || p.stop) {
        return std::optional<Node>();
      }
    }
    return std::optional<Node>();
  }

  // Visible names in the directory at path (which lookup found).
  Result<std::set<std::string>> list(const std::string& path) {
    auto comps = fs::clean_components(path);
    std::set<std::string> names;
    std::set<std::string> hidden;
    for (auto& root : m_roots) {
      TRY(auto p, probe(root, comps));
      if (p.state == State::hidden) {
        break;
      }
      if (p.state == State::present) {
        if (!S_ISDIR(p.node.st.st_mode)) {
          break;
        }
        TRY(auto children, fs::list_dir(p.dir.get()));
        for (auto& c : children) {
          if (names.count(c) != 0 || hidden.count(c) != 0) {
            continue;
          }
          struct stat st {};
          if (::fstatat(p.dir.get(), c.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            return fail(sys_error(errno, root.label() + "/" + join_path(path, c), "lstat"));
          }
          if (m_whiteouts && is_whiteout_dev(st)) {
            hidden.insert(c);
          } else {
            names.insert(c);
          }
        }
        if (p.node.opaque && m_whiteouts) {
          break;
        }
      }
      if (p.stop) {
        break;
      }
    }
    return names;
  }

  // Opens a regular file for reading (the topmost visible one).
  Result<UniqueFd> open_file(const std::string& path) {
    auto comps = fs::clean_components(path);
    for (auto& root : m_roots) {
      TRY(auto p, probe(root, comps));
      if (p.state == State::present) {
        int fd = ::openat(p.parent.get(), comps.back().c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
          return fail(sys_error(errno, root.label() + "/" + path, "open"));
        }
        return UniqueFd(fd);
      }
      if (p.state == State::hidden || p.stop) {
        break;
      }
    }
    return fail(Errc::not_found, path + ": not found");
  }

private:
  enum class State { absent, hidden, present };
  struct Probe {
    State state = State::absent;
    bool stop = false;  // an opaque directory above: lower layers do not count
    Node node;
    UniqueFd parent;  // directory holding the final component
    UniqueFd dir;     // the node itself when it is a directory
  };

  Result<Probe> probe(const fs::Root& root, const std::vector<std::string>& comps) {
    Probe p;
    UniqueFd cur(::openat(root.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cur) {
      return fail(sys_error(errno, root.label(), "open"));
    }
    if (comps.empty()) {
      p.state = State::present;
      if (::fstat(cur.get(), &p.node.st) != 0) {
        return fail(sys_error(errno, root.label(), "stat"));
      }
      p.dir = std::move(cur);
      return p;
    }
    std::string where = root.label();
    for (size_t i = 0; i < comps.size(); ++i) {
      where += "/" + comps[i];
      struct stat st {};
      if (::fstatat(cur.get(), comps[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
          p.state = State::absent;
          return p;
        }
        return fail(sys_error(errno, where, "lstat"));
      }
      if (m_whiteouts && is_whiteout_dev(st)) {
        p.state = State::hidden;
        return p;
      }
      bool last = i + 1 == comps.size();
      if (last) {
        TRY(p.node, read_node(cur.get(), comps[i], where, false));
        p.state = State::present;
        if (S_ISDIR(st.st_mode)) {
          TRY(p.dir, open_dir_at(cur.get(), comps[i], where));
        }
        p.parent = std::move(cur);
        return p;
      }
      if (!S_ISDIR(st.st_mode)) {
        p.state = State::hidden;  // a non-directory blocks every path through it
        return p;
      }
      if (m_whiteouts) {
        TRY(auto node, read_node(cur.get(), comps[i], where, false));
        if (node.opaque) {
          p.stop = true;
        }
      }
      TRY(auto next, open_dir_at(cur.get(), comps[i], where));
      cur = std::move(next);
    }
    return p;
  }

  std::vector<fs::Root> m_roots;
  bool m_whiteouts;
};

enum class ChangeKind { entry, whiteout };

struct Change {
  std::string path;
  ChangeKind kind = ChangeKind::entry;
  Node node;
};

// The value of a security.capability xattr ("" when absent).
std::string_view capability(const Node& n) {
  for (const auto& [k, v] : n.xattrs) {
    if (k == "security.capability") {
      return v;
    }
  }
  return {};
}

// Reads up to n bytes (fewer only at the end of the file).
Result<size_t> read_up_to(int fd, char* buf, size_t n, const std::string& where) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      return fail(sys_error(errno, where, "read"));
    }
    if (r == 0) {
      break;
    }
    got += static_cast<size_t>(r);
  }
  return got;
}

// Whether two regular files hold the same bytes.
Result<bool> same_content(int a, int b, const std::string& where) {
  std::string ba(64 * 1024, '\0');
  std::string bb(64 * 1024, '\0');
  while (true) {
    TRY(size_t na, read_up_to(a, ba.data(), ba.size(), where));
    TRY(size_t nb, read_up_to(b, bb.data(), bb.size(), where));
    if (na != nb || std::memcmp(ba.data(), bb.data(), na) != 0) {
      return false;
    }
    if (na < ba.size()) {
      return true;
    }
  }
}

bool same_type(const Node& o, const Node& n) { return (o.st.st_mode & S_IFMT) == (n.st.st_mode & S_IFMT); }

// The new side: a plain tree (diff_trees) or an overlay upper dir whose
// directories may or may not merge with the lower layers.
class Differ {
public:
  Differ(Layers& old_side, const fs::Root& new_root, bool overlay, std::optional<int64_t> source_date_epoch)
      : m_old(old_side), m_new(new_root), m_overlay(overlay), m_epoch(source_date_epoch) {}

  Result<void> run() {
    UniqueFd top(::openat(m_new.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!top) {
      return fail(sys_error(errno, m_new.label(), "open"));
    }
    // The root is a directory on both sides (an empty old side lists
    // nothing); in overlay mode it merges with the lowers.
    TRY(bool emitted, compare_dir("", top.get(), !m_overlay));
    (void)emitted;
    return ok();
  }

  std::vector<Change>& changes() { return m_changes; }

private:
  // path is a directory on both sides; dirfd is its new-side fd. `complete`:
  // the new side lists the whole directory (a tree, or an overlay directory
  // below an opaque one), so old names it lacks were deleted; otherwise
  // (overlay) it lists only what the step touched. Returns whether anything
  // under path was recorded.
  Result<bool> compare_dir(const std::string& path, int dirfd, bool complete) {
    TRY_VOID(check_depth(path));
    // The overlay diff looks up only what the upper dir names, so its cost
    // follows the change, not the size of the lower directory.
    std::set<std::string> old_names;
    if (complete) {
      TRY(old_names, m_old.list(path));
    }
    TRY(auto new_names, fs::list_dir(dirfd));
    std::set<std::string> present;  // new-side names that are not whiteouts
    std::vector<std::string> deleted;
    bool emitted = false;
    for (const auto& name : new_names) {
      std::string child = join_path(path, name);
      std::string where = m_new.label() + "/" + child;
      TRY(Node n, read_node(dirfd, name, where, m_overlay));
      if (m_overlay && is_whiteout_dev(n.st)) {
        TRY(auto beneath, m_old.lookup(child));
        if (beneath && !complete) {
          deleted.push_back(name);
        }
        continue;
      }
      present.insert(name);
      if (S_ISSOCK(n.st.st_mode)) {
        continue;
      }
      std::optional<Node> o;
      if (!complete || old_names.count(name) != 0) {
        TRY(o, m_old.lookup(child));
      }
      if (!o) {
        TRY_VOID(add_subtree(child, dirfd, name, std::move(n)));
        emitted = true;
        continue;
      }
      if (S_ISDIR(o->st.st_mode) && S_ISDIR(n.st.st_mode)) {
        // A directory deleted and made again (overlay: opaque) is compared
        // name by name with the old one, as BuildKit's differ does: no
        // opaque marker, a whiteout for each old name.
        TRY(auto sub, open_dir_at(dirfd, name, where));
        TRY(bool sub_emitted, compare_dir(child, sub.get(), complete || n.opaque));
        TRY(bool same, same_dirent(*o, n, child, dirfd, name));
        if (sub_emitted || !same) {
          record(child, std::move(n));
          emitted = true;
        }
        continue;
      }
      if (same_type(*o, n)) {
        TRY(bool same, same_dirent(*o, n, child, dirfd, name));
        if (same) {
          continue;
        }
      }
      TRY_VOID(add_subtree(child, dirfd, name, std::move(n)));
      emitted = true;
    }
    if (complete) {
      for (const auto& name : old_names) {
        if (present.count(name) == 0) {
          deleted.push_back(name);
        }
      }
    }
    std::sort(deleted.begin(), deleted.end());
    for (const auto& name : deleted) {
      m_changes.push_back(Change{join_path(path, std::string(tar::k_whiteout_prefix) + name), ChangeKind::whiteout, {}});
      emitted = true;
    }
    return emitted;
  }

  // BuildKit v0.22's test of an entry present on both sides (its overlay
  // differ's sameDirent; continuity's sameFile for the tree walk): the same
  // when type, mode, owner, device numbers and security.capability match,
  // and for a non-directory also size and mtime seconds; then, when both
  // mtimes have no nanoseconds (both may come from a tar), the link target
  // or the bytes decide, else the nanoseconds. A directory's mtime and
  // other xattrs do not count.
  Result<bool> same_dirent(const Node& o, const Node& n, const std::string& path, int dirfd,
                           const std::string& name) {
    const struct stat& a = o.st;
    const struct stat& b = n.st;
    if (a.st_mode != b.st_mode || a.st_uid != b.st_uid || a.st_gid != b.st_gid || a.st_rdev != b.st_rdev) {
      return false;
    }
    if (capability(o) != capability(n)) {
      return false;
    }
    if (S_ISDIR(a.st_mode)) {
      return true;
    }
    const timespec ta = as_written(a.st_mtim);
    const timespec tb = as_written(b.st_mtim);
    if (a.st_size != b.st_size || ta.tv_sec != tb.tv_sec) {
      return false;
    }
    if (ta.tv_nsec != 0 || tb.tv_nsec != 0) {
      return ta.tv_nsec == tb.tv_nsec;
    }
    if (S_ISLNK(a.st_mode)) {
      return o.target == n.target;
    }
    if (!S_ISREG(a.st_mode) || a.st_size == 0) {
      return true;
    }
    TRY(auto old_fd, m_old.open_file(path));
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      return fail(sys_error(errno, m_new.label() + "/" + path, "open"));
    }
    UniqueFd new_fd(fd);
    return same_content(old_fd.get(), new_fd.get(), m_new.label() + "/" + path);
  }

  // Records a new-side entry and, for a directory, everything beneath it.
  Result<void> add_subtree(const std::string& path, int parentfd, const std::string& name, Node n) {
    TRY_VOID(check_depth(path));
    bool is_dir = S_ISDIR(n.st.st_mode);
    record(path, std::move(n));
    if (!is_dir) {
      return ok();
    }
    TRY(auto dir, open_dir_at(parentfd, name, m_new.label() + "/" + path));
    TRY(auto names, fs::list_dir(dir.get()));
    for (const auto& c : names) {
      std::string child = join_path(path, c);
      TRY(Node cn, read_node(dir.get(), c, m_new.label() + "/" + child, m_overlay));
      if ((m_overlay && is_whiteout_dev(cn.st)) || S_ISSOCK(cn.st.st_mode)) {
        continue;  // nothing lies beneath a new or opaque directory
      }
      TRY_VOID(add_subtree(child, dir.get(), c, std::move(cn)));
    }
    return ok();
  }

  // Hostile trees may nest arbitrarily deep; the walk recurses per level.
  Result<void> check_depth(const std::string& path) const {
    size_t depth = path.empty() ? 0 : static_cast<size_t>(std::count(path.begin(), path.end(), '/')) + 1;
    if (depth > fs::k_max_depth) {
      return fail(Errc::limit, fmt::format("{}/{}: directories nested deeper than {} levels", m_new.label(),
                                           path.substr(0, 200) + "…", fs::k_max_depth));
    }
    return ok();
  }

  void record(const std::string& path, Node n) { m_changes.push_back(Change{path, ChangeKind::entry, std::move(n)}); }

  // A time as the layer records it: with SOURCE_DATE_EPOCH, a later time
  // is the epoch. So whether an entry changed depends only on what the
  // layers record (an old side unpacked from an earlier build's identical
  // layer may hold other times on disk), and builds stay reproducible.
  timespec as_written(const timespec& t) const {
    if (m_epoch && (t.tv_sec > *m_epoch || (t.tv_sec == *m_epoch && t.tv_nsec > 0))) {
      return timespec{static_cast<time_t>(*m_epoch), 0};
    }
    return t;
  }

  Layers& m_old;
  const fs::Root& m_new;
  bool m_overlay;
  std::optional<int64_t> m_epoch;
  std::vector<Change> m_changes;
};

Result<DiffResult> write_changes(std::vector<Change>& changes, const fs::Root& source, const tar::WriteFn& out,
                                 const DiffOptions& options) {
  std::sort(changes.begin(), changes.end(),
            [](const Change& a, const Change& b) { return tar::layer_path_less(a.path, b.path); });
  TRY(auto writer, tar::Writer::open(out, {.compression = options.compression, .gzip_level = options.gzip_level}));
  std::map<std::pair<dev_t, ino_t>, std::string> first_link;
  DiffResult result;
  for (auto& c : changes) {
    tar::Entry e;
    e.path = c.path;
    ++result.entries;
    if (c.kind != ChangeKind::entry) {
      e.type = tar::EntryType::file;
      e.mode = 0644;
      TRY_VOID(writer->add(e));
      continue;
    }
    const struct stat& st = c.node.st;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime_sec = st.st_mtim.tv_sec;
    e.mtime_nsec = options.mtime_precision == MtimePrecision::nanoseconds ? static_cast<uint32_t>(st.st_mtim.tv_nsec)
                                                                           : 0;
    if (options.source_date_epoch && e.mtime_sec >= *options.source_date_epoch &&
        (e.mtime_sec > *options.source_date_epoch || e.mtime_nsec > 0)) {
      e.mtime_sec = *options.source_date_epoch;
      e.mtime_nsec = 0;
    }
    e.xattrs = c.node.xattrs;
    // Any non-directory with more than one name (a file, and as BuildKit's
    // layer writer does, a symlink, device or fifo too) is written once,
    // its other names as hardlinks to the first.
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto key = std::make_pair(st.st_dev, st.st_ino);
      auto [it, inserted] = first_link.emplace(key, c.path);
      if (!inserted) {
        e.type = tar::EntryType::hardlink;
        e.link_target = it->second;
        e.xattrs.clear();
        TRY_VOID(writer->add(e));
        continue;
      }
    }
    if (S_ISREG(st.st_mode)) {
      e.type = tar::EntryType::file;
      e.size = static_cast<uint64_t>(st.st_size);
      // O_NONBLOCK: should a fifo have been swapped in, do not hang on it.
      TRY(auto fd, source.open_at(c.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK));
      struct stat now {};
      if (::fstat(fd.get(), &now) != 0 || !S_ISREG(now.st_mode) || now.st_size != st.st_size) {
        return fail(Errc::io, fmt::format("{}/{}: changed while being archived", source.label(), c.path));
      }
      TRY_VOID(writer->add_file_from_fd(e, fd.get()));
      result.content_size += tar::content_bytes(e);
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      e.type = tar::EntryType::dir;
    } else if (S_ISLNK(st.st_mode)) {
      e.type = tar::EntryType::symlink;
      e.link_target = c.node.target;
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      e.type = S_ISCHR(st.st_mode) ? tar::EntryType::char_device : tar::EntryType::block_device;
      e.dev_major = major(st.st_rdev);
      e.dev_minor = minor(st.st_rdev);
    } else if (S_ISFIFO(st.st_mode)) {
      e.type = tar::EntryType::fifo;
    } else {
      --result.entries;
      continue;
    }
    TRY_VOID(writer->add(e));
    result.content_size += tar::content_bytes(e);
  }
  TRY(result.layer, writer->finish());
  return result;
}

}  // namespace

Result<DiffResult> diff_overlay(const std::string& upper, const std::vector<std::string>& lowers,
                                const tar::WriteFn& out, const DiffOptions& options) {
  TRY(auto upper_root, fs::Root::open(upper));
  std::vector<fs::Root> roots;
  for (const auto& l : lowers) {
    TRY(auto r, fs::Root::open(l));
    roots.push_back(std::move(r));
  }
  Layers old_side(std::move(roots), true);
  Differ differ(old_side, upper_root, true, options.source_date_epoch);
  TRY_VOID(differ.run());
  return write_changes(differ.changes(), upper_root, out, options);
}

Result<DiffResult> diff_trees(const std::string& old_root, const std::string& new_root, const tar::WriteFn& out,
                              const DiffOptions& options) {
  TRY(auto new_fs, fs::Root::open(new_root));
  std::vector<fs::Root> roots;
  if (!old_root.empty()) {
    TRY(auto r, fs::Root::open(old_root));
    roots.push_back(std::move(r));
  }
  Layers old_side(std::move(roots), false);
  Differ differ(old_side, new_fs, false, options.source_date_epoch);
  TRY_VOID(differ.run());
  return write_changes(differ.changes(), new_fs, out, options);
}

}  // namespace imgbuild::snapshot
