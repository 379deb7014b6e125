#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "image/content_store.hpp"
#include "image/metadata.hpp"
#include "image/store.hpp"
#include "support/scratch_dir.hpp"
#include "util/hash.hpp"

using namespace imgbuild;
using namespace imgbuild::image;
using imgbuild::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

size_t count_files(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) {
      ++n;
    }
  }
  return n;
}

}  // namespace

TEST_CASE("blobs are staged, verified and published under their digest", "[image]") {
  ScratchDir dir;
  auto cs = ContentStore::open(dir.path());
  REQUIRE(cs);
  auto staging = Staging::create(*cs);
  REQUIRE(staging);
  auto w = (*staging)->writer();
  REQUIRE(w);
  REQUIRE(w->write("hello "));
  REQUIRE(w->write("world"));
  auto digest = w->commit(sha256("hello world").str());
  REQUIRE(digest);
  CHECK(*digest == sha256("hello world").str());
  // Not visible in the store before publish.
  CHECK_FALSE(cs->has(*digest));
  CHECK((*staging)->has(*digest));
  auto added = (*staging)->publish({*digest});
  REQUIRE(added);
  CHECK(added->size() == 1);
  CHECK(cs->has(*digest));
  auto text = cs->read_small(*digest, 100);
  REQUIRE(text);
  CHECK(*text == "hello world");
}

TEST_CASE("a digest mismatch leaves nothing behind", "[image]") {
  ScratchDir dir;
  auto cs = ContentStore::open(dir.path());
  REQUIRE(cs);
  {
    auto staging = Staging::create(*cs);
    REQUIRE(staging);
    auto w = (*staging)->writer();
    REQUIRE(w);
    REQUIRE(w->write("abc"));
    auto r = w->commit(sha256("abd").str());
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::corrupt);
    CHECK(r.error().message.find(sha256("abd").str()) != std::string::npos);
    // An abandoned writer removes its partial file too.
    auto w2 = (*staging)->writer();
    REQUIRE(w2);
    REQUIRE(w2->write("partial"));
  }
  CHECK(count_files(dir.path() / "blobs") == 0);
  CHECK(count_files(dir.path() / "tmp") == 0);
  CHECK(fs::is_empty(dir.path() / "tmp"));
}

TEST_CASE("a writer's digest and sync come before commit, which still verifies", "[image]") {
  ScratchDir dir;
  auto cs = ContentStore::open(dir.path());
  REQUIRE(cs);
  auto staging = Staging::create(*cs);
  REQUIRE(staging);
  // The digest a downloader compares instead of hashing the bytes itself.
  auto w = (*staging)->writer();
  REQUIRE(w);
  REQUIRE(w->write("layer "));
  REQUIRE(w->write("bytes"));
  auto d = w->digest();
  REQUIRE(d);
  CHECK(*d == sha256("layer bytes"));
  auto again = w->digest();
  REQUIRE(again);
  CHECK(*again == *d);
  auto late = w->write("more");
  REQUIRE_FALSE(late);
  CHECK(late.error().code == Errc::internal);
  REQUIRE(w->sync());
  auto committed = w->commit(d->str());
  REQUIRE(committed);
  CHECK(*committed == d->str());

  // Taking the digest and syncing do not let wrong content in: commit
  // compares with the expected digest all the same.
  auto bad = (*staging)->writer();
  REQUIRE(bad);
  REQUIRE(bad->write("tampered"));
  REQUIRE(bad->digest());
  REQUIRE(bad->sync());
  auto refused = bad->commit(sha256("layer bytes!").str());
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == Errc::corrupt);
  auto added = (*staging)->publish({d->str(), sha256("tampered").str()});
  REQUIRE(added);
  CHECK(*added == std::vector<std::string>{d->str()});
  CHECK(count_files(dir.path() / "blobs") == 1);
}

TEST_CASE("identical blobs are stored once and unwanted ones dropped", "[image]") {
  ScratchDir dir;
  auto cs = ContentStore::open(dir.path());
  REQUIRE(cs);
  std::string d = sha256("same").str();
  for (int i = 0; i < 2; ++i) {
    auto staging = Staging::create(*cs);
    REQUIRE(staging);
    REQUIRE((*staging)->put("same"));
    REQUIRE((*staging)->put("unwanted"));
    auto added = (*staging)->publish({d});
    REQUIRE(added);
    CHECK(added->size() == (i == 0 ? 1u : 0u));
  }
  auto list = cs->list();
  REQUIRE(list);
  CHECK(*list == std::vector<std::string>{d});
}

