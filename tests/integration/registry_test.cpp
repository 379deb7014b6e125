// Blobs leaving the store and requests going to registries, through the real
// binary: a stored blob with one flipped byte fails `save`, the build outputs
// and `push`, named; stalled registries (a local TCP server that accepts and
// never answers, one that trickles a byte every few seconds) fail `pull`
// within the configured timeouts; answers that cannot change (not found,
// unauthorized, denied) are not retried. Registries are Debian's
// docker-registry and the fault proxy on 127.0.0.1; outcomes are asserted by
// exit status, messages and request counts, never by timing.

#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "support/registry_fixture.hpp"
#include "support/require.hpp"
#include "support/stall_server.hpp"

namespace fs = std::filesystem;
using imgbuild::test::import_tar;
using imgbuild::test::make_tar;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::TempDir;
using imgbuild::test::write_file;
using nlohmann::json;

namespace {

// Bytes that do not compress: a layer holding them stays the largest blob.
std::string noise(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  uint32_t x = seed;
  for (auto& c : out) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return out;
}

// The hex name of the largest blob of the store (the layer of a one-layer
// image with a big file).
std::string largest_blob(const fs::path& root) {
  std::string best;
  uintmax_t size = 0;
  for (const auto& e : fs::directory_iterator(root / "blobs" / "sha256")) {
    if (e.is_regular_file() && e.file_size() > size) {
      size = e.file_size();
      best = e.path().filename().string();
    }
  }
  REQUIRE_FALSE(best.empty());
  return best;
}

// Flips one bit in the middle of a stored blob (same size, new content).
void flip_byte(const fs::path& root, const std::string& hex) {
  fs::path p = root / "blobs" / "sha256" / hex;
  std::string bytes = read_file(p);
  REQUIRE(bytes.size() > 2);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  write_file(p, bytes);
}

// Runs imgbuild with extra environment assignments ("K=V") in front.
RunResult run_env(const fs::path& root, const std::vector<std::string>& env, const std::vector<std::string>& args) {
  std::string cmd = "exec env";
  for (const auto& e : env) {
    cmd += ' ';
    cmd += sh_quote(e);
  }
  // The timeout only stops a hang from stalling the suite; tests assert on
  // status, message and counts.
  cmd += " timeout 170 " + sh_quote(imgbuild::test::imgbuild_binary().string()) + " --root " + sh_quote(root.string());
  for (const auto& a : args) {
    cmd += ' ';
    cmd += sh_quote(a);
  }
  return run_sh(cmd);
}

// The requests the fault proxy saw (its control requests left out).
std::vector<json> proxy_log(const std::string& proxy_host) {
  RunResult r = run_sh("/usr/bin/python3 -c " +
                       sh_quote("import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
                                "'http://" + proxy_host + "/__fault/log').read().decode())"));
  REQUIRE(r.status == 0);
  json j = json::parse(r.out);
  std::vector<json> out;
  for (const auto& req : j["requests"]) {
    if (req["path"].get<std::string>().rfind("/__fault/", 0) != 0) {
      out.push_back(req);
    }
  }
  return out;
}

// How many logged requests have this method and a path containing `part`.
size_t count_requests(const std::vector<json>& log, const std::string& method, const std::string& part) {
  return static_cast<size_t>(std::count_if(log.begin(), log.end(), [&](const json& r) {
    return r["method"] == method && r["path"].get<std::string>().find(part) != std::string::npos;
  }));
}

// POSTs a JSON body to a control path of the fault proxy.
void proxy_control(const std::string& proxy_host, const std::string& path, const std::string& body) {
  RunResult r = run_sh("/usr/bin/python3 -c " +
                       sh_quote("import sys, urllib.request; urllib.request.urlopen(urllib.request.Request("
                                "'http://" + proxy_host + path + "', data=sys.argv[1].encode(), method='POST'))") +
                       " " + sh_quote(body));
  INFO(r.err);
  REQUIRE(r.status == 0);
}

// The HTTP status of a HEAD request to a registry URL path.
int head_status(const std::string& host, const std::string& path) {
  RunResult r = run_sh("/usr/bin/python3 -c " +
                       sh_quote("import sys, urllib.request, urllib.error\n"
                                "try:\n"
                                "    print(urllib.request.urlopen(urllib.request.Request('http://" + host + path +
                                "', method='HEAD')).status)\n"
                                "except urllib.error.HTTPError as e:\n"
                                "    print(e.code)\n"));
  INFO(r.err);
  REQUIRE(r.status == 0);
  return std::stoi(r.out);
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("export: a flipped byte in a stored layer fails save and the build outputs, naming the blob and the image",
          "[integration][registry][export]") {
  TempDir t;
  fs::path root = t.path / "store";
  import_tar(root, t.path / "good.tar", make_tar({imgbuild::test::file("good.bin", noise(20000, 1))}), "good:1");
  fs::path store_bad = t.path / "store-bad";
  import_tar(store_bad, t.path / "bad.tar", make_tar({imgbuild::test::file("data.bin", noise(200000, 2))}),
             "corrupt:1");
  import_tar(store_bad, t.path / "good2.tar", make_tar({imgbuild::test::file("good.bin", noise(20000, 3))}),
             "good:2");
  std::string hex = largest_blob(store_bad);

  // Untouched, it saves.
  RunResult before = run_imgbuild(store_bad, {"save", "-o", (t.path / "before.tar").string(), "corrupt:1"});
  INFO(before.err);
  REQUIRE(before.status == 0);

  flip_byte(store_bad, hex);

  SECTION("save -o FILE fails, names the blob and the image, and leaves no file") {
    fs::path out = t.path / "out.tar";
    RunResult r = run_imgbuild(store_bad, {"save", "-o", out.string(), "corrupt:1"});
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "sha256:" + hex));
    CHECK(contains(r.err, "corrupt:1"));
    CHECK(contains(r.err, "is corrupt"));
    CHECK_FALSE(fs::exists(out));
    CHECK_FALSE(fs::exists(t.path / "out.tar.imgbuild-tmp"));
    // Images that do not use the blob still save.
    RunResult other = run_imgbuild(store_bad, {"save", "-o", (t.path / "other.tar").string(), "good:2"});
    INFO(other.err);
    CHECK(other.status == 0);
  }

