#include "registry/platform.hpp"

#include <sys/utsname.h>

#include <vector>

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild::registry {

namespace {

std::string normalize_arch(std::string arch, std::string& variant) {
  arch = str::to_lower(arch);
  if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    return "amd64";
  }
  if (arch == "aarch64" || arch == "arm64") {
    if (variant == "8") {
      variant = "v8";
    }
    return "arm64";
  }
  if (arch == "armhf") {
    variant = "v7";
    return "arm";
  }
  if (arch == "armel") {
    variant = "v6";
    return "arm";
  }
  if (arch == "armv7l" || arch == "armv7") {
    variant = "v7";
    return "arm";
  }
  if (arch == "armv6l") {
    variant = "v6";
    return "arm";
  }
  if (arch == "arm") {
    if (variant.size() == 1 && variant[0] >= '5' && variant[0] <= '8') {
      variant = "v" + variant;
    }
    return "arm";
  }
  if (arch == "i386" || arch == "i686" || arch == "386") {
    return "386";
  }
  return arch;
}

// The variant number of "vN", or -1.
int variant_level(const std::string& v) {
  if (v.size() == 2 && v[0] == 'v' && v[1] >= '1' && v[1] <= '9') {
    return v[1] - '0';
  }
  return -1;
}

}  // namespace

std::string Platform::str() const {
  std::string out = os + "/" + architecture;
  if (!variant.empty()) {
    out += "/" + variant;
  }
  return out;
}

Platform normalize_platform(Platform p) {
  p.os = str::to_lower(p.os);
  p.architecture = normalize_arch(p.architecture, p.variant);
  p.variant = str::to_lower(p.variant);
  if (p.variant.empty()) {
    if (p.architecture == "arm") {
      p.variant = "v7";
    } else if (p.architecture == "arm64") {
      p.variant = "v8";
    } else if (p.architecture == "amd64") {
      p.variant = "v1";
    }
  }
  return p;
}

Platform host_platform() {
  Platform p{"linux", "amd64", ""};
  utsname u{};
  if (uname(&u) == 0) {
    std::string variant;
    p.architecture = normalize_arch(u.machine, variant);
    p.variant = variant;
  }
  if (p.architecture == "arm64") {
    p.variant = "v8";
  }
  return p;
}

Result<Platform> parse_platform(std::string_view text) {
  auto parts = str::split(str::trim(text), '/');
  Platform p;
  if (parts.size() == 1 && !parts[0].empty()) {
    p = Platform{"linux", parts[0], ""};
  } else if (parts.size() == 2 || parts.size() == 3) {
    p.os = parts[0];
    p.architecture = parts[1];
    p.variant = parts.size() == 3 ? parts[2] : "";
  } else {
    return fail(Errc::invalid_argument,
                fmt::format("invalid platform {}: want os/arch[/variant]", str::go_quote(text)));
  }
  if (p.os.empty() || p.architecture.empty() || (parts.size() == 3 && p.variant.empty())) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid platform {}: empty component", str::go_quote(text)));
  }
  std::string variant = p.variant;
  p.architecture = normalize_arch(p.architecture, variant);
  p.variant = variant;
  p.os = str::to_lower(p.os);
  return p;
}

Result<size_t> select_platform_manifest(const nlohmann::json& index, const Platform& want) {
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
    return fail(Errc::corrupt, "image index has no \"manifests\" array");
  }
  const Platform w = normalize_platform(want);
  const auto& manifests = index["manifests"];
  std::vector<std::optional<Platform>> platforms;
  std::vector<std::string> offered;
  for (const auto& m : manifests) {
    if (!m.is_object() || !m.contains("platform") || !m["platform"].is_object()) {
      platforms.emplace_back();
      continue;
    }
    const auto& pj = m["platform"];
    Platform p{pj.value("os", ""), pj.value("architecture", ""), pj.value("variant", "")};
    if (pj.value("os", "") == "unknown") {
      platforms.emplace_back();  // attestation manifests
      continue;
    }
    offered.push_back(p.str());
    platforms.push_back(normalize_platform(p));
  }
  for (size_t i = 0; i < platforms.size(); ++i) {
    if (platforms[i] && *platforms[i] == w) {
      return i;
    }
  }
  // Fallback: the newest older variant the wanted one can run.
  int level = variant_level(w.variant);
  if (level > 0 && (w.architecture == "amd64" || w.architecture == "arm")) {
    int floor = w.architecture == "arm" ? 5 : 1;
    for (int l = level - 1; l >= floor; --l) {
      for (size_t i = 0; i < platforms.size(); ++i) {
        const auto& p = platforms[i];
        if (p && p->os == w.os && p->architecture == w.architecture &&
            variant_level(p->variant) == l) {
          return i;
        }
      }
    }
  }
  return fail(Errc::not_found,
              fmt::format("no manifest for platform {} in the image index (it has: {})",
                          want.str(), offered.empty() ? "none" : str::join(offered, ", ")));
}

}  // namespace imgbuild::registry
