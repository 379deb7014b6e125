#include <catch2/catch.hpp>

#include "image/json.hpp"
#include "image/types.hpp"
#include "util/hash.hpp"

using namespace imgbuild;
using namespace imgbuild::image;

namespace {
const std::string k_d1 = "sha256:" + std::string(64, 'a');
const std::string k_d2 = "sha256:" + std::string(64, 'b');
}  // namespace

TEST_CASE("media types of both families are classified", "[image]") {
  CHECK(media_kind(media::oci_index) == MediaKind::index);
  CHECK(media_kind(media::docker_manifest_list) == MediaKind::index);
  CHECK(media_kind(media::oci_manifest) == MediaKind::manifest);
  CHECK(media_kind(media::docker_manifest) == MediaKind::manifest);
  CHECK(media_kind(media::oci_config) == MediaKind::config);
  CHECK(media_kind(media::docker_config) == MediaKind::config);
  CHECK(media_kind(media::docker_layer_gzip) == MediaKind::layer);
  CHECK(media_kind(media::oci_layer_zstd) == MediaKind::layer);
  CHECK(media_kind("application/x-unknown") == MediaKind::unknown);
}

TEST_CASE("a config round-trips with unknown fields and docker extensions", "[image]") {
  std::string text = R"({
    "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
    "author": "me", "docker_version": "24.0.0", "x-future": {"a": [1, 2]},
    "config": {"User": "1000", "Env": ["A=1", "B=2"], "Cmd": null, "Entrypoint": [],
               "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "WorkingDir": "/w",
               "Labels": {"k": "v"}, "StopSignal": "SIGTERM", "ArgsEscaped": true,
               "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000, "Retries": 3,
                               "StartInterval": 5000000000},
               "OnBuild": ["RUN x"], "Shell": ["/bin/bash", "-c"], "Hostname": "h"},
    "rootfs": {"type": "layers", "diff_ids": [")" + k_d1 + R"("]},
    "history": [{"created_by": "x", "empty_layer": true, "extra": 1}, {"comment": "c"}]
  })";
  auto cfg = parse_config(text, "test config");
  REQUIRE(cfg);
  REQUIRE(cfg->config);
  CHECK(cfg->config->user == "1000");
  CHECK_FALSE(cfg->config->cmd.has_value());
  REQUIRE(cfg->config->entrypoint.has_value());
  CHECK(cfg->config->entrypoint->empty());
  CHECK(cfg->config->exposed_ports.count("80/tcp") == 1);
  CHECK(cfg->config->healthcheck->interval == 30000000000);
  CHECK(cfg->config->healthcheck->start_interval == 5000000000);
  CHECK(cfg->config->healthcheck->retries == 3);
  CHECK(cfg->config->args_escaped);
  CHECK(cfg->config->shell.size() == 2);
  CHECK(cfg->history.size() == 2);
  CHECK(cfg->history[0].empty_layer);
  CHECK(cfg->extra.contains("x-future"));
  CHECK(cfg->config->extra["Hostname"] == "h");

  std::string out = serialize(*cfg);
  auto again = parse_config(out, "again");
  REQUIRE(again);
  CHECK(serialize(*again) == out);
  nlohmann::json j = nlohmann::json::parse(out);
  CHECK(j["x-future"]["a"][1] == 2);
  CHECK(j["docker_version"] == "24.0.0");
  CHECK(j["history"][0]["extra"] == 1);
  CHECK(j["config"]["Entrypoint"].is_array());
  CHECK_FALSE(j["config"].contains("Cmd"));
}

TEST_CASE("canonical serialisation is stable and sorted", "[image]") {
  Manifest m;
  m.media_type = std::string(media::oci_manifest);
  m.config = Descriptor{std::string(media::oci_config), k_d1, 10, {}, {}, std::nullopt, "", nlohmann::json::object()};
  m.annotations["z"] = "1";
  m.annotations["a"] = "2";
  std::string a = serialize(m);
  std::string b = serialize(m);
  CHECK(a == b);
  CHECK(a.find("\"annotations\"") < a.find("\"config\""));
  CHECK(a.find(' ') == std::string::npos);
  auto parsed = parse_manifest(a, "m");
  REQUIRE(parsed);
  CHECK(serialize(*parsed) == a);
}

