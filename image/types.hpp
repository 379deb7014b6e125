#pragma once
// OCI image spec v1.1 and Docker image manifest v2 schema 2 documents as plain
// structs. Reading accepts both families' media types; every struct keeps the
// fields it does not know in `extra`, so a document read and written again
// loses nothing. Writing uses canonical_json (sorted keys), and omits empty
// optional fields the way Go's `omitempty` does.
//
// Documents read from the outside are kept as their original bytes wherever a
// digest covers them; these structs are for looking inside and for building
// new documents.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/result.hpp"

namespace imgbuild::image {

/// Media type strings of both families.
namespace media {
inline constexpr std::string_view oci_index = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view oci_manifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view oci_config = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view oci_layer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view oci_layer_gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view oci_layer_zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view oci_layer_nondist = "application/vnd.oci.image.layer.nondistributable.v1.tar";
inline constexpr std::string_view oci_layer_nondist_gzip =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr std::string_view oci_layer_nondist_zstd =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
inline constexpr std::string_view docker_manifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view docker_manifest_list =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view docker_config = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view docker_layer = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr std::string_view docker_layer_gzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view docker_layer_foreign_gzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}  // namespace media

/// What a media type names.
enum class MediaKind { index, manifest, config, layer, unknown };

/// Classifies a media type of either family; unknown strings give `unknown`.
MediaKind media_kind(std::string_view media_type);

/// A platform as found in an index entry or a config.
struct Platform {
  std::string architecture;
  std::string os;
  std::string os_version;
  std::vector<std::string> os_features;
  std::string variant;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown fields
};

/// A content descriptor: what, which digest, how big.
struct Descriptor {
  std::string media_type;
  std::string digest;  ///< "sha256:<64 hex>"
  int64_t size = 0;
  std::vector<std::string> urls;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;
  std::string artifact_type;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown fields
};

/// An image manifest (OCI or Docker schema 2).
struct Manifest {
  int schema_version = 2;
  std::string media_type;
  std::string artifact_type;
  Descriptor config;
  std::vector<Descriptor> layers;
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown fields
};

/// An image index (OCI) or manifest list (Docker).
struct Index {
  int schema_version = 2;
  std::string media_type;
  std::string artifact_type;
  std::vector<Descriptor> manifests;
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown fields
};

/// Docker's HEALTHCHECK settings; durations are integer nanoseconds.
struct Healthcheck {
  /// [] inherit, ["NONE"], ["CMD", args…] or ["CMD-SHELL", command].
  std::vector<std::string> test;
  int64_t interval = 0;
  int64_t timeout = 0;
  int64_t start_period = 0;
  int64_t start_interval = 0;
  int retries = 0;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown fields
};

/// The execution parameters of an image ("config" inside the config blob).
struct ContainerConfig {
  std::string user;
  std::set<std::string> exposed_ports;  ///< "80/tcp"
  std::vector<std::string> env;         ///< "K=V", in order
  /// Absent (null) and empty ([]) differ: [] resets an inherited value.
  std::optional<std::vector<std::string>> entrypoint;
  std::optional<std::vector<std::string>> cmd;
  std::set<std::string> volumes;
  std::string working_dir;
  std::map<std::string, std::string> labels;
  std::string stop_signal;
  bool args_escaped = false;
  std::optional<Healthcheck> healthcheck;
  std::vector<std::string> on_build;
  std::vector<std::string> shell;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown fields
};

/// One history entry; the non-empty ones line up with rootfs.diff_ids.
struct HistoryEntry {
  std::string created;  ///< RFC 3339, may be empty
  std::string author;
  std::string created_by;
  std::string comment;
  bool empty_layer = false;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown fields
};

/// The layers of an image by their uncompressed digests.
struct RootFS {
  std::string type = "layers";
  std::vector<std::string> diff_ids;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown fields
};

/// The image config blob (OCI config with Docker's extensions).
struct ImageConfig {
  std::string created;  ///< RFC 3339, may be empty
  std::string author;
  std::string architecture;
  std::string os;
  std::string os_version;
  std::vector<std::string> os_features;
  std::string variant;
  std::optional<ContainerConfig> config;
  RootFS rootfs;
  std::vector<HistoryEntry> history;
  nlohmann::json extra = nlohmann::json::object();  ///< unknown fields
};

/// JSON conversion (nlohmann ADL hooks). from_json throws nlohmann exceptions
/// on type mismatches; use the parse_* functions for a Result.
void to_json(nlohmann::json& j, const Platform& v);
void from_json(const nlohmann::json& j, Platform& v);
void to_json(nlohmann::json& j, const Descriptor& v);
void from_json(const nlohmann::json& j, Descriptor& v);
void to_json(nlohmann::json& j, const Manifest& v);
void from_json(const nlohmann::json& j, Manifest& v);
void to_json(nlohmann::json& j, const Index& v);
void from_json(const nlohmann::json& j, Index& v);
void to_json(nlohmann::json& j, const Healthcheck& v);
void from_json(const nlohmann::json& j, Healthcheck& v);
void to_json(nlohmann::json& j, const ContainerConfig& v);
void from_json(const nlohmann::json& j, ContainerConfig& v);
void to_json(nlohmann::json& j, const HistoryEntry& v);
void from_json(const nlohmann::json& j, HistoryEntry& v);
void to_json(nlohmann::json& j, const RootFS& v);
void from_json(const nlohmann::json& j, RootFS& v);
void to_json(nlohmann::json& j, const ImageConfig& v);
void from_json(const nlohmann::json& j, ImageConfig& v);

/// Parses a manifest document; `what` names it in errors. Checks that the
/// config and layer digests are well-formed sha256 digests.
Result<Manifest> parse_manifest(std::string_view bytes, std::string_view what);
/// Parses an index / manifest list document.
Result<Index> parse_index(std::string_view bytes, std::string_view what);
/// Parses an image config; checks rootfs.type and the diff_id digests.
Result<ImageConfig> parse_config(std::string_view bytes, std::string_view what);

/// Canonical bytes of a document imgbuild writes.
std::string serialize(const Manifest& v);
std::string serialize(const Index& v);
std::string serialize(const ImageConfig& v);

/// True when `digest` is "sha256:" followed by 64 lower-case hex digits.
bool is_valid_digest(std::string_view digest);

/// ChainID of the first n diff_ids (OCI: ChainID(L0) = DiffID(L0),
/// ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))).
std::string chain_id(const std::vector<std::string>& diff_ids, size_t n);

}  // namespace imgbuild::image
