#pragma once
// COPY work that the Builds of one multi-platform build share instead of
// doing it once per platform (builder/build.hpp SharedBuild):
//  - the digest of what a COPY --from reads from a stage (the cache key's
//    source hash): the stage shared by every platform (`FROM
//    --platform=$BUILDPLATFORM`) is read and hashed once, not per target;
//  - the layer of a COPY. The same COPY (same request, same source tree) in
//    every platform's stage writes the same files; the layer differs only
//    where the stages' parents differ at the paths it touches. The first
//    platform to reach it copies (the owner); the others wait for its layer
//    and take it when their parent shows exactly what the owner's parent
//    showed on the destination path (same_dest_path), on every path the
//    copy wrote as it named them (same_targets: no parent symlink followed)
//    and at every path of that layer (same_copy_result), else copy
//    themselves. This is the layer a platform's own copy would give, made
//    once: an asset stage copied into four platform images is written once.

#include <sys/stat.h>

#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "builder/cache_steps.hpp"
#include "image/store.hpp"
#include "util/fs.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// A layer a COPY made, and the layer directories it was made over.
struct SharedCopyLayer {
  image::LayerRecord record;
  std::filesystem::path dir;
  /// The paths the copy wrote, as it named them (before any symlink of the
  /// parent was followed; "/a/b").
  std::vector<std::string> targets;
};

class CopyShare {
public:
  /// One COPY's layer: published once by its owner.
  struct Slot {
    std::mutex mu;
    std::condition_variable cv;
    /// The owner's parent layer directories (lowest first), set at claim.
    std::vector<std::filesystem::path> parents;
    bool done = false;
    std::optional<SharedCopyLayer> layer;  ///< nullopt: the owner failed
  };

  /// The slot for `key` and whether the caller owns it (must copy, then
  /// publish, also on failure). `parents`: the caller's parent chain,
  /// recorded when it becomes the owner.
  std::pair<std::shared_ptr<Slot>, bool> claim(const std::string& key,
                                              const std::vector<std::filesystem::path>& parents);
  /// Publishes the owner's layer (nullopt: none) and wakes the waiters.
  static void publish(Slot& slot, std::optional<SharedCopyLayer> layer);
  /// Waits for the owner's layer (nullopt: it failed).
  static std::optional<SharedCopyLayer> wait(Slot& slot);

  /// A source digest remembered under `key`, if any.
  std::optional<SourceFiles> digest(const std::string& key);
  void remember_digest(const std::string& key, const SourceFiles& files);

private:
  std::mutex m_mu;
  std::map<std::string, std::shared_ptr<Slot>> m_slots;
  std::map<std::string, SourceFiles> m_digests;
};

/// The lstat facts a COPY's result can depend on at one path of a rootfs:
/// absent, or type, mode, owner, device, mtime, size (non-directories),
/// link target and xattrs (overlayfs's own left out).
struct PathFacts {
  bool present = false;
  struct stat st {};
  std::string link;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

/// The facts of `rel` (relative, no symlink followed at its last
/// component) in `root`.
Result<PathFacts> path_facts(const fs::Root& root, const std::string& rel);
/// Whether two facts are the same for a COPY (times to the nanosecond).
bool same_facts(const PathFacts& a, const PathFacts& b);

/// The components of a COPY's destination, made absolute against workdir
/// and lexically cleaned ("a/b/c" as {"a", "a/b", "a/b/c"}).
std::vector<std::string> dest_prefixes(const std::string& dest, const std::string& workdir);

/// Whether the destination path resolves the same way in two rootfs views:
/// every prefix is absent in both or the same directory in both (a symlink
/// anywhere on it is "no": where it leads is not checked).
Result<bool> same_dest_path(const std::vector<std::string>& prefixes, const std::filesystem::path& theirs,
                            const std::filesystem::path& mine);

/// Whether a COPY whose layer directory is `layer_dir`, made over the rootfs
/// `theirs`, gives the same layer over the rootfs `mine`: every path of the
/// layer is absent in both (then nothing below it is looked at) or has the
/// same facts in both (directories compared below too). Call only when the
/// destination path resolves the same (same_dest_path) and the targets do
/// (same_targets).
Result<bool> same_copy_result(const std::filesystem::path& layer_dir, const std::filesystem::path& theirs,
                              const std::filesystem::path& mine);

/// Whether the paths a copy wrote (`targets`, as it named them) lead to the
/// same places in two rootfs views: each path and its ancestors are absent
/// in both (nothing below is looked at), the same directory in both, or —
/// at the path itself — the same non-directory (replaced). A symlink on the
/// way is "no": the copy follows one to a directory, and the layer then
/// holds where it led, not the link.
Result<bool> same_targets(const std::vector<std::string>& targets, const std::filesystem::path& theirs,
                          const std::filesystem::path& mine);

}  // namespace imgbuild::builder