TEST_CASE("manifests and indexes of docker schema 2 are read", "[image]") {
  std::string m = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":")" + k_d1 + R"("},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9,"digest":")" + k_d2 + R"("}]})";
  auto parsed = parse_manifest(m, "m");
  REQUIRE(parsed);
  CHECK(parsed->layers.size() == 1);
  CHECK(parsed->layers[0].size == 9);
  std::string idx = R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":1,"digest":")" + k_d1 +
                    R"(","platform":{"architecture":"arm","os":"linux","variant":"v7"}}]})";
  auto pi = parse_index(idx, "i");
  REQUIRE(pi);
  CHECK(pi->manifests[0].platform->variant == "v7");
}

TEST_CASE("malformed documents are refused with the document named", "[image]") {
  auto bad_json = parse_manifest("{not json", "manifest X");
  REQUIRE_FALSE(bad_json);
  CHECK(bad_json.error().code == Errc::corrupt);
  CHECK(bad_json.error().message.find("manifest X") != std::string::npos);

  auto bad_digest = parse_manifest(R"({"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]})", "m");
  REQUIRE_FALSE(bad_digest);
  CHECK(bad_digest.error().message.find("invalid digest") != std::string::npos);

  auto wrong_type = parse_config(R"({"architecture":"amd64","os":"linux","config":{"Env":"A=1"},"rootfs":{"type":"layers","diff_ids":[]}})", "cfg");
  REQUIRE_FALSE(wrong_type);
  CHECK(wrong_type.error().message.find("Env") != std::string::npos);

  auto bad_rootfs = parse_config(R"({"architecture":"amd64","os":"linux","rootfs":{"type":"other","diff_ids":[]}})", "cfg");
  REQUIRE_FALSE(bad_rootfs);
  CHECK(bad_rootfs.error().message.find("rootfs.type") != std::string::npos);
}

// Found by image_json_fuzz (testdata/fuzz/image_json_fuzz/crash-float-size):
// a float in an integer field was converted, which is undefined for 1e30.
TEST_CASE("a number that is not an integer in an integer field is refused as Go does", "[image]") {
  const std::string huge = R"({"schemaVersion":2,"config":{"digest":")" + k_d1 + R"(","size":1e30},"layers":[]})";
  auto m = parse_manifest(huge, "manifest X");
  REQUIRE_FALSE(m);
  CHECK(m.error().code == Errc::corrupt);
  CHECK(m.error().message.find("manifest X") != std::string::npos);
  CHECK(m.error().message.find("field \"size\": 1e+30 is not an integer") != std::string::npos);

  auto fraction = parse_manifest(R"({"schemaVersion":2,"config":{"digest":")" + k_d1 + R"(","size":1.5},"layers":[]})", "m");
  REQUIRE_FALSE(fraction);
  CHECK(fraction.error().message.find("\"size\"") != std::string::npos);

  auto version = parse_index(R"({"schemaVersion":2.0,"manifests":[]})", "idx");
  REQUIRE_FALSE(version);
  CHECK(version.error().message.find("schemaVersion") != std::string::npos);

  auto retries = parse_config(R"({"config":{"Healthcheck":{"Test":["NONE"],"Retries":-1e300}},"rootfs":{"type":"layers","diff_ids":[]}})", "cfg");
  REQUIRE_FALSE(retries);
  CHECK(retries.error().message.find("Retries") != std::string::npos);

  auto whole = parse_manifest(R"({"schemaVersion":2,"config":{"digest":")" + k_d1 + R"(","size":12},"layers":[]})", "m");
  REQUIRE(whole);
  CHECK(whole->config.size == 12);
}

TEST_CASE("JSON documents over the cap are refused before parsing", "[image]") {
  std::string big(k_max_json_size + 1, ' ');
  auto r = parse_json(big, "manifest.json");
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::limit);
  CHECK(r.error().message.find("manifest.json") != std::string::npos);
  CHECK(r.error().message.find("exceeds the limit") != std::string::npos);
}

TEST_CASE("chain IDs follow the OCI definition", "[image]") {
  std::vector<std::string> ids = {k_d1, k_d2};
  CHECK(chain_id(ids, 1) == k_d1);
  CHECK(chain_id(ids, 2) == sha256(k_d1 + " " + k_d2).str());
  CHECK(chain_id(ids, 0).empty());
}
