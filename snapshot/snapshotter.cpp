#include "snapshot/snapshotter.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>

#include "snapshot/copy.hpp"
#include "snapshot/internal.hpp"
#include "snapshot/mounts.hpp"
#include "util/fs.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild::snapshot {

namespace stdfs = std::filesystem;

Result<void> move_dir(const stdfs::path& dir, const stdfs::path& dest) {
  std::error_code ec;
  if (stdfs::exists(stdfs::symlink_status(dest, ec))) {
    return fail(Errc::already_exists, "layer directory " + dest.string() + " already exists");
  }
  if (::rename(dir.c_str(), dest.c_str()) == 0) {
    return ok();
  }
  if (errno != EXDEV) {
    return fail(Errc::io, "cannot move " + dir.string() + " to " + dest.string() + ": " + std::strerror(errno));
  }
  // Another filesystem: copy into a temporary sibling, then rename.
  // Appended piece by piece: GCC 12 at -O3 sees a false -Wrestrict overlap
  // in `"." + std::string + …` (GCC bug 105329).
  std::string name = ".";
  name += dest.filename().string();
  name += ".tmp-";
  name += io::random_hex(16);
  const stdfs::path tmp = dest.parent_path() / name;
  if (::mkdir(tmp.c_str(), 0755) != 0) {
    return fail(Errc::io, "cannot create " + tmp.string() + ": " + std::strerror(errno));
  }
  TRY(fs::Root src, fs::Root::open(dir.string()));
  TRY(fs::Root dst, fs::Root::open(tmp.string()));
  auto copied = fs::copy_tree(src, dst);
  if (!copied || ::rename(tmp.c_str(), dest.c_str()) != 0) {
    stdfs::remove_all(tmp, ec);
    if (!copied) {
      return fail(std::move(copied).error());
    }
    return fail(Errc::io, "cannot move " + tmp.string() + " to " + dest.string() + ": " + std::strerror(errno));
  }
  stdfs::remove_all(dir, ec);
  return ok();
}

void View::note_written(const std::vector<std::string>& paths) {
  for (const std::string& p : paths) {
    std::string clean = fs::clean_path(p);
    if (!clean.empty()) {
      m_written.insert(std::move(clean));
    }
  }
}

Result<std::unique_ptr<View>> Snapshotter::prepare_source(const std::vector<std::filesystem::path>& parents) {
  return prepare(parents);
}

Result<std::unique_ptr<View>> Snapshotter::prepare_over(const std::vector<std::filesystem::path>& parents,
                                                        const std::filesystem::path& upper) {
  TRY(std::unique_ptr<View> view, prepare(parents));
  // The baseline was taken before the merge: changes() reports the earlier
  // changes too.
  auto merged = merge_layer(upper, view->root());
  if (!merged) {
    (void)view->remove();
    return fail(std::move(merged).error());
  }
  return view;
}

Result<DiffResult> diff_view(View& view, const tar::WriteFn& out, const DiffOptions& options) {
  TRY(stdfs::path upper, view.changes());
  std::vector<std::string> lowers;
  for (auto it = view.parents().rbegin(); it != view.parents().rend(); ++it) {
    lowers.push_back(it->string());
  }
  return diff_overlay(upper.string(), lowers, out, options);
}

namespace {

// Marks dir as the top of a directory hierarchy for ext4's Orlov allocator
// (chattr +T): each view directory made in it is placed in a block group of
// its own instead of next to its siblings. Without a journal, ext4 skips
// inodes freed in the last minutes when it allocates one, scanning past each
// of them; views reused the groups a previous build (or any rm -rf) had just
// emptied, and creating a COPY's 20,000 files there took several times the
// CPU. Only a placement hint: other filesystems refuse it, which is fine.
void spread_subdirs(const stdfs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  int flags = 0;
  if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_TOPDIR_FL) == 0) {
    flags |= FS_TOPDIR_FL;
    (void)::ioctl(fd, FS_IOC_SETFLAGS, &flags);
  }
  ::close(fd);
}

}  // namespace

