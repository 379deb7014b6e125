// Build-cache import (see builder/cache_io.hpp): a --cache-from's manifest
// and config are loaded when the build starts; a record is fetched on a
// local miss, its layer blob staged and verified (sha256, then the diff_id
// of its uncompressed tar) before record and blob are committed together;
// cache-mount tars seed a mount directory that is missing or empty.

#include "builder/cache_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "builder/cache_format.hpp"
#include "builder/oci_layout.hpp"
#include "image/blob_reader.hpp"
#include "image/layer_compression.hpp"
#include "image/types.hpp"
#include "snapshot/apply.hpp"
#include "util/compress.hpp"
#include "util/fd.hpp"
#include "util/hash.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"
#include "util/tar.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;
using nlohmann::json;

void CacheIo::add_import(std::unique_ptr<CacheRemote> remote, uint64_t mounts_max_size) {
  size_t index = 0;
  {
    std::lock_guard lock(m_mu);
    index = m_sources.size();
    m_sources.push_back(Source{std::move(remote), mounts_max_size});
  }
  auto loaded = load(index);
  if (!loaded) {
    if (loaded.error().code == Errc::not_found) {
      m_warn(fmt::format("{}: no cache to import ({}); building without it",
                         m_sources[index].remote->label(), loaded.error().message));
    } else {
      m_warn(fmt::format("ignoring {}: {}", m_sources[index].remote->label(), loaded.error().message));
    }
  }
}

Result<void> CacheIo::load(size_t index) {
  CacheRemote& remote = *m_sources[index].remote;
  const std::string& label = remote.label();
  TRY(std::string manifest_bytes, remote.read_manifest());
  TRY(image::Manifest manifest, image::parse_manifest(manifest_bytes, label + " manifest"));
  if (manifest.config.media_type != k_cache_config_media_type) {
    return fail(Errc::invalid_argument, fmt::format("{}: the manifest's config is a {}, not an imgbuild cache", label,
                                                    str::go_quote(manifest.config.media_type)));
  }
  TRY(std::string config_bytes, remote.read_blob(manifest.config.digest, k_max_cache_config));
  json config = json::parse(config_bytes, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return fail(Errc::invalid_argument, fmt::format("{}: the cache config {} is not a JSON object", label,
                                                    manifest.config.digest));
  }
  if (auto v = config.find("version"); v == config.end() || !v->is_number_integer() ||
                                        v->get<int64_t>() != k_cache_config_version) {
    return fail(Errc::invalid_argument, fmt::format("{}: the cache config {} is not version {} of the format", label,
                                                    manifest.config.digest, k_cache_config_version));
  }
  // Only blobs the manifest lists may be fetched.
  std::map<std::string, int64_t> listed;
  for (const auto& l : manifest.layers) {
    if (!OciLayoutDir::valid_digest(l.digest) || l.size < 0) {
      continue;
    }
    listed[l.digest] = l.size;
  }
  size_t bad = 0;
  std::map<std::string, Imported> records;
  if (auto it = config.find("records"); it != config.end() && it->is_array()) {
    for (const auto& j : *it) {
      auto rec = record_of(j);
      if (!rec || (rec->has_layer() && listed.count(rec->layer.blob_digest) == 0)) {
        ++bad;
        continue;
      }
      std::string key = rec->key;
      records.emplace(std::move(key), Imported{std::move(*rec), index});
    }
  }
  std::map<std::string, ImportedMount> mounts;
  if (auto it = config.find("mounts"); it != config.end() && it->is_array()) {
    for (const auto& j : *it) {
      if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("digest") ||
          !j["digest"].is_string()) {
        ++bad;
        continue;
      }
      std::string digest = j["digest"].get<std::string>();
      auto l = listed.find(digest);
      if (l == listed.end()) {
        ++bad;
        continue;
      }
      mounts.emplace(j["id"].get<std::string>(), ImportedMount{digest, l->second, index});
    }
  }
  if (bad > 0) {
    m_warn(fmt::format("{}: ignoring {} malformed cache record(s)", label, bad));
  }
  std::lock_guard lock(m_mu);
  for (auto& [k, v] : records) {
    m_records.emplace(k, std::move(v));  // an earlier --cache-from wins
  }
  for (auto& [k, v] : mounts) {
    m_mounts.emplace(k, std::move(v));
  }
  return ok();
}

