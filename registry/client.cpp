#include "registry/client.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/stats.hpp"
#include "util/strings.hpp"

namespace imgbuild::registry {

namespace {

stats::Metric g_retries("registry.retries");
stats::Metric g_tokens("registry.token_fetches");

std::string url_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += fmt::format("%{:02X}", u);
    }
  }
  return out;
}

std::string_view reason_phrase(long status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

// "CODE: message" from a registry's JSON error body, else a short excerpt.
std::string server_message(const HttpResponse& r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  std::vector<std::string> parts;
  if (!j.is_discarded() && j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"]) {
      if (!e.is_object()) {
        continue;
      }
      std::string code = e.value("code", "");
      std::string msg = e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
      parts.push_back(code.empty() ? msg : msg.empty() ? code : code + ": " + msg);
    }
  } else if (!j.is_discarded() && j.is_object() && j.contains("details") && j["details"].is_string()) {
    parts.push_back(j["details"].get<std::string>());
  }
  if (!parts.empty()) {
    return str::join(parts, "; ");
  }
  std::string body(str::trim(r.body));
  if (body.size() > 200) {
    body = body.substr(0, 200) + "…";
  }
  return body;
}

// The "code" fields of a registry's JSON error body.
std::vector<std::string> error_codes(const HttpResponse& r) {
  std::vector<std::string> out;
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("errors") || !j["errors"].is_array()) {
    return out;
  }
  for (const auto& e : j["errors"]) {
    if (e.is_object() && e.contains("code") && e["code"].is_string()) {
      out.push_back(e["code"].get<std::string>());
    }
  }
  return out;
}

// Whether an answer is worth asking again: a retryable status, unless the
// body names an error a retry cannot change.
bool retryable_answer(const HttpResponse& r) {
  if (!is_retryable_status(r.status)) {
    return false;
  }
  auto codes = error_codes(r);
  return std::none_of(codes.begin(), codes.end(), [](const std::string& c) { return is_permanent_error_code(c); });
}

// A 404 in the middle of an upload: the session may be gone
// (BLOB_UPLOAD_UNKNOWN, or no code), worth a fresh session; a repository
// that does not exist (NAME_UNKNOWN) or any other permanent code is not.
bool upload_session_lost(const HttpResponse& r) {
  if (r.status != 404) {
    return false;
  }
  auto codes = error_codes(r);
  return std::none_of(codes.begin(), codes.end(), [](const std::string& c) { return is_permanent_error_code(c); });
}

Errc status_errc(long status) {
  if (status == 401 || status == 403) {
    return Errc::permission;
  }
  if (status == 404) {
    return Errc::not_found;
  }
  return Errc::network;
}

std::string with_query(const std::string& url, const std::string& query) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + query;
}

std::string strip_params(std::string_view content_type) {
  return str::to_lower(str::trim(content_type.substr(0, content_type.find(';'))));
}

}  // namespace

std::string manifest_accept_header() {
  return fmt::format("{}, {}, {}, {}", media_type::oci_manifest, media_type::oci_index,
                     media_type::docker_manifest, media_type::docker_manifest_list);
}

bool is_index_media_type(std::string_view mt) {
  return mt == media_type::oci_index || mt == media_type::docker_manifest_list;
}

CredentialLookup docker_config_credentials() {
  return [](const std::string& registry) -> Result<Credentials> {
    TRY(DockerConfig cfg, DockerConfig::load(docker_config_path()));
    return cfg.get(registry);
  };
}

/// One logical operation: where it goes, what it is about, which scopes.
struct Client::Call {
  std::string registry;
  std::string repository;
  std::string object;
  std::vector<std::string> scopes;
  /// Retry single requests (false for upload PATCH/PUT: the session restarts instead).
  bool retry_requests = true;
  int attempts = 1;
  /// Whether credentials were configured for the registry (for hints).
  bool had_credentials = true;

  std::string describe() const {
    std::string out = "registry " + registry;
    if (!repository.empty()) {
      out += ", repository " + repository;
    }
    if (!object.empty()) {
      out += ", " + object;
    }
    return out;
  }

