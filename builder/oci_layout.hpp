#pragma once
// Named build contexts from an OCI image layout directory
// (`--build-context name=oci-layout:///path/to/layout[:TAG|@sha256:…]`):
// the chosen image's manifest, config and layer blobs are copied (digests
// verified) into the local store as an unnamed image, so the build uses it
// like any stored base image (FROM name, COPY --from=name, RUN --mount
// from=name).
//
// Choosing the image: @DIGEST names a manifest (or index) in the layout;
// :TAG matches the org.opencontainers.image.ref.name annotation of an
// index.json entry (or the tag of its io.containerd.image.name); with
// neither, index.json must list exactly one entry. An index entry is
// resolved to the build platform's manifest.

#include <filesystem>
#include <string>
#include <string_view>

#include "image/store.hpp"
#include "util/platform.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// Read access to an OCI image layout directory (blobs/sha256/<hex>,
/// index.json); shared by oci-layout:// contexts and the build-cache import.
/// Documents are read without following a final symlink and capped at 4 MiB.
class OciLayoutDir {
public:
  /// The layout at `dir`; `label` prefixes every error ("oci-layout \"/x\"").
  OciLayoutDir(std::string dir, std::string label) : m_dir(std::move(dir)), m_label(std::move(label)) {}
  /// True for "sha256:" and 64 lowercase hex digits (so a digest can never
  /// name a path outside blobs/sha256).
  static bool valid_digest(std::string_view digest);
  /// Where the blob `digest` (which must be valid) lives.
  std::filesystem::path blob_path(std::string_view digest) const;
  /// A small file read whole; `what` names it in errors.
  Result<std::string> read_document(const std::filesystem::path& path, std::string_view what) const;
  /// A small blob, verified against its digest.
  Result<std::string> read_blob(std::string_view digest) const;
  /// index.json, parsed.
  Result<image::Index> read_index() const;
  /// The directory.
  const std::string& dir() const { return m_dir; }
  /// The label of errors.
  const std::string& label() const { return m_label; }

private:
  std::string m_dir;
  std::string m_label;
};

/// A parsed oci-layout:// source.
struct OciLayoutSource {
  std::string dir;
  std::string tag;     ///< "" when not given
  std::string digest;  ///< "" when not given
};

/// Splits "oci-layout://DIR[:TAG|@DIGEST]" (the scheme is optional).
OciLayoutSource parse_oci_layout_source(std::string_view source);

/// Copies the image `source` names into the store and loads it. Errors name
/// the layout and what is wrong (no index.json, no such tag, several images
/// and no tag, a blob missing or not matching its digest). An index is
/// resolved to the manifest for `platform`.
Result<image::LoadedImage> load_oci_layout_image(image::ImageStore& store, std::string_view source,
                                                 const Platform& platform);

}  // namespace imgbuild::builder