Result<std::optional<cache::CacheRecord>> CacheIo::fetch(const std::string& key, const image::ContentStore& content,
                                                         cache::CacheDb& db) {
  cache::CacheRecord rec;
  CacheRemote* remote = nullptr;
  {
    std::lock_guard lock(m_mu);
    auto it = m_records.find(key);
    if (it == m_records.end()) {
      return std::optional<cache::CacheRecord>();
    }
    rec = it->second.record;
    remote = m_sources[it->second.source].remote.get();
  }
  auto drop = [&](const std::string& why) {
    m_warn(fmt::format("{}: {}; not using its record of {}", remote->label(), why, key));
    std::lock_guard lock(m_mu);
    m_records.erase(key);
    return std::optional<cache::CacheRecord>();
  };
  rec.created_at = static_cast<int64_t>(std::time(nullptr));
  rec.last_used = rec.created_at;
  std::unique_ptr<image::Staging> staging;
  const std::string received = rec.layer.blob_digest;  // as the cache names it, for messages
  const image::LayerStorage storage =
      rec.has_layer() ? image::layer_storage(rec.layer.media_type) : image::LayerStorage::other;
  const bool compressed_layer = storage == image::LayerStorage::gzip || storage == image::LayerStorage::zstd;
  if (compressed_layer && content.has(rec.layer.diff_id)) {
    // The store holds the layer uncompressed already (checked below).
    TRY(uint64_t size, content.size(rec.layer.diff_id));
    rec.layer.blob_digest = rec.layer.diff_id;
    rec.layer.media_type = std::string(image::media::oci_layer);
    rec.layer.blob_size = static_cast<int64_t>(size);
  } else if (rec.has_layer() && !content.has(rec.layer.blob_digest)) {
    const std::string& digest = rec.layer.blob_digest;
    TRY(staging, image::Staging::create(content));
    TRY(auto writer, staging->writer(digest));
    auto got = remote->fetch_blob(digest, rec.layer.blob_size,
                                  [&](const void* data, size_t size) { return writer.write(data, size); });
    if (!got) {
      return drop(fmt::format("layer blob {} unavailable: {}", digest, got.error().message));
    }
    auto committed = writer.commit(digest);
    if (!committed) {
      return drop(fmt::format("layer blob {} failed verification: {}", digest, committed.error().message));
    }
  }
  if (compressed_layer && rec.layer.blob_digest != rec.layer.diff_id) {
    // A build keeps its layers uncompressed (image/layer_compression.hpp):
    // the record is stored with the decompressed tar, so a build from the
    // cache gives the image digest a build without it gives.
    const std::string compressed = rec.layer.blob_digest;
    fsys::path path = staging ? staging->path(compressed) : content.blob_path(compressed);
    if (!staging) {
      TRY(staging, image::Staging::create(content));
    }
    auto plain = [&]() -> Result<std::string> {
      TRY(image::BlobReader blob, image::BlobReader::open_file(path, compressed));
      TRY(auto writer, staging->writer());
      auto algorithm =
          storage == image::LayerStorage::zstd ? compress::Algorithm::zstd : compress::Algorithm::gzip;
      TRY_VOID(compress::decompress(
          algorithm, [&](void* buf, size_t cap) { return blob.read(buf, cap); },
          [&](const void* d, size_t n) { return writer.write(d, n); }, "layer " + compressed));
      return writer.commit();
    }();
    if (!plain) {
      return drop(fmt::format("layer blob {} is not a readable layer: {}", compressed, plain.error().message));
    }
    TRY(uint64_t size, staging->size(*plain));
    rec.layer.blob_digest = *plain;
    rec.layer.media_type = std::string(image::media::oci_layer);
    rec.layer.blob_size = static_cast<int64_t>(size);
  }
  if (rec.has_layer()) {
    // The diff_id (the sha256 of the uncompressed tar), also when the blob
    // was here already: the record must not name a layer it does not hold.
    const std::string& digest = rec.layer.blob_digest;
    fsys::path path = staging ? staging->path(digest) : content.blob_path(digest);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      return drop(fmt::format("layer blob {} vanished", digest));
    }
    auto diff = [&]() -> Result<Sha256Digest> {
      TRY(auto reader, tar::Reader::open_fd(fd.get(), "layer " + digest));
      while (true) {
        TRY(auto e, reader->next());
        if (!e) {
          break;
        }
      }
      TRY(auto summary, reader->finish());
      return summary.diff_id;
    }();
    if (!diff) {
      return drop(fmt::format("layer blob {} is not a readable layer: {}", received, diff.error().message));
    }
    if (diff->str() != rec.layer.diff_id) {
      return drop(fmt::format("layer blob {} failed verification: its diff_id is {}, the record says {}", received,
                              diff->str(), rec.layer.diff_id));
    }
  }
  TRY_VOID(db.put(rec, [&]() -> Result<void> {
    if (staging) {
      TRY(bool added, staging->publish_one(rec.layer.blob_digest));
      (void)added;
    }
    return ok();
  }));
  std::lock_guard lock(m_mu);
  m_hit_sources[key] = remote->label();
  return std::optional<cache::CacheRecord>(std::move(rec));
}

