#include "registry/reference.hpp"

#include <arpa/inet.h>

#include <fmt/format.h>

#include "util/hash.hpp"
#include "util/strings.hpp"

namespace imgbuild::registry {

namespace {

bool is_path_component(std::string_view c) {
  // [a-z0-9]+ separated by '.', '_', '__' or runs of '-'.
  if (c.empty()) {
    return false;
  }
  auto alnum = [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'); };
  if (!alnum(c.front()) || !alnum(c.back())) {
    return false;
  }
  for (size_t i = 0; i < c.size(); ++i) {
    char ch = c[i];
    if (alnum(ch) || ch == '-') {
      continue;
    }
    if (ch == '.' || ch == '_') {
      if (i + 1 < c.size() && !alnum(c[i + 1]) && !(ch == '_' && c[i + 1] == '_')) {
        return false;
      }
      continue;
    }
    return false;
  }
  return true;
}

bool is_tag(std::string_view t) {
  if (t.empty() || t.size() > 128) {
    return false;
  }
  for (size_t i = 0; i < t.size(); ++i) {
    char ch = t[i];
    bool word = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '_';
    if (!word && !(i > 0 && (ch == '.' || ch == '-'))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string Repository::api_host() const {
  if (registry == k_docker_hub_domain) {
    return std::string(k_docker_hub_api_host);
  }
  return registry;
}

std::string RegistryReference::str() const {
  std::string out = repository.str();
  if (!tag.empty()) {
    out += ":" + tag;
  }
  if (!digest.empty()) {
    out += "@" + digest;
  }
  return out;
}

Result<RegistryReference> parse_reference(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid reference {}: {}", str::go_quote(text), why));
  };
  if (text.empty()) {
    return bad("empty name");
  }
  RegistryReference ref;
  std::string_view rest = text;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    std::string_view d = rest.substr(at + 1);
    if (!Sha256Digest::parse(d)) {
      return bad("digest must be sha256:<64 lower-case hex>");
    }
    ref.digest = std::string(d);
    rest = rest.substr(0, at);
  }
  std::string_view domain;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view first = rest.substr(0, slash);
    if (first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
        first == "localhost" || first.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string_view::npos) {
      domain = first;
      rest = rest.substr(slash + 1);
    }
  }
  // A tag is a ':' after the last '/'.
  if (auto colon = rest.rfind(':'); colon != std::string_view::npos &&
                                    rest.find('/', colon) == std::string_view::npos) {
    std::string_view t = rest.substr(colon + 1);
    if (!is_tag(t)) {
      return bad("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
    }
    ref.tag = std::string(t);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) {
    return bad("empty repository name");
  }
  for (const auto& c : str::split(rest, '/')) {
    if (!is_path_component(c)) {
      return bad(fmt::format("repository component {} must be lower-case letters, digits and "
                             "separators",
                             str::go_quote(c)));
    }
  }
  std::string name(rest);
  std::string reg(domain);
  if (reg.empty() || reg == "index.docker.io" || reg == "registry-1.docker.io") {
    reg = std::string(k_docker_hub_domain);
  }
  if (reg == k_docker_hub_domain && name.find('/') == std::string::npos) {
    name = "library/" + name;
  }
  if (name.size() + reg.size() + 1 > 255) {
    return bad("name longer than 255 characters");
  }
  ref.repository = Repository{reg, name};
  if (ref.tag.empty() && ref.digest.empty()) {
    ref.tag = "latest";
  }
  return ref;
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