  SECTION("save to a pipe fails and the stream never holds the blob whole nor an index") {
    fs::path out = t.path / "piped.tar";
    RunResult r = run_imgbuild(store_bad, {"save", "corrupt:1"}, " | cat > " + sh_quote(out.string()));
    // The pipeline's status is cat's: the message tells.
    INFO(r.err);
    CHECK(contains(r.err, "sha256:" + hex));
    CHECK(contains(r.err, "is corrupt"));
    RunResult listing = run_sh("tar -tf " + sh_quote(out.string()));
    CHECK_FALSE(contains(listing.out, "index.json"));
    CHECK(fs::file_size(out) < fs::file_size(store_bad / "blobs" / "sha256" / hex));
  }

  SECTION("save --format oci-dir fails without an index or the blob in the layout") {
    fs::path out = t.path / "layout";
    RunResult r = run_imgbuild(store_bad, {"save", "--format", "oci-dir", "-o", out.string(), "corrupt:1"});
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "sha256:" + hex));
    CHECK(contains(r.err, "corrupt:1"));
    CHECK_FALSE(fs::exists(out / "index.json"));
    CHECK_FALSE(fs::exists(out / "blobs" / "sha256" / hex));
    CHECK_FALSE(fs::exists(out / "blobs" / "sha256" / (hex + ".tmp")));
  }

  SECTION("build -o type=docker|oci and --cache-to of a cached step whose layer rotted fail naming the blob") {
    REQUIRE(::geteuid() == 0);
    fs::path ctx = t.path / "ctx";
    fs::create_directories(ctx);
    write_file(ctx / "Dockerfile", "FROM scratch\nCOPY data.bin /data.bin\n");
    write_file(ctx / "data.bin", noise(300000, 4));
    fs::path broot = t.path / "store-build";
    RunResult first = run_imgbuild(broot, {"build", "--progress", "plain", "-t", "built:1", ctx.string()});
    INFO(first.err);
    REQUIRE(first.status == 0);
    std::string layer = largest_blob(broot);
    flip_byte(broot, layer);
    for (const std::string& output : {std::string("type=docker,dest=") + (t.path / "b.tar").string(),
                                      std::string("type=oci,dest=") + (t.path / "b-oci.tar").string(),
                                      std::string("type=oci,tar=false,dest=") + (t.path / "b-dir").string()}) {
      RunResult r = run_imgbuild(broot, {"build", "--progress", "plain", "-t", "built:1", "-o", output, ctx.string()});
      INFO(output);
      INFO(r.err);
      CHECK(r.status == 1);
      CHECK(contains(r.err, "sha256:" + layer));
      CHECK(contains(r.err, "is corrupt"));
    }
    CHECK_FALSE(fs::exists(t.path / "b-dir" / "index.json"));
    fs::path cache_dir = t.path / "cache";
    RunResult c = run_imgbuild(broot, {"build", "--progress", "plain", "--cache-to",
                                       "type=local,dest=" + cache_dir.string(), ctx.string()});
    INFO(c.err);
    CHECK(c.status == 1);
    CHECK(contains(c.err, "sha256:" + layer));
    CHECK(contains(c.err, "is corrupt"));
    CHECK_FALSE(fs::exists(cache_dir / "blobs" / "sha256" / layer));
  }
}

