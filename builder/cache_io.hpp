#pragma once
// Build-cache export and import (--cache-to / --cache-from, docker buildx's
// spellings: type=local,dest=DIR / type=local,src=DIR / type=registry,ref=REF,
// a bare value = a registry reference).
//
// Format: one OCI image manifest (application/vnd.oci.image.manifest.v1+json),
// so the same thing is an OCI layout directory (index.json names it with
// org.opencontainers.image.ref.name, "latest" by default) and a plain image
// manifest a registry takes under a tag:
//  - config: a JSON blob of media type k_cache_config_media_type,
//      {"version": 1,
//       "records": [ {key, parent_key, position, kind, layer?, config,
//                     created_by, inputs}, … sorted by key ],
//       "mounts":  [ {id, digest, size}, … sorted by id ]}
//    where layer = {mediaType, digest, size, diff_id, diff_size}; no times,
//    so the same records give the same bytes;
//  - layers: the layer blobs the records reference (as stored: gzip tars)
//    and, with mounts=true, one gzip tar per RUN --mount=type=cache
//    directory the build used (sorted names, owners and modes kept, mtimes
//    zero), annotated k_mount_annotation = the mount id; sorted by digest,
//    each once.
// mode=min exports the records of the target's chain (its stage and the
// stages it is built FROM, FROM records included) — of each target
// platform's chain when the build made several, a record they share once,
// as buildx exports the records each platform's final image needs;
// mode=max every record the build hit or wrote, of every platform. A second export to the same place sends only the
// blobs not there yet (a local dir keeps blobs no manifest references any
// more, as buildx's local cache does; `rm -rf DIR` starts over).
//
// Import is lazy: the manifest and config are read when the build starts
// (failures are warnings: the build goes on cold); a record is consulted
// on a local miss, its layer blob fetched into the store verified (sha256,
// then the diff_id of its uncompressed tar) before the record is written
// to the local cache. A record whose blob fails is dropped with a warning
// naming the cache and the digest; the step then runs. Cache-mount tars
// seed a mount directory the store does not have yet or has empty.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "builder/cache_remote.hpp"
#include "cache/records.hpp"
#include "image/content_store.hpp"
#include "image/store.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// Media type of the cache manifest's config blob.
inline constexpr std::string_view k_cache_config_media_type = "application/vnd.imgbuild.cache.config.v1+json";
/// Annotation naming the cache mount a layer of the cache manifest holds.
inline constexpr std::string_view k_mount_annotation = "org.imgbuild.cache.mount.id";

/// One --cache-to or --cache-from value.
struct CacheSpec {
  enum class Type { local, registry };
  Type type = Type::local;
  /// The directory (local) or reference (registry).
  std::string location;
  /// mode=max.
  bool mode_max = false;
  /// mounts=true: export (and import) cache-mount directories.
  bool mounts = false;
  /// mounts-max-size: a cache mount larger than this is skipped with a warning.
  uint64_t mounts_max_size = uint64_t{512} << 20;
  /// tag=: the index.json entry name of a local cache ("latest").
  std::string tag = "latest";
  /// registry.insecure=true: plain HTTP, no TLS verification.
  bool insecure = false;
};

/// Parses a --cache-to (`for_export`) or --cache-from value. Errors
/// (Errc::invalid_argument) quote the value and name the bad key.
Result<CacheSpec> parse_cache_spec(std::string_view text, bool for_export);

/// The transport a spec names.
Result<std::unique_ptr<CacheRemote>> open_cache_remote(const CacheSpec& spec);

/// Receives warnings (printed by the caller).
using CacheWarn = std::function<void(const std::string&)>;

/// What an export wrote.
struct CacheExportSummary {
  size_t records = 0;
  size_t blobs = 0;      ///< layers of the manifest (record layers and mounts)
  size_t new_blobs = 0;  ///< blobs sent (not there before)
  size_t mounts = 0;
};

/// The imports of one build and what it used, for the exports after it.
/// Thread-safe.
class CacheIo {
public:
  /// `warn` receives every warning.
  explicit CacheIo(CacheWarn warn) : m_warn(std::move(warn)) {}

  /// Reads the manifest and config of an import source; any failure is a
  /// warning and the source is ignored. A cache mount seeded from it may
  /// unpack at most `mounts_max_size` bytes of files (more: a warning, the
  /// mount stays empty).
  void add_import(std::unique_ptr<CacheRemote> remote, uint64_t mounts_max_size = CacheSpec{}.mounts_max_size);
  /// Records available from the imports.
  size_t imported_records() const;

  /// On a local miss: the imported record of `key`, its layer blob stored
  /// (verified) and the record written to `db`; nullopt when no import has
  /// it or its blob failed verification (warned).
  Result<std::optional<cache::CacheRecord>> fetch(const std::string& key, const image::ContentStore& content,
                                                  cache::CacheDb& db);
  /// Where the hit of `key` came from ("" = the local cache).
  std::string source_of(const std::string& key) const;

  /// Notes a key this build hit or wrote (mode=max).
  void note_key(const std::string& key);
  /// Notes that a stage built on another starts from `derived`, made from
  /// the other stage's final key `parent` (mode=min follows it).
  void note_link(const std::string& derived, const std::string& parent);
  /// Notes a cache-mount directory the build used.
  void note_mount(const std::string& id, const std::filesystem::path& dir);
  /// Fills the new, empty cache-mount directory `dir` from an imported tar
  /// of mount `id`, if any (verified first; failures are warnings).
  void seed_mount(const std::string& id, const std::filesystem::path& dir);
  /// The same for an existing cache-mount directory that is empty: seeded
  /// aside (same mode and owner) and renamed over it, so a concurrent user
  /// sees it empty or whole.
  void seed_mount_if_empty(const std::string& id, const std::filesystem::path& dir);

  /// Writes the cache of this build to `remote` as `spec` says, from
  /// `store`. `target_keys`: the last key of each image the build made (one
  /// per target platform); mode=min exports the chains ending there.
  Result<CacheExportSummary> export_to(CacheRemote& remote, const CacheSpec& spec, image::ImageStore& store,
                                       const std::vector<std::string>& target_keys);

private:
  struct Source {
    std::unique_ptr<CacheRemote> remote;
    uint64_t mounts_max_size = 0;
  };
  struct Imported {
    cache::CacheRecord record;
    size_t source = 0;
  };
  struct ImportedMount {
    std::string digest;
    int64_t size = 0;
    size_t source = 0;
  };
  Result<void> load(size_t source);

  CacheWarn m_warn;
  mutable std::mutex m_mu;
  std::vector<Source> m_sources;
  std::map<std::string, Imported> m_records;
  std::map<std::string, ImportedMount> m_mounts;
  std::map<std::string, std::string> m_hit_sources;
  std::set<std::string> m_keys;
  std::map<std::string, std::string> m_links;
  std::map<std::string, std::filesystem::path> m_used_mounts;
};

}  // namespace imgbuild::builder
