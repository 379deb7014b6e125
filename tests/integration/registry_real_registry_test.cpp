// The registry client against Debian's docker-registry 2.8 started by the
// test (plain HTTP, and TLS + htpasswd), and through the fault-injecting
// proxy (tests/support/fault_proxy.py) for retries, corruption, Bearer
// tokens and redirects. Retry waits go to a recording sleeper, so nothing
// here waits for real backoff.

#include <algorithm>
#include <map>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "image/store.hpp"
#include "registry/client.hpp"
#include "registry/platform.hpp"
#include "registry/transfer.hpp"
#include "support/registry_images.hpp"
#include "support/registry_fixture.hpp"
#include "support/require.hpp"
#include "util/strings.hpp"

using namespace imgbuild;
using namespace imgbuild::registry;
using namespace std::chrono_literals;
using imgbuild::test::FaultProxy;
using imgbuild::test::RegistrySpec;
using imgbuild::test::slurp;
using imgbuild::test::spit;
using imgbuild::test::ScratchDir;
using imgbuild::test::TestRegistry;

namespace {

#define REQUIRE_REGISTRY_TOOLS()                                                       \
  IMGBUILD_REQUIRE_PREREQ(TestRegistry::missing_prerequisite().empty(),               \
                          TestRegistry::missing_prerequisite())
#define REQUIRE_PROXY_TOOLS()                                                          \
  IMGBUILD_REQUIRE_PREREQ(::access("/usr/bin/python3", X_OK) == 0,                     \
                          "/usr/bin/python3 is missing (scripts/deps --test installs it)")

// Deterministic pseudo-random bytes.
std::string make_blob(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xff);
  }
  return out;
}

struct Recorded {
  std::vector<std::chrono::milliseconds> sleeps;
};

ClientOptions test_options(Recorded& rec) {
  ClientOptions o;
  o.retry.max_attempts = 4;
  o.sleeper = [&rec](std::chrono::milliseconds d) { rec.sleeps.push_back(d); };
  o.transport.connect_timeout = 5000ms;
  o.transport.stall_timeout = 10000ms;
  o.transport.certs_dir = "/nonexistent/certs.d";
  return o;
}

CredentialLookup fixed_credentials(const std::string& user, const std::string& password) {
  return [=](const std::string&) -> Result<Credentials> { return Credentials{user, password, ""}; };
}

std::string pull_blob(Client& c, const Repository& repo, const Sha256Digest& d,
                      std::optional<uint64_t> size) {
  std::string got;
  auto r = c.get_blob(repo, d, size, [&](std::string_view chunk) -> Result<void> {
    got.append(chunk);
    return ok();
  });
  if (!r) {
    FAIL("get_blob failed: " << r.error().to_string());
  }
  CHECK(*r == got.size());
  return got;
}

struct PushedImage {
  std::string manifest;
  Sha256Digest digest;
  std::vector<std::string> layers;
  std::string config;
};

// Pushes a config and layers (optionally chunked) and an OCI manifest under `tag`.
PushedImage push_image(Client& c, const Repository& repo, const std::string& tag, uint32_t seed,
                       const std::string& arch = "amd64") {
  PushedImage img;
  img.layers = {make_blob(150000 + seed, seed), make_blob(70000, seed + 100)};
  img.config = nlohmann::json{{"architecture", arch}, {"os", "linux"},
                              {"rootfs", {{"type", "layers"}, {"diff_ids", nlohmann::json::array()}}},
                              {"seed", seed}}.dump();
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : img.layers) {
    auto pushed = c.push_blob(repo, sha256(l), string_body(l));
    if (!pushed) {
      FAIL("push_blob: " << pushed.error().to_string());
    }
    layers.push_back({{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                      {"digest", sha256(l).str()}, {"size", l.size()}});
  }
  auto cp = c.push_blob(repo, sha256(img.config), string_body(img.config));
  if (!cp) {
    FAIL("push config: " << cp.error().to_string());
  }
  img.manifest = nlohmann::json{
      {"schemaVersion", 2},
      {"mediaType", media_type::oci_manifest},
      {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                  {"digest", sha256(img.config).str()}, {"size", img.config.size()}}},
      {"layers", layers}}.dump();
  auto d = c.put_manifest(repo, tag, img.manifest, std::string(media_type::oci_manifest));
  if (!d) {
    FAIL("put_manifest: " << d.error().to_string());
  }
  img.digest = *d;
  return img;
}

void set_rules(const std::string& proxy_host, const nlohmann::json& rules) {
  HttpTransport t;
  auto r = t.send(HttpRequest{"POST", "http://" + proxy_host + "/__fault/rules", {},
                              string_body(rules.dump()), {}, {}, {}});
  REQUIRE(r);
  REQUIRE(r->status == 200);
}