TEST_CASE("push: a flipped byte in a stored layer fails the push naming the blob and the image, nothing tagged",
          "[integration][registry][export]") {
  std::string missing = imgbuild::test::TestRegistry::missing_prerequisite();
  IMGBUILD_REQUIRE_PREREQ(missing.empty(), missing);
  imgbuild::test::TestRegistry registry({});
  TempDir t;
  fs::path root = t.path / "store";
  // Several layers' worth of blobs: a config and a layer per image.
  import_tar(root, t.path / "bad.tar", make_tar({imgbuild::test::file("data.bin", noise(400000, 5))}), "corrupt:1");
  std::string hex = largest_blob(root);
  flip_byte(root, hex);

  std::string dest = registry.host() + "/imgbuild-test/corrupt:1";
  RunResult r = run_imgbuild(root, {"push", "corrupt:1", dest});
  INFO(r.out);
  INFO(r.err);
  INFO(registry.log());
  CHECK(r.status == 1);
  CHECK(contains(r.err, "sha256:" + hex));
  CHECK(contains(r.err, "corrupt:1"));
  CHECK(contains(r.err, "is corrupt"));
  CHECK_FALSE(contains(r.err, "DIGEST_INVALID"));
  // Neither the tag nor the corrupt blob reached the registry.
  CHECK(head_status(registry.host(), "/v2/imgbuild-test/corrupt/manifests/1") == 404);
  CHECK(head_status(registry.host(), "/v2/imgbuild-test/corrupt/blobs/sha256:" + hex) == 404);

  // A config whose bytes changed (still valid JSON) fails before any upload.
  fs::path cfg_store = t.path / "cfg";
  import_tar(cfg_store, t.path / "cfg.tar", make_tar({imgbuild::test::file("c.bin", noise(3000, 7))}), "cfg:1");
  RunResult id = run_imgbuild(cfg_store, {"inspect", "--format", "{{.Id}}", "cfg:1"});
  REQUIRE(id.status == 0);
  std::string config_hex = id.out.substr(id.out.find(':') + 1, 64);
  fs::path config_path = cfg_store / "blobs" / "sha256" / config_hex;
  std::string config = read_file(config_path);
  REQUIRE(contains(config, "\"linux\""));
  config.replace(config.find("\"linux\""), 7, "\"linuy\"");
  write_file(config_path, config);
  RunResult cfg = run_imgbuild(cfg_store, {"push", "cfg:1", registry.host() + "/imgbuild-test/cfg:1"});
  INFO(cfg.err);
  CHECK(cfg.status == 1);
  CHECK(contains(cfg.err, "sha256:" + config_hex));
  CHECK(contains(cfg.err, "cfg:1"));
  CHECK(contains(cfg.err, "is corrupt"));
  CHECK(head_status(registry.host(), "/v2/imgbuild-test/cfg/manifests/1") == 404);

  // The same image before the damage pushes (the check itself is not the fault).
  fs::path clean = t.path / "clean";
  import_tar(clean, t.path / "bad.tar", read_file(t.path / "bad.tar"), "corrupt:1");
  RunResult ok = run_imgbuild(clean, {"push", "corrupt:1", dest});
  INFO(ok.err);
  CHECK(ok.status == 0);
}

