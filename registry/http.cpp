#include "registry/http.hpp"

#include <curl/curl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "registry/reference.hpp"
#include "util/io.hpp"
#include "util/stats.hpp"
#include "util/strings.hpp"
#include "util/fault.hpp"

namespace imgbuild::registry {

namespace {

constexpr size_t k_error_body_cap = 64 * 1024;

stats::Metric g_requests("registry.http_requests");
stats::Metric g_http_time("registry.http_us");
stats::Metric g_bytes_in("registry.bytes_received");
stats::Metric g_bytes_out("registry.bytes_sent");

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct UrlHandle {
  CURLU* h = curl_url();
  UrlHandle() = default;
  UrlHandle(const UrlHandle&) = delete;
  UrlHandle& operator=(const UrlHandle&) = delete;
  ~UrlHandle() { curl_url_cleanup(h); }
  std::optional<std::string> get(CURLUPart part, unsigned flags = 0) const {
    char* out = nullptr;
    if (curl_url_get(h, part, &out, flags) != CURLUE_OK || out == nullptr) {
      return std::nullopt;
    }
    std::string s(out);
    curl_free(out);
    return s;
  }
};

struct Exchange {
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  size_t memory_cap = 0;
  std::optional<Error> sink_error;
  std::optional<Error> read_error;
  bool too_large = false;
  bool body_started = false;
  uint64_t read_pos = 0;
  uint64_t read_end = 0;
};

size_t on_header(char* data, size_t size, size_t nmemb, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t n = size * nmemb;
  std::string_view line(data, n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
    line.remove_suffix(1);
  }
  if (line.rfind("HTTP/", 0) == 0) {
    ex->response->headers.clear();
    auto sp = line.find(' ');
    if (sp != std::string_view::npos) {
      ex->response->status = std::strtol(std::string(line.substr(sp + 1, 3)).c_str(), nullptr, 10);
    }
    return n;
  }
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    ex->response->headers.emplace_back(str::to_lower(str::trim(line.substr(0, colon))),
                                       std::string(str::trim(line.substr(colon + 1))));
  }
  return n;
}

size_t on_write(char* data, size_t size, size_t nmemb, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t n = size * nmemb;
  long status = ex->response->status;
  bool success = status >= 200 && status < 300;
  if (success && ex->request->sink) {
    if (!ex->body_started) {
      ex->body_started = true;
      if (ex->request->on_body_start) {
        auto s = ex->request->on_body_start(*ex->response);
        if (!s) {
          ex->sink_error = std::move(s).error();
          return 0;
        }
      }
    }
    auto r = ex->request->sink(std::string_view(data, n));
    if (!r) {
      ex->sink_error = std::move(r).error();
      return 0;
    }
    ex->response->sink_bytes += n;
    return n;
  }
  size_t cap = success ? ex->memory_cap : k_error_body_cap;
  if (ex->response->body.size() + n > cap) {
    if (success) {
      ex->too_large = true;
      return 0;
    }
    ex->response->body.append(data, cap - ex->response->body.size());
    return n;
  }
  ex->response->body.append(data, n);
  return n;
}

size_t on_read(char* buf, size_t size, size_t nitems, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t want = std::min<uint64_t>(size * nitems, ex->read_end - ex->read_pos);
  if (want == 0) {
    return 0;
  }
  auto r = ex->request->body->read(ex->read_pos, buf, want);
  if (!r || *r == 0) {
    ex->read_error = r ? Error(Errc::io, "request body ended early") : std::move(r).error();
    return CURL_READFUNC_ABORT;
  }
  ex->read_pos += *r;
  fault::point("http-upload");
  return *r;
}

// curl rewinds the body when it resends a request on a fresh connection
// (a reused connection that turned out to be closed).
int on_seek(void* user, curl_off_t offset, int origin) {
  auto* ex = static_cast<Exchange*>(user);
  if (origin != SEEK_SET || offset < 0) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  uint64_t begin = ex->request->body_range ? ex->request->body_range->first : 0;
  if (begin + static_cast<uint64_t>(offset) > ex->read_end) {
    return CURL_SEEKFUNC_FAIL;
  }
  ex->read_pos = begin + static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

TransportFailure classify(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_PROXY:
    case CURLE_SEND_FAIL_REWIND:
      return TransportFailure::connection;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return TransportFailure::tls;
    default:
      return TransportFailure::other;
  }
}

// Asks the resolver again after curl could not resolve `host`: whether the
// name does not exist (not worth a retry) or the lookup failed for now.
TransportFailure classify_resolve_failure(const std::string& host, std::string& detail) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (res != nullptr) {
    ::freeaddrinfo(res);
  }
  if (rc == 0) {
    return TransportFailure::connection;  // resolvable now: it was transient
  }
  TransportFailure kind = resolve_failure_kind(rc);
  if (kind == TransportFailure::other) {
    detail = fmt::format("no such host {} ({})", host, ::gai_strerror(rc));
  }
  return kind;
}