nlohmann::json proxy_log(const std::string& proxy_host) {
  HttpTransport t;
  auto r = t.send(HttpRequest{"GET", "http://" + proxy_host + "/__fault/log", {}, {}, {}, {}, {}});
  REQUIRE(r);
  return nlohmann::json::parse(r->body);
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("real registry: push and pull blobs and manifests over plain HTTP", "[registry][real]") {
  REQUIRE_REGISTRY_TOOLS();
  TestRegistry reg(RegistrySpec{});
  Recorded rec;
  Client c(test_options(rec));
  Repository repo{reg.host(), "test/app"};

  // Monolithic and chunked uploads.
  std::string mono = make_blob(300000, 1);
  std::string chunked = make_blob(200001, 2);
  auto p1 = c.push_blob(repo, sha256(mono), string_body(mono));
  REQUIRE(p1);
  CHECK(*p1 == BlobPush::uploaded);
  PushBlobOptions chunks;
  chunks.chunk_size = 65536;
  auto p2 = c.push_blob(repo, sha256(chunked), string_body(chunked), chunks);
  REQUIRE(p2);
  CHECK(*p2 == BlobPush::uploaded);
  auto again = c.push_blob(repo, sha256(mono), string_body(mono));
  REQUIRE(again);
  CHECK(*again == BlobPush::existed);

  auto exists = c.blob_exists(repo, sha256(mono));
  REQUIRE(exists);
  REQUIRE(exists->has_value());
  CHECK(**exists == mono.size());
  auto missing = c.blob_exists(repo, sha256("not pushed"));
  REQUIRE(missing);
  CHECK_FALSE(missing->has_value());

  CHECK(pull_blob(c, repo, sha256(mono), mono.size()) == mono);
  CHECK(pull_blob(c, repo, sha256(chunked), std::nullopt) == chunked);

  // A blob pushed from a file.
  ScratchDir dir;
  std::string from_file = make_blob(123457, 3);
  spit(dir.path() / "blob", from_file);
  auto body = file_body(dir.path() / "blob");
  REQUIRE(body);
  PushBlobOptions small_chunks;
  small_chunks.chunk_size = 50000;
  REQUIRE(c.push_blob(repo, sha256(from_file), *body, small_chunks));
  CHECK(pull_blob(c, repo, sha256(from_file), from_file.size()) == from_file);

  // Manifests by tag and by digest.
  PushedImage img = push_image(c, repo, "v1", 7);
  CHECK(img.digest == sha256(img.manifest));
  auto by_tag = c.get_manifest(repo, "v1");
  REQUIRE(by_tag);
  CHECK(by_tag->bytes == img.manifest);
  CHECK(by_tag->media_type == media_type::oci_manifest);
  CHECK(by_tag->digest == img.digest);
  auto by_digest = c.get_manifest(repo, img.digest.str());
  REQUIRE(by_digest);
  CHECK(by_digest->bytes == img.manifest);
  auto head = c.head_manifest(repo, "v1");
  REQUIRE(head);
  CHECK(*head == img.digest);
  auto absent = c.get_manifest(repo, "nope");
  REQUIRE_FALSE(absent);
  CHECK(absent.error().code == Errc::not_found);
  CHECK(contains(absent.error().message, "MANIFEST_UNKNOWN"));
  CHECK(contains(absent.error().message, "repository test/app"));

  // An index with two platforms: the host's manifest is selected.
  PushedImage other = push_image(c, repo, "other", 8, "s390x");
  Platform host = host_platform();
  nlohmann::json host_platform_json = {{"os", host.os}, {"architecture", host.architecture}};
  if (!host.variant.empty()) {
    host_platform_json["variant"] = host.variant;
  }
  std::string index = nlohmann::json{
      {"schemaVersion", 2},
      {"mediaType", media_type::oci_index},
      {"manifests",
       {{{"mediaType", media_type::oci_manifest}, {"digest", other.digest.str()},
         {"size", other.manifest.size()}, {"platform", {{"os", "linux"}, {"architecture", "s390x"}}}},
        {{"mediaType", media_type::oci_manifest}, {"digest", img.digest.str()},
         {"size", img.manifest.size()}, {"platform", host_platform_json}}}}}.dump();
  REQUIRE(c.put_manifest(repo, "multi", index, std::string(media_type::oci_index)));
  auto idx = c.get_manifest(repo, "multi");
  REQUIRE(idx);
  CHECK(is_index_media_type(idx->media_type));
  auto pick = select_platform_manifest(nlohmann::json::parse(idx->bytes), host);
  REQUIRE(pick);
  CHECK(*pick == 1);
  auto child = c.get_manifest(repo, nlohmann::json::parse(idx->bytes)["manifests"][*pick]["digest"]);
  REQUIRE(child);
  CHECK(child->bytes == img.manifest);
  auto resolved = c.resolve_manifest(repo, "multi", host);
  REQUIRE(resolved);
  CHECK(resolved->manifest.bytes == img.manifest);
  REQUIRE(resolved->indexes.size() == 1);
  CHECK(resolved->indexes[0].digest == idx->digest);
  auto s390x = c.resolve_manifest(repo, "multi", Platform{"linux", "s390x", ""});
  REQUIRE(s390x);
  CHECK(s390x->manifest.digest == other.digest);
  auto single = c.resolve_manifest(repo, "v1", Platform{"linux", "s390x", ""});
  REQUIRE(single);  // a single-platform image is taken as it is
  CHECK(single->indexes.empty());
  CHECK(single->manifest.digest == img.digest);
  auto riscv = c.resolve_manifest(repo, "multi", Platform{"linux", "riscv64", ""});
  REQUIRE_FALSE(riscv);
  CHECK(riscv.error().code == Errc::not_found);
  CHECK(contains(riscv.error().message, "no manifest for platform linux/riscv64"));
  CHECK(contains(riscv.error().message, "repository test/app"));

  // A Docker schema 2 manifest keeps its media type.
  nlohmann::json docker_manifest = nlohmann::json::parse(img.manifest);
  docker_manifest["mediaType"] = media_type::docker_manifest;
  docker_manifest["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json";
  for (auto& l : docker_manifest["layers"]) {
    l["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip";
  }
  REQUIRE(c.put_manifest(repo, "docker", docker_manifest.dump(), std::string(media_type::docker_manifest)));
  auto dm = c.get_manifest(repo, "docker");
  REQUIRE(dm);
  CHECK(dm->media_type == media_type::docker_manifest);
  CHECK(rec.sleeps.empty());
}

TEST_CASE("real registry: cross-repository mount", "[registry][real]") {
  REQUIRE_REGISTRY_TOOLS();
  TestRegistry reg(RegistrySpec{});
  Recorded rec;
  Client c(test_options(rec));
  Repository a{reg.host(), "team/a"};
  Repository b{reg.host(), "team/b"};
  std::string blob = make_blob(90000, 11);
  REQUIRE(c.push_blob(a, sha256(blob), string_body(blob)));
  auto before = c.blob_exists(b, sha256(blob));
  REQUIRE(before);
  CHECK_FALSE(before->has_value());
  PushBlobOptions mount;
  mount.mount_from = a;
  auto m = c.push_blob(b, sha256(blob), string_body(blob), mount);
  REQUIRE(m);
  CHECK(*m == BlobPush::mounted);
  CHECK(pull_blob(c, b, sha256(blob), blob.size()) == blob);
  // A blob the source lacks: the registry answers 202 and the upload goes on.
  std::string fresh = make_blob(1000, 12);
  auto u = c.push_blob(b, sha256(fresh), string_body(fresh), mount);
  REQUIRE(u);
  CHECK(*u == BlobPush::uploaded);
  CHECK(pull_blob(c, b, sha256(fresh), fresh.size()) == fresh);
}

TEST_CASE("real registry: TLS with htpasswd checks credentials", "[registry][real]") {
  REQUIRE_REGISTRY_TOOLS();
  TestRegistry reg(RegistrySpec{true, "alice", "wonderland"});
  Repository repo{reg.host(), "secure/app"};
  std::string blob = make_blob(5000, 21);

  Recorded rec;
  ClientOptions wrong = test_options(rec);
  wrong.transport.certs_dir = reg.certs_dir();
  wrong.credentials = fixed_credentials("alice", "looking-glass");
  Client bad(wrong);
  auto refused = bad.push_blob(repo, sha256(blob), string_body(blob));
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == Errc::permission);
  CHECK(contains(refused.error().message, "registry " + reg.host()));
  CHECK(contains(refused.error().message, "repository secure/app"));
  CHECK(contains(refused.error().message, "401"));
  auto login_bad = bad.check_login(reg.host(), Credentials{"alice", "looking-glass", ""});
  REQUIRE_FALSE(login_bad);
  CHECK(contains(login_bad.error().message, "login to " + reg.host() + " as alice failed"));

  ClientOptions right = test_options(rec);
  right.transport.certs_dir = reg.certs_dir();
  right.credentials = fixed_credentials("alice", "wonderland");
  Client good(right);
  REQUIRE(good.check_login(reg.host(), Credentials{"alice", "wonderland", ""}));
  PushedImage img = push_image(good, repo, "latest", 22);
  auto m = good.get_manifest(repo, "latest");
  REQUIRE(m);
  CHECK(m->digest == img.digest);
  CHECK(pull_blob(good, repo, sha256(img.layers[0]), img.layers[0].size()) == img.layers[0]);

  // Without the certs.d CA the certificate is refused (no fallback to HTTP).
  ClientOptions untrusted = test_options(rec);
  untrusted.credentials = fixed_credentials("alice", "wonderland");
  Client no_ca(untrusted);
  auto tls_fail = no_ca.get_manifest(repo, "latest");
  REQUIRE_FALSE(tls_fail);
  CHECK(tls_fail.error().code == Errc::network);
  CHECK(contains(str::to_lower(tls_fail.error().message), "certificate"));

  // --tls-verify=false accepts it.
  ClientOptions insecure = untrusted;
  insecure.transport.tls_verify = false;
  Client no_verify(insecure);
  auto m2 = no_verify.get_manifest(repo, "latest");
  REQUIRE(m2);
  CHECK(m2->digest == img.digest);
}

TEST_CASE("imgbuild login and logout write docker's config.json", "[registry][real]") {
  REQUIRE_REGISTRY_TOOLS();
  TestRegistry reg(RegistrySpec{true, "alice", "wonderland"});
  ScratchDir dir;
  auto config = dir.path() / "config.json";
  spit(config, R"({"psFormat":"keep me","auths":{"other.example.com":{"auth":"YTpi"}}})");
  auto login = [&](const std::string& password, const std::string& log) {
    return imgbuild::test::run_command(
        {"sh", "-c",
         "printf %s \"$0\" | DOCKER_CONFIG=\"$1\" \"$2\" login -u alice --password-stdin "
         "--cert-dir \"$3\" \"$4\"",
         password, dir.path().string(), imgbuild::test::imgbuild_binary().string(),
         reg.certs_dir().string(), reg.host()},
        dir.path() / log);
  };
  CHECK(login("nope", "bad.log") != 0);
  std::string bad_log = slurp(dir.path() / "bad.log");
  CHECK(contains(bad_log, "imgbuild: error: login to " + reg.host() + " as alice failed"));
  CHECK(contains(bad_log, "401"));
  CHECK_FALSE(contains(slurp(config), reg.host()));

  REQUIRE(login("wonderland", "good.log") == 0);
  CHECK(contains(slurp(dir.path() / "good.log"), "Login Succeeded"));
  auto saved = nlohmann::json::parse(slurp(config));
  CHECK(saved["psFormat"] == "keep me");
  CHECK(saved["auths"]["other.example.com"]["auth"] == "YTpi");
  CHECK(saved["auths"][reg.host()]["auth"] == base64_encode("alice:wonderland"));

  // A later client finds the login through $DOCKER_CONFIG.
  ::setenv("DOCKER_CONFIG", dir.path().c_str(), 1);
  Recorded rec;
  ClientOptions o = test_options(rec);
  o.transport.certs_dir = reg.certs_dir();
  o.credentials = docker_config_credentials();
  Repository repo{reg.host(), "logged/in"};
  {
    Client c(o);
    PushedImage img = push_image(c, repo, "v1", 31);
    auto m = c.get_manifest(repo, "v1");
    REQUIRE(m);
    CHECK(m->digest == img.digest);
  }

  REQUIRE(imgbuild::test::run_command(
              {"sh", "-c", "DOCKER_CONFIG=\"$0\" \"$1\" logout \"$2\"", dir.path().string(),
               imgbuild::test::imgbuild_binary().string(), reg.host()},
              dir.path() / "logout.log") == 0);
  CHECK(contains(slurp(dir.path() / "logout.log"), "Removing login credentials for " + reg.host()));
  saved = nlohmann::json::parse(slurp(config));
  CHECK_FALSE(saved["auths"].contains(reg.host()));
  CHECK(saved["auths"].contains("other.example.com"));
  CHECK(saved["psFormat"] == "keep me");
  {
    Client c(o);
    auto refused = c.get_manifest(repo, "v1");
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == Errc::permission);
  }
  ::unsetenv("DOCKER_CONFIG");
}

TEST_CASE("fault proxy: retryable faults end in success", "[registry][real][faults]") {
  REQUIRE_REGISTRY_TOOLS();
  REQUIRE_PROXY_TOOLS();
  TestRegistry reg(RegistrySpec{});
  FaultProxy proxy(reg.host());
  Recorded rec;
  Client c(test_options(rec));
  Repository repo{proxy.host(), "faulty/app"};

  // Upload: the first POST gets a 500, the first monolithic PUT is dropped,
  // a chunked upload loses one PATCH: each restarts and succeeds.
  set_rules(proxy.host(), {{{"method", "POST"}, {"path", "/blobs/uploads/"}, {"action", "status"},
                            {"status", 500}, {"times", 1}},
                           {{"method", "PUT"}, {"path", "/blobs/uploads/"}, {"action", "drop"}, {"times", 1}},
                           {{"method", "PATCH"}, {"path", "/blobs/uploads/"}, {"action", "drop"}, {"times", 1}}});
  std::string mono = make_blob(100000, 41);
  auto p1 = c.push_blob(repo, sha256(mono), string_body(mono));
  INFO((p1 ? std::string("ok") : p1.error().to_string()));
  REQUIRE(p1);
  CHECK(*p1 == BlobPush::uploaded);
  std::string chunked = make_blob(100000, 42);
  PushBlobOptions chunks;
  chunks.chunk_size = 30000;
  auto p2 = c.push_blob(repo, sha256(chunked), string_body(chunked), chunks);
  INFO((p2 ? std::string("ok") : p2.error().to_string()));
  REQUIRE(p2);
  CHECK_FALSE(rec.sleeps.empty());  // the 500 was waited out
  // Each dropped request was sent again (by curl on a fresh connection, or
  // by restarting the upload): the proxy saw it twice.
  int puts = 0;
  int patches = 0;
  const nlohmann::json upload_log = proxy_log(proxy.host());
  for (const auto& r : upload_log["requests"]) {
    puts += r["method"] == "PUT" && contains(r["path"].get<std::string>(), "/blobs/uploads/") ? 1 : 0;
    patches += r["method"] == "PATCH" ? 1 : 0;
  }
  CHECK(puts >= 3);
  CHECK(patches >= 5);
  CHECK(pull_blob(c, repo, sha256(mono), mono.size()) == mono);
  CHECK(pull_blob(c, repo, sha256(chunked), chunked.size()) == chunked);
  PushedImage img = push_image(c, repo, "v1", 43);

  // 429 with Retry-After twice on the manifest: the waits are the server's.
  rec.sleeps.clear();
  set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/manifests/"}, {"action", "status"},
                            {"status", 429}, {"retry_after", 2}, {"times", 2}}});
  auto m = c.get_manifest(repo, "v1");
  REQUIRE(m);
  CHECK(m->digest == img.digest);
  REQUIRE(rec.sleeps.size() == 2);
  CHECK(rec.sleeps[0] == 2000ms);
  CHECK(rec.sleeps[1] == 2000ms);

  // A connection dropped mid-blob resumes with a Range request.
  set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/blobs/sha256:"}, {"action", "cut"}, {"times", 1}}});
  CHECK(pull_blob(c, repo, sha256(mono), mono.size()) == mono);
  bool ranged = false;
  const nlohmann::json cut_log = proxy_log(proxy.host());
  for (const auto& r : cut_log["requests"]) {
    if (r["method"] == "GET" && !r["range"].is_null() &&
        contains(r["path"].get<std::string>(), sha256(mono).str())) {
      ranged = true;
      CHECK(r["range"] == fmt::format("bytes={}-", mono.size() / 2));
    }
  }
  CHECK(ranged);

  // A body cut short with a matching Content-Length is noticed by its size.
  set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/blobs/sha256:"}, {"action", "truncate"}, {"times", 1}}});
  CHECK(pull_blob(c, repo, sha256(chunked), chunked.size()) == chunked);

  // 503 on HEAD and 500 on the manifest PUT.
  set_rules(proxy.host(), {{{"method", "HEAD"}, {"action", "status"}, {"status", 503}, {"times", 1}},
                           {{"method", "PUT"}, {"path", "/manifests/"}, {"action", "status"}, {"status", 500}, {"times", 1}}});
  auto e = c.blob_exists(repo, sha256(mono));
  REQUIRE(e);
  CHECK(e->has_value());
  REQUIRE(c.put_manifest(repo, "v2", img.manifest, std::string(media_type::oci_manifest)));
}

