#include "builder/platform_outputs.hpp"

#include <fcntl.h>

#include <set>

#include <fmt/format.h>

#include "image/index.hpp"
#include "snapshot/apply.hpp"
#include "snapshot/diff.hpp"
#include "util/fd.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

image::Platform oci_platform(const Platform& p) {
  image::Platform out;
  out.os = p.os;
  out.architecture = p.architecture;
  out.variant = p.variant;
  return out;
}

std::string platform_dir_name(const image::Platform& p) {
  std::string variant = str::to_lower(p.variant);
  if ((p.architecture == "arm64" && variant == "v8") || (p.architecture == "amd64" && variant == "v1")) {
    variant.clear();
  }
  if (p.architecture == "arm" && variant.empty()) {
    variant = "v7";
  }
  std::string out = p.os + "_" + p.architecture;
  if (!variant.empty()) {
    out += "_" + variant;
  }
  return out;
}

namespace {

// Applies the layers of the stored image `rec` in order under `dest`.
Result<void> apply_image(image::ImageStore& store, const image::ImageRecord& rec, const fsys::path& dest) {
  TRY(image::LoadedImage img, store.load(rec));
  TRY_VOID(store.hold(img));
  std::error_code ec;
  fsys::create_directories(dest, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot create {}: {}", dest.string(), ec.message()));
  }
  for (const auto& l : img.manifest.layers) {
    fsys::path blob = store.content().blob_path(l.digest);
    UniqueFd fd(::open(blob.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      return fail(Errc::not_found, fmt::format("layer blob {} is missing", l.digest));
    }
    snapshot::ApplyOptions opts;
    opts.mode = snapshot::ApplyMode::merged;
    TRY(auto applied, snapshot::apply_layer_fd(dest.string(), fd.get(), "layer " + l.digest, opts));
    (void)applied;
  }
  return ok();
}

}  // namespace

Result<void> export_index_rootfs(image::ImageStore& store, const image::ImageRecord& index, const fsys::path& dest) {
  TRY(image::LoadedIndex idx, image::load_index(store, index));
  std::set<std::string> names;
  for (const auto& c : idx.children) {
    TRY(std::optional<image::ImageRecord> child, store.db().image(c.manifest_digest));
    if (!child) {
      return fail(Errc::corrupt, fmt::format("index {}: its {} image is not in the store", index.manifest_digest,
                                             c.platform));
    }
    TRY(image::Platform p, image::parse_platform_text(c.platform));
    std::string name = platform_dir_name(p);
    if (!names.insert(name).second) {
      return fail(Errc::invalid_argument,
                  fmt::format("index {}: two platform images would be written to {}", index.manifest_digest, name));
    }
    TRY_VOID(apply_image(store, *child, dest / name));
  }
  return ok();
}

Result<void> export_index_tar(image::ImageStore& store, const image::ImageRecord& index, const fsys::path& scratch,
                              const tar::WriteFn& out) {
  struct Cleanup {
    fsys::path dir;
    ~Cleanup() {
      std::error_code ec;
      fsys::remove_all(dir, ec);
    }
  } cleanup{scratch};
  TRY_VOID(export_index_rootfs(store, index, scratch));
  snapshot::DiffOptions opts;
  opts.compression = tar::Compression::none;
  TRY(snapshot::DiffResult written, snapshot::diff_trees("", scratch.string(), out, opts));
  (void)written;
  return ok();
}

Result<void> check_docker_output(size_t platforms) {
  if (platforms > 1) {
    return fail(Errc::invalid_argument, "docker exporter does not currently support exporting manifest lists");
  }
  return ok();
}

}  // namespace imgbuild::builder