// A file's text; "" when it cannot be read.
std::string read_text(const std::filesystem::path& p) {
  auto text = io::read_all(p.string());
  return text ? std::move(*text) : std::string();
}

}  // namespace

Result<std::chrono::milliseconds> parse_timeout(std::string_view text) {
  std::string_view t = str::trim(text);
  auto bad = [&]() -> Unexpected {
    return fail(Errc::invalid_argument,
                fmt::format("{} is not a timeout: use a positive number with a unit, such as 30s, 1500ms or 2m",
                            str::go_quote(std::string(text))));
  };
  size_t digits = 0;
  bool dot = false;
  while (digits < t.size() && ((t[digits] >= '0' && t[digits] <= '9') || (t[digits] == '.' && !dot))) {
    dot = dot || t[digits] == '.';
    ++digits;
  }
  std::string number(t.substr(0, digits));
  std::string_view unit = t.substr(digits);
  if (number.empty() || number == "." || number.size() > 12) {
    return bad();
  }
  double value = std::strtod(number.c_str(), nullptr);
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60 * 1000;
  } else if (unit == "h") {
    scale = 3600 * 1000;
  } else {
    return bad();
  }
  double ms = value * scale;
  if (!(ms >= 1) || ms > 1e12) {
    return bad();
  }
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

EnvironmentTimeouts environment_timeouts() {
  EnvironmentTimeouts out;
  auto read = [&](const char* name, std::chrono::milliseconds& into) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
      return;
    }
    auto parsed = parse_timeout(v);
    if (!parsed) {
      if (!out.error) {
        out.error = Error(Errc::invalid_argument, fmt::format("{}: {}", name, parsed.error().message));
      }
      return;
    }
    into = *parsed;
  };
  read(k_connect_timeout_env, out.connect);
  read(k_stall_timeout_env, out.stall);
  return out;
}

BodySource string_body(std::string bytes) {
  auto shared = std::make_shared<const std::string>(std::move(bytes));
  BodySource src;
  src.size = shared->size();
  src.read = [shared](uint64_t offset, char* buf, size_t n) -> Result<size_t> {
    if (offset >= shared->size()) {
      return size_t{0};
    }
    size_t count = std::min<uint64_t>(n, shared->size() - offset);
    std::memcpy(buf, shared->data() + offset, count);
    return count;
  };
  return src;
}

Result<BodySource> file_body(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(Errc::io, fmt::format("{}: {}", path.string(), std::strerror(errno)));
  }
  // The descriptor lives as long as any copy of the source; pread keeps
  // concurrent readers independent.
  auto holder = std::shared_ptr<int>(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return fail(Errc::io, fmt::format("{}: not a regular file", path.string()));
  }
  BodySource src;
  src.size = static_cast<uint64_t>(st.st_size);
  std::string name = path.string();
  src.read = [holder, name](uint64_t offset, char* buf, size_t n) -> Result<size_t> {
    for (;;) {
      ssize_t got = ::pread(*holder, buf, n, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) {
        continue;
      }
      if (got < 0) {
        return fail(Errc::io, fmt::format("{}: {}", name, std::strerror(errno)));
      }
      return static_cast<size_t>(got);
    }
  };
  return src;
}

TransportFailure resolve_failure_kind(int gai_error) {
  switch (gai_error) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
      return TransportFailure::other;
    default:
      return TransportFailure::connection;
  }
}

