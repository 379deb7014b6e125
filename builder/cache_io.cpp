#include "builder/cache_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "builder/oci_layout.hpp"
#include "image/blob_reader.hpp"
#include "image/layer_compression.hpp"
#include "image/types.hpp"
#include "snapshot/apply.hpp"
#include "util/compress.hpp"
#include "util/fd.hpp"
#include "util/hash.hpp"
#include "util/strings.hpp"
#include "util/tar.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t k_max_config = size_t{64} << 20;
// The config document's format version (bump when a field changes meaning).
constexpr int64_t k_config_version = 1;
constexpr std::string_view k_mount_layer_type = "application/vnd.oci.image.layer.v1.tar+gzip";

std::string random_suffix() {
  static std::mutex mu;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard lock(mu);
  return fmt::format("{:016x}", rng());
}

bool parse_bool(const std::string& v, bool& out) {
  if (v == "true" || v == "1" || v.empty()) {
    out = true;
    return true;
  }
  if (v == "false" || v == "0") {
    out = false;
    return true;
  }
  return false;
}

// ---- the config document ------------------------------------------------------

json record_json(const cache::CacheRecord& r) {
  json j = {{"key", r.key},         {"parent_key", r.parent_key}, {"position", r.position},
            {"kind", r.kind},       {"config", r.config},         {"created_by", r.created_by},
            {"inputs", r.inputs}};
  if (r.has_layer()) {
    j["layer"] = {{"mediaType", r.layer.media_type},
                  {"digest", r.layer.blob_digest},
                  {"size", r.layer.blob_size},
                  {"diff_id", r.layer.diff_id},
                  {"diff_size", r.layer.diff_size}};
  }
  return j;
}

// A record from hostile JSON: every field checked; nullopt when unusable.
std::optional<cache::CacheRecord> record_of(const json& j) {
  if (!j.is_object()) {
    return std::nullopt;
  }
  auto text = [&](const char* name, std::string& out) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) {
      return false;
    }
    out = it->get<std::string>();
    return true;
  };
  cache::CacheRecord r;
  if (!text("key", r.key) || !OciLayoutDir::valid_digest(r.key) || !text("parent_key", r.parent_key) ||
      !text("kind", r.kind) || !text("config", r.config) || !text("created_by", r.created_by) ||
      !text("inputs", r.inputs)) {
    return std::nullopt;
  }
  auto pos = j.find("position");
  if (pos == j.end() || !pos->is_number_integer()) {
    return std::nullopt;
  }
  int64_t p = pos->get<int64_t>();
  if (p < -1 || p > 1'000'000) {
    return std::nullopt;
  }
  r.position = static_cast<int>(p);
  if (auto l = j.find("layer"); l != j.end() && !l->is_null()) {
    if (!l->is_object()) {
      return std::nullopt;
    }
    auto s = [&](const char* name, std::string& out) {
      auto it = l->find(name);
      if (it == l->end() || !it->is_string()) {
        return false;
      }
      out = it->get<std::string>();
      return true;
    };
    auto n = [&](const char* name, int64_t& out) {
      auto it = l->find(name);
      if (it == l->end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
        return false;
      }
      out = it->get<int64_t>();
      return true;
    };
    if (!s("mediaType", r.layer.media_type) || !s("digest", r.layer.blob_digest) ||
        !OciLayoutDir::valid_digest(r.layer.blob_digest) || !s("diff_id", r.layer.diff_id) ||
        !OciLayoutDir::valid_digest(r.layer.diff_id) || !n("size", r.layer.blob_size) ||
        !n("diff_size", r.layer.diff_size)) {
      return std::nullopt;
    }
    // Only layer media types (the built image's manifest repeats it).
    if (!r.layer.media_type.starts_with("application/vnd.oci.image.layer.v1.tar") &&
        !r.layer.media_type.starts_with("application/vnd.docker.image.rootfs.diff.tar")) {
      return std::nullopt;
    }
  }
  return r;
}

// ---- cache-mount tars ---------------------------------------------------------

// The entries of a mount directory, sorted as layer paths; false when
// larger than `max` (regular-file bytes).
bool mount_entries(const fsys::path& dir, uint64_t max, std::vector<std::string>& paths, uint64_t& total) {
  std::error_code ec;
  fsys::recursive_directory_iterator it(dir, fsys::directory_options::none, ec);
  for (; !ec && it != fsys::recursive_directory_iterator(); it.increment(ec)) {
    fsys::path rel = it->path().lexically_relative(dir);  // never through a symlink
    paths.push_back(rel.generic_string());
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) {
      total += it->file_size(ec);
      if (total > max) {
        return false;
      }
    }
  }
  tar::sort_layer_paths(paths);
  return true;
}

