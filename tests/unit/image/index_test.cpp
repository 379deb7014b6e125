// Multi-platform images in the store (image/index.hpp): the index bytes,
// platform matching, and resolve/rmi/prune of an index with its platform
// images, on a store in a scratch directory with layerless images.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "image/index.hpp"
#include "image/store.hpp"
#include "support/scratch_dir.hpp"
#include "util/hash.hpp"

using namespace imgbuild;
using namespace imgbuild::image;
using imgbuild::test::ScratchDir;

namespace {

Platform plat(std::string os, std::string arch, std::string variant = "") {
  Platform p;
  p.os = std::move(os);
  p.architecture = std::move(arch);
  p.variant = std::move(variant);
  return p;
}

// A layerless image of `cfg`'s platform (`p`) staged in a new staging area:
// its config and manifest blobs put, the image record to commit and its
// index entry.
struct StagedImage {
  std::unique_ptr<Staging> staging;
  NewImage image;
  IndexEntry entry;
};

StagedImage stage_layerless(ImageStore& store, const ImageConfig& cfg, const Platform& p) {
  std::string cfg_bytes = serialize(cfg);
  Manifest m;
  m.media_type = std::string(media::oci_manifest);
  m.config.media_type = std::string(media::oci_config);
  m.config.digest = sha256(cfg_bytes).str();
  m.config.size = static_cast<int64_t>(cfg_bytes.size());
  std::string m_bytes = serialize(m);
  auto staging = Staging::create(store.content());
  REQUIRE(staging);
  REQUIRE((*staging)->put(cfg_bytes));
  auto digest = (*staging)->put(m_bytes);
  REQUIRE(digest);
  StagedImage out;
  out.staging = std::move(*staging);
  out.image.manifest_digest = *digest;
  out.image.media_type = m.media_type;
  out.image.config_digest = m.config.digest;
  out.image.created = cfg.created;
  out.entry = IndexEntry{*digest, m.media_type, static_cast<int64_t>(m_bytes.size()), p};
  return out;
}

// Commits a layerless image of `p` named `name` ("" for none); returns its
// index entry.
IndexEntry add_image(ImageStore& store, const Platform& p, const std::string& name) {
  ImageConfig cfg;
  cfg.os = p.os;
  cfg.architecture = p.architecture;
  cfg.variant = p.variant;
  cfg.created = "2024-01-01T00:00:00Z";
  StagedImage staged = stage_layerless(store, cfg, p);
  if (!name.empty()) {
    staged.image.names.push_back(*parse_reference(name));
  }
  REQUIRE(store.commit(*staged.staging, {staged.image}));
  return staged.entry;
}

}  // namespace

TEST_CASE("make_index: canonical OCI index, entries in order with their platforms", "[image][index]") {
  std::vector<IndexEntry> entries = {
      {"sha256:" + std::string(64, 'b'), std::string(media::oci_manifest), 100, plat("linux", "arm64")},
      {"sha256:" + std::string(64, 'a'), std::string(media::docker_manifest), 200, plat("linux", "amd64")},
  };
  auto bytes = make_index(entries);
  REQUIRE(bytes);
  auto again = make_index(entries);
  REQUIRE(again);
  CHECK(*bytes == *again);
  auto doc = nlohmann::json::parse(*bytes);
  CHECK(doc["schemaVersion"] == 2);
  CHECK(doc["mediaType"] == std::string(media::oci_index));
  REQUIRE(doc["manifests"].size() == 2);
  CHECK(doc["manifests"][0]["digest"] == entries[0].manifest_digest);
  CHECK(doc["manifests"][0]["platform"] == nlohmann::json({{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}}));
  CHECK(doc["manifests"][1]["platform"] == nlohmann::json({{"os", "linux"}, {"architecture", "amd64"}}));
  CHECK(doc["manifests"][1]["mediaType"] == std::string(media::docker_manifest));
  CHECK(doc["manifests"][1]["size"] == 200);
  // Another order is another index.
  std::vector<IndexEntry> swapped = {entries[1], entries[0]};
  CHECK(*make_index(swapped) != *bytes);

  entries[1].platform = plat("linux", "arm64", "v8");
  auto dup = make_index(entries);
  REQUIRE_FALSE(dup);
  CHECK(dup.error().message.find("two images for platform linux/arm64/v8") != std::string::npos);
  CHECK_FALSE(make_index({}));
}

