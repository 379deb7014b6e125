#pragma once
// Compression on demand. A build commits its layers uncompressed (the blob is
// the layer tar itself, blob digest = diff_id): nothing is compressed while a
// step runs, and a `docker load` tarball needs no compression at all. An
// output that distributes the image (push, -o type=oci/registry, cache
// export) asks for its compressed form here: each uncompressed layer is
// compressed (util/compress: every core, deterministic) into a new blob of the
// store, recorded as that layer's variant for that compression, so a second
// push or export reuses it. Layers already compressed (pulled images) are kept
// as they are unless `force` asks for another algorithm, as buildx's
// force-compression does. The compressed blobs and the rewritten manifest are
// ordinary store blobs that no image references: prune may remove them, and
// the next output makes them again, byte for byte the same.

#include <functional>
#include <string>
#include <string_view>

#include "image/store.hpp"
#include "util/compress.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// How a layer blob is stored, from its media type: `other` for types that
/// are never converted (foreign, non-distributable, unknown).
enum class LayerStorage { plain, gzip, zstd, other };
LayerStorage layer_storage(std::string_view media_type);

/// The compression an output wants (buildx's compression=,
/// compression-level=, force-compression=).
struct LayerCompression {
  compress::Algorithm algorithm = compress::Algorithm::gzip;
  /// -1: the algorithm's default.
  int level = -1;
  /// Recompress layers already compressed with another algorithm.
  bool force = false;
  /// Compression threads (0: one per core); never changes the output.
  unsigned threads = 0;

  /// The variant key: algorithm and effective level, "gzip-4", "zstd-3".
  std::string key() const;
};

/// Parses buildx's output attributes: `compression` (gzip, zstd,
/// uncompressed), `compression-level`, `force-compression`. Returns nothing
/// for "uncompressed". Errors name the attribute and the value.
Result<std::optional<LayerCompression>> parse_layer_compression(std::string_view compression,
                                                                std::string_view level, std::string_view force);

/// Called once per layer that had to be compressed now: its diff_id, and
/// the new blob's digest and size.
using CompressProgress = std::function<void(const std::string& diff_id, const std::string& digest, uint64_t size)>;

/// The layer `digest` (stored as `media_type`, content `diff_id`) compressed
/// as `c` asks, with media type `new_type`: the recorded variant when the
/// store still holds it, else made now (and recorded). The blob is leased
/// to this process. Used for one layer at a time (cache export).
Result<LayerRecord> compressed_layer(ImageStore& store, const std::string& digest, std::string_view media_type,
                                     const std::string& diff_id, const LayerCompression& c, std::string_view new_type,
                                     const CompressProgress& progress = {});

/// The image as an output distributes it: the same config, a manifest whose
/// layers are compressed as `c` asks (made now or reused). Returns `img`
/// itself when no layer changes; else a copy whose record.manifest_digest,
/// manifest and manifest_bytes are the compressed form (its manifest is a
/// blob of the store; record.size and names are unchanged). The new blobs
/// are leased to this process.
Result<LoadedImage> compressed_form(ImageStore& store, const LoadedImage& img, const LayerCompression& c,
                                    const CompressProgress& progress = {});

}  // namespace imgbuild::image
