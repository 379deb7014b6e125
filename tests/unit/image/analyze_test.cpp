#include <catch2/catch.hpp>

#include <string>

#include "image/analyze.hpp"

using namespace imgbuild;
using namespace imgbuild::image;

namespace {

tar::Entry file(std::string path, uint64_t size) {
  tar::Entry e;
  e.path = std::move(path);
  e.type = tar::EntryType::file;
  e.size = size;
  return e;
}

tar::Entry dir(std::string path) {
  tar::Entry e;
  e.path = std::move(path);
  e.type = tar::EntryType::dir;
  return e;
}

tar::Entry symlink_entry(std::string path, std::string target) {
  tar::Entry e;
  e.path = std::move(path);
  e.type = tar::EntryType::symlink;
  e.link_target = std::move(target);
  return e;
}

}  // namespace

TEST_CASE("analyze: overwritten, deleted, opaque and metadata-only entries are wasted where they were stored",
          "[image][analyze]") {
  LayerReplay r;
  r.begin_layer("base", "sha256:0");
  r.entry(dir("./"), "");
  r.entry(file("./a", 10), "da");
  r.entry(dir("./d/"), "");
  r.entry(file("./d/x", 5), "dx");
  r.entry(symlink_entry("./l", "a"), "");
  r.entry(file("./m", 7), "dm");
  r.begin_layer("change", "sha256:1");
  r.entry(file(".wh.a", 0), "");
  r.entry(file("d/.wh..wh..opq", 0), "");
  r.entry(file("d/y", 3), "dy");
  r.entry(file("m", 7), "dm");  // the same bytes again: a chmod
  r.begin_layer("last", "sha256:2");
  r.entry(file("l", 4), "dl");  // a file where the symlink was
  r.entry(file("copy", 10), "da");
  ImageAnalysis a = r.finish();
  REQUIRE(a.layers.size() == 3);
  CHECK(a.layers[0].content_size == 10 + 5 + 1 + 7);
  CHECK(a.layers[0].files == 4);
  CHECK(a.layers[0].wasted == 10 + 5 + 1 + 7);
  CHECK(a.layers[1].wasted == 0);
  CHECK(a.layers[2].wasted == 0);
  CHECK(a.total == 23 + 10 + 14);
  CHECK(a.visible == 3 + 7 + 4 + 10);
  CHECK(a.wasted == a.total - a.visible);
  CHECK(a.efficiency == Approx(24.0 / 47.0));
  REQUIRE(a.wasted_files.size() == 4);
  CHECK(a.wasted_files[0].path == "/a");
  CHECK(a.wasted_files[0].reason == "deleted");
  CHECK(a.wasted_files[0].by_layer == 1);
  bool chmod = false;
  for (const auto& w : a.wasted_files) {
    if (w.path == "/m") {
      chmod = w.reason == "metadata only";
    }
  }
  CHECK(chmod);
  // /a (layer 0, deleted) and /copy (layer 2) hold the same bytes; so do
  // the two /m.
  REQUIRE(a.duplicates.size() == 2);
  CHECK(a.duplicates[0].size == 10);
  CHECK(a.duplicates[0].extra_bytes() == 10);
  CHECK(a.duplicates[1].copies.size() == 2);
  CHECK(a.duplicates[1].extra_bytes() == 7);
}

TEST_CASE("analyze: a directory replaced by a file wastes its subtree - a file under a former file replaces it",
          "[image][analyze]") {
  LayerReplay r;
  r.begin_layer("one", "");
  r.entry(dir("p"), "");
  r.entry(file("p/q", 8), "q");
  r.entry(file("f", 2), "f");
  r.begin_layer("two", "");
  r.entry(file("p", 1), "p");
  r.entry(dir("f"), "");
  r.entry(file("f/g", 3), "g");
  ImageAnalysis a = r.finish();
  CHECK(a.layers[0].wasted == 10);
  CHECK(a.visible == 4);
  CHECK(a.final_files.size() == 2);
}