// Writes the deterministic gzip tar of `dir` to `out`; its digest and size.
Result<tar::WriteSummary> write_mount_tar(const fsys::path& dir, const std::vector<std::string>& paths,
                                          const fsys::path& out) {
  UniqueFd fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) {
    return fail(Errc::io, fmt::format("cannot create {}: {}", out.string(), std::strerror(errno)));
  }
  tar::WriterOptions wo;
  wo.compression = tar::Compression::gzip;
  TRY(auto w, tar::Writer::open_fd(fd.get(), wo));
  for (const auto& rel : paths) {
    fsys::path p = dir / rel;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
      continue;  // vanished meanwhile
    }
    tar::Entry e;
    e.path = rel;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    if (S_ISDIR(st.st_mode)) {
      e.type = tar::EntryType::dir;
      TRY_VOID(w->add(e));
    } else if (S_ISLNK(st.st_mode)) {
      e.type = tar::EntryType::symlink;
      std::error_code ec;
      e.link_target = fsys::read_symlink(p, ec).string();
      TRY_VOID(w->add(e));
    } else if (S_ISREG(st.st_mode)) {
      UniqueFd in(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      struct stat fst {};
      if (!in || ::fstat(in.get(), &fst) != 0) {
        continue;
      }
      e.type = tar::EntryType::file;
      e.size = static_cast<uint64_t>(fst.st_size);
      TRY_VOID(w->add_file_from_fd(e, in.get()));
    }
    // Devices, fifos and sockets are not cache content.
  }
  return w->finish();
}

}  // namespace

// ---- specs --------------------------------------------------------------------

Result<CacheSpec> parse_cache_spec(std::string_view text, bool for_export) {
  const char* flag = for_export ? "--cache-to" : "--cache-from";
  CacheSpec spec;
  std::string s(str::trim(text));
  auto bad = [&](const std::string& why) {
    return fail(Errc::invalid_argument, fmt::format("invalid {} {}: {}", flag, str::go_quote(text), why));
  };
  if (s.empty()) {
    return bad("empty value");
  }
  if (s.find('=') == std::string::npos) {
    // buildx: a bare value is a registry reference.
    spec.type = CacheSpec::Type::registry;
    spec.location = s;
    return spec;
  }
  std::string type;
  std::string dest;
  std::string src;
  std::string ref;
  for (const auto& part : str::split(s, ',')) {
    size_t eq = part.find('=');
    std::string k = str::to_lower(str::trim(part.substr(0, eq)));
    std::string v = eq == std::string::npos ? "" : part.substr(eq + 1);
    if (k == "type") {
      type = v;
    } else if (k == "dest") {
      dest = v;
    } else if (k == "src") {
      src = v;
    } else if (k == "ref") {
      ref = v;
    } else if (k == "mode") {
      if (v != "min" && v != "max") {
        return bad("mode must be min or max");
      }
      spec.mode_max = v == "max";
    } else if (k == "mounts") {
      if (!parse_bool(v, spec.mounts)) {
        return bad("mounts must be true or false");
      }
    } else if (k == "mounts-max-size") {
      auto n = str::parse_size(v);
      if (!n) {
        return bad(fmt::format("mounts-max-size {} is not a size (like 512MiB)", str::go_quote(v)));
      }
      spec.mounts_max_size = *n;
    } else if (k == "tag") {
      if (v.empty()) {
        return bad("empty tag");
      }
      spec.tag = v;
    } else if (k == "registry.insecure") {
      if (!parse_bool(v, spec.insecure)) {
        return bad("registry.insecure must be true or false");
      }
    } else if (k == "compression" || k == "compression-level" || k == "force-compression" ||
               k == "ignore-error" || k == "oci-mediatypes" || k == "image-manifest" || k == "digest") {
      // buildx keys with no meaning here: the format is fixed.
    } else {
      static const std::vector<std::string> k_keys = {"type",  "dest", "src",  "ref", "mode", "mounts",
                                                      "mounts-max-size", "tag", "registry.insecure"};
      auto near = str::closest_match(k, k_keys);
      return bad(fmt::format("unknown key {}{}", str::go_quote(k),
                             near ? fmt::format(" (did you mean {}?)", str::go_quote(*near)) : ""));
    }
  }
  if (type == "local") {
    spec.type = CacheSpec::Type::local;
    spec.location = for_export ? dest : src;
    if (spec.location.empty()) {
      return bad(for_export ? "type=local needs dest=DIR" : "type=local needs src=DIR");
    }
  } else if (type == "registry") {
    spec.type = CacheSpec::Type::registry;
    spec.location = ref;
    if (spec.location.empty()) {
      return bad("type=registry needs ref=REGISTRY/REPOSITORY[:TAG]");
    }
  } else if (type.empty()) {
    return bad("missing type= (local or registry)");
  } else {
    return bad(fmt::format("unsupported type {} (local, registry)", str::go_quote(type)));
  }
  return spec;
}

