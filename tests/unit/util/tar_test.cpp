#include <archive.h>
#include <archive_entry.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "util/hash.hpp"
#include "util/tar.hpp"

using namespace imgbuild;
using tar::Entry;
using tar::EntryType;

namespace {

struct Spec {
  Entry entry;
  std::string body;
};

Spec file(std::string path, std::string body, uint32_t mode = 0644) {
  Spec s;
  s.entry.path = std::move(path);
  s.entry.type = EntryType::file;
  s.entry.mode = mode;
  s.entry.size = body.size();
  s.entry.mtime_sec = 1700000000;
  s.body = std::move(body);
  return s;
}

Spec other(std::string path, EntryType type, std::string target = {}) {
  Spec s;
  s.entry.path = std::move(path);
  s.entry.type = type;
  s.entry.mode = type == EntryType::dir ? 0755 : 0777;
  s.entry.link_target = std::move(target);
  s.entry.mtime_sec = 1700000001;
  return s;
}

// A varied archive: every entry type, xattrs, ns mtimes, long and UTF-8 names.
std::vector<Spec> sample() {
  std::vector<Spec> v;
  v.push_back(other("bin", EntryType::dir));
  Spec ping = file("bin/ping", std::string(300000, 'p'), 04755);
  ping.entry.xattrs = {{"security.capability", std::string("\x01\x00\x00\x02\x00\x20\x00\x00", 8)},
                       {"user.comment", "hello"}};
  ping.entry.uid = 1000;
  ping.entry.gid = 4000000;
  ping.entry.mtime_nsec = 123456789;
  v.push_back(ping);
  v.push_back(other("bin/ping6", EntryType::hardlink, "bin/ping"));
  v.push_back(other("bin/sh", EntryType::symlink, "/bin/busybox"));
  Spec null = other("dev/null", EntryType::char_device);
  null.entry.dev_major = 1;
  null.entry.dev_minor = 3;
  v.push_back(null);
  Spec sda = other("dev/sda", EntryType::block_device);
  sda.entry.dev_major = 8;
  v.push_back(sda);
  v.push_back(other("run/fifo", EntryType::fifo));
  v.push_back(file("etc/.wh.passwd", ""));
  v.push_back(file("d/" + std::string(150, 'x') + "/" + std::string(120, 'y'), "long"));
  v.push_back(file("caf\xc3\xa9/\xe2\x98\x83", "utf8"));
  return v;
}

Result<tar::WriteSummary> write_all(const std::vector<Spec>& specs, tar::Compression c, std::string& out) {
  TRY(auto w, tar::Writer::open(
                  [&out](const void* d, size_t n) -> Result<void> {
                    out.append(static_cast<const char*>(d), n);
                    return ok();
                  },
                  {.compression = c}));
  for (const auto& s : specs) {
    TRY_VOID(w->add(s.entry));
    // Feed the body in uneven pieces to exercise streaming.
    size_t pos = 0;
    while (pos < s.body.size()) {
      size_t n = std::min<size_t>(7777, s.body.size() - pos);
      TRY_VOID(w->write_data(s.body.data() + pos, n));
      pos += n;
    }
  }
  return w->finish();
}

tar::ReadFn string_source(const std::string& data) {
  auto pos = std::make_shared<size_t>(0);
  return [&data, pos](void* buf, size_t cap) -> Result<size_t> {
    // Small reads on purpose.
    size_t n = std::min<size_t>({cap, data.size() - *pos, 5000});
    std::memcpy(buf, data.data() + *pos, n);
    *pos += n;
    return n;
  };
}

struct ReadBack {
  std::vector<Spec> entries;
  tar::ReadSummary summary;
};

Result<ReadBack> read_all(const std::string& data) {
  TRY(auto r, tar::Reader::open(string_source(data), "test.tar"));
  ReadBack out;
  while (true) {
    TRY(auto e, r->next());
    if (!e) {
      break;
    }
    Spec s;
    s.entry = *e;
    char buf[4096];
    while (true) {
      TRY(size_t n, r->read_data(buf, sizeof buf));
      if (n == 0) {
        break;
      }
      s.body.append(buf, n);
    }
    out.entries.push_back(std::move(s));
  }
  TRY(out.summary, r->finish());
  return out;
}

std::string trim_slash(std::string p) {
  while (!p.empty() && p.back() == '/') {
    p.pop_back();
  }
  return p;
}

// Compresses bytes with one of libarchive's write filters (raw format).
std::string compress_with_libarchive(const std::string& data, int filter) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_add_filter(a, filter);
  archive_write_set_format_raw(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* ud, const void* buf, size_t n) -> la_ssize_t {
        static_cast<std::string*>(ud)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, "data");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
  REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
  REQUIRE(archive_write_data(a, data.data(), data.size()) == static_cast<la_ssize_t>(data.size()));
  archive_entry_free(e);
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

}  // namespace

