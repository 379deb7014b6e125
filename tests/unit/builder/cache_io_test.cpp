// Cache export/import through the library: --cache-to/--cache-from specs,
// an export of a record and its layer to an OCI layout directory, a lazy
// verified import into a second store, and records the import refuses
// (a diff_id that does not match, hostile fields).

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "builder/cache_io.hpp"
#include "image/store.hpp"
#include "image/metadata.hpp"
#include "support/layer_spec.hpp"
#include "support/scratch_dir.hpp"
#include "util/hash.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;
using nlohmann::json;
namespace fsys = std::filesystem;

namespace {

// A content store and cache tables under one directory.
struct Store {
  test::ScratchDir dir;
  std::optional<image::ContentStore> content;
  std::unique_ptr<cache::CacheDb> db;
  std::unique_ptr<image::ImageStore> images;  // what a cache export reads through
  Store() {
    auto opened = image::ImageStore::open(dir.path());
    REQUIRE(opened);
    images = std::move(opened).value();
    auto c = image::ContentStore::open(dir.path());
    REQUIRE(c);
    content.emplace(*c);
    auto d = cache::CacheDb::open(dir.path() / "meta.db");
    REQUIRE(d);
    db = std::move(d).value();
  }
  // Stores a blob, returns its digest.
  std::string put_blob(const std::string& bytes) {
    auto staging = image::Staging::create(*content);
    REQUIRE(staging);
    auto digest = (*staging)->put(bytes);
    REQUIRE(digest);
    REQUIRE((*staging)->publish({*digest}));
    return *digest;
  }
};

cache::CacheRecord layer_record(Store& s, const std::string& key_seed, const std::string& body,
                                const std::string& parent_key = sha256("parent").str()) {
  std::string tar = test::make_layer({test::file("hello.txt", body)}, tar::Compression::gzip);
  std::string plain = test::make_layer({test::file("hello.txt", body)});
  cache::CacheRecord r;
  r.key = sha256(key_seed).str();
  r.parent_key = parent_key;
  r.position = 0;
  r.kind = "RUN";
  r.layer.blob_digest = s.put_blob(tar);
  r.layer.diff_id = sha256(plain).str();
  r.layer.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
  r.layer.blob_size = static_cast<int64_t>(tar.size());
  r.layer.diff_size = static_cast<int64_t>(plain.size());
  r.config = "{}";
  r.created_by = "RUN echo";
  r.inputs = R"({"instruction":"RUN echo"})";
  REQUIRE(s.db->put(r));
  return r;
}

}  // namespace

TEST_CASE("cache specs: buildx spellings, a bare value is a registry reference, bad keys named", "[builder]") {
  auto local = parse_cache_spec("type=local,dest=/tmp/c,mode=max,mounts=true,mounts-max-size=1GiB", true);
  REQUIRE(local);
  CHECK(local->type == CacheSpec::Type::local);
  CHECK(local->location == "/tmp/c");
  CHECK(local->mode_max);
  CHECK(local->mounts);
  CHECK(local->mounts_max_size == (uint64_t{1} << 30));

  auto from = parse_cache_spec("type=local,src=/tmp/c", false);
  REQUIRE(from);
  CHECK_FALSE(from->mode_max);
  CHECK(from->mounts_max_size == (uint64_t{512} << 20));

  auto bare = parse_cache_spec("127.0.0.1:5000/cache:v1", false);
  REQUIRE(bare);
  CHECK(bare->type == CacheSpec::Type::registry);
  CHECK(bare->location == "127.0.0.1:5000/cache:v1");

  auto reg = parse_cache_spec("type=registry,ref=example.com/c:t,mode=max,registry.insecure=true", true);
  REQUIRE(reg);
  CHECK(reg->insecure);

  CHECK_FALSE(parse_cache_spec("type=local,src=/x", true));  // an export needs dest=
  CHECK_FALSE(parse_cache_spec("type=local,dest=/x", false));
  CHECK_FALSE(parse_cache_spec("type=s3,dest=/x", true));
  CHECK_FALSE(parse_cache_spec("type=local,dest=/x,mode=most", true));
  auto unknown = parse_cache_spec("type=local,dest=/x,colour=red", true);
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().message.find("\"colour\"") != std::string::npos);
  auto typo = parse_cache_spec("type=local,dest=/x,mounts-max-siz=1G", true);
  REQUIRE_FALSE(typo);
  CHECK(typo.error().message.find("did you mean \"mounts-max-size\"") != std::string::npos);
  CHECK_FALSE(parse_cache_spec("", true));
}