  std::string token_key() const {
    std::vector<std::string> s = scopes;
    std::sort(s.begin(), s.end());
    return registry + "|" + str::join(s, " ");
  }

  Error server_error(const std::string& method, const HttpResponse& r) const {
    std::string what = server_message(r);
    std::string msg = fmt::format("{}: {} answered {} {}", describe(), method, r.status,
                                  reason_phrase(r.status));
    while (!msg.empty() && msg.back() == ' ') {
      msg.pop_back();
    }
    if (!what.empty()) {
      msg += ": " + what;
    }
    if (attempts > 1) {
      msg += fmt::format(" (gave up after {} attempts)", attempts);
    }
    if ((r.status == 401 || r.status == 403) && !had_credentials) {
      msg += fmt::format(" (no credentials for {}: use `imgbuild login {}`)", registry, registry);
    }
    return Error(status_errc(r.status), msg);
  }
};

struct Client::UploadRetry {
  bool retryable = false;
  std::optional<std::chrono::milliseconds> after;
};

namespace {

// The transport of a registry client: timeout errors name the environment
// variables that set the timeouts.
TransportOptions registry_transport(TransportOptions o) {
  if (o.connect_timeout_setting.empty()) {
    o.connect_timeout_setting = k_connect_timeout_env;
  }
  if (o.stall_timeout_setting.empty()) {
    o.stall_timeout_setting = k_stall_timeout_env;
  }
  return o;
}

}  // namespace

Client::Client(ClientOptions options)
    : m_options(std::move(options)), m_transport(registry_transport(m_options.transport)) {}

Result<Credentials> Client::credentials_for(const std::string& registry) {
  {
    std::lock_guard lock(m_mutex);
    if (auto it = m_credentials.find(registry); it != m_credentials.end()) {
      return it->second;
    }
  }
  Credentials creds;
  if (m_options.credentials) {
    TRY(creds, m_options.credentials(registry));
  }
  std::lock_guard lock(m_mutex);
  m_credentials.emplace(registry, creds);
  return creds;
}

Result<std::string> Client::base_url(const std::string& registry) {
  {
    std::lock_guard lock(m_mutex);
    if (auto it = m_base_urls.find(registry); it != m_base_urls.end()) {
      return it->second;
    }
  }
  std::string host = Repository{registry, ""}.api_host();
  std::string url = (m_options.plain_http ? "http://" : "https://") + host;
  if (!m_options.plain_http && is_loopback_registry(host)) {
    // Docker lets loopback registries speak plain HTTP: probe TLS first and
    // fall back only when the server answers plain HTTP.
    TransportFailure f = TransportFailure::none;
    auto probe = m_transport.send(HttpRequest{"GET", url + "/v2/", {}, {}, {}, {}, {}}, &f);
    if (!probe && f == TransportFailure::connection) {
      return url;  // not reachable yet: decide on a later call
    }
    if (!probe && f == TransportFailure::tls) {
      auto plain = m_transport.send(HttpRequest{"GET", "http://" + host + "/v2/", {}, {}, {}, {}, {}});
      if (plain && plain->status != 400) {
        url = "http://" + host;
      }
    }
  }
  std::lock_guard lock(m_mutex);
  m_base_urls[registry] = url;
  return url;
}