TEST_CASE("pull: a registry that accepts and never answers fails within the connect timeout, named and retried",
          "[integration][registry][timeout]") {
  imgbuild::test::StallServer server(imgbuild::test::StallServer::Mode::silent);
  TempDir t;
  RunResult r = run_env(t.path / "store",
                        {"IMGBUILD_REGISTRY_CONNECT_TIMEOUT=1s", "IMGBUILD_REGISTRY_STALL_TIMEOUT=2s"},
                        {"pull", server.host() + "/stalled/img:1"});
  INFO(r.err);
  CHECK(r.status == 1);
  CHECK(contains(r.err, "registry " + server.host()));
  CHECK(contains(r.err, "connect timeout of 1s"));
  CHECK(contains(r.err, "IMGBUILD_REGISTRY_CONNECT_TIMEOUT"));
  CHECK(contains(r.err, "gave up after 5 attempts"));
  // The TLS probe, then the request and its four retries.
  CHECK(server.connections() == 6);
}

TEST_CASE("pull: a registry that trickles a byte every two seconds fails within the stall timeout, named and retried",
          "[integration][registry][timeout]") {
  imgbuild::test::StallServer server(imgbuild::test::StallServer::Mode::trickle, std::chrono::milliseconds(2000));
  TempDir t;
  RunResult r = run_env(t.path / "store",
                        {"IMGBUILD_REGISTRY_CONNECT_TIMEOUT=1s", "IMGBUILD_REGISTRY_STALL_TIMEOUT=2s"},
                        {"pull", server.host() + "/stalled/img:1"});
  INFO(r.err);
  CHECK(r.status == 1);
  CHECK(contains(r.err, "registry " + server.host()));
  CHECK(contains(r.err, "stall timeout of 2s"));
  CHECK(contains(r.err, "IMGBUILD_REGISTRY_STALL_TIMEOUT"));
  CHECK(contains(r.err, "gave up after 5 attempts"));
  CHECK(server.stalled_requests() == 5);
}

TEST_CASE("pull: a timeout variable that is not a duration is refused before any request",
          "[integration][registry][timeout]") {
  imgbuild::test::StallServer server(imgbuild::test::StallServer::Mode::silent);
  TempDir t;
  for (const std::string& bad : {std::string("IMGBUILD_REGISTRY_STALL_TIMEOUT=soon"),
                                 std::string("IMGBUILD_REGISTRY_CONNECT_TIMEOUT=-5s"),
                                 std::string("IMGBUILD_REGISTRY_CONNECT_TIMEOUT=0")}) {
    RunResult r = run_env(t.path / "store", {bad}, {"pull", server.host() + "/stalled/img:1"});
    INFO(bad);
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(contains(r.err, bad.substr(0, bad.find('='))));
    CHECK(contains(r.err, "is not a timeout"));
  }
  CHECK(server.connections() == 0);
}