BodySource verified_body(BodySource inner, const Sha256Digest& digest) {
  struct State {
    std::mutex mutex;
    BodySource inner;
    Sha256Digest want;
    Sha256 hash;
    uint64_t hashed = 0;  // bytes [0, hashed) went into `hash`
    std::optional<bool> good;  // set once the end was hashed
    std::string has;
  };
  auto state = std::make_shared<State>();
  state->inner = std::move(inner);
  state->want = digest;
  BodySource out;
  out.size = state->inner.size;
  out.read = [state](uint64_t offset, char* buf, size_t n) -> Result<size_t> {
    std::lock_guard lock(state->mutex);
    auto mismatch = [&]() -> Unexpected {
      return fail(Errc::corrupt, fmt::format("the content to upload is corrupt: its {} bytes hash to {}, not {}",
                                             state->inner.size, state->has, state->want.str()));
    };
    if (state->good && !*state->good) {
      return mismatch();
    }
    // Bytes skipped over (a reader that starts past what was hashed) are
    // read and hashed first, so the check always covers the whole content.
    std::vector<char> gap;
    while (!state->good && state->hashed < offset) {
      gap.resize(static_cast<size_t>(std::min<uint64_t>(offset - state->hashed, 1 << 20)));
      TRY(size_t got, state->inner.read(state->hashed, gap.data(), gap.size()));
      if (got == 0) {
        break;
      }
      state->hash.update(gap.data(), got);
      state->hashed += got;
    }
    TRY(size_t got, state->inner.read(offset, buf, n));
    if (state->good) {
      return got;
    }
    uint64_t end = offset + got;
    if (offset <= state->hashed && end > state->hashed) {
      state->hash.update(buf + (state->hashed - offset), static_cast<size_t>(end - state->hashed));
      state->hashed = end;
    }
    if (state->hashed >= state->inner.size) {
      Sha256Digest has = state->hash.finish();
      state->has = has.str();
      state->good = has == state->want && state->hashed == state->inner.size;
      if (!*state->good) {
        return mismatch();
      }
    }
    return got;
  };
  return out;
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (str::iequals(k, name)) {
      return v;
    }
  }
  return std::nullopt;
}

std::vector<std::string> HttpResponse::header_all(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers) {
    if (str::iequals(k, name)) {
      out.push_back(v);
    }
  }
  return out;
}

Result<Origin> url_origin(const std::string& url) {
  global_init();
  UrlHandle u;
  if (curl_url_set(u.h, CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return fail(Errc::invalid_argument, fmt::format("malformed URL {}", str::go_quote(url)));
  }
  Origin o;
  o.scheme = str::to_lower(u.get(CURLUPART_SCHEME).value_or(""));
  o.host = str::to_lower(u.get(CURLUPART_HOST).value_or(""));
  o.port = u.get(CURLUPART_PORT, CURLU_DEFAULT_PORT).value_or("");
  return o;
}

Result<std::string> resolve_url(const std::string& base, const std::string& location) {
  global_init();
  UrlHandle u;
  if (curl_url_set(u.h, CURLUPART_URL, base.c_str(), 0) != CURLUE_OK ||
      curl_url_set(u.h, CURLUPART_URL, location.c_str(), 0) != CURLUE_OK) {
    return fail(Errc::network, fmt::format("bad redirect location {} (from {})",
                                           str::go_quote(location), base));
  }
  auto out = u.get(CURLUPART_URL);
  if (!out) {
    return fail(Errc::network, fmt::format("bad redirect location {}", str::go_quote(location)));
  }
  return *out;
}

std::string url_authority(const std::string& url) {
  auto p = url.find("://");
  std::string_view s(url);
  if (p != std::string::npos) {
    s = s.substr(p + 3);
  }
  s = s.substr(0, s.find_first_of("/?#"));
  if (auto at = s.rfind('@'); at != std::string_view::npos) {
    s = s.substr(at + 1);
  }
  return std::string(s);
}

/// The curl share handle and the locks curl asks for around shared data.
struct HttpTransport::Shared {
  CURLSH* share = nullptr;
  std::array<std::mutex, CURL_LOCK_DATA_LAST> locks;

  Shared() {
    share = curl_share_init();
    if (share == nullptr) {
      return;
    }
    curl_share_setopt(share, CURLSHOPT_LOCKFUNC, lock);
    curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, unlock);
    curl_share_setopt(share, CURLSHOPT_USERDATA, this);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  }
  ~Shared() {
    if (share != nullptr) {
      curl_share_cleanup(share);
    }
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;

  static void lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Shared*>(user)->locks.at(static_cast<size_t>(data)).lock();
  }
  static void unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Shared*>(user)->locks.at(static_cast<size_t>(data)).unlock();
  }
};

std::filesystem::path default_ca_bundle() {
  const char* env = std::getenv("SSL_CERT_FILE");
  if (env != nullptr && *env != '\0') {
    return env;
  }
  return k_debian_ca_bundle;
}

HttpTransport::HttpTransport(TransportOptions options) : m_options(std::move(options)) {
  global_init();
  m_shared = std::make_unique<Shared>();
}

