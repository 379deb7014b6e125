#pragma once
// The one way an image is assembled and stored: its config and an OCI
// manifest over its layers are put into a staging area, then committed to
// the store with the layer records and the names in one transaction. A
// build's final image (builder/executor.cpp), `commit` of a container and
// `import` of a rootfs tar all go through commit_image.

#include <string>
#include <vector>

#include "image/content_store.hpp"
#include "image/metadata.hpp"
#include "image/reference.hpp"
#include "image/store.hpp"
#include "image/types.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// One layer of an image being assembled: its manifest descriptor (media
/// type, digest, size, and whatever else it carries) and its record.
struct AssembledLayer {
  Descriptor descriptor;
  LayerRecord record;
};

/// What commit_image stored.
struct AssembledImage {
  std::string config_bytes;
  std::string config_digest;
  std::string manifest_bytes;
  std::string manifest_digest;
  /// The manifest's media type (OCI).
  std::string media_type;
};

/// Puts `config` (serialized as is: its rootfs, history and created time
/// are the caller's) and an OCI manifest of `layers`, in order, into
/// `staging`, and fills `ni` with what a commit of them stores under
/// `names`: for a caller that commits several images in one transaction
/// (a multi-platform build). commit_image is this plus the commit.
Result<AssembledImage> stage_image(Staging& staging, const ImageConfig& config,
                                   const std::vector<AssembledLayer>& layers, const std::vector<Reference>& names,
                                   NewImage& ni);

/// Puts `config` (serialized as is: its rootfs, history and created time
/// are the caller's) and an OCI manifest of `layers`, in order, into
/// `staging`, and commits them with the layers' blobs and records and
/// `names` to `store` in one transaction. The layer blobs must be in the
/// store or in `staging` already.
Result<AssembledImage> commit_image(ImageStore& store, Staging& staging, const ImageConfig& config,
                                    const std::vector<AssembledLayer>& layers, const std::vector<Reference>& names);

}  // namespace imgbuild::image