TEST_CASE("platform_matches: aliases and default variants", "[image][index]") {
  CHECK(platform_matches(plat("linux", "arm64"), plat("linux", "arm64", "v8")));
  CHECK(platform_matches(plat("linux", "arm64", "v8"), plat("linux", "arm64")));
  CHECK(platform_matches(plat("linux", "aarch64"), plat("linux", "arm64")));
  CHECK(platform_matches(plat("linux", "x86_64"), plat("linux", "amd64")));
  CHECK(platform_matches(plat("linux", "arm"), plat("linux", "arm", "v7")));
  CHECK_FALSE(platform_matches(plat("linux", "arm", "v6"), plat("linux", "arm", "v7")));
  CHECK_FALSE(platform_matches(plat("linux", "amd64"), plat("linux", "arm64")));
  CHECK_FALSE(platform_matches(plat("windows", "amd64"), plat("linux", "amd64")));
  auto parsed = parse_platform_text("linux/aarch64");
  REQUIRE(parsed);
  CHECK(platform_text(*parsed) == "linux/arm64");
  CHECK_FALSE(parse_platform_text("linux/"));
  CHECK_FALSE(parse_platform_text("a/b/c/d"));
}

TEST_CASE("store: a name on an index resolves per platform, rmi and prune treat the index as one image",
          "[image][index]") {
  ScratchDir dir;
  auto store = ImageStore::open(dir.path());
  REQUIRE(store);
  ImageStore& s = **store;
  const Platform host = host_oci_platform();
  const Platform other = host.architecture == "s390x" ? plat("linux", "ppc64le") : plat("linux", "s390x");
  IndexEntry host_img = add_image(s, host, "one:host");
  IndexEntry other_img = add_image(s, other, "");
  auto committed = commit_index(s, {other_img, host_img}, {*parse_reference("multi:1")});
  REQUIRE(committed);
  CHECK(committed->digest == sha256(committed->bytes).str());

  // The host's platform by default, though it is the second entry.
  auto def = s.resolve("multi:1");
  REQUIRE(def);
  CHECK(def->manifest_digest == host_img.manifest_digest);
  auto sel = s.resolve("multi:1", other);
  REQUIRE(sel);
  CHECK(sel->manifest_digest == other_img.manifest_digest);
  auto target = s.resolve_target("multi:1");
  REQUIRE(target);
  CHECK(target->is_index());
  CHECK(target->config_digest == committed->digest);
  auto missing = s.resolve("multi:1", plat("linux", "riscv64"));
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message.find("has no image for platform linux/riscv64") != std::string::npos);
  CHECK(missing.error().message.find(platform_text(other)) != std::string::npos);
  // A single-platform image asked for another platform.
  auto wrong = s.resolve("one:host", other);
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().message.find("is for platform " + platform_text(host)) != std::string::npos);
  // By the index digest too (the image ID).
  auto by_id = s.resolve(committed->digest.substr(7, 12));
  REQUIRE(by_id);
  CHECK(by_id->manifest_digest == host_img.manifest_digest);

  // Prune keeps the unnamed platform image of a named index.
  auto pruned = s.prune(false);
  REQUIRE(pruned);
  CHECK(pruned->deleted.empty());
  CHECK(s.resolve("multi:1", other));

  // A platform image cannot go by itself.
  auto child = s.remove(other_img.manifest_digest, true);
  REQUIRE_FALSE(child);
  CHECK(child.error().message.find("platform image of multi-platform image multi:1") != std::string::npos);

  // rmi of the index: its unnamed platform image goes, the named one stays.
  auto removed = s.remove("multi:1", false);
  REQUIRE(removed);
  CHECK(removed->deleted.size() == 2);
  CHECK(removed->deleted.front() == committed->digest);
  CHECK_FALSE(s.content().has(other_img.manifest_digest));
  CHECK_FALSE(s.content().has(committed->digest));
  CHECK(s.resolve("one:host"));
  CHECK_FALSE(s.resolve(committed->digest));
}

TEST_CASE("commit_index refuses a manifest the store does not hold", "[image][index]") {
  ScratchDir dir;
  auto store = ImageStore::open(dir.path());
  REQUIRE(store);
  IndexEntry ghost{"sha256:" + std::string(64, 'c'), std::string(media::oci_manifest), 10, plat("linux", "amd64")};
  auto r = commit_index(**store, {ghost}, {*parse_reference("ghost:1")});
  REQUIRE_FALSE(r);
  CHECK_FALSE((*store)->resolve("ghost:1"));
}

TEST_CASE("stage_index commits with platform images not committed before", "[image][index]") {
  ScratchDir dir;
  auto store = ImageStore::open(dir.path());
  REQUIRE(store);
  ImageStore& s = **store;
  ImageConfig cfg;
  cfg.os = "linux";
  cfg.architecture = "arm64";
  StagedImage img = stage_layerless(s, cfg, config_platform(cfg));
  auto staged = stage_index(*img.staging, {img.entry}, {*parse_reference("built:1")});
  REQUIRE(staged);
  REQUIRE(s.commit(*img.staging, {img.image}, {staged->index}));
  auto rec = s.resolve("built:1", plat("linux", "arm64"));
  REQUIRE(rec);
  CHECK(rec->manifest_digest == img.image.manifest_digest);
  CHECK(s.content().has(staged->index.digest));
}