HttpTransport::~HttpTransport() = default;

std::shared_ptr<const HttpTransport::TlsMaterial> HttpTransport::tls_material(
    const std::string& authority) {
  std::lock_guard lock(m_mutex);
  if (auto it = m_tls.find(authority); it != m_tls.end()) {
    return it->second;
  }
  auto material = std::make_shared<TlsMaterial>();
  std::error_code ec;
  std::filesystem::path dir = m_options.certs_dir / authority;
  // An authority is host[:port]; anything with a path separator or ".." is
  // not looked up, so a hostile URL cannot pick a directory elsewhere.
  bool plausible = !authority.empty() && authority.find("..") == std::string::npos &&
                   authority.find('/') == std::string::npos;
  if (plausible && std::filesystem::is_directory(dir, ec)) {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    std::string extra;
    for (const auto& f : files) {
      if (f.extension() == ".crt") {
        extra += read_text(f);
        extra += "\n";
      } else if (f.extension() == ".cert" && material->client_cert.empty()) {
        auto key = f;
        key.replace_extension(".key");
        if (std::filesystem::exists(key, ec)) {
          material->client_cert = f.string();
          material->client_key = key.string();
        }
      }
    }
    if (!extra.empty()) {
      material->ca_bundle = read_text(m_options.system_ca_bundle) + "\n" + extra;
    }
  }
  if (material->ca_bundle.empty() && m_options.system_ca_bundle != k_debian_ca_bundle) {
    material->ca_bundle = read_text(m_options.system_ca_bundle);
  }
  m_tls[authority] = material;
  return material;
}

Result<HttpResponse> HttpTransport::exchange(const HttpRequest& request, TransportFailure* failure) {
  auto set_failure = [&](TransportFailure f) {
    if (failure != nullptr) {
      *failure = f;
    }
  };
  set_failure(TransportFailure::none);
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    set_failure(TransportFailure::other);
    return fail(Errc::internal, "curl_easy_init failed");
  }
  std::unique_ptr<CURL, void (*)(CURL*)> guard(curl, curl_easy_cleanup);
  HttpResponse response;
  Exchange ex;
  ex.request = &request;
  ex.response = &response;
  ex.memory_cap = m_options.max_memory_body;
  char errbuf[CURL_ERROR_SIZE] = {0};

  std::string authority = url_authority(request.url);
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (m_shared && m_shared->share != nullptr) {
    curl_easy_setopt(curl, CURLOPT_SHARE, m_shared->share);
  }
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &ex);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ex);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(m_options.connect_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                   std::max<long>(1, static_cast<long>((m_options.stall_timeout.count() + 999) / 1000)));
  curl_easy_setopt(curl, CURLOPT_USERAGENT, m_options.user_agent.c_str());
  if (is_loopback_registry(authority)) {
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
  }
  std::shared_ptr<const TlsMaterial> tls = tls_material(authority);
  curl_blob blob{const_cast<char*>(tls->ca_bundle.data()), tls->ca_bundle.size(), CURL_BLOB_NOCOPY};
  if (!m_options.tls_verify) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!tls->ca_bundle.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (!tls->client_cert.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, tls->client_cert.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, tls->client_key.c_str());
  }
  // Bigger buffers than curl's defaults: fewer callbacks on large blobs.
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 256L * 1024L);
  curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024L);

  curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers) {
    headers = curl_slist_append(headers, fmt::format("{}: {}", k, v).c_str());
  }
  headers = curl_slist_append(headers, "Expect:");
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> header_guard(headers, curl_slist_free_all);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

  const std::string& m = request.method;
  if (m == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (m != "GET") {
    uint64_t begin = 0;
    uint64_t length = request.body ? request.body->size : 0;
    if (request.body && request.body_range) {
      begin = request.body_range->first;
      length = request.body_range->second;
    }
    ex.read_pos = begin;
    ex.read_end = begin + length;
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, m.c_str());
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(length));
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, &ex);
    curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(curl, CURLOPT_SEEKDATA, &ex);
  }

  g_requests.add();
  fault::point("http");
  CURLcode rc = CURLE_OK;
  {
    stats::ScopedTimer timer(g_http_time);
    rc = curl_easy_perform(curl);
  }
  response.url = request.url;
  curl_off_t down = 0;
  curl_off_t up = 0;
  curl_easy_getinfo(curl, CURLINFO_SIZE_DOWNLOAD_T, &down);
  curl_easy_getinfo(curl, CURLINFO_SIZE_UPLOAD_T, &up);
  g_bytes_in.add(static_cast<uint64_t>(std::max<curl_off_t>(down, 0)));
  g_bytes_out.add(static_cast<uint64_t>(std::max<curl_off_t>(up, 0)));
  if (rc != CURLE_OK) {
    if (ex.sink_error) {
      set_failure(TransportFailure::sink);
      return fail(std::move(*ex.sink_error));
    }
    if (ex.read_error) {
      set_failure(TransportFailure::other);
      return fail(std::move(*ex.read_error));
    }
    if (ex.too_large) {
      set_failure(TransportFailure::other);
      return fail(Errc::limit, fmt::format("{} {}: response body larger than {} bytes", m,
                                           request.url, m_options.max_memory_body));
    }
    TransportFailure f = classify(rc);
    set_failure(f);
    std::string detail = errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      detail = timeout_message(curl, request.url, detail);
    }
    if (rc == CURLE_COULDNT_RESOLVE_HOST) {
      auto origin = url_origin(request.url);
      if (origin && !origin->host.empty()) {
        f = classify_resolve_failure(origin->host, detail);
        set_failure(f);
      }
    }
    return fail(Errc::network, fmt::format("{} {}: {}", m, request.url, detail));
  }
  return response;
}

