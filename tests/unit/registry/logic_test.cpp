// Registry client logic that needs no server: references, WWW-Authenticate,
// token answers and cache, retry policy, platform selection, URL origins,
// docker config.json handling (with a fake credential helper).

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "registry/auth.hpp"
#include "registry/client.hpp"
#include "registry/credentials.hpp"
#include "registry/http.hpp"
#include "registry/platform.hpp"
#include "registry/reference.hpp"
#include "registry/retry.hpp"
#include "support/registry_fixture.hpp"

using namespace imgbuild;
using namespace imgbuild::registry;
using namespace std::chrono_literals;
using imgbuild::test::slurp;
using imgbuild::test::spit;
using imgbuild::test::ScratchDir;

TEST_CASE("references map to repositories and manifest references", "[registry]") {
  auto r = image::parse_reference("busybox");
  REQUIRE(r);
  Repository repo = repository_of(*r);
  CHECK(repo.registry == "docker.io");
  CHECK(repo.name == "library/busybox");
  CHECK(repo.api_host() == "registry-1.docker.io");
  CHECK(manifest_ref(*r) == "latest");

  r = image::parse_reference("127.0.0.1:5000/team/app:v1.2");
  REQUIRE(r);
  repo = repository_of(*r);
  CHECK(repo.registry == "127.0.0.1:5000");
  CHECK(repo.name == "team/app");
  CHECK(repo.api_host() == "127.0.0.1:5000");
  CHECK(repo.str() == "127.0.0.1:5000/team/app");
  CHECK(manifest_ref(*r) == "v1.2");

  std::string d = "sha256:" + std::string(64, 'a');
  r = image::parse_reference("localhost/x:tag@" + d);
  REQUIRE(r);
  CHECK(repository_of(*r).registry == "localhost");
  CHECK(manifest_ref(*r) == d);  // the digest wins over the tag

  r = image::parse_reference("app", image::DefaultTag::none);
  REQUIRE(r);
  CHECK(manifest_ref(*r) == "latest");
}

