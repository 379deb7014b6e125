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
  /// Give up connecting after this long.
  std::chrono::milliseconds connect_timeout{30000};
  /// Abort a transfer that moves no bytes for this long.
  std::chrono::milliseconds stall_timeout{60000};
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