TEST_CASE("tar round trip keeps every field", "[util]") {
  auto specs = sample();
  std::string bytes;
  auto w = write_all(specs, tar::Compression::none, bytes);
  INFO((w ? std::string() : w.error().to_string()));
  REQUIRE(w);
  auto back = read_all(bytes);
  REQUIRE(back);
  REQUIRE(back->entries.size() == specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const Entry& a = specs[i].entry;
    const Entry& b = back->entries[i].entry;
    INFO("entry " << a.path);
    CHECK(trim_slash(b.path) == a.path);
    CHECK(b.type == a.type);
    CHECK(b.mode == a.mode);
    CHECK(b.uid == a.uid);
    CHECK(b.gid == a.gid);
    CHECK(b.mtime_sec == a.mtime_sec);
    CHECK(b.mtime_nsec == a.mtime_nsec);
    CHECK(b.link_target == a.link_target);
    CHECK(b.dev_major == a.dev_major);
    CHECK(b.dev_minor == a.dev_minor);
    auto ax = a.xattrs;
    auto bx = b.xattrs;
    std::sort(ax.begin(), ax.end());
    std::sort(bx.begin(), bx.end());
    CHECK(bx == ax);
    CHECK(back->entries[i].body == specs[i].body);
  }
  CHECK(back->summary.compression == tar::Compression::none);
  CHECK(back->summary.uncompressed_size == bytes.size());
  // No user or group names, no pid-dependent pax header names, no atime.
  CHECK(bytes.find("root") == std::string::npos);
  CHECK(bytes.find("atime=") == std::string::npos);
  CHECK(bytes.find("LIBARCHIVE.xattr") == std::string::npos);
  CHECK(bytes.find("SCHILY.xattr.security.capability") != std::string::npos);
  // Ends right after the two zero blocks.
  CHECK(bytes.size() % 512 == 0);
  CHECK(bytes.substr(bytes.size() - 1024) == std::string(1024, '\0'));
}

TEST_CASE("tar writer is deterministic and digests what it writes", "[util]") {
  auto specs = sample();
  for (auto c : {tar::Compression::none, tar::Compression::gzip}) {
    INFO("compression " << tar::compression_name(c));
    std::string one;
    std::string two;
    auto s1 = write_all(specs, c, one);
    auto s2 = write_all(specs, c, two);
    REQUIRE(s1);
    REQUIRE(s2);
    CHECK(one == two);
    CHECK(s1->digest == sha256(one));
    CHECK(s1->size == one.size());
    CHECK(s1->diff_id == s2->diff_id);
  }
  std::string plain;
  std::string gz;
  auto sp = write_all(specs, tar::Compression::none, plain);
  auto sg = write_all(specs, tar::Compression::gzip, gz);
  REQUIRE(sp);
  REQUIRE(sg);
  // Known answer: the diff_id is the sha256 of the plain tar bytes.
  CHECK(sp->diff_id == sha256(plain));
  CHECK(sg->diff_id == sha256(plain));
  CHECK(sg->uncompressed_size == plain.size());
  CHECK(sp->digest == sp->diff_id);
  // gzip header: magic, deflate, no flags (no name), zero timestamp.
  REQUIRE(gz.size() > 10);
  CHECK(static_cast<unsigned char>(gz[0]) == 0x1f);
  CHECK(static_cast<unsigned char>(gz[1]) == 0x8b);
  CHECK(gz[2] == 8);
  CHECK(gz[3] == 0);
  CHECK(gz.substr(4, 4) == std::string(4, '\0'));
}