TEST_CASE("fault proxy: corrupt content is refused, exhausted retries fail clearly", "[registry][real][faults]") {
  REQUIRE_REGISTRY_TOOLS();
  REQUIRE_PROXY_TOOLS();
  TestRegistry reg(RegistrySpec{});
  FaultProxy proxy(reg.host());
  Recorded rec;
  Client c(test_options(rec));
  Repository repo{proxy.host(), "faulty/app"};
  PushedImage img = push_image(c, repo, "v1", 51);
  const std::string& layer = img.layers[0];

  set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/blobs/sha256:"}, {"action", "corrupt"}}});
  auto bad = c.get_blob(repo, sha256(layer), layer.size(), [](std::string_view) { return ok(); });
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == Errc::corrupt);
  CHECK(contains(bad.error().message, "blob " + sha256(layer).str()));
  CHECK(contains(bad.error().message, "refusing"));

  set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/manifests/"}, {"action", "corrupt"}}});
  auto bad_manifest = c.get_manifest(repo, img.digest.str());
  REQUIRE_FALSE(bad_manifest);
  CHECK(bad_manifest.error().code == Errc::corrupt);
  auto bad_tag = c.get_manifest(repo, "v1");  // Docker-Content-Digest disagrees
  REQUIRE_FALSE(bad_tag);
  CHECK(bad_tag.error().code == Errc::corrupt);

  rec.sleeps.clear();
  set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/manifests/"}, {"action", "status"}, {"status", 500}}});
  auto down = c.get_manifest(repo, "v1");
  REQUIRE_FALSE(down);
  CHECK(rec.sleeps.size() == 3);
  std::string msg = down.error().message;
  CHECK(contains(msg, "registry " + proxy.host()));
  CHECK(contains(msg, "repository faulty/app"));
  CHECK(contains(msg, "manifest v1"));
  CHECK(contains(msg, "500 Internal Server Error"));
  CHECK(contains(msg, "FAULT: injected 500"));
  CHECK(contains(msg, "gave up after 4 attempts"));

  set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/blobs/sha256:"}, {"action", "drop"}}});
  auto dropped = c.get_blob(repo, sha256(layer), layer.size(), [](std::string_view) { return ok(); });
  REQUIRE_FALSE(dropped);
  CHECK(dropped.error().code == Errc::network);
  CHECK(contains(dropped.error().message, "gave up after 4 attempts"));

  set_rules(proxy.host(), {{{"method", "POST"}, {"action", "status"}, {"status", 503}}});
  std::string blob = make_blob(100, 52);
  auto push_down = c.push_blob(repo, sha256(blob), string_body(blob));
  REQUIRE_FALSE(push_down);
  CHECK(contains(push_down.error().message, "blob " + sha256(blob).str()));
  CHECK(contains(push_down.error().message, "503"));

  set_rules(proxy.host(), nlohmann::json::array());
  auto unknown = c.get_blob(repo, sha256("absent"), std::nullopt, [](std::string_view) { return ok(); });
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code == Errc::not_found);
  CHECK(contains(unknown.error().message, "BLOB_UNKNOWN"));
}

