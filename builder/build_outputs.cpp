// A build's -o outputs (see build_outputs.hpp).

#include "builder/build_outputs.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "builder/platform_outputs.hpp"
#include "image/archive.hpp"
#include "snapshot/diff.hpp"
#include "util/io.hpp"
#include "util/output.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

Result<Output> parse_output(const std::string& spec) {
  Output out;
  if (spec.find('=') == std::string::npos) {
    // Short forms, as buildx has them. (emplace, not `= "-"`: GCC 12 at -O3
    // reports a false -Wrestrict overlap in assigning a literal, bug 105329.)
    out.attrs.emplace("dest", spec);
    if (spec == "-") {
      out.type = "tar";
    } else if (spec.ends_with(".tar")) {
      out.type = "docker";
    } else {
      out.type = "local";
    }
    return out;
  }
  for (const auto& part : str::split(spec, ',')) {
    auto [k, v] = str::key_value(part);
    k = str::to_lower(std::string(str::trim(k)));
    if (k == "type") {
      out.type = v;
    } else {
      out.attrs[k] = v;
    }
  }
  if (out.type == "registry") {
    // buildx: type=registry is type=image,push=true.
    out.type = "image";
    out.attrs["push"] = "true";
  }
  static const std::set<std::string> k_types = {"docker", "oci", "local", "tar", "image"};
  if (k_types.count(out.type) == 0) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid output {}: unsupported type \"{}\" (docker, oci, local, tar, image, registry)",
                            str::go_quote(spec), out.type));
  }
  if (out.type != "image" && out.attrs.count("dest") == 0) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid output {}: dest= is required for type={}", str::go_quote(spec), out.type));
  }
  return out;
}

bool attr_true(const Output& o, const std::string& key) {
  auto it = o.attrs.find(key);
  return it != o.attrs.end() && (it->second == "true" || it->second == "1" || it->second.empty());
}

bool writes_file(const Output& o) {
  if (o.type == "tar" || o.type == "docker") {
    return true;
  }
  return o.type == "oci" && !(o.attrs.count("tar") && str::to_lower(o.attrs.at("tar")) == "false");
}

Result<std::optional<image::LayerCompression>> output_compression(const Output& o, bool by_default) {
  auto attr = [&](const char* k) { return o.attrs.count(k) ? o.attrs.at(k) : std::string(); };
  if (!by_default && o.attrs.count("compression") == 0) {
    return std::optional<image::LayerCompression>();
  }
  auto c = image::parse_layer_compression(attr("compression"), attr("compression-level"), attr("force-compression"));
  if (!c) {
    return fail(Errc::invalid_argument, fmt::format("invalid output {}: {}", o.type, c.error().message));
  }
  return std::optional<image::LayerCompression>(*c);
}

Result<ImageOutputs> image_outputs(const std::vector<Output>& outputs, const std::vector<image::Reference>& tags) {
  ImageOutputs out;
  for (const auto& o : outputs) {
    if (o.type != "image") {
      continue;
    }
    PushTarget t;
    auto name = o.attrs.find("name");
    if (name != o.attrs.end() && !name->second.empty()) {
      auto ref = image::parse_reference(name->second);
      if (!ref) {
        return fail(Errc::invalid_argument,
                    fmt::format("invalid output name {}: {}", str::go_quote(name->second), ref.error().message));
      }
      t.names.push_back(*ref);
    } else {
      t.names = tags;
    }
    for (const auto& n : t.names) {
      bool known = std::any_of(out.names.begin(), out.names.end(), [&](const image::Reference& r) { return r.str() == n.str(); });
      if (!known) {
        out.names.push_back(n);
      }
    }
    if (o.attrs.count("push") == 0 || !attr_true(o, "push")) {
      continue;
    }
    if (t.names.empty()) {
      return fail(Errc::invalid_argument, "tag is needed when pushing to registry");
    }
    t.insecure = o.attrs.count("registry.insecure") != 0 && attr_true(o, "registry.insecure");
    TRY(t.compression, output_compression(o, true));
    out.pushes.push_back(std::move(t));
  }
  return out;
}

namespace {

// A docker or oci archive output of `record` (an image, or a multi-platform
// image's index), named by name= or `tags`.
Result<void> write_archive_output(image::ImageStore& store, const image::ImageRecord& record, const Output& o,
                                  const std::vector<image::Reference>& tags) {
  const std::string dest = o.attrs.count("dest") ? o.attrs.at("dest") : "";
  std::vector<image::SaveItem> items;
  std::vector<image::Reference> names;
  if (o.attrs.count("name")) {
    for (const auto& n : str::split(o.attrs.at("name"), ',')) {
      TRY(image::Reference ref, image::parse_reference(n));
      names.push_back(ref);
    }
  } else {
    names = tags;
  }
  if (names.empty()) {
    items.push_back(image::SaveItem{record, std::nullopt});
  }
  for (const auto& n : names) {
    items.push_back(image::SaveItem{record, n});
  }
  // buildx: the OCI exporter compresses (gzip unless told), the docker
  // one writes the layers as stored (a build's uncompressed, as `docker
  // save`) unless compression= is given.
  TRY(auto compression, output_compression(o, o.type == "oci"));
  if (o.type == "oci" && o.attrs.count("tar") && str::to_lower(o.attrs.at("tar")) == "false") {
    return image::save_oci_dir(store, items, dest, compression);
  }
  TRY(output::File out, output::File::open(dest));
  image::SaveOptions sopts;
  sopts.format = o.type == "oci" ? image::SaveFormat::oci : image::SaveFormat::docker_and_oci;
  sopts.compression = compression;
  TRY_VOID(image::save_archive(store, items, out.fd(), sopts));
  return out.commit();
}

}  // namespace

Result<void> write_outputs(image::ImageStore& store, const BuiltImage& built, const std::vector<Output>& outputs,
                           const std::vector<image::Reference>& tags, const image::ImageRecord* index) {
  for (const auto& o : outputs) {
    const std::string dest = o.attrs.count("dest") ? o.attrs.at("dest") : "";
    if (o.type == "image") {
      continue;
    }
    if (o.type == "docker" || o.type == "oci") {
      TRY_VOID(write_archive_output(store, index != nullptr ? *index : built.record, o, tags));
      continue;
    }
    if (o.type == "local") {
      TRY_VOID(index != nullptr ? export_index_rootfs(store, *index, dest) : export_rootfs(store, built, dest));
      continue;
    }
    if (o.type == "tar") {
      // The tree goes into a fresh directory below the private temp dir,
      // so that its root keeps export_rootfs's mode.
      TRY(io::TempDir tmp, io::TempDir::create((store.content().root() / "tmp").string(), "rootfs-"));
      const fsys::path tree = fsys::path(tmp.path()) / "rootfs";
      TRY(output::File out, output::File::open(dest));
      int fd = out.fd();
      auto write = [fd, &dest](const void* data, size_t size) { return output::write_all(fd, data, size, dest); };
      if (index != nullptr) {
        TRY_VOID(export_index_tar(store, *index, tree, write));
      } else {
        TRY_VOID(export_rootfs(store, built, tree));
        snapshot::DiffOptions opts;
        opts.compression = tar::Compression::none;
        TRY_VOID(snapshot::diff_trees("", tree.string(), write, opts));
      }
      TRY_VOID(out.commit());
    }
  }
  return ok();
}

}  // namespace imgbuild::builder
