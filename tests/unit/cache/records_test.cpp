// Cache records and the stat index in a real meta.db.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "cache/records.hpp"
#include "cache/stat_index.hpp"
#include "image/metadata.hpp"
#include "support/require.hpp"
#include "support/scratch_dir.hpp"
#include "util/hash.hpp"

using namespace imgbuild;
using namespace imgbuild::cache;

namespace {

std::unique_ptr<CacheDb> open_db(const std::filesystem::path& dir) {
  auto meta = image::MetaDb::open(dir / "meta.db");
  REQUIRE(meta);
  auto db = CacheDb::open(dir / "meta.db");
  REQUIRE(db);
  return std::move(db).value();
}

CacheRecord record(const std::string& key, const std::string& parent, int pos, const std::string& blob, int64_t t) {
  CacheRecord r;
  r.key = key;
  r.parent_key = parent;
  r.position = pos;
  r.kind = "RUN";
  r.layer.blob_digest = blob;
  r.layer.diff_id = blob.empty() ? "" : "sha256:diff-" + blob.substr(7);
  r.layer.media_type = blob.empty() ? "" : "application/vnd.oci.image.layer.v1.tar+gzip";
  r.layer.blob_size = blob.empty() ? 0 : 100;
  r.config = "{}";
  r.created_by = "RUN x";
  r.inputs = R"({"instruction":"RUN x"})";
  r.created_at = t;
  r.last_used = t;
  return r;
}

}  // namespace

TEST_CASE("cache records: put and get and previous and touch", "[cache]") {
  test::ScratchDir dir;
  auto db = open_db(dir.path());
  REQUIRE(db->put(record("sha256:k1", "sha256:p", 0, "sha256:b1", 100)));
  REQUIRE(db->put(record("sha256:k2", "sha256:p", 0, "", 200)));
  REQUIRE(db->put(record("sha256:k3", "sha256:p", 1, "", 300)));
  auto got = db->get("sha256:k1");
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK((*got)->layer.blob_digest == "sha256:b1");
  CHECK((*got)->layer.blob_size == 100);
  CHECK((*got)->inputs == R"({"instruction":"RUN x"})");
  CHECK_FALSE(db->get("sha256:nope").value().has_value());
  auto prev = db->previous("sha256:p", 0);
  REQUIRE(prev);
  REQUIRE(prev->has_value());
  CHECK((*prev)->key == "sha256:k2");  // the newest of position 0
  CHECK_FALSE((*prev)->has_layer());
  CHECK_FALSE(db->previous("sha256:p", 5).value().has_value());
  REQUIRE(db->touch({"sha256:k1"}, 1000));
  CHECK(db->get("sha256:k1").value()->last_used == 1000);
  auto all = db->list();
  REQUIRE(all);
  REQUIRE(all->size() == 3);
  CHECK(all->front().key == "sha256:k1");
}

TEST_CASE("cache records: a failing in-transaction callback writes nothing", "[cache]") {
  test::ScratchDir dir;
  auto db = open_db(dir.path());
  auto r = db->put(record("sha256:k1", "", 0, "", 1), [] () -> Result<void> { return fail(Errc::io, "boom"); });
  CHECK_FALSE(r);
  CHECK_FALSE(db->get("sha256:k1").value().has_value());
}

TEST_CASE("cache records: prune by age or size or all - image blobs are never removed", "[cache]") {
  test::ScratchDir dir;
  auto meta = image::MetaDb::open(dir.path() / "meta.db");
  REQUIRE(meta);
  image::ImageRecord img;
  img.manifest_digest = "sha256:m";
  img.config_digest = "sha256:c";
  img.media_type = "x";
  REQUIRE((*meta)->put_image(img, {"sha256:shared"}));
  auto db = CacheDb::open(dir.path() / "meta.db");
  REQUIRE(db);
  REQUIRE((*db)->put(record("sha256:old", "", 0, "sha256:b-old", 100)));
  REQUIRE((*db)->put(record("sha256:mid", "", 1, "sha256:b-mid", 500)));
  REQUIRE((*db)->put(record("sha256:new", "", 2, "sha256:b-new", 900)));
  REQUIRE((*db)->put(record("sha256:img", "", 3, "sha256:shared", 50)));
  // The image blob stays referenced for image prune.
  auto refs = (*meta)->referenced_blobs();
  REQUIRE(refs);
  CHECK(refs->count("sha256:b-old") == 1);

  std::vector<std::string> removed;
  auto remover = [&](const std::string& d) -> Result<uint64_t> {
    removed.push_back(d);
    return uint64_t{100};
  };
  PruneOptions age;
  age.unused_for_sec = 300;
  auto p1 = (*db)->prune(age, 1000, remover);  // old (900 s) and img (950 s) and mid (500 s)
  REQUIRE(p1);
  CHECK(p1->records == 3);
  CHECK(std::set<std::string>(removed.begin(), removed.end()) ==
        std::set<std::string>{"sha256:b-old", "sha256:b-mid"});
  CHECK(p1->reclaimed == 200);
  REQUIRE((*db)->put(record("sha256:a", "", 0, "sha256:b-a", 950)));
  PruneOptions size;
  size.keep_storage = 150;  // two cache-only blobs of 100: the older goes
  removed.clear();
  auto p2 = (*db)->prune(size, 1000, remover);
  REQUIRE(p2);
  CHECK(removed == std::vector<std::string>{"sha256:b-new"});
  PruneOptions all;
  all.all = true;
  removed.clear();
  REQUIRE((*db)->prune(all, 1000, remover));
  CHECK(removed == std::vector<std::string>{"sha256:b-a"});
  CHECK((*db)->list().value().empty());
}