Result<std::string> Client::fetch_token(const Call& call, const Challenge& ch,
                                        const Credentials& creds) {
  std::string realm = ch.param("realm");
  if (realm.empty()) {
    return fail(Errc::network, fmt::format("{}: Bearer challenge without a realm", call.describe()));
  }
  std::string service = ch.param("service");
  HttpRequest req;
  if (!creds.identity_token.empty()) {
    std::string form = "grant_type=refresh_token&client_id=imgbuild&refresh_token=" +
                       url_escape(creds.identity_token);
    if (!service.empty()) {
      form += "&service=" + url_escape(service);
    }
    if (!call.scopes.empty()) {
      form += "&scope=" + url_escape(str::join(call.scopes, " "));
    }
    req.method = "POST";
    req.url = realm;
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    req.body = string_body(form);
  } else {
    std::vector<std::string> query;
    if (!service.empty()) {
      query.push_back("service=" + url_escape(service));
    }
    for (const auto& s : call.scopes) {
      query.push_back("scope=" + url_escape(s));
    }
    if (!creds.username.empty()) {
      query.push_back("account=" + url_escape(creds.username));
    }
    req.url = query.empty() ? realm : with_query(realm, str::join(query, "&"));
    if (!creds.username.empty() || !creds.password.empty()) {
      req.headers.emplace_back("Authorization",
                               "Basic " + base64_encode(creds.username + ":" + creds.password));
    }
  }
  for (int attempt = 1;; ++attempt) {
    TransportFailure f = TransportFailure::none;
    auto r = m_transport.send(req, &f);
    if (wait_before_retry(r, f, attempt)) {
      continue;
    }
    if (!r) {
      Error e = std::move(r).error();
      e.message = fmt::format("{}: token request: {}", call.describe(), e.message);
      return fail(std::move(e));
    }
    if (r->status != 200) {
      std::string who = creds.username.empty() ? "anonymous" : "user " + creds.username;
      std::string msg = fmt::format("{}: token server {} refused {} access: {} {}",
                                    call.describe(), realm, who, r->status, reason_phrase(r->status));
      if (std::string m = server_message(*r); !m.empty()) {
        msg += ": " + m;
      }
      if (creds.empty() && (r->status == 401 || r->status == 403)) {
        msg += fmt::format(" (no credentials for {}: use `imgbuild login {}`)", call.registry,
                           call.registry);
      }
      return fail(status_errc(r->status), msg);
    }
    auto answer = parse_token_answer(r->body);
    if (!answer) {
      return fail(Errc::network, fmt::format("{}: {}", call.describe(), answer.error().message));
    }
    g_tokens.add();
    m_tokens.put(call.token_key(), answer->token, answer->expires_in, m_options.clock());
    return answer->token;
  }
}

Result<std::optional<std::string>> Client::authorization(Call& call, bool refresh) {
  std::optional<Challenge> ch;
  {
    std::lock_guard lock(m_mutex);
    if (auto it = m_challenges.find(call.registry); it != m_challenges.end()) {
      ch = it->second;
    }
  }
  if (!ch) {
    return std::optional<std::string>();
  }
  TRY(Credentials creds, credentials_for(call.registry));
  call.had_credentials = !creds.empty();
  if (ch->scheme == "basic") {
    if (creds.username.empty() && creds.password.empty()) {
      return std::optional<std::string>();
    }
    return std::optional<std::string>("Basic " + base64_encode(creds.username + ":" + creds.password));
  }
  if (ch->scheme == "bearer") {
    if (!refresh) {
      if (auto t = m_tokens.get(call.token_key(), m_options.clock())) {
        return std::optional<std::string>("Bearer " + *t);
      }
    }
    TRY(std::string token, fetch_token(call, *ch, creds));
    return std::optional<std::string>("Bearer " + token);
  }
  return std::optional<std::string>();
}

Result<HttpResponse> Client::perform_once(Call& call, HttpRequest request,
                                          TransportFailure* failure) {
  bool refresh = false;
  for (int round = 0;; ++round) {
    TRY(std::optional<std::string> auth, authorization(call, refresh));
    HttpRequest r = request;
    if (auth) {
      r.headers.emplace_back("Authorization", *auth);
    }
    TRY(HttpResponse resp, m_transport.send(std::move(r), failure));
    if (resp.status != 401 || round >= 1) {
      return resp;
    }
    // Learn the scheme from the challenge and try once more.
    std::optional<Challenge> chosen;
    for (auto& c : parse_www_authenticate(resp.header("www-authenticate").value_or(""))) {
      if (c.scheme == "bearer" || (c.scheme == "basic" && !chosen)) {
        chosen = std::move(c);
      }
    }
    if (!chosen) {
      return resp;
    }
    if (chosen->scheme == "bearer") {
      if (std::string s = chosen->param("scope"); !s.empty()) {
        for (const auto& one : str::split(s, ' ')) {
          if (!one.empty() && std::find(call.scopes.begin(), call.scopes.end(), one) == call.scopes.end()) {
            call.scopes.push_back(one);
          }
        }
      }
    }
    {
      std::lock_guard lock(m_mutex);
      m_challenges[call.registry] = *chosen;
    }
    if (chosen->scheme == "basic") {
      TRY(Credentials creds, credentials_for(call.registry));
      if (auth || (creds.username.empty() && creds.password.empty())) {
        return resp;  // refused, or nothing to offer
      }
    }
    refresh = auth.has_value();
  }
}