TEST_CASE("tar gzip stores incompressible blocks and stays deterministic", "[util]") {
  // 3 MiB of pseudo-random bytes (a fixed LCG: the same on every machine),
  // 3 MiB of text, then random again: deflate cannot shrink the random
  // blocks, so they are stored; the text still compresses.
  auto random_bytes = [](size_t n, uint64_t seed) {
    std::string out(n, '\0');
    for (auto& c : out) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      c = static_cast<char>(seed >> 56);
    }
    return out;
  };
  std::string text;
  for (int i = 0; text.size() < 3 * 1024 * 1024; ++i) {
    text += "line " + std::to_string(i) + " of a compressible file\n";
  }
  std::vector<Spec> specs = {file("random1", random_bytes(3 * 1024 * 1024 + 17, 1)), file("text", text),
                             file("random2", random_bytes(2 * 1024 * 1024, 2)), file("small", "tail\n")};
  std::string one;
  std::string two;
  auto s1 = write_all(specs, tar::Compression::gzip, one);
  auto s2 = write_all(specs, tar::Compression::gzip, two);
  REQUIRE(s1);
  REQUIRE(s2);
  CHECK(one == two);
  CHECK(s1->digest == sha256(one));
  // Stored random data costs ~5 bytes per 64 KiB block; the text shrinks.
  const size_t random_size = specs[0].body.size() + specs[2].body.size();
  CHECK(one.size() > random_size);
  CHECK(one.size() < random_size + random_size / 100 + text.size() / 4);
  // The stream reads back as the same entries and the same plain tar.
  auto back = read_all(one);
  REQUIRE(back);
  REQUIRE(back->entries.size() == specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    CHECK(back->entries[i].entry.path == specs[i].entry.path);
    CHECK(back->entries[i].body == specs[i].body);
  }
  CHECK(back->summary.diff_id == s1->diff_id);
  // Feeding the same entries in different piece sizes gives the same bytes.
  std::string three;
  auto w = tar::Writer::open(
      [&three](const void* d, size_t n) -> Result<void> {
        three.append(static_cast<const char*>(d), n);
        return ok();
      },
      {.compression = tar::Compression::gzip});
  REQUIRE(w);
  for (const auto& s : specs) {
    REQUIRE((*w)->add(s.entry));
    size_t pos = 0;
    for (size_t piece = 1; pos < s.body.size(); piece = piece * 3 + 1) {
      size_t n = std::min(piece % 300000 + 1, s.body.size() - pos);
      REQUIRE((*w)->write_data(s.body.data() + pos, n));
      pos += n;
    }
  }
  REQUIRE((*w)->finish());
  CHECK(three == one);
}

TEST_CASE("tar reader detects every compression and hashes the plain stream", "[util]") {
  auto specs = sample();
  std::string plain;
  REQUIRE(write_all(specs, tar::Compression::none, plain));
  struct Case {
    int filter;
    tar::Compression expect;
  };
  for (auto c : {Case{ARCHIVE_FILTER_NONE, tar::Compression::none}, Case{ARCHIVE_FILTER_GZIP, tar::Compression::gzip},
                 Case{ARCHIVE_FILTER_ZSTD, tar::Compression::zstd}, Case{ARCHIVE_FILTER_BZIP2, tar::Compression::bzip2},
                 Case{ARCHIVE_FILTER_XZ, tar::Compression::xz}}) {
    INFO("compression " << tar::compression_name(c.expect));
    std::string packed = c.filter == ARCHIVE_FILTER_NONE ? plain : compress_with_libarchive(plain, c.filter);
    if (c.filter != ARCHIVE_FILTER_NONE) {
      CHECK(packed != plain);
    }
    auto back = read_all(packed);
    REQUIRE(back);
    CHECK(back->summary.compression == c.expect);
    CHECK(back->summary.diff_id == sha256(plain));
    CHECK(back->summary.uncompressed_size == plain.size());
    REQUIRE(back->entries.size() == specs.size());
    CHECK(back->entries[1].body == specs[1].body);
  }
}

TEST_CASE("tar diff_id covers bytes after the end marker", "[util]") {
  std::string plain;
  REQUIRE(write_all({file("a", "x")}, tar::Compression::none, plain));
  std::string padded = plain + std::string(9216, '\0') + "trailing junk";
  auto back = read_all(padded);
  REQUIRE(back);
  CHECK(back->entries.size() == 1);
  CHECK(back->summary.diff_id == sha256(padded));
  CHECK(back->summary.diff_id != sha256(plain));
  auto gz_back = read_all(compress_with_libarchive(padded, ARCHIVE_FILTER_GZIP));
  REQUIRE(gz_back);
  CHECK(gz_back->summary.diff_id == sha256(padded));
}

