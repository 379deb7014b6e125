#pragma once
// ImageStore: the local image store as the image commands see it. It joins
// the content store (blobs) and the metadata database (names, records) and
// implements the operations that touch both: resolving what a user typed,
// committing new images, tagging, removing and pruning.
//
// Consistency rule: blobs are published and metadata written while holding
// the database write lock (an IMMEDIATE transaction), and blob deletion also
// happens under it, so a concurrent prune can never delete a blob that a
// concurrent load is about to reference.

#include <cstdint>
#include <functional>
#include <map>
#include <filesystem>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/content_store.hpp"
#include "image/lease.hpp"
#include "image/metadata.hpp"
#include "image/reference.hpp"
#include "image/types.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// An image about to be committed: its documents are already staged.
struct NewImage {
  std::string manifest_digest;
  std::string media_type;  ///< of the manifest
  std::string config_digest;
  std::string created;
  std::vector<LayerRecord> layers;
  std::vector<Reference> names;
};

/// An image index about to be committed (a multi-platform image): its
/// document is staged (or stored), its children are images of the same
/// commit or of the store.
struct NewIndex {
  std::string digest;
  std::string media_type;  ///< OCI index or Docker manifest list
  /// The platform images the store holds for it (absent platforms stay only
  /// in the document).
  std::vector<IndexChildRecord> children;
  std::vector<Reference> names;
};

/// Images that containers were made from: image ID (config digest) → the
/// id of one such container.
using ImagesInUse = std::map<std::string, std::string>;

/// What a prune removed.
struct PruneReport {
  std::vector<std::string> untagged;  ///< familiar names
  std::vector<std::string> deleted;   ///< image IDs and blob digests
  uint64_t reclaimed = 0;             ///< bytes freed (blobs and unpacked layers)
  /// Images kept because a running build or container holds them (a lease):
  /// a familiar name, else the image ID.
  std::vector<std::string> leased;
  /// Unreferenced blobs kept because a running process holds them.
  int leased_blobs = 0;
};

/// The result of rmi on one argument, in docker's output order.
struct RemoveReport {
  std::vector<std::string> untagged;
  std::vector<std::string> deleted;
};

/// Deletes the unpacked layer directory of a diff_id (snapshot/LayerDirs,
/// which image/ cannot see); returns the bytes freed.
using RemoveLayerDir = std::function<Result<uint64_t>(const std::string& diff_id)>;

/// How a command opens the store.
enum class StoreUse {
  normal,   ///< keeps the space reserve in place (creates it when missing)
  freeing,  ///< deletes: gives the space reserve up first (see open())
};

/// Bytes of <root>/reserve: room for meta.db's write-ahead log when the
/// filesystem is full, so that deletion still commits.
inline constexpr uint64_t k_reserve_bytes = 2 * 1024 * 1024;

/// An image together with its parsed documents.
struct LoadedImage {
  ImageRecord record;
  std::string manifest_bytes;
  Manifest manifest;
  std::string config_bytes;
  ImageConfig config;
};

/// The local image store under one root.
class ImageStore {
public:
  /// Opens (creating if needed) the store at `root`.
  ///
  /// Full disks: deleting rows from meta.db writes to its write-ahead log,
  /// which needs free space exactly when there is none. So every normal open
  /// keeps a reserve file (<root>/reserve, k_reserve_bytes, allocated when
  /// there is room); a StoreUse::freeing open (rmi, prune, system check
  /// --repair) deletes it before touching meta.db, deletes blob files before
  /// committing the record changes, and restore_reserve() takes the room
  /// back once space has been freed.
  static Result<std::unique_ptr<ImageStore>> open(const std::filesystem::path& root,
                                                  StoreUse use = StoreUse::normal);
  ~ImageStore();

  /// The blob store.
  const ContentStore& content() const { return m_content; }
  /// The metadata database.
  MetaDb& db() { return *m_db; }
  /// This process's lease on the store (image/lease.hpp): what it names is
  /// never deleted by another process while this one runs.
  Lease& lease();
  /// Leases an image for this process: its manifest, config and layer blobs
  /// and its layers' unpacked directories (by diff_id). Fails (Errc::not_found)
  /// when a blob went meanwhile (a concurrent rmi or prune).
  Result<void> hold(const LoadedImage& img);
  /// Allocates the space reserve again when it is missing and there is room
  /// (after a StoreUse::freeing command has freed space). Best effort.
  void restore_reserve();

