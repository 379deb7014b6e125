#pragma once
// Registry-side names: the repository a reference names (parsing and
// normalisation, docker.io/library/ included, are image/reference.hpp's), the
// API host behind docker.io, and registry hosts given on a command line.

#include <string>
#include <string_view>

#include "image/reference.hpp"
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

/// The repository an image reference names.
Repository repository_of(const image::Reference& ref);

/// What to ask the manifests endpoint for: the digest if any, else the tag
/// ("latest" when the reference has neither).
std::string manifest_ref(const image::Reference& ref);

/// Normalises a registry name given on a command line (login/logout):
/// strips a scheme and trailing path, maps Docker Hub aliases to "docker.io".
std::string normalize_registry_host(std::string_view text);

/// True for registries Docker lets speak plain HTTP without configuration:
/// localhost, 127.0.0.0/8 and ::1 (with or without a port).
bool is_loopback_registry(std::string_view host_port);

}  // namespace imgbuild::registry