Result<size_t> cleanup_stale(const SnapshotterConfig& config) {
  return mounts::cleanup_stale(config.runtime_dir, config.work_dir);
}

Result<std::unique_ptr<Snapshotter>> make_snapshotter(std::string_view kind, const SnapshotterConfig& config) {
  if (!config.work_dir.is_absolute() || !config.runtime_dir.is_absolute()) {
    return fail(Errc::invalid_argument, "snapshotter directories must be absolute paths");
  }
  std::error_code ec;
  for (const stdfs::path& p : {config.work_dir / "views", config.runtime_dir / "mounts"}) {
    stdfs::create_directories(p, ec);
    if (ec) {
      return fail(Errc::io, "cannot create " + p.string() + ": " + ec.message());
    }
  }
  spread_subdirs(config.work_dir / "views");
  TRY(size_t ignored, cleanup_stale(config));
  (void)ignored;
  if (kind == "overlay") {
    auto s = make_overlay_snapshotter(config);
    if (!s) {
      return fail(std::move(s).error().with_context("the overlay snapshotter does not work here (try --snapshotter copy)"));
    }
    return s;
  }
  if (kind == "copy") {
    return make_copy_snapshotter(config);
  }
  if (kind == "auto" || kind.empty()) {
    auto s = make_overlay_snapshotter(config);
    if (s) {
      return s;
    }
    return make_copy_snapshotter(config);
  }
  return fail(Errc::invalid_argument,
              "unknown snapshotter " + str::go_quote(kind) + " (known: auto, overlay, copy)");
}

namespace {

// Makes the real snapshotter on first use (see make_lazy_snapshotter).
class LazySnapshotter final : public Snapshotter {
public:
  LazySnapshotter(std::string kind, SnapshotterConfig config) : m_kind(std::move(kind)), m_config(std::move(config)) {}

  std::string_view name() const override {
    std::lock_guard lock(m_mu);
    return m_real ? m_real->name() : std::string_view();
  }

  // Every way of preparing goes to the real snapshotter: its own
  // prepare_source (copy keeps hardlinks) and prepare_over (overlay mounts
  // the kept upper in place) differ from the base class's.
  Result<std::unique_ptr<View>> prepare(const std::vector<stdfs::path>& parents) override {
    TRY(Snapshotter * r, real());
    return r->prepare(parents);
  }
  Result<std::unique_ptr<View>> prepare_source(const std::vector<stdfs::path>& parents) override {
    TRY(Snapshotter * r, real());
    return r->prepare_source(parents);
  }
  Result<std::unique_ptr<View>> prepare_over(const std::vector<stdfs::path>& parents,
                                             const stdfs::path& upper) override {
    TRY(Snapshotter * r, real());
    return r->prepare_over(parents, upper);
  }

private:
  Result<Snapshotter*> real() {
    std::lock_guard lock(m_mu);
    if (!m_real) {
      if (m_error) {
        return fail(*m_error);
      }
      auto made = make_snapshotter(m_kind, m_config);
      if (!made) {
        m_error = made.error();
        return fail(std::move(made).error());
      }
      m_real = std::move(*made);
    }
    return m_real.get();
  }

  std::string m_kind;
  SnapshotterConfig m_config;
  mutable std::mutex m_mu;
  std::unique_ptr<Snapshotter> m_real;
  std::optional<Error> m_error;
};

}  // namespace

Result<std::unique_ptr<Snapshotter>> make_lazy_snapshotter(std::string_view kind, const SnapshotterConfig& config) {
  if (!config.work_dir.is_absolute() || !config.runtime_dir.is_absolute()) {
    return fail(Errc::invalid_argument, "snapshotter directories must be absolute paths");
  }
  if (kind != "overlay" && kind != "copy" && kind != "auto" && !kind.empty()) {
    return fail(Errc::invalid_argument,
                "unknown snapshotter " + str::go_quote(kind) + " (known: auto, overlay, copy)");
  }
  return std::unique_ptr<Snapshotter>(new LazySnapshotter(std::string(kind), config));
}

}  // namespace imgbuild::snapshot
