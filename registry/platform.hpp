#pragma once
// Platforms (os/architecture/variant) and choosing a manifest for one from an
// image index, as containerd's default matcher does: os and architecture
// equal, variants normalised (arm "" = v7, arm64 "" = v8, amd64 "" = v1), the
// first exact match in index order wins; otherwise the best older variant the
// requested one can run (amd64 v3 runs v2 and v1, arm v7 runs v6 and v5).

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.hpp"

namespace imgbuild::registry {

/// An OCI platform.
struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;

  /// "os/arch[/variant]".
  std::string str() const;
  bool operator==(const Platform&) const = default;
};

/// The platform this process runs on (linux/amd64, linux/arm64/v8, …).
Platform host_platform();

/// Parses "os/arch[/variant]" (also "arch" alone, meaning linux/arch), with
/// architecture aliases (x86_64 → amd64, aarch64 → arm64, armhf → arm/v7).
Result<Platform> parse_platform(std::string_view text);

/// Normalises architecture aliases and the default variant of each
/// architecture (arm → v7, arm64 → v8, amd64 → v1); os is lower-cased.
Platform normalize_platform(Platform p);

/// Index of the manifest in `index` (an OCI image index or Docker manifest
/// list, parsed) that best matches `want`, or a not_found error listing the
/// platforms the index offers.
Result<size_t> select_platform_manifest(const nlohmann::json& index, const Platform& want);

}  // namespace imgbuild::registry
