// builder/copy_share: when one platform's COPY layer is the one another
// platform's parent would give (plain directories standing for the two
// parents' rootfs views and the owner's layer directory).

#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <thread>

#include "builder/copy_share.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;
using imgbuild::test::ScratchDir;
using imgbuild::test::write_text;

namespace {

namespace fsys = std::filesystem;

// A directory with a fixed mtime, so that two of them have the same facts.
void make_dir(const fsys::path& p, mode_t mode = 0755) {
  fsys::create_directories(p);
  REQUIRE(::chmod(p.c_str(), mode) == 0);
  struct timeval tv[2] = {{946684800, 0}, {946684800, 0}};
  REQUIRE(::utimes(p.c_str(), tv) == 0);
}

void make_file(const fsys::path& p, const std::string& body) {
  write_text(p, body);
  struct timeval tv[2] = {{946684800, 0}, {946684800, 0}};
  REQUIRE(::utimes(p.c_str(), tv) == 0);
}

bool same_result(const fsys::path& layer, const fsys::path& a, const fsys::path& b) {
  Result<bool> r = same_copy_result(layer, a, b);
  REQUIRE(r);
  return *r;
}

bool same_dest(const std::string& dest, const std::string& workdir, const fsys::path& a, const fsys::path& b) {
  Result<bool> r = same_dest_path(dest_prefixes(dest, workdir), a, b);
  REQUIRE(r);
  return *r;
}

}  // namespace

TEST_CASE("dest_prefixes: absolute, cleaned, against the workdir", "[builder][copy_share]") {
  CHECK(dest_prefixes("/usr/local/bin/", "/") == std::vector<std::string>{"usr", "usr/local", "usr/local/bin"});
  CHECK(dest_prefixes("app", "/srv") == std::vector<std::string>{"srv", "srv/app"});
  CHECK(dest_prefixes("./a/../b/.", "/w") == std::vector<std::string>{"w", "w/b"});
  CHECK(dest_prefixes("/", "/x").empty());
  CHECK(dest_prefixes("../../..", "/").empty());
}

TEST_CASE("same_dest_path: absent in both or the same directory in both", "[builder][copy_share]") {
  ScratchDir d;
  make_dir(d / "a");
  make_dir(d / "b");
  // Absent in both: created the same way.
  CHECK(same_dest("/gen/sub", "/", d / "a", d / "b"));
  // The same directory in both.
  make_dir(d / "a/usr/local");
  make_dir(d / "a/usr");
  make_dir(d / "b/usr/local");
  make_dir(d / "b/usr");
  CHECK(same_dest("/usr/local/bin/", "/", d / "a", d / "b"));
  // Another mode on the way: the layer would hold it.
  REQUIRE(::chmod((d / "b/usr/local").c_str(), 0700) == 0);
  CHECK_FALSE(same_dest("/usr/local/bin/", "/", d / "a", d / "b"));
  REQUIRE(::chmod((d / "b/usr/local").c_str(), 0755) == 0);
  CHECK(same_dest("/usr/local/bin/", "/", d / "a", d / "b"));
  // Another mtime (a copied-up ancestor keeps it).
  struct timeval tv[2] = {{946684801, 0}, {946684801, 0}};
  REQUIRE(::utimes((d / "b/usr").c_str(), tv) == 0);
  CHECK_FALSE(same_dest("/usr/local/bin/", "/", d / "a", d / "b"));
  make_dir(d / "b/usr");
  // Present in one only.
  make_dir(d / "a/usr/local/bin");
  make_dir(d / "a/usr/local");
  CHECK_FALSE(same_dest("/usr/local/bin/", "/", d / "a", d / "b"));
  // The same symlink in both: where it leads is not proven, so no.
  fsys::create_directory_symlink("/data", d / "a/app");
  fsys::create_directory_symlink("/data", d / "b/app");
  CHECK_FALSE(same_dest("/app/x", "/", d / "a", d / "b"));
  // The same file in both at the destination: no (replaced or refused).
  make_file(d / "a/f", "x");
  make_file(d / "b/f", "x");
  CHECK_FALSE(same_dest("/f", "/", d / "a", d / "b"));
}