std::string HttpTransport::timeout_message(void* handle, const std::string& url, const std::string& detail) const {
  auto* curl = static_cast<CURL*>(handle);
  // Connected = the TCP connection (and, for https, the TLS handshake) is
  // done: what timed out after that is the stall check.
  curl_off_t tcp = 0;
  curl_off_t tls = 0;
  curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &tcp);
  curl_easy_getinfo(curl, CURLINFO_APPCONNECT_TIME_T, &tls);
  bool https = url.rfind("https://", 0) == 0;
  bool connected = https ? tls > 0 : tcp > 0;
  auto seconds = [](std::chrono::milliseconds d) {
    return d.count() % 1000 == 0 ? fmt::format("{}s", d.count() / 1000) : fmt::format("{}ms", d.count());
  };
  auto setting = [](const std::string& name) {
    return name.empty() ? std::string() : fmt::format("; {} changes it", name);
  };
  std::string authority = url_authority(url);
  if (!connected) {
    return fmt::format("connecting to {}{} took longer than the connect timeout of {}{} ({})", authority,
                       https ? " (TCP and TLS handshake)" : "", seconds(m_options.connect_timeout),
                       setting(m_options.connect_timeout_setting), detail);
  }
  return fmt::format("{} stalled: less than 1 byte/s for the stall timeout of {}{} ({})", authority,
                     seconds(std::max(m_options.stall_timeout, std::chrono::milliseconds(1000))),
                     setting(m_options.stall_timeout_setting), detail);
}

Result<HttpResponse> HttpTransport::send(HttpRequest request, TransportFailure* failure) {
  if (m_options.config_error) {
    if (failure != nullptr) {
      *failure = TransportFailure::other;
    }
    return fail(*m_options.config_error);
  }
  TRY(Origin first, url_origin(request.url));
  bool stripped = false;
  for (int hop = 0;; ++hop) {
    TRY(HttpResponse response, exchange(request, failure));
    long s = response.status;
    auto location = response.header("location");
    bool redirect = (s == 301 || s == 302 || s == 303 || s == 307 || s == 308) && location;
    if (!redirect) {
      return response;
    }
    if (hop >= m_options.max_redirects) {
      if (failure != nullptr) {
        *failure = TransportFailure::other;
      }
      return fail(Errc::network, fmt::format("{} {}: more than {} redirects", request.method,
                                             request.url, m_options.max_redirects));
    }
    TRY(std::string next, resolve_url(request.url, *location));
    TRY(Origin origin, url_origin(next));
    if (origin.scheme != "http" && origin.scheme != "https") {
      return fail(Errc::network, fmt::format("{} {}: redirect to unsupported URL {}",
                                             request.method, request.url, str::go_quote(next)));
    }
    if (!stripped && !(origin == first)) {
      std::erase_if(request.headers,
                    [](const auto& h) { return str::iequals(h.first, "authorization"); });
      stripped = true;
    }
    bool keep_method = s == 307 || s == 308 || request.method == "GET" || request.method == "HEAD";
    if (!keep_method) {
      request.method = "GET";
      request.body.reset();
      request.body_range.reset();
    }
    request.url = next;
  }
}

}  // namespace imgbuild::registry
