#include "image/layer_compression.hpp"

#include <filesystem>

#include <catch2/catch.hpp>

#include "image/blob_reader.hpp"
#include "image/content_store.hpp"
#include "support/layer_spec.hpp"
#include "support/scratch_dir.hpp"
#include "util/hash.hpp"
#include "util/tar.hpp"

namespace imgbuild::image {
namespace {

using test::ScratchDir;

// An image of two layers in a fresh store: the first uncompressed (a
// build's), the second gzip (a pulled one's).
struct Fixture {
  ScratchDir dir;
  std::unique_ptr<ImageStore> store;
  std::string plain;     // layer 1 tar
  std::string pulled;    // layer 2 tar
  std::string pulled_gz; // layer 2 as stored
  LoadedImage img;

  Fixture() {
    auto s = ImageStore::open(dir.path());
    REQUIRE(s);
    store = std::move(s).value();
    std::string big;
    for (int i = 0; i < 40000; ++i) {
      big += "line " + std::to_string(i) + " of a text file\n";
    }
    plain = test::make_layer({test::dir("etc"), test::file("etc/big.txt", big)});
    pulled = test::make_layer({test::file("hello.txt", "hello\n")});
    pulled_gz = test::make_layer({test::file("hello.txt", "hello\n")}, tar::Compression::gzip);
    auto staging = Staging::create(store->content());
    REQUIRE(staging);
    std::string d1 = *(*staging)->put(plain);
    std::string d2 = *(*staging)->put(pulled_gz);
    std::string diff1 = sha256(plain).str();
    std::string diff2 = sha256(pulled).str();
    std::string cfg = *(*staging)->put(R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[")" +
                                       diff1 + "\",\"" + diff2 + "\"]}}");
    Manifest m;
    m.media_type = std::string(media::oci_manifest);
    auto desc = [](std::string_view mt, const std::string& digest, size_t size) {
      Descriptor d;
      d.media_type = std::string(mt);
      d.digest = digest;
      d.size = static_cast<int64_t>(size);
      return d;
    };
    m.config = desc(media::oci_config, cfg, 1);
    m.layers.push_back(desc(media::oci_layer, d1, plain.size()));
    m.layers.push_back(desc(media::oci_layer_gzip, d2, pulled_gz.size()));
    std::string man = *(*staging)->put(serialize(m));
    NewImage n;
    n.manifest_digest = man;
    n.config_digest = cfg;
    n.media_type = std::string(media::oci_manifest);
    n.layers = {LayerRecord{d1, diff1, std::string(media::oci_layer), static_cast<int64_t>(plain.size()), 0, -1},
                LayerRecord{d2, diff2, std::string(media::oci_layer_gzip), static_cast<int64_t>(pulled_gz.size()), 0, -1}};
    n.names = {*parse_reference("app:1")};
    REQUIRE(store->commit(**staging, {n}));
    auto rec = store->resolve("app:1");
    REQUIRE(rec);
    auto loaded = store->load(*rec);
    REQUIRE(loaded);
    img = std::move(loaded).value();
  }

  // The uncompressed content of a stored blob.
  std::string content_of(const std::string& digest) {
    auto blob = BlobReader::open(store->content(), digest);
    REQUIRE(blob);
    auto reader = tar::Reader::open([&](void* buf, size_t cap) { return blob->read(buf, cap); }, digest);
    REQUIRE(reader);
    auto summary = (*reader)->finish();
    REQUIRE(summary);
    return summary->diff_id.str();
  }
};

TEST_CASE("compressed_form gzips a build's layers once, keeps pulled ones, same digests every time", "[image]") {
  Fixture fx;
  int made = 0;
  auto first = compressed_form(*fx.store, fx.img, LayerCompression{},
                               [&](const std::string&, const std::string&, uint64_t) { ++made; });
  REQUIRE(first);
  CHECK(made == 1);
  const Manifest& m = first->manifest;
  REQUIRE(m.layers.size() == 2);
  CHECK(m.layers[0].media_type == media::oci_layer_gzip);
  CHECK(m.layers[0].size < static_cast<int64_t>(fx.plain.size()) / 4);
  CHECK(fx.content_of(m.layers[0].digest) == sha256(fx.plain).str());
  CHECK(m.layers[1].digest == fx.img.manifest.layers[1].digest);  // pulled: as it was
  CHECK(first->record.manifest_digest != fx.img.record.manifest_digest);
  CHECK(first->record.manifest_digest == sha256(first->manifest_bytes).str());
  CHECK(fx.store->content().has(first->record.manifest_digest));
  CHECK(first->record.config_digest == fx.img.record.config_digest);

  // Again: the recorded variant, nothing compressed, the same manifest.
  auto second = compressed_form(*fx.store, fx.img, LayerCompression{},
                                [&](const std::string&, const std::string&, uint64_t) { ++made; });
  REQUIRE(second);
  CHECK(made == 1);
  CHECK(second->manifest_bytes == first->manifest_bytes);

  // Another level is another variant.
  LayerCompression best;
  best.level = 9;
  CHECK(best.key() == "gzip-9");
  auto nine = compressed_form(*fx.store, fx.img, best);
  REQUIRE(nine);
  CHECK(nine->manifest.layers[0].digest != m.layers[0].digest);
}

TEST_CASE("compressed_form with zstd: force recompresses pulled gzip layers, else keeps them", "[image]") {
  Fixture fx;
  LayerCompression z;
  z.algorithm = compress::Algorithm::zstd;
  auto kept = compressed_form(*fx.store, fx.img, z);
  REQUIRE(kept);
  CHECK(kept->manifest.layers[0].media_type == media::oci_layer_zstd);
  CHECK(kept->manifest.layers[1].media_type == media::oci_layer_gzip);
  z.force = true;
  auto forced = compressed_form(*fx.store, fx.img, z);
  REQUIRE(forced);
  CHECK(forced->manifest.layers[1].media_type == media::oci_layer_zstd);
  CHECK(fx.content_of(forced->manifest.layers[1].digest) == sha256(fx.pulled).str());
  CHECK(forced->manifest.layers[0].digest == kept->manifest.layers[0].digest);
}

TEST_CASE("a variant pruned from the store is made again, byte for byte", "[image]") {
  Fixture fx;
  auto first = compressed_form(*fx.store, fx.img, LayerCompression{});
  REQUIRE(first);
  std::string gz = first->manifest.layers[0].digest;
  // What a prune by another process (once this one no longer leases it)
  // does to the unreferenced blob.
  std::filesystem::remove(fx.store->content().blob_path(gz));
  REQUIRE_FALSE(fx.store->content().has(gz));
  auto again = compressed_form(*fx.store, fx.img, LayerCompression{});
  REQUIRE(again);
  CHECK(again->manifest.layers[0].digest == gz);
  CHECK(fx.store->content().has(gz));
}

TEST_CASE("output compression attributes: buildx's spellings, bad values named", "[image]") {
  auto gz = parse_layer_compression("", "", "");
  REQUIRE(gz);
  REQUIRE(gz->has_value());
  CHECK((*gz)->key() == "gzip-4");
  auto z = parse_layer_compression("zstd", "12", "true");
  REQUIRE(z);
  CHECK((*z)->key() == "zstd-12");
  CHECK((*z)->force);
  auto none = parse_layer_compression("uncompressed", "", "");
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  auto bad = parse_layer_compression("lz4", "", "");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "compression=lz4: unsupported (gzip, zstd or uncompressed)");
  auto level = parse_layer_compression("gzip", "11", "");
  REQUIRE_FALSE(level);
  CHECK(level.error().message == "compression-level=11: gzip compression level 11 is out of range 1-9");
  CHECK_FALSE(parse_layer_compression("gzip", "x", ""));
  CHECK_FALSE(parse_layer_compression("gzip", "", "yes"));
}

}  // namespace
}  // namespace imgbuild::image
