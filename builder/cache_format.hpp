#pragma once
// The exported cache's config document and cache-mount tars (internal to
// builder/cache_*.cpp; the format is described in builder/cache_io.hpp).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/records.hpp"
#include "util/result.hpp"
#include "util/tar.hpp"

namespace imgbuild::builder {

/// The largest cache config document read.
inline constexpr size_t k_max_cache_config = size_t{64} << 20;
/// The config document's format version (bump when a field changes meaning).
inline constexpr int64_t k_cache_config_version = 1;
/// Media type of an exported cache-mount tar.
inline constexpr std::string_view k_mount_layer_type = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One record of the config document.
nlohmann::json record_json(const cache::CacheRecord& r);

/// A record from hostile JSON: every field checked; nullopt when unusable.
std::optional<cache::CacheRecord> record_of(const nlohmann::json& j);

/// The entries of a mount directory, sorted as layer paths, into `paths`
/// and their regular-file bytes into `total`; false when larger than `max`.
bool mount_entries(const std::filesystem::path& dir, uint64_t max, std::vector<std::string>& paths,
                   uint64_t& total);

/// Writes the deterministic gzip tar of `paths` under `dir` to `out`; its
/// digest and size.
Result<tar::WriteSummary> write_mount_tar(const std::filesystem::path& dir, const std::vector<std::string>& paths,
                                          const std::filesystem::path& out);

}  // namespace imgbuild::builder
