#include "image/reference.hpp"

#include <fmt/format.h>

#include "util/strings.hpp"

// The grammar is docker's (distribution/reference):
//   reference  := name [ ":" tag ] [ "@" digest ]
//   name       := [domain "/"] component ("/" component)*
//   domain     := host [":" port]     host: dns labels joined by "." or "[ipv6]"
//   component  := alnum+ (separator alnum+)*   alnum: [a-z0-9]
//   separator  := "." | "_" | "__" | "-"+
//   tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//   digest     := "sha256:" 64 hex
// The first path element is a domain when it contains "." or ":" or is
// "localhost" (or has upper-case letters, as docker does); otherwise the
// domain is docker.io, and single-element docker.io names get "library/".

namespace imgbuild::image {

namespace {

constexpr std::string_view k_default_domain = "docker.io";
constexpr std::string_view k_legacy_domain = "index.docker.io";
constexpr std::string_view k_official_prefix = "library/";
constexpr size_t k_max_name_length = 255;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool valid_component(std::string_view c) {
  if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) {
    return false;
  }
  size_t i = 0;
  while (i < c.size()) {
    if (is_lower_alnum(c[i])) {
      ++i;
      continue;
    }
    // A separator run: ".", "_", "__", or one or more "-".
    size_t j = i;
    while (j < c.size() && !is_lower_alnum(c[j])) {
      ++j;
    }
    std::string_view sep = c.substr(i, j - i);
    bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) {
      return false;
    }
    i = j;
  }
  return true;
}

bool valid_dns_label(std::string_view l) {
  if (l.empty() || !is_alnum(l.front()) || !is_alnum(l.back())) {
    return false;
  }
  for (char c : l) {
    if (!is_alnum(c) && c != '-') {
      return false;
    }
  }
  return true;
}

bool valid_domain(std::string_view d) {
  std::string_view host = d;
  std::string_view port;
  if (!d.empty() && d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos || close < 2) {
      return false;
    }
    for (char c : d.substr(1, close - 1)) {
      if (!is_hex(c) && !(c >= 'A' && c <= 'F') && c != ':') {
        return false;
      }
    }
    std::string_view after = d.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return false;
      }
      port = after.substr(1);
      if (port.empty()) {
        return false;
      }
    }
  } else {
    size_t colon = d.find(':');
    if (colon != std::string_view::npos) {
      host = d.substr(0, colon);
      port = d.substr(colon + 1);
      if (port.empty()) {
        return false;
      }
    }
    for (const auto& label : str::split(host, '.')) {
      if (!valid_dns_label(label)) {
        return false;
      }
    }
  }
  for (char c : port) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return true;
}

bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 128) {
    return false;
  }
  auto word = [](char c) { return is_alnum(c) || c == '_'; };
  if (!word(t.front())) {
    return false;
  }
  for (char c : t) {
    if (!word(c) && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

Unexpected bad(std::string_view text, std::string_view why) {
  return fail(Errc::invalid_argument, fmt::format("invalid reference {}: {}", str::go_quote(text), why));
}

}  // namespace

std::string Reference::name() const { return domain + "/" + path; }

std::string Reference::str() const {
  std::string s = name();
  if (!tag.empty()) {
    s += ":" + tag;
  }
  if (!digest.empty()) {
    s += "@" + digest;
  }
  return s;
}

std::string Reference::familiar_name() const {
  if (domain != k_default_domain) {
    return name();
  }
  if (path.rfind(k_official_prefix, 0) == 0 && path.find('/', k_official_prefix.size()) == std::string::npos) {
    return path.substr(k_official_prefix.size());
  }
  return path;
}

std::string Reference::familiar() const {
  std::string s = familiar_name();
  if (!tag.empty()) {
    s += ":" + tag;
  }
  if (!digest.empty()) {
    s += "@" + digest;
  }
  return s;
}

std::string Reference::familiar_tagged() const {
  if (!tag.empty()) {
    return familiar_name() + ":" + tag;
  }
  return familiar_name() + "@" + digest;
}

Result<Reference> parse_reference(std::string_view text, DefaultTag default_tag) {
  if (text.empty()) {
    return bad(text, "it is empty");
  }
  for (char c : text) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return bad(text, "it contains whitespace, control or non-ASCII characters");
    }
  }
  Reference ref;
  std::string_view rest = text;

  // Digest.
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    std::string_view digest = rest.substr(at + 1);
    rest = rest.substr(0, at);
    if (digest.rfind("sha256:", 0) != 0) {
      return bad(text, "the digest must be sha256:<64 hex digits>");
    }
    std::string_view hex = digest.substr(7);
    if (hex.size() != 64) {
      return bad(text, "the digest must be sha256:<64 hex digits>");
    }
    for (char c : hex) {
      if (!is_hex(c)) {
        return bad(text, "the digest must be sha256:<64 hex digits>");
      }
    }
    ref.digest = std::string(digest);
  }

  // Tag: after the last ':' if no '/' follows it (else it is a port).
  std::string_view name = rest;
  if (size_t colon = rest.rfind(':'); colon != std::string_view::npos &&
                                      rest.find('/', colon) == std::string_view::npos) {
    std::string_view tag = rest.substr(colon + 1);
    name = rest.substr(0, colon);
    if (!valid_tag(tag)) {
      return bad(text, fmt::format("tag {} must be 1-128 characters of [A-Za-z0-9_.-], not starting with . or -",
                                   str::go_quote(tag)));
    }
    ref.tag = std::string(tag);
  }
  if (name.empty()) {
    return bad(text, "the repository name is empty");
  }

  // Domain.
  std::string_view path = name;
  size_t slash = name.find('/');
  if (slash != std::string_view::npos) {
    std::string_view first = name.substr(0, slash);
    bool is_domain = first.find('.') != std::string_view::npos || first.find(':') != std::string_view::npos ||
                     first == "localhost" || first.front() == '[';
    if (!is_domain) {
      for (char c : first) {
        if (c >= 'A' && c <= 'Z') {
          is_domain = true;
        }
      }
    }
    if (is_domain) {
      if (!valid_domain(first)) {
        return bad(text, fmt::format("{} is not a valid registry host[:port]", str::go_quote(first)));
      }
      ref.domain = first == k_legacy_domain ? std::string(k_default_domain) : std::string(first);
      path = name.substr(slash + 1);
    }
  }
  if (ref.domain.empty()) {
    ref.domain = std::string(k_default_domain);
  }
  if (path.empty()) {
    return bad(text, "the repository name is empty");
  }
  for (const auto& component : str::split(path, '/')) {
    if (component.empty()) {
      return bad(text, "the repository name has an empty path component");
    }
    for (char c : component) {
      if (c >= 'A' && c <= 'Z') {
        return bad(text, fmt::format("repository name {} must be lowercase", str::go_quote(path)));
      }
    }
    if (!valid_component(component)) {
      return bad(text, fmt::format("path component {} must be lowercase letters and digits separated by "
                                   "'.', '_', '__' or dashes",
                                   str::go_quote(component)));
    }
  }
  ref.path = std::string(path);
  if (ref.domain == k_default_domain && ref.path.find('/') == std::string::npos) {
    ref.path = std::string(k_official_prefix) + ref.path;
  }
  if (ref.name().size() > k_max_name_length) {
    return bad(text, fmt::format("the repository name is longer than {} characters", k_max_name_length));
  }
  // A bare 64-hex name would be ambiguous with an image ID.
  if (ref.domain == k_default_domain && slash == std::string_view::npos && path.size() == 64 &&
      path.find_first_not_of("0123456789abcdef") == std::string_view::npos) {
    return bad(text, "a 64-character hexadecimal name is an image ID, not a repository name");
  }
  if (ref.tag.empty() && ref.digest.empty() && default_tag == DefaultTag::add) {
    ref.tag = "latest";
  }
  return ref;
}

}  // namespace imgbuild::image
