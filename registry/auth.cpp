#include "registry/auth.hpp"

#include <nlohmann/json.hpp>

#include "util/strings.hpp"

namespace imgbuild::registry {

namespace {

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~/=").find(c) != std::string_view::npos;
}

void skip_ws(std::string_view s, size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) {
    ++i;
  }
}

std::string read_token(std::string_view s, size_t& i) {
  size_t start = i;
  while (i < s.size() && is_token_char(s[i]) && s[i] != '=') {
    ++i;
  }
  return std::string(s.substr(start, i - start));
}

}  // namespace

std::string Challenge::param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

std::vector<Challenge> parse_www_authenticate(std::string_view h) {
  std::vector<Challenge> out;
  size_t i = 0;
  while (i < h.size()) {
    skip_ws(h, i);
    while (i < h.size() && (h[i] == ',' || h[i] == ' ')) {
      ++i;
    }
    std::string scheme = read_token(h, i);
    if (scheme.empty()) {
      // Not a token: skip a character to make progress.
      ++i;
      continue;
    }
    Challenge ch;
    ch.scheme = str::to_lower(scheme);
    // auth-params: name=value pairs separated by commas, until the next scheme.
    while (i < h.size()) {
      skip_ws(h, i);
      size_t save = i;
      std::string name = read_token(h, i);
      skip_ws(h, i);
      if (name.empty() || i >= h.size() || h[i] != '=') {
        // The next challenge's scheme (or junk): let the outer loop take it.
        i = save;
        break;
      }
      ++i;
      skip_ws(h, i);
      std::string value;
      if (i < h.size() && h[i] == '"') {
        ++i;
        while (i < h.size() && h[i] != '"') {
          if (h[i] == '\\' && i + 1 < h.size()) {
            ++i;
          }
          value += h[i++];
        }
        if (i < h.size()) {
          ++i;  // closing quote
        }
      } else {
        while (i < h.size() && h[i] != ',' && h[i] != ' ' && h[i] != '\t') {
          value += h[i++];
        }
      }
      ch.params[str::to_lower(name)] = value;
      skip_ws(h, i);
      if (i < h.size() && h[i] == ',') {
        ++i;
      }
    }
    out.push_back(std::move(ch));
  }
  return out;
}

Result<TokenAnswer> parse_token_answer(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(Errc::network, "token server answered something that is not a JSON object");
  }
  TokenAnswer a;
  if (j.contains("token") && j["token"].is_string()) {
    a.token = j["token"].get<std::string>();
  }
  if (a.token.empty() && j.contains("access_token") && j["access_token"].is_string()) {
    a.token = j["access_token"].get<std::string>();
  }
  if (a.token.empty()) {
    return fail(Errc::network, "token server answer has neither \"token\" nor \"access_token\"");
  }
  if (j.contains("expires_in") && j["expires_in"].is_number_integer()) {
    auto v = j["expires_in"].get<long long>();
    if (v >= 60) {
      a.expires_in = std::chrono::seconds(v);
    }
  }
  if (j.contains("refresh_token") && j["refresh_token"].is_string()) {
    a.refresh_token = j["refresh_token"].get<std::string>();
  }
  return a;
}

std::optional<std::string> TokenCache::get(const std::string& key,
                                           std::chrono::system_clock::time_point now) const {
  std::lock_guard lock(m_mutex);
  auto it = m_entries.find(key);
  if (it == m_entries.end() || it->second.expires <= now) {
    return std::nullopt;
  }
  return it->second.token;
}

void TokenCache::put(const std::string& key, std::string token, std::chrono::seconds lifetime,
                     std::chrono::system_clock::time_point now) {
  // Refresh a little early so a token does not expire mid-request.
  auto margin = std::min<std::chrono::seconds>(std::chrono::seconds(10), lifetime / 10);
  std::lock_guard lock(m_mutex);
  m_entries[key] = Entry{std::move(token), now + lifetime - margin};
}

void TokenCache::drop(const std::string& key) {
  std::lock_guard lock(m_mutex);
  m_entries.erase(key);
}

}  // namespace imgbuild::registry
