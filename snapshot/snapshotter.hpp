#pragma once
// Copy-on-write root filesystems for RUN, COPY and `imgbuild run`.
//
// A layer directory is one unpacked layer in overlayfs "lower" form: a
// deletion is a 0:0 character device, an opaque directory carries the xattr
// trusted.overlay.opaque=y (snapshot/apply.hpp writes this form, and
// View::commit produces it). A View is a writable root over a chain of layer
// directories; its changes are always available in that same form (an
// "upper" directory), which is what the layer diff reads and what commit turns
// into the next layer directory without re-extraction.
//
// Two implementations sit behind make_snapshotter():
//  - overlay: an overlayfs mount (new mount API, one "lowerdir+" per layer);
//    chains deeper than overlayfs's 500-layer stack have their lowest layers
//    flattened into one merged directory, cached under the work directory;
//  - copy: the chain is merged into a plain directory; the changes are found
//    by comparing the tree with a record taken at prepare time (inode, ctime,
//    mtime, mode, owner, size) plus the paths named by View::note_written,
//    written as an upper directory with the same contents overlayfs would
//    have produced. One thing it cannot see: a file opened for writing and
//    left as it was (`: >> f`), which overlayfs copies up.
//
// Every file of the upper directory is a change of the layer (diff.hpp),
// unchanged or not: a step that rewrites a file identically (`COPY . .` over
// files an earlier COPY wrote) gives a layer holding it, as dockerd's
// BuildKit does; directories as diff.hpp says.
// Mounts are always removed: by View (destructor, commit, remove), by the
// interrupt handler on SIGINT/SIGTERM (util/interrupt), and — for a process
// that was killed — by the next snapshotter, from the mount records kept in
// the runtime directory.

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "snapshot/diff.hpp"
#include "util/result.hpp"
#include "util/tar.hpp"

namespace imgbuild::snapshot {

/// Where a snapshotter keeps its state.
struct SnapshotterConfig {
  /// Views (<work_dir>/views/<id>/) and flattened chains (<work_dir>/flat/).
  /// Must be on the filesystem that layer directories are committed to, so
  /// that commit is a rename.
  std::filesystem::path work_dir;
  /// Mount records (<runtime_dir>/mounts/<id>), read by later processes to
  /// clean up after a killed one.
  std::filesystem::path runtime_dir;
};

/// A writable root over read-only layer directories. Destroying a View that
/// was neither committed nor removed discards it (unmount, delete).
class View {
public:
  virtual ~View() = default;
  /// A unique id (hex), also the name of the view's directory.
  virtual const std::string& id() const = 0;
  /// The root the sandbox runs in (a mount point for overlay).
  virtual const std::filesystem::path& root() const = 0;
  /// The layer directories under the view, lowest first, as given to prepare.
  virtual const std::vector<std::filesystem::path>& parents() const = 0;
  /// The changes made under root() so far, as an overlayfs upper directory
  /// (see the file comment). The copy snapshotter recomputes it on each call;
  /// do not modify root() while reading it.
  virtual Result<std::filesystem::path> changes() = 0;
  /// Names paths (relative to root(); a leading "/" is allowed) that the
  /// step wrote, so that its layer holds them even when they equal what the
  /// parents hold (BuildKit writes such rewrites into the layer): the copy
  /// view's changes() holds them as overlayfs holds what it copied up, and
  /// the diff writes the directories among them (DiffOptions::written).
  /// Call before changes()/commit().
  void note_written(const std::vector<std::string>& paths);
  /// The paths note_written named, cleaned (no leading "/"): the
  /// DiffOptions::written of the view's diff.
  const std::set<std::string>& written() const { return m_written; }
  /// Ends the view: unmounts it and moves its changes to layer_dir (which
  /// must not exist; its parent must) as a new layer directory. The view can
  /// only be destroyed afterwards.
  virtual Result<void> commit(const std::filesystem::path& layer_dir) = 0;
  /// Ends the view and deletes everything it made. Idempotent.
  virtual Result<void> remove() = 0;

private:
  std::set<std::string> m_written;
};

/// Prepares views.
class Snapshotter {
public:
  virtual ~Snapshotter() = default;
  /// "overlay" or "copy".
  virtual std::string_view name() const = 0;
  /// A writable view over parents (layer directories, lowest first; empty
  /// for an empty root). Cleans up what killed processes left first.
  virtual Result<std::unique_ptr<View>> prepare(const std::vector<std::filesystem::path>& parents) = 0;
  /// A view read as a source (COPY --from, a RUN --mount from=…, the build
  /// context): as prepare(), but files hardlinked within a layer stay linked
  /// in root(), as an overlay mount shows them (a write through one path of
  /// a pair shows at the other: such a view is never committed). The
  /// default is prepare(), which overlay gives already.
  virtual Result<std::unique_ptr<View>> prepare_source(const std::vector<std::filesystem::path>& parents);
  /// A writable view over parents whose changes start as those in `upper`,
  /// an upper directory that an earlier view's commit left (a kept
  /// container's): changes() and commit() then cover the earlier changes and
  /// the new ones. remove(), or a killed process, never deletes `upper`.
  /// overlay mounts `upper` in place as its upper directory (the run's writes
  /// land in it, commit moves it to layer_dir); the default, used by copy,
  /// merges it into a fresh prepare() view and leaves it untouched.
  virtual Result<std::unique_ptr<View>> prepare_over(const std::vector<std::filesystem::path>& parents,
                                                     const std::filesystem::path& upper);
};

/// Creates a snapshotter. kind: "auto" (overlay when an overlay mount works
/// in work_dir, else copy), "overlay" or "copy". Creates the directories in
/// config and cleans up after killed processes.
Result<std::unique_ptr<Snapshotter>> make_snapshotter(std::string_view kind, const SnapshotterConfig& config);

/// make_snapshotter() deferred to the first prepare(): a build whose steps
/// all come from the cache then neither probes overlay (a mount and an
/// unmount) nor sweeps the runtime directory. kind is checked at once; the
/// errors make_snapshotter() would give come from that first prepare().
/// name() is "" until then. Safe to call from several threads.
Result<std::unique_ptr<Snapshotter>> make_lazy_snapshotter(std::string_view kind, const SnapshotterConfig& config);

/// Unmounts and deletes what processes that no longer run left behind
/// according to their mount records. Returns how many records were reclaimed.
Result<size_t> cleanup_stale(const SnapshotterConfig& config);

/// Writes the view's changes as a layer tar to out (diff_overlay of
/// view.changes() over view.parents(), DiffOptions::written from
/// view.written()). Both snapshotters give the same bytes
/// for the same changes. Do not modify the view meanwhile.
Result<DiffResult> diff_view(View& view, const tar::WriteFn& out, const DiffOptions& options = {});

/// The most lower layers one overlay mount stacks (the kernel's limit).
inline constexpr size_t k_max_overlay_lowers = 500;

}  // namespace imgbuild::snapshot