TEST_CASE("registry answers that cannot change are not retried (missing images, unauthorized, denied) but a 5xx is",
          "[integration][registry][retry]") {
  std::string missing = imgbuild::test::TestRegistry::missing_prerequisite();
  IMGBUILD_REQUIRE_PREREQ(missing.empty(), missing);
  IMGBUILD_REQUIRE_PREREQ(::access("/usr/bin/python3", X_OK) == 0, "/usr/bin/python3 is missing");
  imgbuild::test::TestRegistry registry({});
  imgbuild::test::FaultProxy proxy(registry.host());
  TempDir t;
  fs::path root = t.path / "store";
  import_tar(root, t.path / "img.tar", make_tar({imgbuild::test::file("f.bin", noise(5000, 6))}), "there:1");
  std::string repo = proxy.host() + "/imgbuild-test/";
  RunResult pushed = run_imgbuild(root, {"push", "there:1", repo + "there:1"});
  INFO(pushed.err);
  REQUIRE(pushed.status == 0);
  // No credentials anywhere: an empty docker config.
  fs::path docker_config = t.path / "docker";
  fs::create_directories(docker_config);
  std::vector<std::string> env = {"DOCKER_CONFIG=" + docker_config.string()};

  // A missing image: pull and FROM ask once.
  RunResult pull = run_env(root, env, {"pull", repo + "nope:1"});
  INFO(pull.err);
  CHECK(pull.status == 1);
  CHECK(contains(pull.err, "MANIFEST_UNKNOWN"));
  CHECK_FALSE(contains(pull.err, "attempts"));
  CHECK(count_requests(proxy_log(proxy.host()), "GET", "/imgbuild-test/nope/manifests/1") == 1);

  fs::path ctx = t.path / "ctx";
  fs::create_directories(ctx);
  write_file(ctx / "Dockerfile", "FROM " + repo + "nope:2\nCOPY Dockerfile /\n");
  RunResult build = run_env(root, env, {"build", "--progress", "plain", ctx.string()});
  INFO(build.err);
  CHECK(build.status == 1);
  CHECK(contains(build.err, "MANIFEST_UNKNOWN"));
  CHECK(count_requests(proxy_log(proxy.host()), "GET", "/imgbuild-test/nope/manifests/2") == 1);

  // 403 DENIED and 401 UNAUTHORIZED (without a challenge to answer): once.
  proxy_control(proxy.host(), "/__fault/rules",
                R"([{"method": "GET", "path": "/denied/manifests/", "action": "status", "status": 403, "code": "DENIED"},
                    {"method": "GET", "path": "/unauth/manifests/", "action": "status", "status": 401,
                     "code": "UNAUTHORIZED"}])");
  for (const std::string& name : {std::string("denied"), std::string("unauth")}) {
    RunResult r = run_env(root, env, {"pull", repo + name + ":1"});
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(count_requests(proxy_log(proxy.host()), "GET", "/imgbuild-test/" + name + "/manifests/1") == 1);
  }

  // A 5xx that names a permanent error is not retried either; a plain 503
  // is, and the pull then succeeds.
  proxy_control(proxy.host(), "/__fault/rules",
                R"([{"method": "GET", "path": "/gone/manifests/", "action": "status", "status": 500,
                     "code": "NAME_UNKNOWN"},
                    {"method": "GET", "path": "/there/manifests/", "action": "status", "status": 503, "times": 2}])");
  RunResult gone = run_env(root, env, {"pull", repo + "gone:1"});
  INFO(gone.err);
  CHECK(gone.status == 1);
  CHECK(count_requests(proxy_log(proxy.host()), "GET", "/imgbuild-test/gone/manifests/1") == 1);
  fs::path fresh = t.path / "fresh";
  RunResult again = run_env(fresh, env, {"pull", repo + "there:1"});
  INFO(again.err);
  CHECK(again.status == 0);
  CHECK(count_requests(proxy_log(proxy.host()), "GET", "/imgbuild-test/there/manifests/1") == 3);

  // An upload answered NAME_UNKNOWN (the repository is gone) is not
  // restarted; a lost session (BLOB_UPLOAD_UNKNOWN) is.
  proxy_control(proxy.host(), "/__fault/rules",
                R"([{"method": "PUT", "path": "/blobs/uploads/", "action": "status", "status": 404,
                     "code": "NAME_UNKNOWN"}])");
  RunResult refused = run_env(root, env, {"push", "there:1", repo + "refused:1"});
  INFO(refused.err);
  CHECK(refused.status == 1);
  CHECK(contains(refused.err, "NAME_UNKNOWN"));
  auto log = proxy_log(proxy.host());
  size_t upload_puts = static_cast<size_t>(std::count_if(log.begin(), log.end(), [](const json& r) {
    return r["method"] == "PUT" && contains(r["path"].get<std::string>(), "/imgbuild-test/refused/blobs/uploads/");
  }));
  // At most one per blob (a layer and the config), none repeated.
  CHECK(upload_puts >= 1);
  CHECK(upload_puts <= 2);
  proxy_control(proxy.host(), "/__fault/rules",
                R"([{"method": "PUT", "path": "/lost/blobs/uploads/", "action": "status", "status": 404,
                     "code": "BLOB_UPLOAD_UNKNOWN", "times": 1}])");
  RunResult lost = run_env(root, env, {"push", "there:1", repo + "lost:1"});
  INFO(lost.err);
  CHECK(lost.status == 0);
}
