#pragma once
// The HTTP layer of the registry client, over libcurl: one easy handle per
// exchange (so transfers can run on several threads at once), TLS verified
// against the system trust store plus the per-registry CAs Docker reads from
// <certs_dir>/<host:port>/*.crt (client certificates from *.cert + *.key),
// response bodies streamed to a sink, and redirects followed by hand so that
// an Authorization header never reaches a different scheme, host or port.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/hash.hpp"
#include "util/result.hpp"

namespace imgbuild::registry {

/// Receives response-body bytes of a successful (2xx) exchange.
using BodySink = std::function<Result<void>(std::string_view)>;

/// A request body that can be read from any offset (so a retry can resend it).
struct BodySource {
  /// Total size in bytes.
  uint64_t size = 0;
  /// Reads up to `n` bytes at `offset` into `buf`; returns the count (0 only at the end).
  std::function<Result<size_t>(uint64_t offset, char* buf, size_t n)> read;
};

/// A body held in memory (the source keeps a copy).
BodySource string_body(std::string bytes);
/// A body read from a file (opened on each read; the file must not change).
Result<BodySource> file_body(const std::filesystem::path& path);

/// `inner`, checked as it is read: the bytes are hashed the first time they
/// are read, in order, and the read that would return the last bytes fails
/// with Errc::corrupt instead when the whole content does not hash to
/// `digest` (nor has inner.size bytes), so a corrupt body never goes out
/// whole. Later reads (a retry starting over, a rewind) of a verified body
/// pass through unhashed. A read beyond what was hashed first hashes the gap.
BodySource verified_body(BodySource inner, const Sha256Digest& digest);

/// One HTTP request.
struct HttpRequest {
  std::string method = "GET";
  std::string url;
  /// Header lines in order ("Accept", "…"); names are case-insensitive.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Body for POST/PUT/PATCH; none means an empty body.
  std::optional<BodySource> body;
  /// Where a 2xx response body goes; none keeps it in HttpResponse::body.
  BodySink sink;
  /// Only the range [offset, offset+length) of `body` is sent when set.
  std::optional<std::pair<uint64_t, uint64_t>> body_range;
  /// Called once with the status and headers before the first byte of a 2xx
  /// body reaches the sink; an error aborts the exchange like a sink error.
  std::function<Result<void>(const struct HttpResponse&)> on_body_start;
};

/// One HTTP response (after any redirects).
struct HttpResponse {
  long status = 0;
  /// Header lines of the final response, names lower-cased.
  std::vector<std::pair<std::string, std::string>> headers;
  /// The body when no sink took it (error bodies are capped at 64 KiB).
  std::string body;
  /// The URL that produced this response (after redirects).
  std::string url;
  /// Bytes of a 2xx body delivered to the sink.
  uint64_t sink_bytes = 0;

