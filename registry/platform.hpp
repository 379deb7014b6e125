#pragma once
// Choosing a manifest for a platform (util/platform.hpp) from an image index,
// as containerd's default matcher does: os, architecture and variant equal
// once normalised (arm "" = v7, arm64 v8 = "", amd64 v1 = ""), the first
// exact match in index order wins; otherwise the best older variant the
// requested one can run (amd64 v3 runs v2 and v1, arm v7 runs v6 and v5).

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/platform.hpp"
#include "util/result.hpp"

namespace imgbuild::registry {

/// Index of the manifest in `index` (an OCI image index or Docker manifest
/// list, parsed) that best matches `want`, or a not_found error listing the
/// platforms the index offers.
Result<size_t> select_platform_manifest(const nlohmann::json& index, const Platform& want);

}  // namespace imgbuild::registry