bool Client::wait_before_retry(const Result<HttpResponse>& r, TransportFailure failure, int attempt) {
  bool retry = !r ? failure == TransportFailure::connection : retryable_answer(*r);
  if (!retry) {
    return false;
  }
  std::optional<std::chrono::milliseconds> after;
  if (r) {
    if (auto ra = r->header("retry-after")) {
      after = parse_retry_after(*ra, m_options.clock());
    }
  }
  auto delay = retry_delay(m_options.retry, attempt + 1, after);
  if (!delay) {
    return false;
  }
  g_retries.add();
  m_options.sleeper(*delay);
  return true;
}

Result<HttpResponse> Client::perform(Call& call, HttpRequest request) {
  for (int attempt = 1;; ++attempt) {
    call.attempts = attempt;
    TransportFailure f = TransportFailure::none;
    auto r = perform_once(call, request, &f);
    if (call.retry_requests && wait_before_retry(r, f, attempt)) {
      continue;
    }
    if (!r && f != TransportFailure::sink) {
      Error e = std::move(r).error();
      if (e.message.rfind("registry ", 0) != 0) {
        e.message = fmt::format("{}: {}", call.describe(), e.message);
      }
      if (attempt > 1) {
        e.message += fmt::format(" (gave up after {} attempts)", attempt);
      }
      return fail(std::move(e));
    }
    return r;
  }
}

Result<void> Client::check_login(const std::string& registry, const Credentials& creds) {
  {
    std::lock_guard lock(m_mutex);
    m_credentials[registry] = creds;
  }
  Call call{registry, "", "", {}};
  TRY(std::string base, base_url(registry));
  TRY(HttpResponse r, perform(call, HttpRequest{"GET", base + "/v2/", {}, {}, {}, {}, {}}));
  if (r.status == 200) {
    return ok();
  }
  Error e = call.server_error("GET /v2/", r);
  if (r.status == 401) {
    e.message = fmt::format("login to {} as {} failed: {}", registry,
                            creds.username.empty() ? "<token>" : creds.username, e.message);
  }
  return fail(std::move(e));
}

Result<FetchedManifest> Client::get_manifest(const Repository& repo, const std::string& reference) {
  Call call{repo.registry, repo.name, "manifest " + reference,
            {"repository:" + repo.name + ":pull"}};
  TRY(std::string base, base_url(repo.registry));
  HttpRequest req{"GET", fmt::format("{}/v2/{}/manifests/{}", base, repo.name, reference),
                  {{"Accept", manifest_accept_header()}}, {}, {}, {}, {}};
  TRY(HttpResponse r, perform(call, req));
  if (r.status != 200) {
    return fail(call.server_error("GET", r));
  }
  FetchedManifest m;
  m.digest = sha256(r.body);
  if (reference.rfind("sha256:", 0) == 0) {
    auto want = Sha256Digest::parse(reference);
    if (!want || !(*want == m.digest)) {
      return fail(Errc::corrupt, fmt::format("{}: the registry sent content with digest {}",
                                             call.describe(), m.digest.str()));
    }
  }
  if (auto dcd = r.header("docker-content-digest"); dcd && dcd->rfind("sha256:", 0) == 0) {
    auto said = Sha256Digest::parse(*dcd);
    if (!said || !(*said == m.digest)) {
      return fail(Errc::corrupt,
                  fmt::format("{}: Docker-Content-Digest {} does not match the content ({})",
                              call.describe(), *dcd, m.digest.str()));
    }
  }
  m.media_type = strip_params(r.header("content-type").value_or(""));
  auto doc = nlohmann::json::parse(r.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return fail(Errc::corrupt, fmt::format("{}: the manifest is not a JSON object", call.describe()));
  }
  if (m.media_type.empty() || m.media_type == "application/json" || m.media_type == "text/plain" ||
      m.media_type == "application/octet-stream") {
    m.media_type = doc.contains("mediaType") && doc["mediaType"].is_string()
                       ? doc["mediaType"].get<std::string>()
                       : std::string(doc.contains("manifests") ? media_type::oci_index
                                                               : media_type::oci_manifest);
  }
  if (m.media_type != media_type::oci_manifest && m.media_type != media_type::oci_index &&
      m.media_type != media_type::docker_manifest && m.media_type != media_type::docker_manifest_list) {
    return fail(Errc::unsupported, fmt::format("{}: unsupported manifest media type {}",
                                               call.describe(), m.media_type));
  }
  m.bytes = std::move(r.body);
  return m;
}

