#include "builder/secret_mask.hpp"

#include <algorithm>

namespace imgbuild::builder {

void SecretMask::add(std::string_view value) {
  size_t start = 0;
  while (start <= value.size()) {
    size_t nl = value.find('\n', start);
    std::string_view part = value.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (!part.empty() && part.back() == '\r') {
      part.remove_suffix(1);
    }
    if (!part.empty() && std::find(m_values.begin(), m_values.end(), part) == m_values.end()) {
      m_values.emplace_back(part);
    }
    if (nl == std::string_view::npos) {
      break;
    }
    start = nl + 1;
  }
  std::stable_sort(m_values.begin(), m_values.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

std::string SecretMask::apply(std::string_view line) const {
  std::string out(line);
  for (const auto& v : m_values) {
    size_t at = 0;
    while ((at = out.find(v, at)) != std::string::npos) {
      out.replace(at, v.size(), k_mask);
      at += k_mask.size();
    }
  }
  return out;
}

}  // namespace imgbuild::builder