TEST_CASE("stat index: unchanged files are not read again and a rewrite is seen", "[cache]") {
  test::ScratchDir dir;
  auto db = open_db(dir.path());
  std::filesystem::path file = dir.path() / "f.txt";
  std::ofstream(file) << "hello";
  int dfd = ::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dfd >= 0);
  struct stat st {};
  REQUIRE(::lstat(file.c_str(), &st) == 0);
  {
    auto idx = StatIndex::load(*db);
    REQUIRE(idx);
    auto d = idx->digest(dfd, "f.txt", st, "f.txt");
    REQUIRE(d);
    CHECK(*d == sha256("hello").str());
    CHECK(idx->hashed() == 1);
    // Saved as if the build started 10 s later (the file is old enough).
    REQUIRE(idx->save(*db, timespec_ns(st.st_ctim) + 10'000'000'000));
  }
  {
    auto idx = StatIndex::load(*db);
    REQUIRE(idx);
    // A different content under the same stat identity proves the index answered.
    auto d = idx->digest(dfd, "f.txt", st, "f.txt");
    REQUIRE(d);
    CHECK(*d == sha256("hello").str());
    CHECK(idx->reused() == 1);
    CHECK(idx->hashed() == 0);
    // A rewrite changes ctime (and here the size): hashed again.
    std::ofstream(file) << "hello, world";
    struct stat st2 {};
    REQUIRE(::lstat(file.c_str(), &st2) == 0);
    auto d2 = idx->digest(dfd, "f.txt", st2, "f.txt");
    REQUIRE(d2);
    CHECK(*d2 == sha256("hello, world").str());
    CHECK(idx->hashed() == 1);
  }
  {
    // Entries too recent to trust are not stored.
    auto idx = StatIndex::load(*db);
    REQUIRE(idx);
    struct stat st3 {};
    REQUIRE(::lstat(file.c_str(), &st3) == 0);
    REQUIRE(idx->digest(dfd, "f.txt", st3, "f.txt"));
    REQUIRE(idx->save(*db, timespec_ns(st3.st_ctim)));
    auto again = StatIndex::load(*db);
    REQUIRE(again);
    REQUIRE(again->digest(dfd, "f.txt", st3, "f.txt"));
    CHECK(again->hashed() == 1);
  }
  ::close(dfd);
}

TEST_CASE("stat index: a stat hit answers 'no xattrs' and an xattr change is a new identity", "[cache]") {
  test::ScratchDir dir;
  auto db = open_db(dir.path());
  std::filesystem::path file = dir.path() / "f.txt";
  std::ofstream(file) << "hello";
  int dfd = ::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dfd >= 0);
  struct stat st {};
  REQUIRE(::lstat(file.c_str(), &st) == 0);
  {
    auto idx = StatIndex::load(*db);
    REQUIRE(idx);
    auto f = idx->facts(dfd, "f.txt", st, "f.txt");
    REQUIRE(f);
    CHECK(f->digest == sha256("hello").str());
    CHECK(f->xattrs_read);
    CHECK(f->xattrs.empty());
    CHECK(idx->xattrs_listed() == 1);
    REQUIRE(idx->save(*db, timespec_ns(st.st_ctim) + 10'000'000'000));
  }
  {
    // Same identity: neither read nor listed.
    auto idx = StatIndex::load(*db);
    REQUIRE(idx);
    auto f = idx->facts(dfd, "f.txt", st, "f.txt");
    REQUIRE(f);
    CHECK(f->xattrs.empty());
    CHECK(idx->reused() == 1);
    CHECK(idx->xattrs_listed() == 0);
  }
  // Setting an xattr changes ctime (the kernel's rule the index relies on),
  // so the entry no longer matches and the xattr is seen.
  struct timespec pause {0, 20'000'000};
  ::nanosleep(&pause, nullptr);
  int rc = ::setxattr(file.c_str(), "user.imgbuild-test", "v1", 2, 0);
  IMGBUILD_REQUIRE_PREREQ(rc == 0, "user xattrs on the scratch filesystem");
  struct stat st2 {};
  REQUIRE(::lstat(file.c_str(), &st2) == 0);
  CHECK(timespec_ns(st2.st_ctim) != timespec_ns(st.st_ctim));
  CHECK(timespec_ns(st2.st_mtim) == timespec_ns(st.st_mtim));
  {
    auto idx = StatIndex::load(*db);
    REQUIRE(idx);
    auto f = idx->facts(dfd, "f.txt", st2, "f.txt");
    REQUIRE(f);
    CHECK(f->xattrs == fs::Xattrs{{"user.imgbuild-test", "v1"}});
    CHECK(idx->xattrs_listed() == 1);
    REQUIRE(idx->save(*db, timespec_ns(st2.st_ctim) + 10'000'000'000));
  }
  {
    // A file with xattrs is listed on every use (only "none" is remembered).
    auto idx = StatIndex::load(*db);
    REQUIRE(idx);
    auto f = idx->facts(dfd, "f.txt", st2, "f.txt");
    REQUIRE(f);
    CHECK(f->xattrs.size() == 1);
    CHECK(idx->reused() == 1);
    CHECK(idx->xattrs_listed() == 1);
  }
  // Removing it changes ctime again.
  ::nanosleep(&pause, nullptr);
  REQUIRE(::removexattr(file.c_str(), "user.imgbuild-test") == 0);
  struct stat st3 {};
  REQUIRE(::lstat(file.c_str(), &st3) == 0);
  CHECK(timespec_ns(st3.st_ctim) != timespec_ns(st2.st_ctim));
  ::close(dfd);
}

TEST_CASE("stat index: read one by one and then whole, every saved file is answered", "[cache]") {
  test::ScratchDir dir;
  auto db = open_db(dir.path());
  const int n = static_cast<int>(StatIndex::k_point_lookups) * 2 + 10;
  int dfd = ::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(dfd >= 0);
  std::vector<struct stat> sts(static_cast<size_t>(n));
  int64_t newest = 0;
  for (int i = 0; i < n; ++i) {
    std::string name = "f" + std::to_string(i);
    std::ofstream(dir.path() / name) << "content " << i;
    REQUIRE(::lstat((dir.path() / name).c_str(), &sts[static_cast<size_t>(i)]) == 0);
    newest = std::max(newest, timespec_ns(sts[static_cast<size_t>(i)].st_ctim));
  }
  {
    auto idx = StatIndex::load(*db);
    REQUIRE(idx);
    for (int i = 0; i < n; ++i) {
      REQUIRE(idx->facts(dfd, std::string("f").append(std::to_string(i)), sts[static_cast<size_t>(i)], "f"));
    }
    CHECK(idx->hashed() == static_cast<uint64_t>(n));
    REQUIRE(idx->save(*db, newest + 10'000'000'000));
  }
  auto idx = StatIndex::load(*db);
  REQUIRE(idx);
  for (int i = 0; i < n; ++i) {
    auto f = idx->facts(dfd, std::string("f").append(std::to_string(i)), sts[static_cast<size_t>(i)], "f");
    REQUIRE(f);
    CHECK(f->digest == sha256("content " + std::to_string(i)).str());
  }
  CHECK(idx->reused() == static_cast<uint64_t>(n));
  CHECK(idx->hashed() == 0);
  CHECK(idx->xattrs_listed() == 0);
  ::close(dfd);
}

TEST_CASE("cache records: two connections write concurrently without losing records", "[cache]") {
  test::ScratchDir dir;
  auto first = open_db(dir.path());
  auto second = CacheDb::open(dir.path() / "meta.db");
  REQUIRE(second);
  auto writer = [](CacheDb& db, const std::string& prefix) {
    for (int i = 0; i < 50; ++i) {
      auto r = db.put(record(prefix + std::to_string(i), "", i, "", i));
      REQUIRE(r);
    }
  };
  std::thread a([&] { writer(*first, "sha256:a"); });
  std::thread b([&] { writer(**second, "sha256:b"); });
  a.join();
  b.join();
  CHECK(first->list().value().size() == 100);
}