Result<ResolvedManifest> Client::resolve_manifest(const Repository& repo,
                                                  const std::string& reference,
                                                  const Platform& platform) {
  ResolvedManifest out;
  TRY(FetchedManifest current, get_manifest(repo, reference));
  for (int depth = 0; is_index_media_type(current.media_type); ++depth) {
    std::string where = fmt::format("registry {}, repository {}, index {}", repo.registry,
                                    repo.name, current.digest.str());
    if (depth >= 2) {
      return fail(Errc::unsupported, fmt::format("{}: indexes nested more than two deep", where));
    }
    auto doc = nlohmann::json::parse(current.bytes, nullptr, false);
    auto pick = select_platform_manifest(doc, platform);
    if (!pick) {
      return fail(pick.error().code, fmt::format("{}: {}", where, pick.error().message));
    }
    const auto& entry = doc["manifests"][*pick];
    std::string child = entry.contains("digest") && entry["digest"].is_string()
                            ? entry["digest"].get<std::string>()
                            : std::string();
    if (!Sha256Digest::parse(child)) {
      return fail(Errc::corrupt, fmt::format("{}: entry {} has no valid sha256 digest", where, *pick));
    }
    TRY(FetchedManifest next, get_manifest(repo, child));
    if (entry.contains("size") && entry["size"].is_number_unsigned() &&
        entry["size"].get<uint64_t>() != next.bytes.size()) {
      return fail(Errc::corrupt, fmt::format("{}: manifest {} is {} bytes, the index says {}", where,
                                             child, next.bytes.size(), entry["size"].get<uint64_t>()));
    }
    out.indexes.push_back(std::move(current));
    current = std::move(next);
  }
  out.manifest = std::move(current);
  return out;
}

Result<Sha256Digest> Client::head_manifest(const Repository& repo, const std::string& reference) {
  Call call{repo.registry, repo.name, "manifest " + reference,
            {"repository:" + repo.name + ":pull"}};
  TRY(std::string base, base_url(repo.registry));
  HttpRequest req{"HEAD", fmt::format("{}/v2/{}/manifests/{}", base, repo.name, reference),
                  {{"Accept", manifest_accept_header()}}, {}, {}, {}, {}};
  TRY(HttpResponse r, perform(call, req));
  if (r.status != 200) {
    return fail(call.server_error("HEAD", r));
  }
  auto dcd = r.header("docker-content-digest");
  if (!dcd) {
    return fail(Errc::network, fmt::format("{}: HEAD answer has no Docker-Content-Digest",
                                           call.describe()));
  }
  auto d = Sha256Digest::parse(*dcd);
  if (!d) {
    return fail(Errc::network, fmt::format("{}: bad Docker-Content-Digest {}", call.describe(),
                                           str::go_quote(*dcd)));
  }
  return *d;
}