TEST_CASE("the store root follows --root, IMGBUILD_ROOT, then the default", "[image]") {
  CHECK(default_store_root("/x/y") == fs::path("/x/y"));
  CHECK(default_store_root("rel/./root") == fs::current_path() / "rel" / "root");
  ::setenv("IMGBUILD_ROOT", "/from/env", 1);
  CHECK(default_store_root("") == fs::path("/from/env"));
  ::unsetenv("IMGBUILD_ROOT");
  if (::geteuid() == 0) {
    CHECK(default_store_root("") == fs::path("/var/lib/imgbuild"));
  } else {
    ::setenv("XDG_DATA_HOME", "/xdg", 1);
    CHECK(default_store_root("") == fs::path("/xdg/imgbuild"));
  }
}

TEST_CASE("meta.db applies its schema once and records its version", "[image]") {
  ScratchDir dir;
  {
    auto db = MetaDb::open(dir.path() / "meta.db");
    REQUIRE(db);
    CHECK((*db)->schema_version().value() == k_schema_version);
  }
  auto db = MetaDb::open(dir.path() / "meta.db");
  REQUIRE(db);
  CHECK((*db)->schema_version().value() == k_schema_version);
}

TEST_CASE("image records, names and blob references", "[image]") {
  ScratchDir dir;
  auto db = MetaDb::open(dir.path() / "meta.db");
  REQUIRE(db);
  MetaDb& m = **db;
  ImageRecord rec{"sha256:" + std::string(64, '1'), "sha256:" + std::string(64, '2'), "mt", "", 42, 7};
  {
    auto tx = m.begin();
    REQUIRE(tx);
    REQUIRE(m.put_image(rec, {rec.manifest_digest, rec.config_digest, "sha256:" + std::string(64, '3')}));
    REQUIRE(m.set_name("docker.io/library/a:1", rec.manifest_digest));
    REQUIRE(tx->commit());
  }
  {
    // An uncommitted transaction leaves no trace.
    auto tx = m.begin();
    REQUIRE(tx);
    REQUIRE(m.set_name("docker.io/library/b:1", rec.manifest_digest));
  }
  auto names = m.names();
  REQUIRE(names);
  REQUIRE(names->size() == 1);
  CHECK((*names)[0].name == "docker.io/library/a:1");
  CHECK(m.referenced_blobs()->size() == 3);
  CHECK(m.image(rec.manifest_digest).value()->size == 42);
  REQUIRE(m.delete_image(rec.manifest_digest));
  CHECK(m.names()->empty());
  CHECK(m.referenced_blobs()->empty());
}

TEST_CASE("ImageStore resolves names and ID prefixes, untags and prunes", "[image]") {
  ScratchDir dir;
  auto store = ImageStore::open(dir.path());
  REQUIRE(store);
  ImageStore& s = **store;
  auto staging = Staging::create(s.content());
  REQUIRE(staging);
  auto cfg = (*staging)->put(R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}})");
  REQUIRE(cfg);
  auto man = (*staging)->put("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" + *cfg + "\",\"size\":1},\"layers\":[]}");
  REQUIRE(man);
  NewImage img;
  img.manifest_digest = *man;
  img.config_digest = *cfg;
  img.media_type = "application/vnd.oci.image.manifest.v1+json";
  img.names = {*parse_reference("a:1"), *parse_reference("b")};
  REQUIRE(s.commit(**staging, {img}));

  CHECK(s.resolve("a:1")->manifest_digest == *man);
  CHECK(s.resolve("docker.io/library/b:latest")->manifest_digest == *man);
  CHECK(s.resolve(cfg->substr(7, 12))->manifest_digest == *man);
  CHECK(s.resolve(*cfg)->manifest_digest == *man);
  auto missing = s.resolve("nope");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message == "No such image: nope");

  // Removing by ID with two names needs force.
  auto conflict = s.remove(cfg->substr(7, 12), false);
  REQUIRE_FALSE(conflict);
  CHECK(conflict.error().message.find("must be forced") != std::string::npos);
  auto untag = s.remove("a:1", false);
  REQUIRE(untag);
  CHECK(untag->untagged == std::vector<std::string>{"a:1"});
  CHECK(untag->deleted.empty());
  CHECK(s.content().has(*man));
  auto last = s.remove("b", false);
  REQUIRE(last);
  CHECK(last->deleted == std::vector<std::string>{*cfg});
  CHECK_FALSE(s.content().has(*man));
  CHECK(s.content().list()->empty());
  auto pr = s.prune(true);
  REQUIRE(pr);
  CHECK(pr->reclaimed == 0);
}
