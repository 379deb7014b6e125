#pragma once
// JSON documents read from images and archives: size-capped parsing with
// errors that name the document, and the canonical serialisation imgbuild
// uses for every document it writes (sorted keys, no whitespace), so that the
// same content always gives the same bytes and the same digest.

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.hpp"

namespace imgbuild::image {

/// Largest JSON document imgbuild reads (manifests, configs, indexes,
/// manifest.json); anything bigger is refused before parsing.
inline constexpr size_t k_max_json_size = 20 * 1024 * 1024;

/// Parses `text` as JSON. `what` names the document in errors
/// ("manifest.json", "config sha256:…"). Fails with Errc::limit when the text
/// exceeds k_max_json_size and Errc::corrupt when it is not valid JSON.
Result<nlohmann::json> parse_json(std::string_view text, std::string_view what);

/// The canonical bytes of a document: keys sorted, no insignificant space.
std::string canonical_json(const nlohmann::json& doc);

}  // namespace imgbuild::image