Result<Sha256Digest> Client::put_manifest(const Repository& repo, const std::string& reference,
                                          const std::string& bytes, const std::string& mt) {
  Call call{repo.registry, repo.name, "manifest " + reference,
            {"repository:" + repo.name + ":pull,push"}};
  TRY(std::string base, base_url(repo.registry));
  HttpRequest req{"PUT", fmt::format("{}/v2/{}/manifests/{}", base, repo.name, reference),
                  {{"Content-Type", mt}}, string_body(bytes), {}, {}, {}};
  TRY(HttpResponse r, perform(call, req));
  if (r.status != 201 && r.status != 200) {
    return fail(call.server_error("PUT", r));
  }
  Sha256Digest d = sha256(bytes);
  if (auto dcd = r.header("docker-content-digest"); dcd && dcd->rfind("sha256:", 0) == 0) {
    auto said = Sha256Digest::parse(*dcd);
    if (!said || !(*said == d)) {
      return fail(Errc::corrupt, fmt::format("{}: registry stored digest {} but the manifest is {}",
                                             call.describe(), *dcd, d.str()));
    }
  }
  return d;
}

Result<std::optional<uint64_t>> Client::blob_exists(const Repository& repo,
                                                    const Sha256Digest& digest) {
  Call call{repo.registry, repo.name, "blob " + digest.str(), {"repository:" + repo.name + ":pull"}};
  TRY(std::string base, base_url(repo.registry));
  HttpRequest req{"HEAD", fmt::format("{}/v2/{}/blobs/{}", base, repo.name, digest.str()), {}, {}, {}, {}, {}};
  TRY(HttpResponse r, perform(call, req));
  if (r.status == 404) {
    return std::optional<uint64_t>();
  }
  if (r.status != 200) {
    return fail(call.server_error("HEAD", r));
  }
  uint64_t size = 0;
  if (auto cl = r.header("content-length")) {
    size = std::strtoull(cl->c_str(), nullptr, 10);
  }
  return std::optional<uint64_t>(size);
}

Result<uint64_t> Client::get_blob(const Repository& repo, const Sha256Digest& digest,
                                  std::optional<uint64_t> size, const BodySink& sink,
                                  const std::function<Result<Sha256Digest>()>& sink_digest) {
  Call call{repo.registry, repo.name, "blob " + digest.str(), {"repository:" + repo.name + ":pull"}};
  TRY(std::string base, base_url(repo.registry));
  std::string url = fmt::format("{}/v2/{}/blobs/{}", base, repo.name, digest.str());
  Sha256 hash;
  uint64_t received = 0;
  for (int attempt = 1;; ++attempt) {
    call.attempts = attempt;
    // Bytes to drop from this answer: a server that ignores Range resends
    // from the start.
    uint64_t skip = 0;
    bool started = false;
    HttpRequest req{"GET", url, {}, {}, {}, {}, {}};
    if (received > 0) {
      req.headers.emplace_back("Range", fmt::format("bytes={}-", received));
    }
    // The sink sees the status through the first chunk's position: decide
    // 200-vs-206 lazily from the response headers captured in `status_of`.
    const uint64_t resume_at = received;
    req.sink = [&](std::string_view chunk) -> Result<void> {
      if (!started) {
        started = true;
        skip = 0;
      }
      if (skip > 0) {
        uint64_t n = std::min<uint64_t>(skip, chunk.size());
        chunk.remove_prefix(n);
        skip -= n;
      }
      if (size && received + chunk.size() > *size) {
        return fail(Errc::corrupt, fmt::format("{}: the registry sent more than the expected {} bytes",
                                               call.describe(), *size));
      }
      if (!sink_digest) {
        hash.update(chunk.data(), chunk.size());
      }
      received += chunk.size();
      return sink(chunk);
    };
    req.on_body_start = [&](const HttpResponse& head) -> Result<void> {
      if (resume_at == 0) {
        return ok();
      }
      if (head.status == 206) {
        std::string cr = head.header("content-range").value_or("");
        std::string want = fmt::format("bytes {}-", resume_at);
        if (cr.rfind(want, 0) != 0) {
          return fail(Errc::network, fmt::format("{}: resumed download answered Content-Range {}, "
                                                 "wanted {}…", call.describe(), str::go_quote(cr), want));
        }
        return ok();
      }
      skip = resume_at;  // 200: whole body again
      return ok();
    };
    TransportFailure f = TransportFailure::none;
    auto r = perform_once(call, req, &f);
    bool retry = false;
    std::optional<std::chrono::milliseconds> after;
    if (!r) {
      retry = f == TransportFailure::connection;
    } else if (retryable_answer(*r)) {
      retry = true;
      if (auto ra = r->header("retry-after")) {
        after = parse_retry_after(*ra, m_options.clock());
      }
    } else if ((r->status == 200 || r->status == 206) && size && received < *size) {
      retry = true;  // a body cut short without the transport noticing
    }
    if (retry) {
      if (auto d = retry_delay(m_options.retry, attempt + 1, after)) {
        g_retries.add();
        m_options.sleeper(*d);
        continue;
      }
    }
    if (!r) {
      Error e = std::move(r).error();
      if (f != TransportFailure::sink) {
        e.message = fmt::format("{}: {}", call.describe(), e.message);
        if (attempt > 1) {
          e.message += fmt::format(" (gave up after {} attempts)", attempt);
        }
      }
      return fail(std::move(e));
    }
    if (r->status != 200 && r->status != 206) {
      return fail(call.server_error("GET", *r));
    }
    if (size && received != *size) {
      return fail(Errc::corrupt, fmt::format("{}: got {} of {} bytes (gave up after {} attempts)",
                                             call.describe(), received, *size, attempt));
    }
    Sha256Digest got;
    if (sink_digest) {
      TRY(got, sink_digest());
    } else {
      got = hash.finish();
    }
    if (!(got == digest)) {
      return fail(Errc::corrupt, fmt::format("{}: content has digest {} ({} bytes): refusing it",
                                             call.describe(), got.str(), received));
    }
    return received;
  }
}

