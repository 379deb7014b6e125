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
// resolved to the host platform's manifest.

#include <string>
#include <string_view>

#include "image/store.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

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
/// and no tag, a blob missing or not matching its digest).
Result<image::LoadedImage> load_oci_layout_image(image::ImageStore& store, std::string_view source);

}  // namespace imgbuild::builder
