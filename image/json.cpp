#include "image/json.hpp"

#include <fmt/format.h>

namespace imgbuild::image {

Result<nlohmann::json> parse_json(std::string_view text, std::string_view what) {
  if (text.size() > k_max_json_size) {
    return fail(Errc::limit, fmt::format("{}: JSON document of {} bytes exceeds the limit of {} bytes",
                                         what, text.size(), k_max_json_size));
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return fail(Errc::corrupt, fmt::format("{}: invalid JSON at byte {}", what, e.byte));
  } catch (const nlohmann::json::exception& e) {
    return fail(Errc::corrupt, fmt::format("{}: invalid JSON: {}", what, e.what()));
  }
}

std::string canonical_json(const nlohmann::json& doc) {
  // nlohmann::json keeps object keys in a std::map, so dump() is sorted.
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
}

}  // namespace imgbuild::image