TEST_CASE("loopback registries and registry hosts", "[registry]") {
  CHECK(is_loopback_registry("127.0.0.1:5000"));
  CHECK(is_loopback_registry("127.1.2.3"));
  CHECK(is_loopback_registry("localhost:5000"));
  CHECK(is_loopback_registry("[::1]:5000"));
  CHECK(is_loopback_registry("::1"));
  CHECK_FALSE(is_loopback_registry("128.0.0.1:5000"));
  CHECK_FALSE(is_loopback_registry("registry.example.com"));
  CHECK_FALSE(is_loopback_registry("localhost.example.com"));
  CHECK(normalize_registry_host("https://index.docker.io/v1/") == "docker.io");
  CHECK(normalize_registry_host("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000");
  CHECK(normalize_registry_host("") == "docker.io");
  CHECK(config_key("docker.io") == "https://index.docker.io/v1/");
  CHECK(config_key("127.0.0.1:5000") == "127.0.0.1:5000");
}

TEST_CASE("WWW-Authenticate challenges parse", "[registry]") {
  auto chs = parse_www_authenticate(
      R"(Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push")");
  REQUIRE(chs.size() == 1);
  CHECK(chs[0].scheme == "bearer");
  CHECK(chs[0].param("realm") == "https://auth.example.com/token");
  CHECK(chs[0].param("service") == "registry.example.com");
  CHECK(chs[0].param("scope") == "repository:a/b:pull,push");

  chs = parse_www_authenticate(R"(Basic realm="test")");
  REQUIRE(chs.size() == 1);
  CHECK(chs[0].scheme == "basic");
  CHECK(chs[0].param("realm") == "test");

  // Two challenges, unquoted values, odd spacing and an escaped quote.
  chs = parse_www_authenticate(R"(Basic realm=simple , Bearer  REALM="a\"b", error=invalid_token)");
  REQUIRE(chs.size() == 2);
  CHECK(chs[0].param("realm") == "simple");
  CHECK(chs[1].scheme == "bearer");
  CHECK(chs[1].param("realm") == "a\"b");
  CHECK(chs[1].param("error") == "invalid_token");

  CHECK(parse_www_authenticate("").empty());
  // Junk never crashes.
  (void)parse_www_authenticate("=\"\"\",,,==");
  (void)parse_www_authenticate("Bearer realm=\"unterminated");
}

TEST_CASE("token answers and the token cache", "[registry]") {
  auto a = parse_token_answer(R"({"token":"t1","expires_in":300})");
  REQUIRE(a);
  CHECK(a->token == "t1");
  CHECK(a->expires_in == 300s);
  a = parse_token_answer(R"({"access_token":"t2"})");
  REQUIRE(a);
  CHECK(a->token == "t2");
  CHECK(a->expires_in == 60s);
  CHECK_FALSE(parse_token_answer(R"({"nothing":1})"));
  CHECK_FALSE(parse_token_answer("not json"));

  TokenCache cache;
  auto t0 = std::chrono::system_clock::time_point(std::chrono::seconds(1000000));
  cache.put("reg|repository:a:pull", "tok", 60s, t0);
  CHECK(cache.get("reg|repository:a:pull", t0 + 10s) == std::optional<std::string>("tok"));
  CHECK_FALSE(cache.get("reg|repository:b:pull", t0));
  CHECK_FALSE(cache.get("reg|repository:a:pull", t0 + 60s));
  cache.drop("reg|repository:a:pull");
  CHECK_FALSE(cache.get("reg|repository:a:pull", t0));
}

TEST_CASE("retry policy: backoff, Retry-After, bounds", "[registry]") {
  RetryPolicy p;
  p.max_attempts = 4;
  p.initial_delay = 100ms;
  p.max_delay = 250ms;
  p.max_retry_after = 5s;
  CHECK(retry_delay(p, 2, std::nullopt) == std::optional(100ms));
  CHECK(retry_delay(p, 3, std::nullopt) == std::optional(200ms));
  CHECK(retry_delay(p, 4, std::nullopt) == std::optional(250ms));
  CHECK_FALSE(retry_delay(p, 5, std::nullopt));
  CHECK(retry_delay(p, 2, 2000ms) == std::optional(2000ms));
  CHECK(retry_delay(p, 2, 60000ms) == std::optional(5000ms));

  auto now = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(parse_retry_after("3", now) == std::optional(3000ms));
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now) == std::optional(10000ms));
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now) == std::optional(0ms));
  CHECK_FALSE(parse_retry_after("soon", now));
  CHECK_FALSE(parse_retry_after("", now));

  CHECK(is_retryable_status(429));
  CHECK(is_retryable_status(503));
  CHECK(is_retryable_status(500));
  CHECK_FALSE(is_retryable_status(501));
  CHECK_FALSE(is_retryable_status(404));
  CHECK_FALSE(is_retryable_status(401));
}

