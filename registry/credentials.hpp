#pragma once
// Registry credentials the way the docker CLI keeps them: config.json in
// $DOCKER_CONFIG (default ~/.docker) with
//   "auths":       {"<registry>": {"auth": base64("user:pass"), "identitytoken": "…"}}
//   "credHelpers": {"<registry>": "<helper>"}   (per registry)
//   "credsStore":  "<helper>"                    (everything else)
// where a helper is the program docker-credential-<helper> speaking the
// credential-helper protocol (get/store/erase; server URL on stdin, JSON on
// stdout). Docker Hub's key is "https://index.docker.io/v1/". Other keys in the
// file are kept as they are when it is rewritten.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.hpp"

namespace imgbuild::registry {

/// A user name and password, or an identity (refresh) token.
struct Credentials {
  std::string username;
  std::string password;
  /// OAuth2 refresh token ("identitytoken"); used instead of the password.
  std::string identity_token;

  /// True when nothing is set (anonymous).
  bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
};

/// $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json.
std::filesystem::path docker_config_path();

/// The key config.json uses for a registry host ("docker.io" →
/// "https://index.docker.io/v1/", others as given: "127.0.0.1:5000").
std::string config_key(std::string_view registry);

/// Base64 encoding and decoding (standard alphabet, padded).
std::string base64_encode(std::string_view bytes);
/// Decodes standard or unpadded base64; nullopt on junk.
std::optional<std::string> base64_decode(std::string_view text);

/// Runs docker-credential-<helper> with `action` (get/store/erase), writing
/// `input` to its stdin; returns its stdout, or an error carrying its output.
Result<std::string> run_credential_helper(const std::string& helper, const std::string& action,
                                          const std::string& input);

/// A loaded config.json.
class DockerConfig {
public:
  /// Loads `path`; a missing file is an empty config.
  static Result<DockerConfig> load(std::filesystem::path path);

  /// Credentials for a registry (host[:port] or docker.io): credHelpers,
  /// then credsStore, then auths (keys compared after normalising scheme and
  /// path away). Empty credentials when none are configured.
  Result<Credentials> get(std::string_view registry) const;

  /// Stores credentials: through the registry's helper or credsStore when
  /// one is configured, else in auths (base64 user:pass). Call save() after.
  Result<void> set(std::string_view registry, const Credentials& creds);

  /// Removes a registry's credentials (helper erase and/or auths entry);
  /// returns whether anything was there. Call save() after.
  Result<bool> erase(std::string_view registry);

  /// Writes the file atomically (temp file + rename, mode 0600), creating
  /// its directory if needed.
  Result<void> save() const;

  /// The document (for tests and diagnostics).
  const nlohmann::json& json() const { return m_json; }
  /// Where the file lives.
  const std::filesystem::path& path() const { return m_path; }

private:
  std::optional<std::string> helper_for(std::string_view registry) const;
  /// The auths key matching the registry, if any.
  std::optional<std::string> auths_key(std::string_view registry) const;

  std::filesystem::path m_path;
  nlohmann::json m_json = nlohmann::json::object();
};

}  // namespace imgbuild::registry