Result<BlobPush> Client::upload_blob_once(Call& call, const Sha256Digest& digest,
                                          const BodySource& content, uint64_t chunk,
                                          const std::optional<Repository>& mount_from,
                                          UploadRetry& retry) {
  retry = UploadRetry{};
  TRY(std::string base, base_url(call.registry));
  std::string post = fmt::format("{}/v2/{}/blobs/uploads/", base, call.repository);
  if (mount_from) {
    post += fmt::format("?mount={}&from={}", url_escape(digest.str()), url_escape(mount_from->name));
  }
  call.retry_requests = true;
  auto started = perform(call, HttpRequest{"POST", post, {{"Content-Type", "application/octet-stream"}}, {}, {}, {}, {}});
  if (!started) {
    return fail(std::move(started).error());
  }
  if (mount_from && started->status == 201) {
    return BlobPush::mounted;
  }
  if (started->status != 202) {
    retry.retryable = false;  // perform() already spent the retries on this request
    return fail(call.server_error("POST (start upload)", *started));
  }
  auto next_location = [&](const HttpResponse& r) -> Result<std::string> {
    auto loc = r.header("location");
    if (!loc || loc->empty()) {
      return fail(Errc::network, fmt::format("{}: upload answer {} has no Location header",
                                             call.describe(), r.status));
    }
    return resolve_url(r.url, *loc);
  };
  TRY(std::string location, next_location(*started));
  call.retry_requests = false;
  auto abandon = [&](Error e, bool retryable) -> Result<BlobPush> {
    retry.retryable = retryable;
    // Best effort: cancel the session so the registry can drop its data.
    TransportFailure ignored = TransportFailure::none;
    (void)perform_once(call, HttpRequest{"DELETE", location, {}, {}, {}, {}, {}}, &ignored);
    call.retry_requests = true;
    return fail(std::move(e));
  };
  auto step = [&](const std::string& method, const std::string& url, std::optional<std::pair<uint64_t, uint64_t>> range,
                  long want) -> Result<HttpResponse> {
    HttpRequest req{method, url, {{"Content-Type", "application/octet-stream"}}, {}, {}, {}, {}};
    if (range) {
      req.body = content;
      req.body_range = range;
      if (method == "PATCH") {
        req.headers.emplace_back("Content-Range", fmt::format("{}-{}", range->first,
                                                              range->first + range->second - 1));
      }
    }
    TransportFailure f = TransportFailure::none;
    auto r = perform_once(call, req, &f);
    if (!r) {
      Error e = std::move(r).error();
      e.message = fmt::format("{}: {}", call.describe(), e.message);
      retry.retryable = f == TransportFailure::connection;
      return fail(std::move(e));
    }
    if (r->status != want) {
      retry.retryable = retryable_answer(*r) || upload_session_lost(*r);
      if (auto ra = r->header("retry-after")) {
        retry.after = parse_retry_after(*ra, m_options.clock());
      }
      return fail(call.server_error(method, *r));
    }
    return r;
  };
  std::string put_url = location;
  if (chunk > 0 && content.size > chunk) {
    for (uint64_t off = 0; off < content.size; off += chunk) {
      uint64_t len = std::min<uint64_t>(chunk, content.size - off);
      auto r = step("PATCH", location, std::make_pair(off, len), 202);
      if (!r) {
        return abandon(std::move(r).error(), retry.retryable);
      }
      auto loc = next_location(*r);
      if (!loc) {
        return abandon(std::move(loc).error(), false);
      }
      location = *loc;  // the newest Location carries the session state
    }
    put_url = with_query(location, "digest=" + url_escape(digest.str()));
    auto done = step("PUT", put_url, std::nullopt, 201);
    if (!done) {
      return abandon(std::move(done).error(), retry.retryable);
    }
  } else {
    put_url = with_query(location, "digest=" + url_escape(digest.str()));
    auto done = step("PUT", put_url, std::make_pair(uint64_t{0}, content.size), 201);
    if (!done) {
      return abandon(std::move(done).error(), retry.retryable);
    }
    if (auto dcd = done->header("docker-content-digest"); dcd && *dcd != digest.str()) {
      call.retry_requests = true;
      return fail(Errc::corrupt, fmt::format("{}: registry stored the upload as {}", call.describe(), *dcd));
    }
  }
  call.retry_requests = true;
  return BlobPush::uploaded;
}

