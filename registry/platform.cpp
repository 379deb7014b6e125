#include "registry/platform.hpp"

#include <vector>

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild::registry {

namespace {

// The variant number of a normalised platform ("vN"; amd64's default,
// written "", is v1), or -1.
int variant_level(const Platform& p) {
  const std::string& v = p.variant;
  if (v.size() == 2 && v[0] == 'v' && v[1] >= '1' && v[1] <= '9') {
    return v[1] - '0';
  }
  return v.empty() && p.architecture == "amd64" ? 1 : -1;
}

}  // namespace

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
  int level = variant_level(w);
  if (level > 0 && (w.architecture == "amd64" || w.architecture == "arm")) {
    int floor = w.architecture == "arm" ? 5 : 1;
    for (int l = level - 1; l >= floor; --l) {
      for (size_t i = 0; i < platforms.size(); ++i) {
        const auto& p = platforms[i];
        if (p && p->os == w.os && p->architecture == w.architecture &&
            variant_level(*p) == l) {
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
