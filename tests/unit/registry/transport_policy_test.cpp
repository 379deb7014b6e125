// The transport's policies, without a network: timeout values and the
// environment that sets them, the body that verifies itself while it is
// read, and which failures a retry cannot change.

#include <netdb.h>
#include <stdlib.h>

#include <chrono>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "registry/http.hpp"
#include "registry/retry.hpp"
#include "util/hash.hpp"

using namespace imgbuild;
using namespace imgbuild::registry;
using namespace std::chrono_literals;

namespace {

// Reads a body in `chunk`-sized pieces from `from` to the end; stops at the
// first error and returns it (as text) with what was read before.
struct ReadOutcome {
  std::string data;
  std::optional<Error> error;
};

ReadOutcome read_all(const BodySource& body, size_t chunk, uint64_t from = 0) {
  ReadOutcome out;
  std::vector<char> buf(chunk);
  for (uint64_t off = from; off < body.size;) {
    auto r = body.read(off, buf.data(), std::min<uint64_t>(chunk, body.size - off));
    if (!r) {
      out.error = r.error();
      return out;
    }
    REQUIRE(*r > 0);
    out.data.append(buf.data(), *r);
    off += *r;
  }
  return out;
}

// Sets an environment variable for the scope.
struct ScopedEnv {
  std::string name;
  ScopedEnv(std::string n, const std::string& value) : name(std::move(n)) { ::setenv(name.c_str(), value.c_str(), 1); }
  ~ScopedEnv() { ::unsetenv(name.c_str()); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};

}  // namespace

TEST_CASE("timeouts parse with units and anything else is refused", "[registry]") {
  CHECK(*parse_timeout("30s") == 30000ms);
  CHECK(*parse_timeout("1.5s") == 1500ms);
  CHECK(*parse_timeout("500ms") == 500ms);
  CHECK(*parse_timeout("2m") == 120000ms);
  CHECK(*parse_timeout("1h") == 3600000ms);
  CHECK(*parse_timeout("45") == 45000ms);
  CHECK(*parse_timeout(" 10s ") == 10000ms);
  for (const char* bad : {"", "soon", "-5s", "0", "0ms", "0.0001s", "1x", "1.2.3s", ".s", "5 s", "s", "99999999999999h"}) {
    INFO(bad);
    auto r = parse_timeout(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(r.error().message.find("is not a timeout") != std::string::npos);
  }
}

TEST_CASE("the environment sets the registry timeouts and a bad value fails every request, named", "[registry]") {
  {
    EnvironmentTimeouts none = environment_timeouts();
    CHECK(none.connect == k_default_connect_timeout);
    CHECK(none.stall == k_default_stall_timeout);
    CHECK_FALSE(none.error);
  }
  {
    ScopedEnv c(k_connect_timeout_env, "2s");
    ScopedEnv s(k_stall_timeout_env, "750ms");
    EnvironmentTimeouts set = environment_timeouts();
    CHECK(set.connect == 2000ms);
    CHECK(set.stall == 750ms);
    CHECK_FALSE(set.error);
    TransportOptions o;
    CHECK(o.connect_timeout == 2000ms);
    CHECK(o.stall_timeout == 750ms);
  }
  {
    ScopedEnv s(k_stall_timeout_env, "forever");
    EnvironmentTimeouts bad = environment_timeouts();
    REQUIRE(bad.error);
    CHECK(bad.error->message.find(k_stall_timeout_env) != std::string::npos);
    CHECK(bad.error->message.find("\"forever\"") != std::string::npos);
    CHECK(bad.stall == k_default_stall_timeout);
    HttpTransport t;
    TransportFailure f = TransportFailure::none;
    // Refused before any connection: the URL is never contacted.
    auto r = t.send(HttpRequest{"GET", "http://127.0.0.1:1/v2/", {}, {}, {}, {}, {}}, &f);
    REQUIRE_FALSE(r);
    CHECK(f == TransportFailure::other);
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(r.error().message.find(k_stall_timeout_env) != std::string::npos);
  }
}

TEST_CASE("a verified body hands out a corrupt content's last bytes never", "[registry]") {
  std::string content(10000, 'x');
  for (size_t i = 0; i < content.size(); ++i) {
    content[i] = static_cast<char>(i * 31 % 251);
  }
  Sha256Digest good = sha256(content);

  SECTION("good content reads through, again and from the middle") {
    BodySource body = verified_body(string_body(content), good);
    CHECK(body.size == content.size());
    ReadOutcome first = read_all(body, 999);
    CHECK_FALSE(first.error);
    CHECK(first.data == content);
    ReadOutcome again = read_all(body, 4096);  // a retry starts over
    CHECK_FALSE(again.error);
    CHECK(again.data == content);
    ReadOutcome tail = read_all(body, 512, 6000);  // a rewind into the middle
    CHECK(tail.data == content.substr(6000));
  }

  SECTION("a flipped byte fails the read that reaches the end, naming both digests") {
    std::string bad = content;
    bad[1234] = static_cast<char>(bad[1234] ^ 1);
    BodySource body = verified_body(string_body(bad), good);
    ReadOutcome r = read_all(body, 1000);
    REQUIRE(r.error);
    CHECK(r.error->code == Errc::corrupt);
    CHECK(r.data.size() == 9000);  // everything but the last read
    CHECK(r.error->message.find(good.str()) != std::string::npos);
    CHECK(r.error->message.find(sha256(bad).str()) != std::string::npos);
    // And it stays refused.
    ReadOutcome again = read_all(body, 1000);
    CHECK(again.error);
    CHECK(again.data.empty());
  }

  SECTION("a reader that starts past what was hashed still checks the whole content") {
    std::string bad = content;
    bad[10] = static_cast<char>(bad[10] ^ 1);
    BodySource body = verified_body(string_body(bad), good);
    ReadOutcome r = read_all(body, 1000, 5000);
    REQUIRE(r.error);
    CHECK(r.error->code == Errc::corrupt);
  }
}

TEST_CASE("answers a retry cannot change are told apart from those it can", "[registry]") {
  for (long s : {408L, 429L, 500L, 502L, 503L, 504L}) {
    CHECK(is_retryable_status(s));
  }
  for (long s : {400L, 401L, 403L, 404L, 405L, 501L, 505L}) {
    CHECK_FALSE(is_retryable_status(s));
  }
  for (const char* c : {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "UNAUTHORIZED", "DENIED", "BLOB_UNKNOWN", "NAME_INVALID"}) {
    CHECK(is_permanent_error_code(c));
  }
  for (const char* c : {"BLOB_UPLOAD_UNKNOWN", "TOOMANYREQUESTS", "UNKNOWN", "FAULT", ""}) {
    CHECK_FALSE(is_permanent_error_code(c));
  }
  // A name that does not exist is an answer; a resolver that did not answer is not.
  CHECK(resolve_failure_kind(EAI_NONAME) == TransportFailure::other);
  CHECK(resolve_failure_kind(EAI_AGAIN) == TransportFailure::connection);
  CHECK(resolve_failure_kind(EAI_FAIL) == TransportFailure::connection);
}
