#pragma once
// Pieces of registry authentication that need no network: parsing
// WWW-Authenticate challenges (RFC 7235: scheme, then comma-separated
// auth-params whose values may be quoted strings with backslash escapes),
// parsing token-server answers, and caching tokens by (registry, scopes).

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace imgbuild::registry {

/// One challenge from a WWW-Authenticate header.
struct Challenge {
  /// Lower-cased scheme ("bearer", "basic").
  std::string scheme;
  /// Parameters with lower-cased names (realm, service, scope, error, …).
  std::map<std::string, std::string> params;

  /// A parameter or "" when absent.
  std::string param(const std::string& name) const;
};

/// Parses a WWW-Authenticate value into its challenges; malformed parts are
/// skipped, so junk gives an empty list rather than an error.
std::vector<Challenge> parse_www_authenticate(std::string_view header);

/// What a token server answered.
struct TokenAnswer {
  std::string token;
  /// Lifetime; 60 s when the server does not say.
  std::chrono::seconds expires_in{60};
  /// A new refresh token, when the server issued one.
  std::string refresh_token;
};

/// Parses a token-server JSON body: "token" or "access_token", "expires_in".
Result<TokenAnswer> parse_token_answer(std::string_view body);

/// Bearer tokens by key (registry + scopes), dropped shortly before expiry.
class TokenCache {
public:
  /// The token for key if it is still valid at `now`.
  std::optional<std::string> get(const std::string& key,
                                 std::chrono::system_clock::time_point now) const;
  /// Remembers a token valid for `lifetime` from `now`.
  void put(const std::string& key, std::string token, std::chrono::seconds lifetime,
           std::chrono::system_clock::time_point now);
  /// Forgets a token (the registry refused it).
  void drop(const std::string& key);

private:
  struct Entry {
    std::string token;
    std::chrono::system_clock::time_point expires;
  };
  mutable std::mutex m_mutex;
  std::map<std::string, Entry> m_entries;
};

}  // namespace imgbuild::registry