TEST_CASE("cache io: an exported record is imported lazily into another store, blob verified", "[builder]") {
  Store a;
  cache::CacheRecord rec = layer_record(a, "step-1", "hello\n");
  std::vector<std::string> warnings;
  CacheWarn warn = [&](const std::string& w) { warnings.push_back(w); };
  CacheIo out(warn);
  out.note_key(rec.key);
  test::ScratchDir dest;
  auto remote = make_local_cache(dest.path() / "cache");
  CacheSpec spec;
  spec.mode_max = true;
  auto summary = out.export_to(*remote, spec, *a.images, {rec.key});
  REQUIRE(summary);
  CHECK(summary->records == 1);
  CHECK(summary->new_blobs == 1);

  Store b;
  CacheIo in(warn);
  in.add_import(make_local_cache(dest.path() / "cache"));
  CHECK(in.imported_records() == 1);
  CHECK_FALSE(b.content->has(rec.layer.blob_digest));
  auto miss = in.fetch(sha256("other").str(), *b.content, *b.db);
  REQUIRE(miss);
  CHECK_FALSE(miss->has_value());
  auto hit = in.fetch(rec.key, *b.content, *b.db);
  REQUIRE(hit);
  REQUIRE(hit->has_value());
  CHECK((*hit)->layer.diff_id == rec.layer.diff_id);
  CHECK(b.content->has(rec.layer.diff_id));  // kept uncompressed, as a build keeps its layers
  auto stored = b.db->get(rec.key);
  REQUIRE(stored);
  CHECK(stored->has_value());
  CHECK(in.source_of(rec.key).find("cache dir") != std::string::npos);
  CHECK(warnings.empty());
}

TEST_CASE("cache io: mode=min exports the chain of every target key, a shared record once", "[builder]") {
  // One platform-independent record (a stage built once for both targets)
  // and a record on top of it per target platform.
  Store a;
  cache::CacheRecord shared;
  shared.key = sha256("shared").str();
  shared.position = -1;
  shared.kind = "FROM";
  shared.config = "{}";
  shared.created_by = "FROM busybox";
  shared.inputs = "{}";
  REQUIRE(a.db->put(shared));
  cache::CacheRecord amd = layer_record(a, "amd64-run", "amd64\n", shared.key);
  cache::CacheRecord arm = layer_record(a, "arm64-run", "arm64\n", shared.key);
  auto exported_keys = [&](const std::vector<std::string>& targets) {
    CacheIo out([](const std::string&) {});
    test::ScratchDir dest;
    auto remote = make_local_cache(dest.path() / "cache");
    auto summary = out.export_to(*remote, CacheSpec{}, *a.images, targets);
    REQUIRE(summary);
    CacheIo in([](const std::string&) {});
    in.add_import(make_local_cache(dest.path() / "cache"));
    CHECK(in.imported_records() == summary->records);
    return summary->records;
  };
  CHECK(exported_keys({amd.key}) == 2);
  CHECK(exported_keys({amd.key, arm.key}) == 3);
  CHECK(exported_keys({amd.key, arm.key, amd.key}) == 3);
}

TEST_CASE("cache io: a record whose diff_id does not match its layer is refused, the store keeps nothing",
          "[builder]") {
  Store a;
  cache::CacheRecord rec = layer_record(a, "step-1", "hello\n");
  // The record lies about its diff_id (the blob itself is intact).
  cache::CacheRecord liar = rec;
  liar.layer.diff_id = sha256("something else").str();
  REQUIRE(a.db->put(liar));
  CacheIo out([](const std::string&) {});
  out.note_key(rec.key);
  test::ScratchDir dest;
  auto remote = make_local_cache(dest.path() / "cache");
  CacheSpec spec;
  spec.mode_max = true;
  REQUIRE(out.export_to(*remote, spec, *a.images, {rec.key}));

  Store b;
  std::vector<std::string> warnings;
  CacheIo in([&](const std::string& w) { warnings.push_back(w); });
  in.add_import(make_local_cache(dest.path() / "cache"));
  auto hit = in.fetch(rec.key, *b.content, *b.db);
  REQUIRE(hit);
  CHECK_FALSE(hit->has_value());
  CHECK_FALSE(b.content->has(rec.layer.blob_digest));
  auto stored = b.db->get(rec.key);
  REQUIRE(stored);
  CHECK_FALSE(stored->has_value());
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("diff_id") != std::string::npos);
  CHECK(warnings[0].find(rec.layer.blob_digest) != std::string::npos);

  // Also when the store holds the blob already.
  Store c;
  CHECK(c.put_blob(test::make_layer({test::file("hello.txt", "hello\n")}, tar::Compression::gzip)) ==
        rec.layer.blob_digest);
  CacheIo again([&](const std::string& w) { warnings.push_back(w); });
  again.add_import(make_local_cache(dest.path() / "cache"));
  auto local = again.fetch(rec.key, *c.content, *c.db);
  REQUIRE(local);
  CHECK_FALSE(local->has_value());
  CHECK(warnings.size() == 2);
}

