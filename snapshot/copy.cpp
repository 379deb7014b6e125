#include "snapshot/copy.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "snapshot/internal.hpp"
#include "snapshot/mounts.hpp"
#include "snapshot/snapshotter.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/io.hpp"
#include "util/interrupt.hpp"
#include "util/rootless.hpp"

namespace imgbuild::snapshot {

namespace stdfs = std::filesystem;

namespace {

// Deeper trees are refused (as util/fs and the diff do): each level holds a
// directory fd and a stack frame.
constexpr size_t k_max_depth = 1024;

Result<void> check_depth(size_t depth, const std::string& path) {
  if (depth > k_max_depth) {
    return fail(Errc::limit, "directory tree deeper than " + std::to_string(k_max_depth) + " levels at " + path);
  }
  return ok();
}

Error sys(const std::string& what, const std::string& path) {
  return Error(Errc::io, what + " " + path + ": " + std::strerror(errno));
}

std::string join(const std::string& rel, const std::string& name) { return rel.empty() ? name : rel + "/" + name; }

Result<UniqueFd> open_dir_at(int dirfd, const std::string& name, const std::string& shown) {
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return fail(sys("cannot open directory", shown));
  }
  return fd;
}

Result<UniqueFd> open_dir(const stdfs::path& p) {
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return fail(sys("cannot open directory", p.string()));
  }
  return fd;
}

bool is_opaque(int dirfd, const std::string& name) {
  auto x = fs::xattrs_at(dirfd, name);
  if (!x) {
    return false;
  }
  for (const auto& [k, v] : *x) {
    if (k == mounts::opaque_xattr() && v == "y") {
      return true;
    }
  }
  return false;
}

