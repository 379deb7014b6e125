// A snapshot's changes as a stored layer blob (see layer_blob.hpp).

#include "builder/layer_blob.hpp"

#include "image/types.hpp"
#include "snapshot/diff.hpp"

namespace imgbuild::builder {

Result<image::LayerRecord> write_layer_blob(image::Staging& staging, std::mutex* staging_mu,
                                            const std::string& upper, const std::vector<std::string>& lowers,
                                            std::optional<int64_t> source_date_epoch) {
  snapshot::DiffOptions dopts;
  dopts.compression = tar::Compression::none;
  dopts.source_date_epoch = source_date_epoch;
  std::optional<image::BlobWriter> writer;
  {
    std::unique_lock<std::mutex> lock;
    if (staging_mu != nullptr) {
      lock = std::unique_lock(*staging_mu);
    }
    TRY(auto w, staging.writer());
    writer.emplace(std::move(w));
  }
  TRY(auto diff, snapshot::diff_overlay(
                     upper, lowers,
                     [&](const void* data, size_t size) -> Result<void> { return writer->write(data, size); },
                     dopts));
  std::string digest;
  {
    std::unique_lock<std::mutex> lock;
    if (staging_mu != nullptr) {
      lock = std::unique_lock(*staging_mu);
    }
    TRY(digest, writer->commit());
  }
  image::LayerRecord rec;
  rec.blob_digest = digest;
  rec.diff_id = diff.layer.diff_id.str();
  rec.media_type = std::string(image::media::oci_layer);
  rec.blob_size = static_cast<int64_t>(diff.layer.size);
  rec.diff_size = static_cast<int64_t>(diff.layer.uncompressed_size);
  rec.content_size = static_cast<int64_t>(diff.content_size);
  return rec;
}

}  // namespace imgbuild::builder
