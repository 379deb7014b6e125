#pragma once
// Images for registry tests through the real binary: run imgbuild against a
// store root, import the busybox rootfs as a base image, and read back what
// a store holds for a name (manifest, config and layer digests).

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "image/layer_compression.hpp"
#include "image/store.hpp"
#include "support/paths.hpp"
#include "support/registry_fixture.hpp"

namespace imgbuild::test::images {

/// Runs imgbuild with --root and returns its exit status; output goes to `log`.
inline int imgbuild_run(const std::filesystem::path& root, std::vector<std::string> args,
                        const std::filesystem::path& log) {
  std::vector<std::string> argv = {imgbuild_binary().string(), "--root", root.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, log);
}

/// True when busybox-static is installed.
inline bool have_busybox() { return ::access("/bin/busybox", X_OK) == 0; }

/// A store under `root` with the busybox rootfs (a few applets) imported as `name`.
inline void import_busybox(const std::filesystem::path& root, const std::filesystem::path& work,
                           const std::string& name) {
  std::filesystem::path rootfs = work / "rootfs";
  std::filesystem::create_directories(rootfs / "bin");
  if (!std::filesystem::exists(rootfs / "bin" / "busybox")) {
    std::filesystem::copy_file("/bin/busybox", rootfs / "bin" / "busybox");
    for (const char* applet : {"sh", "cat", "echo", "ls", "mkdir"}) {
      std::filesystem::create_symlink("busybox", rootfs / "bin" / applet);
    }
  }
  std::filesystem::path tarball = work / "rootfs.tar";
  REQUIRE(run_command({"tar", "-C", rootfs.string(), "-cf", tarball.string(), "."}, work / "tar.log") == 0);
  int rc = imgbuild_run(root, {"import", tarball.string(), name, "--change", "CMD [\"/bin/sh\"]"},
                        work / "import.log");
  INFO(slurp(work / "import.log"));
  REQUIRE(rc == 0);
}

/// The digests a store holds for one image.
struct StoredImage {
  std::string manifest;
  std::string config;
  std::vector<std::string> layers;
};

/// Reads the digests of the image `name` in the store at `root` (fails the
/// test when it is missing or a layer blob is absent).
inline StoredImage stored(const std::filesystem::path& root, const std::string& name) {
  auto store = image::ImageStore::open(root);
  REQUIRE(store);
  auto rec = (*store)->resolve(name);
  if (!rec) {
    FAIL("resolve " << name << ": " << rec.error().to_string());
  }
  auto img = (*store)->load(*rec);
  REQUIRE(img);
  StoredImage s{rec->manifest_digest, rec->config_digest, {}};
  for (const auto& l : img->manifest.layers) {
    s.layers.push_back(l.digest);
    CHECK((*store)->content().has(l.digest));
  }
  return s;
}

/// The digests of the image `name` as a push sends it: its layers
/// compressed as a push compresses them by default (gzip; uncompressed
/// layers — a build's, an import's — become gzip blobs, made here exactly as
/// the push makes them; image/layer_compression.hpp).
inline StoredImage pushed_form(const std::filesystem::path& root, const std::string& name) {
  auto store = image::ImageStore::open(root);
  REQUIRE(store);
  auto rec = (*store)->resolve(name);
  if (!rec) {
    FAIL("resolve " << name << ": " << rec.error().to_string());
  }
  auto img = (*store)->load(*rec);
  REQUIRE(img);
  auto sent = image::compressed_form(**store, *img, image::LayerCompression{});
  if (!sent) {
    FAIL("compress " << name << ": " << sent.error().to_string());
  }
  StoredImage s{sent->record.manifest_digest, sent->record.config_digest, {}};
  for (const auto& l : sent->manifest.layers) {
    s.layers.push_back(l.digest);
  }
  return s;
}

}  // namespace imgbuild::test::images
