#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "snapshot/copy.hpp"
#include "snapshot/internal.hpp"
#include "snapshot/mounts.hpp"
#include "snapshot/snapshotter.hpp"
#include "util/hash.hpp"
#include "util/interrupt.hpp"
#include "util/io.hpp"
#include "util/fault.hpp"

namespace imgbuild::snapshot {

namespace stdfs = std::filesystem;

namespace {

Result<void> make_dir(const stdfs::path& p) {
  if (::mkdir(p.c_str(), 0755) != 0) {
    return fail(Errc::io, "cannot create " + p.string() + ": " + std::strerror(errno));
  }
  return ok();
}

class OverlayView final : public View {
public:
  // upper: where the changes go; empty = a fresh <dir>/upper. A given upper
  // lies outside dir and outlives the view unless commit moves it.
  OverlayView(std::string id, stdfs::path dir, std::vector<stdfs::path> parents, mounts::MountRecord record,
              stdfs::path upper = {})
      : m_id(std::move(id)), m_dir(std::move(dir)), m_root(m_dir / "merged"),
        m_upper(upper.empty() ? m_dir / "upper" : std::move(upper)), m_parents(std::move(parents)),
        m_record(std::move(record)) {}
  ~OverlayView() override { (void)remove(); }

  const std::string& id() const override { return m_id; }
  const stdfs::path& root() const override { return m_root; }
  const std::vector<stdfs::path>& parents() const override { return m_parents; }
  const stdfs::path& upper() const { return m_upper; }
  stdfs::path work() const { return m_dir / "work"; }

  Result<void> mount(const std::vector<stdfs::path>& lowers_top_first) {
    m_unmount_on_interrupt = interrupt::unmount_on_interrupt(m_root.string());
    TRY_VOID(mounts::mount_overlay(lowers_top_first, upper(), work(), m_root));
    fault::point("view-mounted");
    m_mounted = true;
    return ok();
  }

  Result<stdfs::path> changes() override {
    if (m_done) {
      return fail(Errc::invalid_argument, "view " + m_id + " was already committed or removed");
    }
    return upper();
  }

  Result<void> commit(const stdfs::path& layer_dir) override {
    if (m_done) {
      return fail(Errc::invalid_argument, "view " + m_id + " was already committed or removed");
    }
    TRY_VOID(unmount());
    TRY_VOID(move_dir(upper(), layer_dir));
    return remove();
  }

  Result<void> remove() override {
    if (m_done) {
      return ok();
    }
    TRY_VOID(unmount());
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
  Result<void> unmount() {
    if (m_mounted) {
      TRY_VOID(mounts::unmount(m_root));
      m_mounted = false;
    }
    m_unmount_on_interrupt.release();
    return ok();
  }

  std::string m_id;
  stdfs::path m_dir;
  stdfs::path m_root;
  stdfs::path m_upper;
  std::vector<stdfs::path> m_parents;
  mounts::MountRecord m_record;
  interrupt::Registration m_unmount_on_interrupt;
  bool m_mounted = false;
  bool m_done = false;
};

class OverlaySnapshotter final : public Snapshotter {
public:
  explicit OverlaySnapshotter(SnapshotterConfig config) : m_config(std::move(config)) {}
  std::string_view name() const override { return "overlay"; }

  Result<std::unique_ptr<View>> prepare(const std::vector<stdfs::path>& parents) override {
    return make_view(parents, {});
  }