TEST_CASE("platform selection from an index", "[registry]") {
  auto index = nlohmann::json::parse(R"({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
      {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
      {"digest": "sha256:amd64v2", "platform": {"os": "linux", "architecture": "amd64", "variant": "v2"}},
      {"digest": "sha256:amd64", "platform": {"os": "linux", "architecture": "amd64"}},
      {"digest": "sha256:armv6", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
      {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm"}},
      {"digest": "sha256:arm64", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
      {"digest": "sha256:win", "platform": {"os": "windows", "architecture": "amd64"}}
    ]})");
  auto pick = [&](const std::string& p) -> std::string {
    auto plat = parse_platform(p);
    REQUIRE(plat);
    auto i = select_platform_manifest(index, *plat);
    if (!i) {
      return "error: " + i.error().message;
    }
    return index["manifests"][*i]["digest"].get<std::string>();
  };
  CHECK(pick("linux/amd64") == "sha256:amd64");
  CHECK(pick("linux/amd64/v2") == "sha256:amd64v2");
  CHECK(pick("linux/amd64/v3") == "sha256:amd64v2");  // falls back to the newest older level
  CHECK(pick("linux/arm/v7") == "sha256:arm");        // empty arm variant means v7
  CHECK(pick("linux/arm") == "sha256:arm");
  CHECK(pick("linux/arm/v6") == "sha256:armv6");
  CHECK(pick("linux/arm64") == "sha256:arm64");        // v8 is arm64's default
  CHECK(pick("aarch64") == "sha256:arm64");
  CHECK(pick("windows/amd64") == "sha256:win");
  std::string miss = pick("linux/s390x");
  CHECK(miss.find("no manifest for platform linux/s390x") != std::string::npos);
  CHECK(miss.find("linux/arm64/v8") != std::string::npos);

  CHECK_FALSE(parse_platform("linux/"));
  CHECK_FALSE(parse_platform("a/b/c/d"));
  CHECK_FALSE(select_platform_manifest(nlohmann::json::object(), Platform{"linux", "amd64", ""}));
  Platform host = host_platform();
  CHECK(host.os == "linux");
  CHECK_FALSE(host.architecture.empty());
}

TEST_CASE("URL origins decide where Authorization may go", "[registry]") {
  auto a = url_origin("https://Reg.example.com/v2/x/blobs/y");
  REQUIRE(a);
  CHECK(a->host == "reg.example.com");
  CHECK(a->port == "443");
  auto b = url_origin("https://reg.example.com:443/other");
  REQUIRE(b);
  CHECK(*a == *b);
  auto c = url_origin("https://reg.example.com:8443/");
  REQUIRE(c);
  CHECK_FALSE(*a == *c);
  auto d = url_origin("http://reg.example.com/");
  REQUIRE(d);
  CHECK_FALSE(*a == *d);
  auto rel = resolve_url("http://127.0.0.1:5000/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/u?_state=x");
  REQUIRE(rel);
  CHECK(*rel == "http://127.0.0.1:5000/v2/a/blobs/uploads/u?_state=x");
  auto abs = resolve_url("http://127.0.0.1:5000/v2/", "http://127.0.0.1:6000/blob");
  REQUIRE(abs);
  CHECK(*abs == "http://127.0.0.1:6000/blob");
  CHECK(url_authority("https://u@h:5/x?y") == "h:5");
}

TEST_CASE("base64 round trips", "[registry]") {
  for (std::string s : std::vector<std::string>{"", "a", "ab", "abc", "user:pa:ss", std::string("\0\xff\x10", 3)}) {
    auto enc = base64_encode(s);
    auto dec = base64_decode(enc);
    REQUIRE(dec);
    CHECK(*dec == s);
  }
  CHECK(base64_encode("user:pass") == "dXNlcjpwYXNz");
  CHECK_FALSE(base64_decode("!!!"));
}

TEST_CASE("config.json: auths lookup, set and erase keep other keys", "[registry]") {
  ScratchDir dir;
  auto path = dir.path() / "config.json";
  spit(path, R"({
    "auths": {
      "https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"},
      "http://127.0.0.1:5000/v2/": {"auth": "dXNlcjpwYXNz"},
      "tok.example.com": {"auth": "", "identitytoken": "refresh-me"}
    },
    "psFormat": "table {{.ID}}",
    "proxies": {"default": {"noProxy": "x"}}
  })");
  auto cfg = DockerConfig::load(path);
  REQUIRE(cfg);
  auto hub = cfg->get("docker.io");
  REQUIRE(hub);
  CHECK(hub->username == "hub");
  CHECK(hub->password == "hubpw");
  auto local = cfg->get("127.0.0.1:5000");
  REQUIRE(local);
  CHECK(local->username == "user");
  CHECK(local->password == "pass");
  auto tok = cfg->get("tok.example.com");
  REQUIRE(tok);
  CHECK(tok->identity_token == "refresh-me");
  auto none = cfg->get("other.example.com");
  REQUIRE(none);
  CHECK(none->empty());

  REQUIRE(cfg->set("new.example.com:444", Credentials{"u", "p:w", ""}));
  auto erased = cfg->erase("127.0.0.1:5000");
  REQUIRE(erased);
  CHECK(*erased);
  REQUIRE(cfg->save());
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  auto again = nlohmann::json::parse(slurp(path));
  CHECK(again["psFormat"] == "table {{.ID}}");
  CHECK(again["proxies"]["default"]["noProxy"] == "x");
  CHECK(again["auths"]["new.example.com:444"]["auth"] == base64_encode("u:p:w"));
  CHECK_FALSE(again["auths"].contains("http://127.0.0.1:5000/v2/"));
  CHECK(again["auths"].contains("https://index.docker.io/v1/"));
  auto reloaded = DockerConfig::load(path);
  REQUIRE(reloaded);
  auto nu = reloaded->get("new.example.com:444");
  REQUIRE(nu);
  CHECK(nu->password == "p:w");
  auto gone = reloaded->erase("127.0.0.1:5000");
  REQUIRE(gone);
  CHECK_FALSE(*gone);

  // A missing file is an empty config; a broken one is an error naming the file.
  auto missing = DockerConfig::load(dir.path() / "nope.json");
  REQUIRE(missing);
  CHECK(missing->json().empty());
  spit(dir.path() / "bad.json", "{not json");
  auto bad = DockerConfig::load(dir.path() / "bad.json");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("bad.json") != std::string::npos);
  spit(dir.path() / "badauth.json", R"({"auths":{"h":{"auth":"bm9jb2xvbg=="}}})");
  auto badauth = DockerConfig::load(dir.path() / "badauth.json");
  REQUIRE(badauth);
  CHECK_FALSE(badauth->get("h"));
}