TEST_CASE("same_copy_result: every path of the layer absent in both or the same", "[builder][copy_share]") {
  ScratchDir d;
  make_dir(d / "a");
  make_dir(d / "b");
  make_dir(d / "layer");
  make_dir(d / "layer/gen/sub");
  make_dir(d / "layer/gen");
  make_file(d / "layer/gen/one", "1");
  make_file(d / "layer/gen/sub/two", "2");
  // Nothing of it in either parent.
  CHECK(same_result(d / "layer", d / "a", d / "b"));
  // The same directory in both (its other entries do not matter).
  make_dir(d / "a/gen");
  make_dir(d / "b/gen");
  make_file(d / "b/gen/unrelated", "u");
  make_dir(d / "a/gen");
  make_dir(d / "b/gen");
  CHECK(same_result(d / "layer", d / "a", d / "b"));
  // A path of the layer that one parent has: a file the copy replaces.
  make_file(d / "a/gen/sub", "file where the copy puts a directory");
  make_dir(d / "a/gen");
  CHECK_FALSE(same_result(d / "layer", d / "a", d / "b"));
  make_file(d / "b/gen/sub", "file where the copy puts a directory");
  make_dir(d / "a/gen");
  make_dir(d / "b/gen");
  CHECK(same_result(d / "layer", d / "a", d / "b"));  // the same in both
  // Owner, mode or content differences of a replaced file.
  make_file(d / "b/gen/sub", "another file");
  make_dir(d / "b/gen");
  CHECK_FALSE(same_result(d / "layer", d / "a", d / "b"));
  make_file(d / "b/gen/sub", "file where the copy puts a directory");
  REQUIRE(::chmod((d / "b/gen/sub").c_str(), 0600) == 0);
  CHECK_FALSE(same_result(d / "layer", d / "a", d / "b"));
  REQUIRE(::chmod((d / "a/gen/sub").c_str(), 0600) == 0);
  CHECK(same_result(d / "layer", d / "a", d / "b"));
  // A symlink in one, a directory in the other, below the destination.
  fsys::remove(d / "a/gen/sub");
  fsys::remove(d / "b/gen/sub");
  make_dir(d / "a/gen/sub");
  fsys::create_directory_symlink("/elsewhere", d / "b/gen/sub");
  make_dir(d / "a/gen");
  make_dir(d / "b/gen");
  CHECK_FALSE(same_result(d / "layer", d / "a", d / "b"));
}

TEST_CASE("same_targets: the paths a copy named lead to the same places", "[builder][copy_share]") {
  ScratchDir d;
  make_dir(d / "a");
  make_dir(d / "b");
  const std::vector<std::string> targets = {"/gen", "/gen/one", "/gen/sub", "/gen/sub/two", "/lib2", "/lib2/foo"};
  // Nothing there in either parent: all of it made by the copy.
  auto same = [&] {
    Result<bool> r = same_targets(targets, d / "a", d / "b");
    REQUIRE(r);
    return *r;
  };
  CHECK(same());
  // A directory the copy writes into, the same in both.
  make_dir(d / "a/lib2");
  make_dir(d / "b/lib2");
  CHECK(same());
  // One parent has a symlink where the other has that directory: the copy
  // would follow it there (the layer holds usr/lib/foo, not lib2/foo).
  fsys::remove(d / "a/lib2");
  make_dir(d / "a/usr/lib");
  fsys::create_directory_symlink("usr/lib", d / "a/lib2");
  CHECK_FALSE(same());
  // The same symlink in both: where it leads is not proven either.
  fsys::remove(d / "b/lib2");
  fsys::create_directory_symlink("usr/lib", d / "b/lib2");
  CHECK_FALSE(same());
  fsys::remove(d / "a/lib2");
  fsys::remove(d / "b/lib2");
  CHECK(same());
  // The same file at a target: replaced in both.
  make_file(d / "a/gen", "x");
  make_file(d / "b/gen", "x");
  CHECK_FALSE(same());  // and a file on the way to /gen/one
  Result<bool> leaf = same_targets({"/gen"}, d / "a", d / "b");
  REQUIRE(leaf);
  CHECK(*leaf);
  make_file(d / "b/gen", "longer");  // another size
  leaf = same_targets({"/gen"}, d / "a", d / "b");
  REQUIRE(leaf);
  CHECK_FALSE(*leaf);
}

TEST_CASE("CopyShare: one owner a key, waiters get its layer or nothing", "[builder][copy_share]") {
  CopyShare share;
  auto [slot, owner] = share.claim("k", {"/l/1", "/l/2"});
  CHECK(owner);
  auto [same, again] = share.claim("k", {"/other"});
  CHECK_FALSE(again);
  CHECK(same == slot);
  CHECK(slot->parents == std::vector<fsys::path>{"/l/1", "/l/2"});  // the owner's
  std::optional<SharedCopyLayer> got;
  std::thread waiter([&, s = same] { got = CopyShare::wait(*s); });
  SharedCopyLayer layer;
  layer.record.diff_id = "sha256:abc";
  layer.dir = "/snapshots/abc/fs";
  CopyShare::publish(*slot, layer);
  waiter.join();
  REQUIRE(got.has_value());
  CHECK(got->record.diff_id == "sha256:abc");
  // A failed owner: the waiters copy themselves.
  auto [failed, first] = share.claim("f", {});
  CHECK(first);
  CopyShare::publish(*failed, std::nullopt);
  CHECK_FALSE(CopyShare::wait(*failed).has_value());
  // Source digests.
  CHECK_FALSE(share.digest("d").has_value());
  SourceFiles files;
  files.digest = "sha256:123";
  share.remember_digest("d", files);
  REQUIRE(share.digest("d").has_value());
  CHECK(share.digest("d")->digest == "sha256:123");
}