TEST_CASE("cache io: hostile records in the config are skipped with one warning", "[builder]") {
  test::ScratchDir dest;
  fsys::path dir = dest.path() / "cache";
  auto remote = make_local_cache(dir);
  json good = {{"key", sha256("k").str()}, {"parent_key", ""}, {"position", -1}, {"kind", "FROM"},
               {"config", "{}"}, {"created_by", "FROM x"}, {"inputs", "{}"}};
  json config = {{"version", 1},
                 {"records",
                  {good,
                   {{"key", "sha256:../../etc"}, {"parent_key", ""}, {"position", 0}},
                   {{"key", sha256("k2").str()}, {"parent_key", 5}},
                   json::array(),
                   {{"key", sha256("k3").str()}, {"parent_key", ""}, {"position", 0}, {"kind", "RUN"},
                    {"config", "{}"}, {"created_by", ""}, {"inputs", "{}"},
                    {"layer", {{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"}, {"digest", sha256("unlisted").str()}, {"size", 1},
                               {"diff_id", sha256("d").str()}, {"diff_size", 1}}}}}},
                 {"mounts", {{{"id", "c"}, {"digest", "sha256:../../../x"}}}}};
  // A layer with a listed blob but a media type that is no layer's.
  std::string blob = "not a layer";
  std::string blob_digest = sha256(blob).str();
  REQUIRE(remote->put_blob_bytes(blob_digest, blob));
  config["records"].push_back({{"key", sha256("k4").str()}, {"parent_key", ""}, {"position", 0}, {"kind", "RUN"},
                               {"config", "{}"}, {"created_by", ""}, {"inputs", "{}"},
                               {"layer", {{"mediaType", "text/html"}, {"digest", blob_digest}, {"size", blob.size()},
                                          {"diff_id", blob_digest}, {"diff_size", blob.size()}}}});
  std::string config_bytes = config.dump();
  std::string config_digest = sha256(config_bytes).str();
  REQUIRE(remote->put_blob_bytes(config_digest, config_bytes));
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config",
                    {{"mediaType", std::string(k_cache_config_media_type)},
                     {"digest", config_digest},
                     {"size", config_bytes.size()}}},
                   {"layers",
                    {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                      {"digest", blob_digest},
                      {"size", blob.size()}}}}};
  REQUIRE(remote->put_manifest(manifest.dump()));

  std::vector<std::string> warnings;
  CacheIo in([&](const std::string& w) { warnings.push_back(w); });
  in.add_import(make_local_cache(dir));
  CHECK(in.imported_records() == 1);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("6 malformed") != std::string::npos);
  // A FROM record (no layer) imports without any blob.
  Store b;
  auto hit = in.fetch(sha256("k").str(), *b.content, *b.db);
  REQUIRE(hit);
  CHECK(hit->has_value());

  // Another format version: the whole cache is ignored.
  config["version"] = 2;
  config_bytes = config.dump();
  manifest["config"]["digest"] = sha256(config_bytes).str();
  manifest["config"]["size"] = config_bytes.size();
  REQUIRE(remote->put_blob_bytes(sha256(config_bytes).str(), config_bytes));
  REQUIRE(remote->put_manifest(manifest.dump()));
  CacheIo newer([&](const std::string& w) { warnings.push_back(w); });
  newer.add_import(make_local_cache(dir));
  CHECK(newer.imported_records() == 0);
  REQUIRE(warnings.size() == 2);
  CHECK(warnings[1].find("not version 1") != std::string::npos);
}