TEST_CASE("config.json: credHelpers and credsStore run docker-credential helpers", "[registry]") {
  ScratchDir dir;
  // A helper that answers get from a fixed identity and records store/erase.
  auto helper = dir.path() / "docker-credential-fake";
  spit(helper, "#!/bin/sh\n"
               "d=$(dirname \"$0\")\n"
               "case \"$1\" in\n"
               "get) read url; if [ \"$url\" = \"nobody.example.com\" ]; then echo 'credentials not found in native keychain'; exit 1; fi;\n"
               "     printf '{\"ServerURL\":\"%s\",\"Username\":\"helper-%s\",\"Secret\":\"s3cret\"}' \"$url\" \"$url\";;\n"
               "store) cat > \"$d/stored\";;\n"
               "erase) read url; echo \"$url\" > \"$d/erased\";;\n"
               "*) exit 2;;\n"
               "esac\n");
  std::filesystem::permissions(helper, std::filesystem::perms::owner_all);
  std::string old_path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  ::setenv("PATH", (dir.path().string() + ":" + old_path).c_str(), 1);

  auto path = dir.path() / "config.json";
  spit(path, R"({"credHelpers": {"reg.example.com": "fake"}, "auths": {"plain.example.com": {"auth": "YTpi"}}})");
  auto cfg = DockerConfig::load(path);
  REQUIRE(cfg);
  auto c = cfg->get("reg.example.com");
  REQUIRE(c);
  CHECK(c->username == "helper-reg.example.com");
  CHECK(c->password == "s3cret");
  auto plain = cfg->get("plain.example.com");
  REQUIRE(plain);
  CHECK(plain->username == "a");

  // credsStore covers every registry without its own helper; Docker Hub is
  // asked for by its legacy URL.
  spit(path, R"({"credsStore": "fake", "auths": {}})");
  cfg = DockerConfig::load(path);
  REQUIRE(cfg);
  auto hub = cfg->get("docker.io");
  REQUIRE(hub);
  CHECK(hub->username == "helper-https://index.docker.io/v1/");
  auto nobody = cfg->get("nobody.example.com");
  REQUIRE(nobody);
  CHECK(nobody->empty());
  REQUIRE(cfg->set("new.example.com", Credentials{"me", "pw", ""}));
  auto stored = nlohmann::json::parse(slurp(dir.path() / "stored"));
  CHECK(stored["ServerURL"] == "new.example.com");
  CHECK(stored["Username"] == "me");
  CHECK(stored["Secret"] == "pw");
  REQUIRE(cfg->save());
  auto saved = nlohmann::json::parse(slurp(path));
  CHECK(saved["auths"]["new.example.com"].empty());  // no secret in the file
  auto erased = cfg->erase("new.example.com");
  REQUIRE(erased);
  CHECK(*erased);
  CHECK(slurp(dir.path() / "erased") == "new.example.com\n");
  ::setenv("PATH", old_path.c_str(), 1);
}

