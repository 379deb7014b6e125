#include "registry/reference.hpp"

#include <arpa/inet.h>

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild::registry {

std::string Repository::api_host() const {
  if (registry == k_docker_hub_domain) {
    return std::string(k_docker_hub_api_host);
  }
  return registry;
}

Repository repository_of(const image::Reference& ref) { return Repository{ref.domain, ref.path}; }

std::string manifest_ref(const image::Reference& ref) {
  if (!ref.digest.empty()) {
    return ref.digest;
  }
  return ref.tag.empty() ? std::string("latest") : ref.tag;
}

std::string normalize_registry_host(std::string_view text) {
  std::string_view s = str::trim(text);
  if (auto p = s.find("://"); p != std::string_view::npos) {
    s = s.substr(p + 3);
  }
  if (auto p = s.find('/'); p != std::string_view::npos) {
    s = s.substr(0, p);
  }
  std::string host(s);
  if (host.empty() || host == "index.docker.io" || host == "registry-1.docker.io" ||
      host == "registry.hub.docker.com") {
    return std::string(k_docker_hub_domain);
  }
  return host;
}

bool is_loopback_registry(std::string_view host_port) {
  std::string host(host_port);
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    host = close == std::string::npos ? host.substr(1) : host.substr(1, close - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos &&
                                           host.find(':') == colon) {
    host = host.substr(0, colon);
  }
  if (str::iequals(host, "localhost")) {
    return true;
  }
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

}  // namespace imgbuild::registry
