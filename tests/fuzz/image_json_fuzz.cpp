// libFuzzer target for the image JSON documents imgbuild reads from
// untrusted bytes (registries, archives, OCI layouts). The first input byte
// picks the document; the rest is its text:
//   0: image manifest (parse_manifest)
//   1: index / manifest list (parse_index)
//   2: image config (parse_config)
//   3: docker-save manifest.json, loaded with load_archive from an archive
//      that also holds a valid config ("config.json") and an empty layer
//      ("layer.tar") into a scratch store
// Parsed documents must round-trip: serialize → parse → serialize gives the
// same bytes. Errors must have a message naming the document. Build and
// run: scripts/fuzz.

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "image/archive.hpp"
#include "image/store.hpp"
#include "image/types.hpp"
#include "util/tar.hpp"

using namespace imgbuild;

namespace {

void check(bool condition) {
  if (!condition) {
    __builtin_trap();
  }
}

template <class T, class Parse>
void round_trip(std::string_view text, Parse parse) {
  auto first = parse(text, "fuzz document");
  if (!first) {
    check(first.error().message.rfind("fuzz document", 0) == 0);
    return;
  }
  std::string bytes = image::serialize(*first);
  auto second = parse(bytes, "serialized document");
  if (!second) {
    std::fprintf(stderr, "image_json_fuzz: serialized document does not parse: %s\n%s\n",
                 second.error().message.c_str(), bytes.c_str());
    __builtin_trap();
  }
  if (image::serialize(*second) != bytes) {
    std::fprintf(stderr, "image_json_fuzz: round trip changed the document\n%s\n%s\n", bytes.c_str(),
                 image::serialize(*second).c_str());
    __builtin_trap();
  }
}

struct Scratch {
  std::string dir;
  std::unique_ptr<image::ImageStore> store;

  Scratch() {
    // Under $TMPDIR (scripts/fuzz points it into build-fuzz/ and empties it).
    const char* tmpdir = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") + "/imgbuild-fuzz-store-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::abort();
    }
    dir = tmpl;
    auto opened = image::ImageStore::open(dir);
    if (!opened) {
      std::fprintf(stderr, "image_json_fuzz: %s\n", opened.error().message.c_str());
      std::abort();
    }
    store = std::move(*opened);
  }
};

Result<void> add_file(tar::Writer& w, const std::string& path, std::string_view body) {
  tar::Entry e;
  e.path = path;
  e.size = body.size();
  TRY_VOID(w.add(e));
  return w.write_data(body.data(), body.size());
}

// A docker-save archive with `manifest_json` and the config and layer it may
// name, written to a memfd positioned at its start.
int docker_save_archive(std::string_view manifest_json) {
  std::string layer;
  auto layer_writer = tar::Writer::open([&](const void* p, size_t n) -> Result<void> {
    layer.append(static_cast<const char*>(p), n);
    return ok();
  });
  check(layer_writer.has_value());
  auto layer_sum = (*layer_writer)->finish();
  check(layer_sum.has_value());
  std::string config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[")" +
                       layer_sum->diff_id.str() + R"("]}})";

  int fd = ::memfd_create("image-json-fuzz", MFD_CLOEXEC);
  check(fd >= 0);
  auto w = tar::Writer::open_fd(fd);
  check(w.has_value());
  check(add_file(**w, "config.json", config).has_value());
  check(add_file(**w, "layer.tar", layer).has_value());
  check(add_file(**w, "manifest.json", manifest_json).has_value());
  check((*w)->finish().has_value());
  check(::lseek(fd, 0, SEEK_SET) == 0);
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0:
      round_trip<image::Manifest>(text, image::parse_manifest);
      break;
    case 1:
      round_trip<image::Index>(text, image::parse_index);
      break;
    case 2:
      round_trip<image::ImageConfig>(text, image::parse_config);
      break;
    default: {
      static Scratch scratch;
      int fd = docker_save_archive(text);
      auto loaded = image::load_archive(*scratch.store, fd, "fuzz.tar");
      if (!loaded) {
        check(!loaded.error().message.empty());
      }
      ::close(fd);
      break;
    }
  }
  return 0;
}