// Owner, xattrs (overlay's own left out), mode and times of src_dir/name onto
// dst_dir/name. Mode after owner: chown clears set-id bits.
Result<void> copy_meta(int src_dir, int dst_dir, const std::string& name, const struct stat& st,
                       const std::string& shown) {
  if (::fchownat(dst_dir, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) {
    const int err = errno;
    return fail(Error(Errc::io, shown + ": " + rootless::chown_failure(err, st.st_uid, st.st_gid)));
  }
  TRY(auto xattrs, fs::xattrs_at(src_dir, name));
  for (const auto& [k, v] : xattrs) {
    if (mounts::is_overlay_xattr(k)) {
      continue;
    }
    TRY_VOID(fs::set_xattr_at(dst_dir, name, k, v));
  }
  if (!S_ISLNK(st.st_mode) && ::fchmodat(dst_dir, name.c_str(), st.st_mode & 07777, 0) != 0) {
    return fail(sys("cannot chmod", shown));
  }
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(dst_dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return fail(sys("cannot set times of", shown));
  }
  return ok();
}

// Creates a non-directory copy of src_dir/name at dst_dir/name.
Result<void> create_copy(int src_dir, int dst_dir, const std::string& name, const struct stat& st,
                         const std::string& shown) {
  if (S_ISREG(st.st_mode)) {
    UniqueFd in(::openat(src_dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!in) {
      return fail(sys("cannot open", shown));
    }
    UniqueFd out(::openat(dst_dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) {
      return fail(sys("cannot create", shown));
    }
    return fs::copy_data(in.get(), out.get(), shown);
  }
  if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = ::readlinkat(src_dir, name.c_str(), target.data(), target.size());
    if (n < 0) {
      return fail(sys("cannot read link", shown));
    }
    target.resize(static_cast<size_t>(n));
    if (::symlinkat(target.c_str(), dst_dir, name.c_str()) != 0) {
      return fail(sys("cannot create symlink", shown));
    }
    return ok();
  }
  if (::mknodat(dst_dir, name.c_str(), st.st_mode & (S_IFMT | 07777), st.st_rdev) != 0) {
    return fail(sys("cannot create node", shown));
  }
  return ok();
}

struct MergeState {
  const fs::Root* merged = nullptr;
  std::map<std::pair<dev_t, ino_t>, std::string> links;  // layer inode → merged path
  bool keep_links = true;
};

Result<void> merge_dir(MergeState& ms, int src, int dst, const std::string& rel, size_t depth) {
  TRY_VOID(check_depth(depth, rel));
  TRY(auto names, fs::list_dir(src));
  for (const std::string& name : names) {
    const std::string path = join(rel, name);
    struct stat st {};
    if (::fstatat(src, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(sys("cannot stat layer entry", path));
    }
    if (S_ISCHR(st.st_mode) && st.st_rdev == 0) {
      TRY_VOID(fs::remove_all_at(dst, name));  // whiteout
      continue;
    }
    struct stat dst_st {};
    bool exists = ::fstatat(dst, name.c_str(), &dst_st, AT_SYMLINK_NOFOLLOW) == 0;
    if (S_ISDIR(st.st_mode)) {
      if (exists && !S_ISDIR(dst_st.st_mode)) {
        TRY_VOID(fs::remove_all_at(dst, name));
        exists = false;
      }
      if (!exists && ::mkdirat(dst, name.c_str(), 0700) != 0) {
        return fail(sys("cannot create directory", path));
      }
      TRY(UniqueFd sub_src, open_dir_at(src, name, path));
      TRY(UniqueFd sub_dst, open_dir_at(dst, name, path));
      if (exists && is_opaque(src, name)) {
        TRY_VOID(fs::clear_dir(sub_dst.get()));
      }
      TRY_VOID(merge_dir(ms, sub_src.get(), sub_dst.get(), path, depth + 1));
      TRY_VOID(copy_meta(src, dst, name, st, path));
      continue;
    }
    if (exists) {
      TRY_VOID(fs::remove_all_at(dst, name));
    }
    const auto key = std::make_pair(st.st_dev, st.st_ino);
    if (ms.keep_links && st.st_nlink > 1) {
      if (auto it = ms.links.find(key); it != ms.links.end()) {
        TRY_VOID(ms.merged->link(it->second, path));
        continue;
      }
    }
    TRY_VOID(create_copy(src, dst, name, st, path));
    TRY_VOID(copy_meta(src, dst, name, st, path));
    if (ms.keep_links && st.st_nlink > 1) {
      ms.links.emplace(key, path);
    }
  }
  return ok();
}

// Birth time of dirfd/name (0:0 when the filesystem does not keep one). A
// freed inode number is soon reused (ext4 does so at once), so the identity
// of an entry is its inode number and its birth time.
struct timespec birth_time(int dirfd, const std::string& name) {
  struct statx stx {};
  struct timespec t {};
  if (::statx(dirfd, name.c_str(), AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_BTIME, &stx) == 0 &&
      (stx.stx_mask & STATX_BTIME) != 0) {
    t.tv_sec = stx.stx_btime.tv_sec;
    t.tv_nsec = stx.stx_btime.tv_nsec;
  }
  return t;
}

Result<Baseline::Node> node_of(const struct stat& st) {
  Baseline::Node n;
  n.ino = st.st_ino;
  n.mode = st.st_mode;
  n.uid = st.st_uid;
  n.gid = st.st_gid;
  n.size = st.st_size;
  n.rdev = st.st_rdev;
  n.mtime = st.st_mtim;
  n.ctime = st.st_ctim;
  return n;
}

Result<void> record_dir(int dirfd, Baseline::Node& node, size_t& count, const std::string& rel, size_t depth) {
  TRY_VOID(check_depth(depth, rel));
  TRY(auto names, fs::list_dir(dirfd));
  for (const std::string& name : names) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(sys("cannot stat", join(rel, name)));
    }
    TRY(Baseline::Node child, node_of(st));
    child.btime = birth_time(dirfd, name);
    ++count;
    if (S_ISDIR(st.st_mode)) {
      TRY(UniqueFd sub, open_dir_at(dirfd, name, join(rel, name)));
      TRY_VOID(record_dir(sub.get(), child, count, join(rel, name), depth + 1));
    }
    node.children.emplace(name, std::move(child));
  }
  return ok();
}

bool same_time(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

bool metadata_differs(const Baseline::Node& b, const struct stat& st) {
  return b.mode != st.st_mode || b.uid != st.st_uid || b.gid != st.st_gid || b.size != st.st_size ||
         b.rdev != st.st_rdev || !same_time(b.mtime, st.st_mtim) || !same_time(b.ctime, st.st_ctim);
}

// A directory of the upper tree, created only when something below it (or
// its own metadata) changed.
struct UpperDir {
  UpperDir* parent = nullptr;
  std::string name;    // in parent
  int view_parent = -1;  // view directory holding `name` (for metadata)
  std::string path;    // for messages
  bool opaque = false;
  UniqueFd fd;
  bool created = false;
};

Result<int> ensure(UpperDir& d) {
  if (d.fd) {
    return d.fd.get();
  }
  TRY(int parent_fd, ensure(*d.parent));
  if (::mkdirat(parent_fd, d.name.c_str(), 0700) != 0) {
    return fail(sys("cannot create upper directory", d.path));
  }
  TRY(UniqueFd fd, open_dir_at(parent_fd, d.name, d.path));
  d.fd = std::move(fd);
  d.created = true;
  return d.fd.get();
}

// Metadata of a created upper directory, once its children are in place.
Result<void> finish(UpperDir& d) {
  if (!d.created) {
    return ok();
  }
  struct stat st {};
  if (::fstatat(d.view_parent, d.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return fail(sys("cannot stat", d.path));
  }
  TRY_VOID(copy_meta(d.view_parent, d.parent->fd.get(), d.name, st, d.path));
  if (d.opaque) {
    TRY_VOID(fs::set_xattr_at(d.parent->fd.get(), d.name, mounts::opaque_xattr(), "y"));
  }
  return ok();
}

Result<void> diff_dir(int view_dir, const Baseline::Node* base, UpperDir& up, size_t depth,
                      const std::set<std::string>& written) {
  TRY_VOID(check_depth(depth, up.path));
  TRY(auto names, fs::list_dir(view_dir));
  for (const std::string& name : names) {
    const std::string path = join(up.path, name);
    struct stat st {};
    if (::fstatat(view_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return fail(sys("cannot stat", path));
    }
    const Baseline::Node* b = nullptr;
    if (base != nullptr) {
      if (auto it = base->children.find(name); it != base->children.end()) {
        b = &it->second;
      }
    }
    const bool same_inode = b != nullptr && b->ino == st.st_ino && (b->mode & S_IFMT) == (st.st_mode & S_IFMT) &&
                            same_time(b->btime, birth_time(view_dir, name));
    if (S_ISDIR(st.st_mode)) {
      UpperDir sub;
      sub.parent = &up;
      sub.name = name;
      sub.view_parent = view_dir;
      sub.path = path;
      TRY(UniqueFd sub_view, open_dir_at(view_dir, name, path));
      if (same_inode) {
        TRY_VOID(diff_dir(sub_view.get(), b, sub, depth + 1, written));
        if (metadata_differs(*b, st) || written.count(path) != 0) {
          TRY(int ignored, ensure(sub));
          (void)ignored;
        }
      } else {
        // New, or replacing something: overlayfs makes a directory created
        // over a deleted entry opaque.
        sub.opaque = b != nullptr;
        TRY(int ignored, ensure(sub));
        (void)ignored;
        TRY_VOID(diff_dir(sub_view.get(), nullptr, sub, depth + 1, written));
      }
      TRY_VOID(finish(sub));
      continue;
    }
    if (same_inode && !metadata_differs(*b, st) && written.count(path) == 0) {
      continue;
    }
    TRY(int up_fd, ensure(up));
    if (::linkat(view_dir, name.c_str(), up_fd, name.c_str(), 0) != 0) {
      return fail(sys("cannot link changed file", path));
    }
  }
  if (base != nullptr) {
    for (const auto& [name, child] : base->children) {
      struct stat st {};
      if (::fstatat(view_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        continue;
      }
      TRY(int up_fd, ensure(up));
      if (::mknodat(up_fd, name.c_str(), S_IFCHR | 0, 0) != 0) {
        return fail(sys("cannot create whiteout", join(up.path, name)));
      }
    }
  }
  return ok();
}

// ---- the copy snapshotter -------------------------------------------------

class CopyView final : public View {
public:
  CopyView(std::string id, stdfs::path dir, std::vector<stdfs::path> parents, mounts::MountRecord record)
      : m_id(std::move(id)), m_dir(std::move(dir)), m_root(m_dir / "root"), m_parents(std::move(parents)),
        m_record(std::move(record)) {}
  ~CopyView() override { (void)remove(); }

  const std::string& id() const override { return m_id; }
  const stdfs::path& root() const override { return m_root; }
  const std::vector<stdfs::path>& parents() const override { return m_parents; }

  // keep_links: a source view (prepare_source) keeps the files linked
  // within a layer linked, as overlayfs shows them, so a COPY --from sees
  // the pair. A writable view does not: a RUN that writes one path of a
  // pair changes that path alone, as under overlayfs (copy-up), so both
  // snapshotters give the same layer.
  Result<void> populate(bool keep_links) {
    for (const stdfs::path& p : m_parents) {
      TRY_VOID(merge_layer(p, m_root, keep_links));
    }
    TRY(Baseline b, Baseline::record(m_root));
    m_base = std::move(b);
    return ok();
  }

  Result<stdfs::path> changes() override {
    if (m_done) {
      return fail(Errc::invalid_argument, "view " + m_id + " was already committed or removed");
    }
    stdfs::path upper = m_dir / "upper";
    std::error_code ec;
    stdfs::remove_all(upper, ec);
    if (::mkdir(upper.c_str(), 0755) != 0) {
      return fail(sys("cannot create", upper.string()));
    }
    TRY_VOID(write_changes(m_base, m_root, upper, written()));
    return upper;
  }

  Result<void> commit(const stdfs::path& layer_dir) override {
    TRY(stdfs::path upper, changes());
    TRY_VOID(move_dir(upper, layer_dir));
    return remove();
  }

  Result<void> remove() override {
    if (m_done) {
      return ok();
    }
    std::error_code ec;
    stdfs::remove_all(m_dir, ec);
    if (ec) {
      return fail(Errc::io, "cannot remove view " + m_dir.string() + ": " + ec.message());
    }
    m_done = true;
    m_record.erase();
    return ok();
  }

private:
  std::string m_id;
  stdfs::path m_dir;
  stdfs::path m_root;
  std::vector<stdfs::path> m_parents;
  mounts::MountRecord m_record;
  Baseline m_base;
  bool m_done = false;
};

class CopySnapshotter final : public Snapshotter {
public:
  explicit CopySnapshotter(SnapshotterConfig config) : m_config(std::move(config)) {}
  std::string_view name() const override { return "copy"; }

  Result<std::unique_ptr<View>> prepare(const std::vector<stdfs::path>& parents) override {
    return make_view(parents, false);
  }
  Result<std::unique_ptr<View>> prepare_source(const std::vector<stdfs::path>& parents) override {
    return make_view(parents, true);
  }

private:
  Result<std::unique_ptr<View>> make_view(const std::vector<stdfs::path>& parents, bool keep_links) {
    TRY(size_t ignored, cleanup_stale(m_config));
    (void)ignored;
    const std::string id = io::random_hex(16);
    const stdfs::path dir = m_config.work_dir / "views" / id;
    // The record lets a later process delete the copy if this one is killed.
    TRY(mounts::MountRecord record, mounts::MountRecord::create(m_config.runtime_dir, id, {}, {dir}));
    std::error_code ec;
    stdfs::create_directories(dir / "root", ec);
    if (ec) {
      return fail(Errc::io, "cannot create view " + dir.string() + ": " + ec.message());
    }
    auto view = std::make_unique<CopyView>(id, dir, parents, std::move(record));
    TRY_VOID(view->populate(keep_links));
    return std::unique_ptr<View>(std::move(view));
  }

  SnapshotterConfig m_config;
};

}  // namespace

Result<void> merge_layer(const stdfs::path& layer_dir, const stdfs::path& merged_dir, bool keep_links) {
  TRY(UniqueFd src, open_dir(layer_dir));
  TRY(UniqueFd dst, open_dir(merged_dir));
  TRY(fs::Root merged, fs::Root::open(merged_dir.string()));
  MergeState ms;
  ms.merged = &merged;
  ms.keep_links = keep_links;
  auto r = merge_dir(ms, src.get(), dst.get(), "", 0);
  if (!r) {
    return fail(std::move(r).error().with_context("while merging layer " + layer_dir.string()));
  }
  return ok();
}

Result<Baseline> Baseline::record(const stdfs::path& dir) {
  TRY(UniqueFd fd, open_dir(dir));
  Baseline b;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return fail(sys("cannot stat", dir.string()));
  }
  TRY(Node root, node_of(st));
  b.m_root = std::move(root);
  TRY_VOID(record_dir(fd.get(), b.m_root, b.m_count, "", 0));
  return b;
}

Result<void> write_changes(const Baseline& base, const stdfs::path& dir, const stdfs::path& upper,
                           const std::set<std::string>& written) {
  TRY(UniqueFd view_fd, open_dir(dir));
  TRY(UniqueFd upper_fd, open_dir(upper));
  UpperDir top;
  top.fd = std::move(upper_fd);
  return diff_dir(view_fd.get(), &base.root(), top, 0, written);
}

Result<std::unique_ptr<Snapshotter>> make_copy_snapshotter(const SnapshotterConfig& config) {
  return std::unique_ptr<Snapshotter>(new CopySnapshotter(config));
}

}  // namespace imgbuild::snapshot