TEST_CASE("fault proxy: Bearer tokens, and redirects never carry Authorization to another port",
          "[registry][real][faults]") {
  REQUIRE_REGISTRY_TOOLS();
  REQUIRE_PROXY_TOOLS();
  TestRegistry reg(RegistrySpec{});
  FaultProxy proxy(reg.host());
  {
    HttpTransport t;
    auto r = t.send(HttpRequest{"POST", "http://" + proxy.host() + "/__fault/bearer", {},
                                string_body(R"({"user":"bob","password":"builder","identitytoken":"idt-123"})"), {}, {}, {}});
    REQUIRE(r);
    REQUIRE(r->status == 200);
  }
  Recorded rec;
  ClientOptions o = test_options(rec);
  o.credentials = fixed_credentials("bob", "builder");
  Client c(o);
  Repository repo{proxy.host(), "tok/app"};
  PushedImage img = push_image(c, repo, "v1", 61);
  auto m = c.get_manifest(repo, "v1");
  REQUIRE(m);
  CHECK(m->digest == img.digest);

  set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/blobs/sha256:"}, {"action", "redirect"}, {"times", 1}}});
  const std::string& layer = img.layers[1];
  CHECK(pull_blob(c, repo, sha256(layer), layer.size()) == layer);
  auto log = proxy_log(proxy.host());
  bool main_had_bearer = false;
  bool second_seen = false;
  for (const auto& r : log["requests"]) {
    if (!contains(r["path"].get<std::string>(), sha256(layer).str()) || r["method"] != "GET") {
      continue;
    }
    if (r["port"] == "main" && r["auth"] == "Bearer") {
      main_had_bearer = true;
    }
    if (r["port"] == "second") {
      second_seen = true;
      CHECK(r["auth"].is_null());
    }
  }
  CHECK(main_had_bearer);
  CHECK(second_seen);
  bool scoped = false;
  for (const auto& t : log["tokens"]) {
    std::string q = t["query"];
    CHECK(t["basic"] == true);
    CHECK(contains(q, "service=fault-proxy"));
    if (contains(q, "scope=repository%3Atok%2Fapp%3Apull%2Cpush")) {
      scoped = true;
    }
  }
  CHECK(scoped);

  ClientOptions wrong = test_options(rec);
  wrong.credentials = fixed_credentials("bob", "nope");
  Client bad(wrong);
  auto refused = bad.get_manifest(repo, "v1");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == Errc::permission);
  CHECK(contains(refused.error().message, "token server"));
  CHECK(contains(refused.error().message, "refused user bob"));
  CHECK(contains(refused.error().message, "incorrect username or password"));

  Client anonymous(test_options(rec));
  auto anon = anonymous.get_manifest(repo, "v1");
  REQUIRE_FALSE(anon);
  CHECK(anon.error().code == Errc::permission);
  CHECK(contains(anon.error().message, "no credentials for " + proxy.host()));

  // Login checks go through the token server too.
  Client login(test_options(rec));
  CHECK(login.check_login(proxy.host(), Credentials{"bob", "builder", ""}));
  Client login_bad(test_options(rec));
  auto lb = login_bad.check_login(proxy.host(), Credentials{"bob", "wrong", ""});
  REQUIRE_FALSE(lb);
  CHECK(contains(lb.error().message, "refused user bob"));

  // An identity token is exchanged with the refresh_token grant (POST).
  ClientOptions idt = test_options(rec);
  idt.credentials = [](const std::string&) -> Result<Credentials> {
    return Credentials{"", "", "idt-123"};
  };
  Client with_token(idt);
  auto mt = with_token.get_manifest(repo, "v1");
  REQUIRE(mt);
  CHECK(mt->digest == img.digest);
  const nlohmann::json after = proxy_log(proxy.host());
  bool posted = false;
  for (const auto& t : after["tokens"]) {
    if (t["method"] == "POST") {
      posted = true;
      CHECK(t["form"]["grant_type"] == "refresh_token");
      CHECK(t["form"]["service"] == "fault-proxy");
    }
  }
  CHECK(posted);
}

