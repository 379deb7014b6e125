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
#include <map>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/content_store.hpp"
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

/// Images that containers were made from: image ID (config digest) → the
/// id of one such container.
using ImagesInUse = std::map<std::string, std::string>;

/// What a prune removed.
struct PruneReport {
  std::vector<std::string> untagged;  ///< familiar names
  std::vector<std::string> deleted;   ///< image IDs and blob digests
  uint64_t reclaimed = 0;             ///< bytes freed
};

/// The result of rmi on one argument, in docker's output order.
struct RemoveReport {
  std::vector<std::string> untagged;
  std::vector<std::string> deleted;
};

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
  static Result<std::unique_ptr<ImageStore>> open(const std::filesystem::path& root);

  /// The blob store.
  const ContentStore& content() const { return m_content; }
  /// The metadata database.
  MetaDb& db() { return *m_db; }

  /// Finds the image a user means: a reference ("busybox", "a/b:1",
  /// "name@sha256:…"), a full or abbreviated image ID ("sha256:ab12…",
  /// "ab12…"), or a manifest digest. Errc::not_found reads
  /// "No such image: <arg>".
  Result<ImageRecord> resolve(std::string_view arg);
  /// Reads and parses an image's manifest and config.
  Result<LoadedImage> load(const ImageRecord& rec);

  /// Publishes the staged blobs and records the images and their names in one
  /// transaction. On failure neither blobs nor records are left behind.
  Result<void> commit(Staging& staging, const std::vector<NewImage>& images);

  /// Adds name `dst` for the image `src` names.
  Result<void> tag(std::string_view src, const Reference& dst);
  /// docker rmi: untags; deletes the image (and blobs no image uses) when no
  /// name is left. With several names, removing by ID needs `force`.
  /// An image in `in_use` (image ID → id of a container made from it) is
  /// never deleted: without `force` removing its last name or its ID fails
  /// with docker's conflict message; with `force` its names go and it stays.
  Result<RemoveReport> remove(std::string_view arg, bool force, const ImagesInUse& in_use = {});
  /// Removes dangling images (all images when `all`) except those in
  /// `in_use`, then blobs no image references, and leftovers in tmp/.
  Result<PruneReport> prune(bool all, const ImagesInUse& in_use = {});

  /// Every name, as references, of one image.
  Result<std::vector<Reference>> names_of(const std::string& manifest_digest);

private:
  ImageStore(ContentStore content, std::unique_ptr<MetaDb> db)
      : m_content(std::move(content)), m_db(std::move(db)) {}
  Result<uint64_t> delete_unreferenced_blobs_locked(std::vector<std::string>* deleted);
  ContentStore m_content;
  std::unique_ptr<MetaDb> m_db;
};

}  // namespace imgbuild::image