  /// First header of that name (case-insensitive).
  std::optional<std::string> header(std::string_view name) const;
  /// Every header of that name, in order.
  std::vector<std::string> header_all(std::string_view name) const;
};

/// Debian's CA bundle, which curl also uses when told nothing.
inline constexpr const char* k_debian_ca_bundle = "/etc/ssl/certs/ca-certificates.crt";

/// The CA bundle to trust: $SSL_CERT_FILE when set and not empty, else
/// Debian's bundle.
std::filesystem::path default_ca_bundle();

/// Environment variable with the registry connect timeout (TCP connect plus
/// TLS handshake): a duration such as 30s, 1500ms or 2m (a bare number is
/// seconds).
inline constexpr const char* k_connect_timeout_env = "IMGBUILD_REGISTRY_CONNECT_TIMEOUT";
/// Environment variable with the registry stall timeout: a transfer that
/// moves less than one byte a second for this long is aborted (and retried).
inline constexpr const char* k_stall_timeout_env = "IMGBUILD_REGISTRY_STALL_TIMEOUT";
/// The connect timeout when the environment sets none: 30 s, the dial
/// timeout of Docker's and containers/image's registry clients.
inline constexpr std::chrono::milliseconds k_default_connect_timeout{30000};
/// The stall timeout when the environment sets none.
inline constexpr std::chrono::milliseconds k_default_stall_timeout{30000};

/// Parses a timeout: a positive decimal number with a unit ms, s, m or h
/// ("30s", "1.5s", "500ms", "2m"); a bare number is seconds.
Result<std::chrono::milliseconds> parse_timeout(std::string_view text);

/// Timeouts as the environment sets them (k_connect_timeout_env,
/// k_stall_timeout_env), defaults where unset or empty.
struct EnvironmentTimeouts {
  std::chrono::milliseconds connect = k_default_connect_timeout;
  std::chrono::milliseconds stall = k_default_stall_timeout;
  /// A variable that is set but not a valid timeout, named with its value.
  std::optional<Error> error;
};
/// Reads the two variables (each call reads them afresh).
EnvironmentTimeouts environment_timeouts();

/// How the transport connects.
struct TransportOptions {
  /// Verify server certificates (false = --tls-verify=false).
  bool tls_verify = true;
  /// Docker's per-registry certificate directory.
  std::filesystem::path certs_dir = "/etc/docker/certs.d";
  /// The system CA bundle, combined with per-registry CAs: $SSL_CERT_FILE
  /// when set (as Go programs such as BuildKit and docker read it), else
  /// Debian's bundle. A bundle other than Debian's replaces curl's default.
  std::filesystem::path system_ca_bundle = default_ca_bundle();
  /// Give up connecting (TCP and TLS handshake) after this long.
  std::chrono::milliseconds connect_timeout = environment_timeouts().connect;
  /// Abort a transfer that moves less than a byte a second for this long.
  std::chrono::milliseconds stall_timeout = environment_timeouts().stall;
  /// Where the two timeouts can be changed (named in timeout errors, e.g.
  /// an environment variable); empty: not said.
  std::string connect_timeout_setting;
  std::string stall_timeout_setting;
  /// A configuration error (a bad timeout variable): every send fails with
  /// it, so the command reports it instead of running with a value the
  /// user did not ask for.
  std::optional<Error> config_error = environment_timeouts().error;
  /// Cap on a body kept in memory (manifests, token responses).
  size_t max_memory_body = 8 * 1024 * 1024;
  /// Redirects followed per request.
  int max_redirects = 10;
  /// User-Agent header.
  std::string user_agent = "imgbuild";
};

/// What failed in a transport-level error, for the retry decision.
enum class TransportFailure {
  none,        ///< the exchange completed (any status)
  connection,  ///< refused, reset, timed out, truncated: worth retrying
  tls,         ///< handshake or certificate failure (also a plain-HTTP server on an https URL)
  sink,        ///< the body sink refused the data: its error is returned as is
  other,       ///< a malformed URL, too many redirects, …: not retried
};

/// How a failed name lookup is classified, from getaddrinfo's error code:
/// EAI_NONAME and EAI_NODATA (the name servers answered that the name does
/// not exist) are an answer a retry cannot change (TransportFailure::other);
/// anything else (EAI_AGAIN: no answer in time, …) may pass
/// (TransportFailure::connection).
TransportFailure resolve_failure_kind(int gai_error);

/// Parts of a URL that decide where credentials may go.
struct Origin {
  std::string scheme;
  std::string host;
  std::string port;  ///< effective port (default filled in)
  bool operator==(const Origin&) const = default;
};

/// Parses the origin of an absolute URL.
Result<Origin> url_origin(const std::string& url);
/// Resolves `location` (absolute or relative) against `base`.
Result<std::string> resolve_url(const std::string& base, const std::string& location);

/// Performs HTTP exchanges. Thread-safe: each call uses its own curl easy
/// handle; the handles share a connection cache, DNS cache and TLS sessions,
/// so consecutive requests to one registry reuse their connection.
class HttpTransport {
public:
  explicit HttpTransport(TransportOptions options = {});
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  /// Sends the request, following redirects (GET/HEAD keep their method;
  /// 303 turns others into GET; 307/308 resend the body). The Authorization
  /// header is dropped as soon as a redirect leaves the request's origin.
  /// A failure sets `*failure` (if given) to say whether it is retryable.
  Result<HttpResponse> send(HttpRequest request, TransportFailure* failure = nullptr);

  /// The options in force.
  const TransportOptions& options() const { return m_options; }

private:
  Result<HttpResponse> exchange(const HttpRequest& request, TransportFailure* failure);
  /// Says which timeout expired for the curl handle (a CURL*) that failed
  /// with CURLE_OPERATION_TIMEDOUT on `url`; `detail` is curl's message.
  std::string timeout_message(void* handle, const std::string& url, const std::string& detail) const;
  /// What certs.d holds for one host[:port].
  struct TlsMaterial {
    /// System CAs plus the directory's *.crt; empty when it has none.
    std::string ca_bundle;
    /// A client certificate (*.cert) and its key (*.key), if any.
    std::string client_cert;
    std::string client_key;
  };
  /// The TLS material for an authority, read once and cached.
  std::shared_ptr<const TlsMaterial> tls_material(const std::string& authority);

  struct Shared;
  TransportOptions m_options;
  std::mutex m_mutex;
  std::map<std::string, std::shared_ptr<const TlsMaterial>> m_tls;
  std::unique_ptr<Shared> m_shared;
};

/// "host[:port]" of a URL as written (for certs.d lookups and messages).
std::string url_authority(const std::string& url);

}  // namespace imgbuild::registry