  Result<std::unique_ptr<View>> prepare_over(const std::vector<stdfs::path>& parents,
                                             const stdfs::path& upper) override {
    std::error_code ec;
    if (!stdfs::is_directory(upper, ec)) {
      return fail(Errc::not_found, "no upper directory at " + upper.string());
    }
    return make_view(parents, upper);
  }

private:
  // A mounted view over parents; its upper is `upper` when given (in place),
  // else a new directory inside the view.
  Result<std::unique_ptr<View>> make_view(const std::vector<stdfs::path>& parents, const stdfs::path& upper) {
    interrupt::install_handlers();
    TRY(size_t ignored, cleanup_stale(m_config));
    (void)ignored;
    const std::string id = io::random_hex(16);
    const stdfs::path dir = m_config.work_dir / "views" / id;
    // Record first, mount second: a kill in between leaves nothing unrecorded.
    TRY(mounts::MountRecord record,
        mounts::MountRecord::create(m_config.runtime_dir, id, {dir / "merged"}, {dir}));
    TRY_VOID(make_dir(dir));
    auto view = std::make_unique<OverlayView>(id, dir, parents, std::move(record), upper);
    if (upper.empty()) {
      TRY_VOID(make_dir(view->upper()));
    }
    TRY_VOID(make_dir(view->work()));
    TRY_VOID(make_dir(view->root()));

    std::vector<stdfs::path> lowers;  // lowest first
    if (parents.empty()) {
      TRY_VOID(make_dir(dir / "empty"));
      lowers.push_back(dir / "empty");
    } else if (parents.size() > k_max_overlay_lowers) {
      const size_t flat_count = parents.size() - (k_max_overlay_lowers - 1);
      TRY(stdfs::path flat, flatten({parents.begin(), parents.begin() + static_cast<ptrdiff_t>(flat_count)}, dir));
      lowers.push_back(flat);
      lowers.insert(lowers.end(), parents.begin() + static_cast<ptrdiff_t>(flat_count), parents.end());
    } else {
      lowers = parents;
    }
    std::vector<stdfs::path> top_first(lowers.rbegin(), lowers.rend());
    TRY_VOID(view->mount(top_first));
    return std::unique_ptr<View>(std::move(view));
  }

  // The merged tree of `chain`, cached by the list of layer paths (layer
  // directories never change once committed).
  Result<stdfs::path> flatten(const std::vector<stdfs::path>& chain, const stdfs::path& view_dir) {
    Sha256 h;
    for (const stdfs::path& p : chain) {
      h.update(p.string());
      h.update("\n", 1);
    }
    const stdfs::path flat = m_config.work_dir / "flat" / h.finish().hex();
    std::error_code ec;
    if (stdfs::is_directory(flat, ec)) {
      return flat;
    }
    const stdfs::path build = view_dir / "flat-build";
    TRY_VOID(make_dir(build));
    for (const stdfs::path& p : chain) {
      TRY_VOID(merge_layer(p, build));
    }
    stdfs::create_directories(flat.parent_path(), ec);
    if (::rename(build.c_str(), flat.c_str()) != 0 && errno != EEXIST && errno != ENOTEMPTY) {
      return fail(Errc::io, "cannot store flattened layers at " + flat.string() + ": " + std::strerror(errno));
    }
    return flat;
  }

  SnapshotterConfig m_config;
};

// Mounts and unmounts a one-layer overlay in work_dir to see whether overlay
// works there (kernel support, privileges, an upper-capable filesystem).
Result<void> probe(const SnapshotterConfig& config) {
  const stdfs::path dir = config.work_dir / "views" / ("probe-" + io::random_hex(16));
  TRY(mounts::MountRecord record, mounts::MountRecord::create(config.runtime_dir, dir.filename().string(),
                                                              {dir / "m"}, {dir}));
  std::error_code ec;
  for (const char* sub : {"l", "u", "w", "m"}) {
    stdfs::create_directories(dir / sub, ec);
  }
  auto mounted = mounts::mount_overlay({dir / "l"}, dir / "u", dir / "w", dir / "m");
  auto unmounted = mounts::unmount(dir / "m");
  stdfs::remove_all(dir, ec);
  TRY_VOID(mounted);
  return unmounted;
}

}  // namespace

Result<std::unique_ptr<Snapshotter>> make_overlay_snapshotter(const SnapshotterConfig& config) {
  TRY_VOID(probe(config));
  return std::unique_ptr<Snapshotter>(new OverlaySnapshotter(config));
}

}  // namespace imgbuild::snapshot
