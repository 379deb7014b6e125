// Build-cache export (see builder/cache_io.hpp): the records of each target
// platform's chain (mode=min) or of every key the build hit or wrote
// (mode=max), their
// layers gzip'd as the cache carries them, the cache mounts as tars, one
// manifest; only blobs the destination lacks are sent.

#include "builder/cache_io.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "builder/cache_format.hpp"
#include "image/layer_compression.hpp"
#include "image/metadata.hpp"
#include "image/types.hpp"
#include "util/hash.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"
#include "util/tar.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;
using nlohmann::json;

Result<CacheExportSummary> CacheIo::export_to(CacheRemote& remote, const CacheSpec& spec, image::ImageStore& store,
                                              const std::vector<std::string>& target_keys) {
  const image::ContentStore& content = store.content();
  const std::string& label = remote.label();
  TRY(auto db, cache::CacheDb::open(image::meta_db_path(content.root())));
  std::set<std::string> keys;
  std::map<std::string, std::string> links;
  std::map<std::string, fsys::path> used_mounts;
  {
    std::lock_guard lock(m_mu);
    links = m_links;
    used_mounts = m_used_mounts;
    if (spec.mode_max) {
      keys = m_keys;
    }
  }
  std::map<std::string, cache::CacheRecord> records;
  if (spec.mode_max) {
    for (const auto& k : keys) {
      TRY(auto rec, db->get(k));
      if (rec) {
        records.emplace(k, std::move(*rec));
      }
    }
  } else {
    // Each target's chain: parents, across stages through the links. A
    // part two platforms share (a stage built once for both) is walked once.
    std::set<std::string> seen;
    for (const auto& target_key : target_keys) {
      std::string cur = target_key;
      while (!cur.empty() && seen.insert(cur).second) {
        TRY(auto rec, db->get(cur));
        if (rec) {
          cur = rec->parent_key;
          records.emplace(rec->key, std::move(*rec));
          continue;
        }
        auto link = links.find(cur);
        if (link == links.end()) {
          break;
        }
        cur = link->second;
      }
    }
  }

  CacheExportSummary summary;
  std::map<std::string, image::Descriptor> layers;  // digest → descriptor
  json jrecords = json::array();
  for (auto& [key, rec] : records) {
    if (rec.has_layer()) {
      if (!content.has(rec.layer.blob_digest)) {
        m_warn(fmt::format("{}: layer {} of record {} is no longer in the store; record not exported", label,
                           rec.layer.blob_digest, key));
        continue;
      }
      // Builds commit layers uncompressed; the cache carries them gzip'd
      // (made once and kept: image/layer_compression.hpp), as buildx does.
      if (image::layer_storage(rec.layer.media_type) == image::LayerStorage::plain) {
        TRY(image::LayerRecord gz,
            image::compressed_layer(store, rec.layer.blob_digest, rec.layer.media_type, rec.layer.diff_id,
                                    image::LayerCompression{}, image::media::oci_layer_gzip));
        rec.layer.blob_digest = gz.blob_digest;
        rec.layer.media_type = gz.media_type;
        rec.layer.blob_size = gz.blob_size;
      }
      image::Descriptor d;
      d.media_type = rec.layer.media_type;
      d.digest = rec.layer.blob_digest;
      d.size = rec.layer.blob_size;
      layers.emplace(d.digest, d);
    }
    jrecords.push_back(record_json(rec));
    ++summary.records;
  }

  // Cache mounts, each as a deterministic tar staged in the store's tmp/.
  struct MountTar {
    std::string id;
    fsys::path path;
    tar::WriteSummary written;
  };
  std::vector<MountTar> tars;
  auto cleanup = [&] {
    for (const auto& t : tars) {
      std::error_code ec;
      fsys::remove(t.path, ec);
    }
  };
  json jmounts = json::array();
  if (spec.mounts) {
    for (const auto& [id, dir] : used_mounts) {
      std::error_code ec;
      if (!fsys::is_directory(dir, ec)) {
        continue;  // never created in this store
      }
      std::vector<std::string> paths;
      uint64_t total = 0;
      if (!mount_entries(dir, spec.mounts_max_size, paths, total)) {
        m_warn(fmt::format("{}: cache mount {} is larger than mounts-max-size ({}); not exported", label,
                           str::go_quote(id), str::human_size(spec.mounts_max_size)));
        continue;
      }
      fsys::path out = content.root() / "tmp" / ("cache-mount-" + io::random_hex() + ".tar.gz");
      auto written = write_mount_tar(dir, paths, out);
      if (!written) {
        fsys::remove(out, ec);
        cleanup();
        return fail(Errc::io, fmt::format("{}: cache mount {}: {}", label, str::go_quote(id), written.error().message));
      }
      tars.push_back(MountTar{id, out, *written});
      image::Descriptor d;
      d.media_type = std::string(k_mount_layer_type);
      d.digest = written->digest.str();
      d.size = static_cast<int64_t>(written->size);
      d.annotations[std::string(k_mount_annotation)] = id;
      layers[d.digest] = d;  // identical content under two ids: the later id names it
      jmounts.push_back({{"id", id}, {"digest", d.digest}, {"size", d.size}});
      ++summary.mounts;
    }
  }

  json config = {{"version", k_cache_config_version}, {"records", jrecords}, {"mounts", jmounts}};
  std::string config_bytes = config.dump();
  image::Manifest m;
  m.media_type = std::string(image::media::oci_manifest);
  m.config.media_type = std::string(k_cache_config_media_type);
  m.config.digest = sha256(config_bytes).str();
  m.config.size = static_cast<int64_t>(config_bytes.size());
  for (const auto& [digest, d] : layers) {
    m.layers.push_back(d);
  }
  std::string manifest_bytes = image::serialize(m);

  auto sent = [&]() -> Result<void> {
    for (const auto& [digest, d] : layers) {
      fsys::path path = content.blob_path(digest);
      for (const auto& t : tars) {
        if (t.written.digest.str() == digest) {
          path = t.path;
        }
      }
      TRY(bool added, remote.put_blob_file(digest, d.size, path));
      summary.new_blobs += added ? 1 : 0;
    }
    TRY(bool added, remote.put_blob_bytes(m.config.digest, config_bytes));
    (void)added;
    return remote.put_manifest(manifest_bytes);
  }();
  cleanup();
  TRY_VOID(sent);
  summary.blobs = layers.size();
  return summary;
}

}  // namespace imgbuild::builder