void CacheIo::seed_mount(const std::string& id, const fsys::path& dir) {
  ImportedMount m;
  CacheRemote* remote = nullptr;
  uint64_t max_bytes = 0;
  {
    std::lock_guard lock(m_mu);
    auto it = m_mounts.find(id);
    if (it == m_mounts.end()) {
      return;
    }
    m = it->second;
    remote = m_sources[m.source].remote.get();
    max_bytes = m_sources[m.source].mounts_max_size;
  }
  // Fetched to a file next to the directory, verified, then applied.
  fsys::path tmp = dir.parent_path() / (".seed-" + io::random_hex());
  auto seeded = [&]() -> Result<void> {
    {
      UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!out) {
        return fail(Errc::io, fmt::format("cannot create {}: {}", tmp.string(), std::strerror(errno)));
      }
      Sha256 hash;
      TRY_VOID(remote->fetch_blob(m.digest, m.size, [&](const void* data, size_t size) -> Result<void> {
        hash.update(data, size);
        return io::write_all(out.get(), data, size, tmp.string());
      }));
      std::string got = hash.finish().str();
      if (got != m.digest) {
        return fail(Errc::corrupt, fmt::format("blob {} failed verification (its content hashes to {})", m.digest, got));
      }
    }
    UniqueFd in(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) {
      return fail(Errc::io, fmt::format("cannot reopen {}: {}", tmp.string(), std::strerror(errno)));
    }
    snapshot::ApplyOptions opts;
    opts.mode = snapshot::ApplyMode::merged;
    opts.max_bytes = max_bytes;
    TRY(auto applied, snapshot::apply_layer_fd(dir.string(), in.get(), "cache mount " + id, opts));
    (void)applied;
    return ok();
  }();
  std::error_code ec;
  fsys::remove(tmp, ec);
  if (!seeded) {
    // A half-applied tar is not a cache: the mount starts empty instead.
    for (const auto& child : fsys::directory_iterator(dir, ec)) {
      fsys::remove_all(child.path(), ec);
    }
    m_warn(fmt::format("{}: cache mount {} not imported: {}", remote->label(), str::go_quote(id),
                       seeded.error().message));
  }
}

void CacheIo::seed_mount_if_empty(const std::string& id, const fsys::path& dir) {
  {
    std::lock_guard lock(m_mu);
    if (m_mounts.count(id) == 0) {
      return;
    }
  }
  std::error_code ec;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || !fsys::is_empty(dir, ec) || ec) {
    return;
  }
  fsys::path tmp = dir.parent_path() / (".seed-dir-" + io::random_hex());
  if (::mkdir(tmp.c_str(), st.st_mode & 07777) != 0) {
    return;
  }
  if (::chmod(tmp.c_str(), st.st_mode & 07777) != 0 || ::chown(tmp.c_str(), st.st_uid, st.st_gid) != 0) {
    fsys::remove_all(tmp, ec);
    return;
  }
  seed_mount(id, tmp);
  // rename(2) replaces an empty directory; one filled meanwhile stays.
  if (fsys::is_empty(tmp, ec) || ::rename(tmp.c_str(), dir.c_str()) != 0) {
    fsys::remove_all(tmp, ec);
  }
}

}  // namespace imgbuild::builder
