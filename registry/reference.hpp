#pragma once
// Minimal registry reference names: [host[:port]/]path[:tag][@digest], with
// Docker Hub normalization (docker.io/library/). Enough for the registry
// client; image/reference.hpp (store branch) will take over parsing later.

#include <string>
#include <string_view>

#include "util/result.hpp"

namespace imgbuild::registry {

/// Docker Hub's canonical domain in reference names.
inline constexpr std::string_view k_docker_hub_domain = "docker.io";
/// The host that serves Docker Hub's distribution API.
inline constexpr std::string_view k_docker_hub_api_host = "registry-1.docker.io";
/// Docker Hub's key in config.json.
inline constexpr std::string_view k_docker_hub_config_key = "https://index.docker.io/v1/";

/// A repository on a registry, as the distribution API addresses it.
struct Repository {
  /// host[:port] as written in the reference ("docker.io", "127.0.0.1:5000").
  std::string registry;
  /// Repository path ("library/busybox").
  std::string name;

  /// The host[:port] to connect to (Docker Hub's API host for docker.io).
  std::string api_host() const;
  /// "registry/name" for messages.
  std::string str() const { return registry + "/" + name; }
};

/// A parsed reference: repository plus tag and/or digest.
struct RegistryReference {
  Repository repository;
  /// Tag; "latest" when neither tag nor digest was given.
  std::string tag;
  /// "sha256:…" when the reference pins a digest, else empty.
  std::string digest;

  /// What to ask the manifests endpoint for: the digest if any, else the tag.
  std::string manifest_ref() const { return digest.empty() ? tag : digest; }
  /// Canonical text form ("docker.io/library/busybox:latest").
  std::string str() const;
};

/// Parses a reference name the way docker does: the first component is a
/// registry when it contains '.' or ':' or is "localhost"; otherwise the
/// registry is docker.io, and single-component names get "library/".
Result<RegistryReference> parse_reference(std::string_view text);

/// Normalises a registry name given on a command line (login/logout):
/// strips a scheme and trailing path, maps Docker Hub aliases to "docker.io".
std::string normalize_registry_host(std::string_view text);

/// True for registries Docker lets speak plain HTTP without configuration:
/// localhost, 127.0.0.0/8 and ::1 (with or without a port).
bool is_loopback_registry(std::string_view host_port);

}  // namespace imgbuild::registry