Result<BlobPush> Client::push_blob(const Repository& repo, const Sha256Digest& digest,
                                   const BodySource& content, const PushBlobOptions& options) {
  Call call{repo.registry, repo.name, "blob " + digest.str(),
            {"repository:" + repo.name + ":pull,push"}};
  std::optional<Repository> mount = options.mount_from;
  if (mount && (mount->registry != repo.registry || mount->name == repo.name)) {
    mount.reset();
  }
  if (mount) {
    call.scopes.push_back("repository:" + mount->name + ":pull");
  }
  if (options.check_exists) {
    TRY(std::string base, base_url(repo.registry));
    HttpRequest head{"HEAD", fmt::format("{}/v2/{}/blobs/{}", base, repo.name, digest.str()), {}, {}, {}, {}, {}};
    TRY(HttpResponse r, perform(call, head));
    if (r.status == 200) {
      return BlobPush::existed;
    }
    if (r.status != 404) {
      return fail(call.server_error("HEAD", r));
    }
  }
  uint64_t chunk = options.chunk_size.value_or(m_options.chunk_size);
  // The content is checked against the digest while it goes out: a corrupt
  // source fails here, named, instead of the registry answering
  // DIGEST_INVALID after taking it whole.
  if (content.size == 0 && !(sha256("") == digest)) {
    return fail(Errc::corrupt, fmt::format("{}: the content to upload is corrupt: it is empty, which hashes to {}",
                                           call.describe(), sha256("").str()));
  }
  BodySource checked = verified_body(content, digest);
  for (int attempt = 1;; ++attempt) {
    UploadRetry hint;
    auto r = upload_blob_once(call, digest, checked, chunk, mount, hint);
    if (r || !hint.retryable) {
      return r;
    }
    auto d = retry_delay(m_options.retry, attempt + 1, hint.after);
    if (!d) {
      Error e = std::move(r).error();
      e.message += fmt::format(" (upload gave up after {} attempts)", attempt);
      return fail(std::move(e));
    }
    g_retries.add();
    m_options.sleeper(*d);
  }
}

}  // namespace imgbuild::registry
