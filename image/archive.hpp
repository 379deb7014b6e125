#pragma once
// Moving images in and out of the store as archives:
//  - import: a rootfs tar (any compression) becomes a one-layer image;
//  - save: one tar that is both an OCI image layout (oci-layout, index.json,
//    blobs/sha256/…) and a docker-load archive (manifest.json, repositories),
//    or an OCI layout directory;
//  - load: legacy docker-save tars, Docker 25+ tars and OCI layout tars,
//    compressed or not.
// All of it streams: layer bodies pass through fixed-size buffers, never
// whole into memory. Load and import stage blobs under tmp/ and commit
// metadata in one transaction at the end, so a failure leaves the store
// exactly as it was.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/layer_compression.hpp"
#include "image/reference.hpp"
#include "image/store.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// Options for import.
struct ImportOptions {
  /// Name for the new image (none: untagged).
  std::optional<Reference> name;
  /// --change instructions, in order.
  std::vector<std::string> changes;
  /// --message: the history comment.
  std::string message;
  /// The source as the user gave it ("-" or a path), for the default comment.
  std::string source;
  /// --platform os/arch[/variant]; empty: the host's.
  std::string platform;
  /// Receives what import had to change in the input, one sentence each
  /// (null: not told).
  std::vector<std::string>* notes = nullptr;
};

/// Imports a rootfs tar read from `in_fd`. Entries are checked (no path,
/// hardlink or symlink chain leaves the root) and the tar is kept byte for
/// byte as the layer (uncompressed; diff_id = its sha256, as `docker
/// import`); a compressed input is stored decompressed (options.notes says
/// so). Returns the new image ID (config digest).
Result<std::string> import_rootfs(ImageStore& store, int in_fd, const ImportOptions& options);

/// One image to save and the name it is saved under (none: by ID only).
struct SaveItem {
  ImageRecord record;
  std::optional<Reference> name;
};

/// Writes a docker-save / OCI layout tar of `items` to `out_fd`.
Result<void> save_archive(ImageStore& store, const std::vector<SaveItem>& items, int out_fd);

/// What a saved tar holds.
enum class SaveFormat {
  docker_and_oci,  ///< OCI layout plus manifest.json and repositories (docker load)
  oci,             ///< the OCI layout only, as buildx's type=oci output writes it
};

/// How a save writes its images.
struct SaveOptions {
  SaveFormat format = SaveFormat::docker_and_oci;
  /// Layers compressed as this asks (image/layer_compression.hpp: made now
  /// or reused; the manifests then name the compressed blobs). None: the
  /// layers as stored — a build's uncompressed, as `docker save` writes them.
  std::optional<LayerCompression> compression;
};

/// Writes a tar of `items` to `out_fd` as `options` say.
Result<void> save_archive(ImageStore& store, const std::vector<SaveItem>& items, int out_fd,
                          const SaveOptions& options);

/// Writes an OCI image layout directory (created if missing; must be empty
/// or an existing layout), layers compressed as `compression` asks.
Result<void> save_oci_dir(ImageStore& store, const std::vector<SaveItem>& items, const std::filesystem::path& dir,
                          const std::optional<LayerCompression>& compression = std::nullopt);

/// Copies the blob file `source` (content `digest`, `size` bytes) into the
/// OCI layout directory `dir` as blobs/sha256/<hex>, through a temporary
/// name and a rename, unless a regular file of that size is there already.
/// True when copied. `digest` must be a valid sha256 digest.
Result<bool> put_layout_blob(const std::filesystem::path& source, std::string_view digest, uint64_t size,
                             const std::filesystem::path& dir);

/// Writes the oci-layout marker and `index` as index.json of the layout
/// directory `dir`, each replaced atomically (temporary file and rename).
Result<void> write_layout_index(const std::filesystem::path& dir, std::string_view index);

/// Loads every image of the archive read from `in_fd` (`label` names it in
/// errors). Returns the lines to print ("Loaded image: busybox:latest",
/// "Loaded image ID: sha256:…").
Result<std::vector<std::string>> load_archive(ImageStore& store, int in_fd, const std::string& label);

}  // namespace imgbuild::image