TEST_CASE("real registry: one client pulls blobs concurrently", "[registry][real]") {
  REQUIRE_REGISTRY_TOOLS();
  TestRegistry reg(RegistrySpec{true, "carol", "parallel"});
  Recorded rec;
  ClientOptions o = test_options(rec);
  o.transport.certs_dir = reg.certs_dir();
  o.credentials = fixed_credentials("carol", "parallel");
  Client c(o);
  Repository repo{reg.host(), "many/layers"};
  std::vector<std::string> blobs;
  for (uint32_t i = 0; i < 6; ++i) {
    blobs.push_back(make_blob(40000 + i * 1000, 70 + i));
    REQUIRE(c.push_blob(repo, sha256(blobs.back()), string_body(blobs.back())));
  }
  std::vector<std::string> got(blobs.size());
  std::vector<std::string> errors(blobs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < blobs.size(); ++i) {
    threads.emplace_back([&, i] {
      auto r = c.get_blob(repo, sha256(blobs[i]), blobs[i].size(), [&](std::string_view chunk) -> Result<void> {
        got[i].append(chunk);
        return ok();
      });
      if (!r) {
        errors[i] = r.error().to_string();
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (size_t i = 0; i < blobs.size(); ++i) {
    CHECK(errors[i].empty());
    CHECK(got[i] == blobs[i]);
  }
}

namespace {

// Every file under `root` (relative path and size), the metadata database
// and its journal aside: what a failed pull must leave unchanged.
std::map<std::string, uintmax_t> store_files(const std::filesystem::path& root) {
  std::map<std::string, uintmax_t> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    std::string rel = std::filesystem::relative(e.path(), root).string();
    if (rel.find(".db") != std::string::npos || rel.find("sqlite") != std::string::npos) {
      continue;
    }
    out[rel] = e.is_regular_file() ? e.file_size() : 0;
  }
  return out;
}

// Image records and names of a store.
std::vector<std::string> store_records(const std::filesystem::path& root) {
  auto store = image::ImageStore::open(root);
  REQUIRE(store);
  auto images = (*store)->db().images();
  REQUIRE(images);
  std::vector<std::string> out;
  for (const auto& rec : *images) {
    out.push_back(rec.manifest_digest + " " + rec.config_digest);
    auto names = (*store)->names_of(rec.manifest_digest);
    REQUIRE(names);
    for (const auto& n : *names) {
      out.push_back("  " + n.str());
    }
  }
  return out;
}

// A store at `root` holding `name`: busybox plus three COPY layers of
// pseudo-random content (about 1.5 MB in four layers).
imgbuild::test::images::StoredImage multi_layer_image(const std::filesystem::path& root,
                                                      const std::filesystem::path& work, const std::string& name) {
  namespace ti = imgbuild::test::images;
  ti::import_busybox(root, work, "bb:1");
  auto ctx = work / "ctx";
  std::filesystem::create_directories(ctx);
  spit(ctx / "Dockerfile", "FROM bb:1\nCOPY a /a\nCOPY b /b\nCOPY c /c\n");
  spit(ctx / "a", make_blob(300000, 81));
  spit(ctx / "b", make_blob(150000, 82));
  spit(ctx / "c", make_blob(90000, 83));
  int rc = ti::imgbuild_run(root, {"build", "-t", name, ctx.string()}, work / "build.log");
  INFO(slurp(work / "build.log"));
  REQUIRE(rc == 0);
  auto img = ti::stored(root, name);
  REQUIRE(img.layers.size() == 4);
  return img;
}

}  // namespace

TEST_CASE("fault proxy: whole-image push and pull survive retryable faults", "[registry][real][faults]") {
  REQUIRE_REGISTRY_TOOLS();
  REQUIRE_PROXY_TOOLS();
  IMGBUILD_REQUIRE_PREREQ(imgbuild::test::images::have_busybox(), "busybox-static is not installed (/bin/busybox)");
  TestRegistry reg(RegistrySpec{});
  FaultProxy proxy(reg.host());
  ScratchDir work;
  auto src_root = work.path() / "src";
  auto original = multi_layer_image(src_root, work.path(), "multi:1");
  auto src = image::ImageStore::open(src_root);
  REQUIRE(src);
  Recorded rec;
  Client c(test_options(rec));
  auto dest = image::parse_reference(proxy.host() + "/faulty/multi:1");
  REQUIRE(dest);

  // Push: 429 + Retry-After on the first upload POST, 500 on HEADs, the
  // first two upload PUTs dropped, a 503 on the manifest PUT.
  set_rules(proxy.host(), {{{"method", "POST"}, {"path", "/blobs/uploads/"}, {"action", "status"},
                            {"status", 429}, {"retry_after", 1}, {"times", 1}},
                           {{"method", "HEAD"}, {"path", "/blobs/"}, {"action", "status"}, {"status", 500}, {"times", 2}},
                           {{"method", "PUT"}, {"path", "/blobs/uploads/"}, {"action", "drop"}, {"times", 2}},
                           {{"method", "PUT"}, {"path", "/manifests/"}, {"action", "status"}, {"status", 503}, {"times", 1}}});
  // As stored (no compression): this test is about the transport.
  auto pushed = push_image(c, **src, "multi:1", *dest, {}, PushOptions{std::nullopt});
  INFO((pushed ? std::string("pushed") : pushed.error().to_string()));
  REQUIRE(pushed);
  CHECK(pushed->manifest_digest == original.manifest);
  CHECK(std::find(rec.sleeps.begin(), rec.sleeps.end(), 1000ms) != rec.sleeps.end());
  CHECK(rec.sleeps.size() >= 4);

  // Pull: 429 on the manifest, every layer GET cut mid-body once, a
  // truncated body, a 500 and a dropped connection.
  rec.sleeps.clear();
  nlohmann::json rules = {{{"method", "GET"}, {"path", "/manifests/"}, {"action", "status"}, {"status", 429},
                           {"retry_after", 1}, {"times", 1}}};
  for (const auto& l : original.layers) {
    rules.push_back({{"method", "GET"}, {"path", "/blobs/" + l}, {"action", "cut"}, {"times", 1}});
  }
  rules.push_back({{"method", "GET"}, {"path", "/blobs/" + original.layers[0]}, {"action", "truncate"}, {"times", 1}});
  rules.push_back({{"method", "GET"}, {"path", "/blobs/" + original.layers[1]}, {"action", "status"}, {"status", 500}, {"times", 1}});
  rules.push_back({{"method", "GET"}, {"path", "/blobs/" + original.config}, {"action", "drop"}, {"times", 1}});
  set_rules(proxy.host(), rules);
  auto dst_root = work.path() / "dst";
  {
    auto dst = image::ImageStore::open(dst_root);
    REQUIRE(dst);
    auto pulled = pull_image(c, **dst, *dest, host_platform());
    INFO((pulled ? std::string("pulled") : pulled.error().to_string()));
    REQUIRE(pulled);
    CHECK(pulled->manifest_digest == original.manifest);
    CHECK(pulled->config_digest == original.config);
  }
  auto copy = imgbuild::test::images::stored(dst_root, dest->str());
  CHECK(copy.manifest == original.manifest);
  CHECK(copy.layers == original.layers);
  CHECK(rec.sleeps.size() >= original.layers.size() + 3);
  // The cuts resumed with Range requests.
  int ranged = 0;
  const nlohmann::json log = proxy_log(proxy.host());
  for (const auto& r : log["requests"]) {
    ranged += r["method"] == "GET" && !r["range"].is_null() ? 1 : 0;
  }
  CHECK(ranged >= static_cast<int>(original.layers.size()));
}

TEST_CASE("fault proxy: a blob that does not match its digest is refused and the store is unchanged",
          "[registry][real][faults]") {
  REQUIRE_REGISTRY_TOOLS();
  REQUIRE_PROXY_TOOLS();
  IMGBUILD_REQUIRE_PREREQ(imgbuild::test::images::have_busybox(), "busybox-static is not installed (/bin/busybox)");
  TestRegistry reg(RegistrySpec{});
  FaultProxy proxy(reg.host());
  ScratchDir work;
  auto src_root = work.path() / "src";
  auto original = multi_layer_image(src_root, work.path(), "multi:1");
  auto src = image::ImageStore::open(src_root);
  REQUIRE(src);
  Recorded rec;
  Client c(test_options(rec));
  auto dest = image::parse_reference(proxy.host() + "/faulty/multi:1");
  auto base = image::parse_reference(proxy.host() + "/faulty/base:1");
  REQUIRE(dest);
  REQUIRE(base);
  REQUIRE(push_image(c, **src, "multi:1", *dest, {}, PushOptions{std::nullopt}));
  REQUIRE(push_image(c, **src, "bb:1", *base, {}, PushOptions{std::nullopt}));

  // The destination store already holds the base image (its layer is shared).
  auto dst_root = work.path() / "dst";
  {
    auto dst = image::ImageStore::open(dst_root);
    REQUIRE(dst);
    REQUIRE(pull_image(c, **dst, *base, host_platform()));
  }
  auto files_before = store_files(dst_root);
  auto records_before = store_records(dst_root);
  REQUIRE(records_before.size() == 2);  // the base image and its name
  bool base_blob_seen = false;
  for (const auto& [path, size] : files_before) {
    base_blob_seen = base_blob_seen || (contains(path, original.layers.at(0).substr(7)) && size > 0);
  }
  CHECK(base_blob_seen);

  for (std::string action : {"corrupt", "truncate-forever"}) {
    // Every GET of the third layer serves bytes that do not hash to its digest.
    const std::string& bad = original.layers.at(2);
    if (action == "corrupt") {
      set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/blobs/" + bad}, {"action", "corrupt"}}});
    } else {
      set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/blobs/" + bad}, {"action", "truncate"}}});
    }
    auto dst = image::ImageStore::open(dst_root);
    REQUIRE(dst);
    auto pulled = pull_image(c, **dst, *dest, host_platform());
    REQUIRE_FALSE(pulled);
    INFO(pulled.error().to_string());
    CHECK(pulled.error().code == Errc::corrupt);
    CHECK(contains(pulled.error().message, "registry " + proxy.host()));
    CHECK(contains(pulled.error().message, "repository faulty/multi"));
    CHECK(contains(pulled.error().message, "blob " + bad));
    if (action == "corrupt") {
      CHECK(contains(pulled.error().message, "refusing"));
    }
    CHECK(store_files(dst_root) == files_before);
    CHECK(store_records(dst_root) == records_before);
  }

  // The same pull through the CLI fails with the same message.
  set_rules(proxy.host(), {{{"method", "GET"}, {"path", "/blobs/" + original.layers.at(3)}, {"action", "corrupt"}}});
  auto cli_log = work.path() / "pull.log";
  int rc = imgbuild::test::images::imgbuild_run(dst_root, {"pull", dest->str()}, cli_log);
  CHECK(rc != 0);
  CHECK(contains(slurp(cli_log), "blob " + original.layers.at(3)));
  CHECK(contains(slurp(cli_log), "refusing"));
  CHECK(store_files(dst_root) == files_before);
  CHECK(store_records(dst_root) == records_before);

  // Without faults the pull succeeds.
  set_rules(proxy.host(), nlohmann::json::array());
  auto dst = image::ImageStore::open(dst_root);
  REQUIRE(dst);
  auto pulled = pull_image(c, **dst, *dest, host_platform());
  REQUIRE(pulled);
  CHECK(pulled->manifest_digest == original.manifest);
}
