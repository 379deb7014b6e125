#include "image/layer_compression.hpp"

#include <charconv>

#include <fmt/format.h>

#include "image/blob_reader.hpp"
#include "image/content_store.hpp"
#include "util/hash.hpp"
#include "util/strings.hpp"

namespace imgbuild::image {
namespace {

// The compressed blob of one layer, made now: the source blob read
// (verified) and, when compressed, decompressed first.
Result<LayerRecord> make_variant(ImageStore& store, const std::string& source, LayerStorage have,
                                 const std::string& diff_id, const LayerCompression& c, std::string_view media_type) {
  TRY(auto staging, Staging::create(store.content()));
  TRY(BlobWriter writer, staging->writer());
  compress::Options opts{c.algorithm, c.level, c.threads};
  TRY(auto compressor,
      compress::Compressor::open([&](const void* d, size_t n) { return writer.write(d, n); }, opts));
  TRY(BlobReader blob, BlobReader::open(store.content(), source));
  auto mismatch = [&](const std::string& got) {
    return Error(Errc::corrupt, fmt::format("layer {} is corrupt in the store: its content hashes to {}, not its "
                                            "diff_id {}",
                                            source, got, diff_id));
  };
  if (have == LayerStorage::plain) {
    // An uncompressed blob's digest is its diff_id; BlobReader verifies it.
    if (source != diff_id) {
      return fail(mismatch(source));
    }
    TRY_VOID(blob.copy_to([&](const void* d, size_t n) { return compressor->write(d, n); }));
  } else {
    Sha256 plain;
    auto algorithm = have == LayerStorage::gzip ? compress::Algorithm::gzip : compress::Algorithm::zstd;
    TRY_VOID(compress::decompress(
        algorithm, [&](void* buf, size_t cap) { return blob.read(buf, cap); },
        [&](const void* d, size_t n) -> Result<void> {
          plain.update(d, n);
          return compressor->write(d, n);
        },
        "layer " + source));
    if (std::string got = plain.finish().str(); got != diff_id) {
      return fail(mismatch(got));
    }
  }
  TRY_VOID(compressor->finish());
  TRY(std::string digest, writer.commit());
  LayerRecord rec{digest, diff_id, std::string(media_type), static_cast<int64_t>(compressor->output_size()),
                  static_cast<int64_t>(compressor->input_size()), -1};
  // Leased before it is published: no prune can take it between the
  // commit and the output that reads it.
  TRY_VOID(store.lease().hold({{LeaseKind::blob, digest}}));
  TRY(MetaDb::Transaction tx, store.db().begin());
  TRY(bool added, staging->publish_one(digest));
  (void)added;
  TRY_VOID(store.db().put_layer(rec));
  TRY_VOID(store.db().put_layer_variant(diff_id, c.key(), digest));
  TRY_VOID(tx.commit());
  return rec;
}

}  // namespace

LayerStorage layer_storage(std::string_view mt) {
  if (mt == media::oci_layer || mt == media::docker_layer) {
    return LayerStorage::plain;
  }
  if (mt == media::oci_layer_gzip || mt == media::docker_layer_gzip) {
    return LayerStorage::gzip;
  }
  return mt == media::oci_layer_zstd ? LayerStorage::zstd : LayerStorage::other;
}

std::string LayerCompression::key() const {
  return fmt::format("{}-{}", compress::algorithm_name(algorithm),
                     compress::effective_level(compress::Options{algorithm, level, 0}));
}

Result<std::optional<LayerCompression>> parse_layer_compression(std::string_view compression,
                                                                std::string_view level, std::string_view force) {
  LayerCompression c;
  std::string name = str::to_lower(std::string(compression));
  if (name == "uncompressed") {
    return std::optional<LayerCompression>();
  }
  if (name.empty() || name == "gzip" || name == "estargz") {
    c.algorithm = compress::Algorithm::gzip;
  } else if (name == "zstd") {
    c.algorithm = compress::Algorithm::zstd;
  } else {
    return fail(Errc::invalid_argument,
                fmt::format("compression={}: unsupported (gzip, zstd or uncompressed)", compression));
  }
  if (!level.empty()) {
    int v = 0;
    auto [end, ec] = std::from_chars(level.data(), level.data() + level.size(), v);
    if (ec != std::errc() || end != level.data() + level.size()) {
      return fail(Errc::invalid_argument, fmt::format("compression-level={}: not a number", level));
    }
    auto checked = compress::check_level(c.algorithm, v);
    if (!checked) {
      return fail(Errc::invalid_argument, fmt::format("compression-level={}: {}", level, checked.error().message));
    }
    c.level = v;
  }
  if (!force.empty()) {
    std::string f = str::to_lower(std::string(force));
    if (f != "true" && f != "false") {
      return fail(Errc::invalid_argument, fmt::format("force-compression={}: expected true or false", force));
    }
    c.force = f == "true";
  }
  return std::optional<LayerCompression>(c);
}

Result<LayerRecord> compressed_layer(ImageStore& store, const std::string& digest, std::string_view media_type,
                                     const std::string& diff_id, const LayerCompression& c, std::string_view new_type,
                                     const CompressProgress& progress) {
  LayerStorage have = layer_storage(media_type);
  if (have == LayerStorage::other) {
    return fail(Errc::unsupported, fmt::format("layer {}: cannot compress a {} layer", digest, media_type));
  }
  TRY(std::optional<std::string> known, store.db().layer_variant(diff_id, c.key()));
  if (known && store.content().has(*known)) {
    TRY_VOID(store.lease().hold({{LeaseKind::blob, *known}}));
    if (store.content().has(*known)) {  // still there once leased
      TRY(uint64_t size, store.content().size(*known));
      return LayerRecord{*known, diff_id, std::string(new_type), static_cast<int64_t>(size), 0, -1};
    }
  }
  TRY(LayerRecord made, make_variant(store, digest, have, diff_id, c, new_type));
  if (progress) {
    progress(diff_id, made.blob_digest, static_cast<uint64_t>(made.blob_size));
  }
  return made;
}

Result<LoadedImage> compressed_form(ImageStore& store, const LoadedImage& img, const LayerCompression& c,
                                    const CompressProgress& progress) {
  const bool docker = img.manifest.media_type == media::docker_manifest;
  // zstd has no Docker media type: such a manifest becomes an OCI one.
  const bool to_oci = docker && c.algorithm == compress::Algorithm::zstd;
  const auto& diff_ids = img.config.rootfs.diff_ids;
  if (diff_ids.size() != img.manifest.layers.size()) {
    return fail(Errc::corrupt, fmt::format("image {}: the config lists {} diff_ids but the manifest {} layers",
                                           img.record.config_digest, diff_ids.size(), img.manifest.layers.size()));
  }
  LoadedImage out = img;
  bool changed = false;
  for (size_t i = 0; i < out.manifest.layers.size(); ++i) {
    Descriptor& l = out.manifest.layers[i];
    LayerStorage have = layer_storage(l.media_type);
    if (have == LayerStorage::other) {
      continue;
    }
    bool same = (have == LayerStorage::gzip && c.algorithm == compress::Algorithm::gzip) ||
                (have == LayerStorage::zstd && c.algorithm == compress::Algorithm::zstd);
    if (same || (have != LayerStorage::plain && !c.force)) {
      if (to_oci && l.media_type == media::docker_layer_gzip) {
        l.media_type = std::string(media::oci_layer_gzip);
        changed = true;
      }
      continue;
    }
    std::string_view mt = c.algorithm == compress::Algorithm::zstd ? media::oci_layer_zstd
                          : (docker && !to_oci)                   ? media::docker_layer_gzip
                                                                  : media::oci_layer_gzip;
    TRY(LayerRecord made, compressed_layer(store, l.digest, l.media_type, diff_ids[i], c, mt, progress));
    l.digest = made.blob_digest;
    l.size = made.blob_size;
    l.media_type = std::string(mt);
    changed = true;
  }
  if (!changed) {
    return out;
  }
  if (to_oci) {
    out.manifest.media_type = std::string(media::oci_manifest);
    out.manifest.config.media_type = std::string(media::oci_config);
  }
  out.manifest_bytes = serialize(out.manifest);
  std::string digest = sha256(out.manifest_bytes).str();
  TRY_VOID(store.lease().hold({{LeaseKind::blob, digest}}));
  if (!store.content().has(digest)) {
    TRY(auto staging, Staging::create(store.content()));
    TRY(std::string put, staging->put(out.manifest_bytes));
    TRY(MetaDb::Transaction tx, store.db().begin());
    TRY(bool added, staging->publish_one(put));
    (void)added;
    TRY_VOID(tx.commit());
  }
  out.record.manifest_digest = digest;
  out.record.media_type = out.manifest.media_type;
  return out;
}

}  // namespace imgbuild::image