TEST_CASE("tar reader stops hashing when told, and still reads and counts everything", "[util]") {
  // Past the reader's first few inline-hashed MiB, so the hashing thread ran.
  std::string big(12 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>((i * 7919) >> 8);
  }
  std::string plain;
  REQUIRE(write_all({file("a", "x"), file("big", big)}, tar::Compression::none, plain));
  for (bool stop : {false, true}) {
    INFO("stop_hashing " << stop);
    auto r = tar::Reader::open(string_source(plain), "test.tar");
    REQUIRE(r);
    if (stop) {
      (*r)->stop_hashing();
    }
    size_t entries = 0;
    while (true) {
      auto e = (*r)->next();
      REQUIRE(e);
      if (!*e) {
        break;
      }
      ++entries;
    }
    auto sum = (*r)->finish();
    REQUIRE(sum);
    CHECK(entries == 2);
    CHECK(sum->uncompressed_size == plain.size());
    CHECK(sum->diff_id == (stop ? Sha256Digest{} : sha256(plain)));
  }
}

TEST_CASE("tar reader reports truncated and junk input", "[util]") {
  std::string plain;
  REQUIRE(write_all({file("a", std::string(5000, 'a')), file("b", "b")}, tar::Compression::none, plain));
  auto truncated = read_all(plain.substr(0, 1500));
  REQUIRE_FALSE(truncated);
  CHECK(truncated.error().to_string().find("test.tar") != std::string::npos);
  auto junk = read_all(std::string(2000, 'z'));
  CHECK_FALSE(junk);
  auto empty = read_all("");
  REQUIRE(empty);
  CHECK(empty->entries.empty());
  CHECK(empty->summary.diff_id == sha256(""));
}

TEST_CASE("tar writer refuses wrong body sizes", "[util]") {
  std::string out;
  auto w = tar::Writer::open([&out](const void* d, size_t n) -> Result<void> {
    out.append(static_cast<const char*>(d), n);
    return ok();
  });
  REQUIRE(w);
  REQUIRE((*w)->add(file("a", "abc").entry));
  CHECK_FALSE((*w)->write_data("abcd", 4));
  REQUIRE((*w)->write_data("ab", 2));
  CHECK_FALSE((*w)->add(file("b", "").entry));
  CHECK_FALSE((*w)->finish());
}

TEST_CASE("layer paths sort by component with whiteouts first", "[util]") {
  std::vector<std::string> paths = {"a-b", "a/b", "a", "a/.wh.z", "a/.wh..wh..opq", "./a/+x", "b", "a/b/c", "A"};
  tar::sort_layer_paths(paths);
  std::vector<std::string> expect = {"A", "a", "a/.wh..wh..opq", "a/.wh.z", "./a/+x", "a/b", "a/b/c", "a-b", "b"};
  CHECK(paths == expect);
  CHECK(tar::layer_path_less("a/", "a/b"));
  CHECK_FALSE(tar::layer_path_less("a/", "a"));
}

TEST_CASE("tar reader caps the decompressed size", "[util]") {
  // 8 MiB of zeros gzip to a few KiB: a small bomb.
  std::string plain;
  REQUIRE(write_all({file("zeros", std::string(8 << 20, '\0'))}, tar::Compression::none, plain));
  std::string packed = compress_with_libarchive(plain, ARCHIVE_FILTER_GZIP);
  CHECK(packed.size() < 100000);
  auto r = tar::Reader::open(string_source(packed), "bomb.tar.gz");
  REQUIRE(r);
  (*r)->set_max_uncompressed(1 << 20);
  Result<void> outcome = ok();
  while (outcome) {
    auto e = (*r)->next();
    if (!e) {
      outcome = fail(std::move(e).error());
      break;
    }
    if (!*e) {
      break;
    }
    char buf[65536];
    while (true) {
      auto n = (*r)->read_data(buf, sizeof buf);
      if (!n) {
        outcome = fail(std::move(n).error());
        break;
      }
      if (*n == 0) {
        break;
      }
    }
  }
  REQUIRE_FALSE(outcome);
  CHECK(outcome.error().code == Errc::limit);
  CHECK(outcome.error().to_string() == "bomb.tar.gz: decompressed size exceeds the limit of 1048576 bytes");
}
