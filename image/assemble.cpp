// The config, the manifest and the store commit of a new image (see
// assemble.hpp).

#include "image/assemble.hpp"

#include "image/types.hpp"

namespace imgbuild::image {

Result<AssembledImage> stage_image(Staging& staging, const ImageConfig& config,
                                   const std::vector<AssembledLayer>& layers, const std::vector<Reference>& names,
                                   NewImage& ni) {
  AssembledImage out;
  out.config_bytes = serialize(config);
  TRY(out.config_digest, staging.put(out.config_bytes));
  Manifest m;
  m.media_type = std::string(media::oci_manifest);
  m.config.media_type = std::string(media::oci_config);
  m.config.digest = out.config_digest;
  m.config.size = static_cast<int64_t>(out.config_bytes.size());
  ni = NewImage{};
  for (const auto& l : layers) {
    m.layers.push_back(l.descriptor);
    ni.layers.push_back(l.record);
  }
  out.manifest_bytes = serialize(m);
  TRY(out.manifest_digest, staging.put(out.manifest_bytes));
  out.media_type = m.media_type;
  ni.manifest_digest = out.manifest_digest;
  ni.media_type = m.media_type;
  ni.config_digest = out.config_digest;
  ni.created = config.created;
  ni.names = names;
  return out;
}

Result<AssembledImage> commit_image(ImageStore& store, Staging& staging, const ImageConfig& config,
                                    const std::vector<AssembledLayer>& layers, const std::vector<Reference>& names) {
  NewImage ni;
  TRY(AssembledImage out, stage_image(staging, config, layers, names, ni));
  TRY_VOID(store.commit(staging, {ni}));
  return out;
}

}  // namespace imgbuild::image
