#pragma once
// A step's changes as a layer blob: the one path from a snapshot's upper
// directory to a stored layer, shared by a build's steps
// (Build::finish_layer) and `imgbuild commit` of a container. The blob is
// the uncompressed tar (its digest is its diff_id); compression waits for
// an output that needs it (image/layer_compression.hpp).

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "image/content_store.hpp"
#include "image/metadata.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// Diffs `upper` (overlayfs upper form) against `lowers` (topmost first;
/// empty: an independent layer) into a new blob of `staging` and returns
/// its record (media type OCI layer, sizes, content size).
/// `source_date_epoch` clamps the entries' times as snapshot/diff.hpp
/// says. `staging_mu`, when given, guards the staging area's writer
/// creation and commit (several steps write layers at once).
Result<image::LayerRecord> write_layer_blob(image::Staging& staging, std::mutex* staging_mu,
                                            const std::string& upper, const std::vector<std::string>& lowers,
                                            std::optional<int64_t> source_date_epoch = std::nullopt);

}  // namespace imgbuild::builder