Result<std::unique_ptr<CacheRemote>> open_cache_remote(const CacheSpec& spec) {
  if (spec.type == CacheSpec::Type::local) {
    return make_local_cache(spec.location, spec.tag);
  }
  RegistryCacheOptions o;
  o.insecure = spec.insecure;
  return make_registry_cache(spec.location, o);
}

// ---- import -------------------------------------------------------------------

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
  TRY(std::string config_bytes, remote.read_blob(manifest.config.digest, k_max_config));
  json config = json::parse(config_bytes, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return fail(Errc::invalid_argument, fmt::format("{}: the cache config {} is not a JSON object", label,
                                                    manifest.config.digest));
  }
  if (auto v = config.find("version"); v == config.end() || !v->is_number_integer() ||
                                        v->get<int64_t>() != k_config_version) {
    return fail(Errc::invalid_argument, fmt::format("{}: the cache config {} is not version {} of the format", label,
                                                    manifest.config.digest, k_config_version));
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

size_t CacheIo::imported_records() const {
  std::lock_guard lock(m_mu);
  return m_records.size();
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

std::string CacheIo::source_of(const std::string& key) const {
  std::lock_guard lock(m_mu);
  auto it = m_hit_sources.find(key);
  return it == m_hit_sources.end() ? std::string() : it->second;
}

void CacheIo::note_key(const std::string& key) {
  std::lock_guard lock(m_mu);
  m_keys.insert(key);
}

void CacheIo::note_link(const std::string& derived, const std::string& parent) {
  std::lock_guard lock(m_mu);
  m_links[derived] = parent;
}

void CacheIo::note_mount(const std::string& id, const fsys::path& dir) {
  std::lock_guard lock(m_mu);
  m_used_mounts[id] = dir;
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
  fsys::path tmp = dir.parent_path() / (".seed-" + random_suffix());
  auto seeded = [&]() -> Result<void> {
    {
      UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!out) {
        return fail(Errc::io, fmt::format("cannot create {}: {}", tmp.string(), std::strerror(errno)));
      }
      Sha256 hash;
      TRY_VOID(remote->fetch_blob(m.digest, m.size, [&](const void* data, size_t size) -> Result<void> {
        hash.update(data, size);
        const char* p = static_cast<const char*>(data);
        while (size > 0) {
          ssize_t n = ::write(out.get(), p, size);
          if (n < 0 && errno == EINTR) {
            continue;
          }
          if (n < 0) {
            return fail(Errc::io, fmt::format("cannot write {}: {}", tmp.string(), std::strerror(errno)));
          }
          p += n;
          size -= static_cast<size_t>(n);
        }
        return ok();
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
  fsys::path tmp = dir.parent_path() / (".seed-dir-" + random_suffix());
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

// ---- export -------------------------------------------------------------------

Result<CacheExportSummary> CacheIo::export_to(CacheRemote& remote, const CacheSpec& spec, image::ImageStore& store,
                                              const std::string& target_key) {
  const image::ContentStore& content = store.content();
  const std::string& label = remote.label();
  TRY(auto db, cache::CacheDb::open(content.root() / "meta.db"));
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
    // The target's chain: parents, across stages through the links.
    std::string cur = target_key;
    std::set<std::string> seen;
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
      fsys::path out = content.root() / "tmp" / ("cache-mount-" + random_suffix() + ".tar.gz");
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

  json config = {{"version", k_config_version}, {"records", jrecords}, {"mounts", jmounts}};
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
