#pragma once
// The OCI distribution client: manifests and blobs by repository, with the
// Bearer/Basic auth dance, retries and digest verification.
//
// Every call names its repository, so errors can say which registry, which
// repository, which object and what the server answered. Requests start
// anonymous (or with a token already cached for their scope); a 401 names the
// scheme: Basic sends the configured credentials, Bearer fetches a token for
// the call's scope from the realm (with Basic credentials when there are any)
// and caches it per (registry, scope). Loopback registries may speak plain
// HTTP: the first request to one probes HTTPS and falls back to HTTP only when
// the server turns out not to speak TLS.
//
// Thread-safe: calls for different blobs may run concurrently on one Client.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/types.hpp"
#include "registry/auth.hpp"
#include "registry/credentials.hpp"
#include "registry/http.hpp"
#include "registry/platform.hpp"
#include "registry/reference.hpp"
#include "registry/retry.hpp"
#include "util/hash.hpp"
#include "util/result.hpp"

namespace imgbuild::registry {

/// Media types the client asks for and knows (image/types.hpp's).
namespace media_type {
using image::media::docker_manifest;
using image::media::docker_manifest_list;
using image::media::oci_index;
using image::media::oci_manifest;
}  // namespace media_type

/// The Accept header of manifest requests (OCI and Docker manifests and indexes).
std::string manifest_accept_header();

/// True for the two index media types (OCI index, Docker manifest list).
bool is_index_media_type(std::string_view media_type);

/// Looks up credentials for a registry (host[:port] or docker.io).
using CredentialLookup = std::function<Result<Credentials>(const std::string& registry)>;

/// Credentials from the docker config file at docker_config_path().
CredentialLookup docker_config_credentials();

/// How a Client behaves.
struct ClientOptions {
  TransportOptions transport;
  RetryPolicy retry;
  Sleeper sleeper = real_sleeper();
  Clock clock = real_clock();
  /// Where credentials come from; none = anonymous only.
  CredentialLookup credentials;
  /// Speak plain HTTP to every registry (--insecure style); loopback
  /// registries fall back to plain HTTP on their own.
  bool plain_http = false;
  /// Upload blobs in PATCH chunks of this size; 0 = one monolithic PUT.
  uint64_t chunk_size = 0;
};

/// A manifest or index as fetched.
struct FetchedManifest {
  /// The exact bytes (their sha256 is the digest).
  std::string bytes;
  /// The media type (Content-Type, else the document's mediaType).
  std::string media_type;
  Sha256Digest digest;
};

/// An image manifest found for one platform.
struct ResolvedManifest {
  /// The image manifest (never an index).
  FetchedManifest manifest;
  /// The index it was selected from (outermost first), empty for a single-platform image.
  std::vector<FetchedManifest> indexes;
};

/// What push_blob did.
enum class BlobPush {
  existed,   ///< HEAD found it already there
  mounted,   ///< cross-repository mount
  uploaded,  ///< bytes sent
};

/// Options of one blob push.
struct PushBlobOptions {
  /// Try a cross-repository mount from this repository (same registry) first.
  std::optional<Repository> mount_from;
  /// Chunk size override (else ClientOptions::chunk_size).
  std::optional<uint64_t> chunk_size;
  /// Skip the HEAD check (the caller knows it is missing).
  bool check_exists = true;
};

/// The distribution API client.
class Client {
public:
  explicit Client(ClientOptions options = {});

  /// GET /v2/ with the given credentials (overriding the lookup for that
  /// registry); succeeds when the registry accepts them (or needs none).
  Result<void> check_login(const std::string& registry, const Credentials& creds);

  /// GET a manifest or index by tag or digest, verified: the body must hash
  /// to the requested digest, and to Docker-Content-Digest when present.
  Result<FetchedManifest> get_manifest(const Repository& repo, const std::string& reference);

  /// GET a manifest by tag or digest and, while it is an index, follow the
  /// entry for `platform` (first match; see select_platform_manifest), at
  /// most two index levels deep. Each child must match its descriptor's
  /// digest and size.
  Result<ResolvedManifest> resolve_manifest(const Repository& repo, const std::string& reference,
                                            const Platform& platform);

  /// HEAD a manifest: its digest (Docker-Content-Digest), or not_found.
  Result<Sha256Digest> head_manifest(const Repository& repo, const std::string& reference);

  /// PUT a manifest under a tag or its digest with Content-Type = media_type;
  /// returns its digest.
  Result<Sha256Digest> put_manifest(const Repository& repo, const std::string& reference,
                                    const std::string& bytes, const std::string& media_type);

  /// HEAD a blob: its size when present, nullopt when the registry lacks it.
  Result<std::optional<uint64_t>> blob_exists(const Repository& repo, const Sha256Digest& digest);

  /// GET a blob, streaming it to `sink`. An interrupted download resumes
  /// with a Range request (or skips what it already has when the server
  /// ignores Range). The whole content must hash to `digest` and, when
  /// `size` is given, have that size: otherwise the call fails with
  /// Errc::corrupt — the sink has then seen unverified bytes and must
  /// discard them. Returns the byte count. When `sink_digest` is given the
  /// sink hashes every byte it is handed (a store's blob writer does) and
  /// sink_digest() returns that digest at the end: the client compares it
  /// instead of hashing the same bytes a second time.
  Result<uint64_t> get_blob(const Repository& repo, const Sha256Digest& digest,
                            std::optional<uint64_t> size, const BodySink& sink,
                            const std::function<Result<Sha256Digest>()>& sink_digest = {});

  /// Pushes a blob whose content hashes to `digest`: HEAD check, mount when
  /// asked, else POST + (PATCH chunks, newest Location each time) + PUT
  /// ?digest=. A failed upload restarts from a fresh session.
  Result<BlobPush> push_blob(const Repository& repo, const Sha256Digest& digest,
                             const BodySource& content, const PushBlobOptions& options = {});

  /// The options in force.
  const ClientOptions& options() const { return m_options; }

private:
  struct Call;
  /// When `r` (the outcome of attempt number `attempt`) is worth retrying and
  /// the retry policy allows another attempt: sleeps the backoff (or the
  /// server's Retry-After) and returns true.
  bool wait_before_retry(const Result<HttpResponse>& r, TransportFailure failure, int attempt);
  Result<HttpResponse> perform(Call& call, HttpRequest request);
  Result<HttpResponse> perform_once(Call& call, HttpRequest request, TransportFailure* failure);
  Result<std::string> base_url(const std::string& registry);
  Result<Credentials> credentials_for(const std::string& registry);
  Result<std::optional<std::string>> authorization(Call& call, bool refresh);
  Result<std::string> fetch_token(const Call& call, const Challenge& ch, const Credentials& creds);
  struct UploadRetry;
  Result<BlobPush> upload_blob_once(Call& call, const Sha256Digest& digest,
                                    const BodySource& content, uint64_t chunk,
                                    const std::optional<Repository>& mount_from,
                                    UploadRetry& retry);

  ClientOptions m_options;
  HttpTransport m_transport;
  TokenCache m_tokens;
  std::mutex m_mutex;
  std::map<std::string, std::string> m_base_urls;
  std::map<std::string, Challenge> m_challenges;
  std::map<std::string, Credentials> m_credentials;
};

}  // namespace imgbuild::registry