  /// Finds the image a user means: a reference ("busybox", "a/b:1",
  /// "name@sha256:…"), a full or abbreviated image ID ("sha256:ab12…",
  /// "ab12…"), or a manifest digest. Errc::not_found reads
  /// "No such image: <arg>". A multi-platform image gives the host
  /// platform's image when the store holds it, else its first platform the
  /// store holds (as docker's containerd store prefers the host's).
  Result<ImageRecord> resolve(std::string_view arg);
  /// resolve() for one platform: a multi-platform image gives that
  /// platform's image, and a single-platform image must be of that platform;
  /// otherwise an error naming the platforms there are. No platform: as
  /// resolve(arg).
  Result<ImageRecord> resolve(std::string_view arg, const std::optional<Platform>& platform);
  /// What `arg` names without choosing a platform: an index record for a
  /// multi-platform image (what tag, rmi, push and save act on).
  Result<ImageRecord> resolve_target(std::string_view arg);
  /// The platform image of `rec` (see resolve); `arg` names it in errors.
  Result<ImageRecord> select_platform(const ImageRecord& rec, const std::optional<Platform>& platform,
                                      std::string_view arg);
  /// Reads and parses an image's manifest and config.
  Result<LoadedImage> load(const ImageRecord& rec);

  /// Publishes the staged blobs and records the images and their names in one
  /// transaction. On failure neither blobs nor records are left behind.
  Result<void> commit(Staging& staging, const std::vector<NewImage>& images);
  /// commit() of images and the indexes that list them, in one transaction.
  /// An index record's size is its children's summed, its created the
  /// newest child's.
  Result<void> commit(Staging& staging, const std::vector<NewImage>& images, const std::vector<NewIndex>& indexes);
  /// The content size of the stored layer blob `blob_digest` as Docker
  /// counts it (tar::content_bytes summed): the layer record's, else read
  /// from the blob once and recorded (layers stored before schema 5).
  Result<int64_t> layer_content_size(const std::string& blob_digest);
  /// An image's content size: its layers' content sizes summed (what
  /// `images` and inspect's Size show); an index's: its children's summed.
  Result<int64_t> content_size(const ImageRecord& rec);

  /// Adds name `dst` for the image `src` names (an index: the whole
  /// multi-platform image).
  Result<void> tag(std::string_view src, const Reference& dst);
  /// docker rmi: untags; deletes the image (and blobs no image uses) when no
  /// name is left. With several names, removing by ID needs `force`.
  /// An image in `in_use` (image ID → id of a container made from it) is
  /// never deleted: without `force` removing its last name or its ID fails
  /// with docker's conflict message; with `force` its names go and it stays.
  /// An image a running process holds (its manifest is leased) is never
  /// deleted, forced or not. Blobs and, through `remove_dir`, unpacked layer
  /// directories that nothing references and no lease holds go too.
  /// Removing a multi-platform image removes its platform images that have
  /// no name of their own and no other index; a platform image an index
  /// holds cannot be removed by itself.
  Result<RemoveReport> remove(std::string_view arg, bool force, const ImagesInUse& in_use = {},
                              const RemoveLayerDir& remove_dir = {});
  /// Removes dangling images (all images when `all`) except those in
  /// `in_use`, the platform images of an index that stays, and those a
  /// running process holds, then blobs no image or
  /// cache record references and no lease holds, the unpacked layer
  /// directories of layers nothing uses any more (through `remove_dir`), and
  /// leftovers in tmp/.
  Result<PruneReport> prune(bool all, const ImagesInUse& in_use = {}, const RemoveLayerDir& remove_dir = {});

  /// Every name, as references, of one image.
  Result<std::vector<Reference>> names_of(const std::string& manifest_digest);

private:
  ImageStore(ContentStore content, std::unique_ptr<MetaDb> db)
      : m_content(std::move(content)), m_db(std::move(db)) {}
  /// Deletes blobs nothing references or leases (files first, then the
  /// layer rows); `gone_diffs` receives the diff_ids no remaining layer row
  /// or cache record has and no lease holds.
  Result<uint64_t> delete_unreferenced_blobs_locked(const LeaseSnapshot& leases, int* leased_blobs,
                                                    std::vector<std::string>* gone_diffs);
  ContentStore m_content;
  std::unique_ptr<MetaDb> m_db;
  std::mutex m_lease_mu;
  std::unique_ptr<Lease> m_lease;
};

}  // namespace imgbuild::image
