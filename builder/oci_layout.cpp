#include "builder/oci_layout.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "image/archive.hpp"
#include "image/types.hpp"
#include "util/fd.hpp"
#include "util/hash.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

namespace {

constexpr std::string_view k_scheme = "oci-layout://";
constexpr std::string_view k_ref_name = "org.opencontainers.image.ref.name";
constexpr std::string_view k_containerd_name = "io.containerd.image.name";
constexpr size_t k_max_document = size_t{4} << 20;
bool is_index(std::string_view media_type) {
  return media_type == image::media::oci_index || media_type == image::media::docker_manifest_list;
}

// An index resolved to the manifest descriptor for `want`: the first entry
// whose platform matches it, else the first with its os and architecture.
Result<image::Descriptor> pick_platform(const OciLayoutDir& layout, const image::Descriptor& desc, const Platform& want,
                                        int depth = 0) {
  if (!is_index(desc.media_type)) {
    return desc;
  }
  if (depth > 4) {
    return fail(Errc::invalid_argument, fmt::format("{}: indexes nested too deeply", layout.label()));
  }
  TRY(std::string bytes, layout.read_blob(desc.digest));
  TRY(image::Index idx, image::parse_index(bytes, layout.label() + " index " + desc.digest));
  const image::Descriptor* os_arch = nullptr;
  for (const auto& m : idx.manifests) {
    if (!m.platform) {
      continue;
    }
    Platform have = normalize_platform({m.platform->os, m.platform->architecture, m.platform->variant});
    if (have == want) {
      return pick_platform(layout, m, want, depth + 1);
    }
    if (os_arch == nullptr && have.os == want.os && have.architecture == want.architecture) {
      os_arch = &m;
    }
  }
  if (os_arch != nullptr) {
    return pick_platform(layout, *os_arch, want, depth + 1);
  }
  return fail(Errc::not_found,
              fmt::format("{}: index {} has no image for {}", layout.label(), desc.digest, want.str()));
}

}  // namespace

bool OciLayoutDir::valid_digest(std::string_view d) {
  if (!d.starts_with("sha256:") || d.size() != 71) {
    return false;
  }
  return d.substr(7).find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

fsys::path OciLayoutDir::blob_path(std::string_view digest) const {
  return fsys::path(m_dir) / "blobs" / "sha256" / std::string(digest.substr(7));
}

Result<std::string> OciLayoutDir::read_document(const fsys::path& p, std::string_view what) const {
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    return fail(Errc::not_found, fmt::format("{}: cannot read {}: {}", m_label, what, std::strerror(errno)));
  }
  auto out = io::read_all(fd.get(), fmt::format("{}: {}", m_label, what), k_max_document);
  if (!out && out.error().code == Errc::limit) {
    out.error().code = Errc::invalid_argument;
  }
  return out;
}

Result<std::string> OciLayoutDir::read_blob(std::string_view digest) const {
  if (!valid_digest(digest)) {
    return fail(Errc::invalid_argument, fmt::format("{}: invalid digest {}", m_label, str::go_quote(digest)));
  }
  TRY(std::string bytes, read_document(blob_path(digest), fmt::format("blob {}", digest)));
  if (sha256(bytes).str() != digest) {
    return fail(Errc::corrupt, fmt::format("{}: blob {} does not match its digest", m_label, digest));
  }
  return bytes;
}

Result<image::Index> OciLayoutDir::read_index() const {
  TRY(std::string bytes, read_document(fsys::path(m_dir) / "index.json", "index.json"));
  return image::parse_index(bytes, m_label + " index.json");
}

OciLayoutSource parse_oci_layout_source(std::string_view source) {
  OciLayoutSource out;
  if (source.starts_with(k_scheme)) {
    source.remove_prefix(k_scheme.size());
  }
  std::string s(source);
  size_t slash = s.rfind('/');
  size_t from = slash == std::string::npos ? 0 : slash;
  if (size_t at = s.find('@', from); at != std::string::npos) {
    out.digest = s.substr(at + 1);
    s.resize(at);
  } else if (size_t colon = s.find(':', from); colon != std::string::npos) {
    out.tag = s.substr(colon + 1);
    s.resize(colon);
  }
  out.dir = s;
  return out;
}

Result<image::LoadedImage> load_oci_layout_image(image::ImageStore& store, std::string_view source,
                                                 const Platform& platform) {
  OciLayoutSource src = parse_oci_layout_source(source);
  OciLayoutDir layout(src.dir, fmt::format("oci-layout {}", str::go_quote(src.dir)));
  if (src.dir.empty()) {
    return fail(Errc::invalid_argument, fmt::format("invalid oci-layout source {}: no directory", str::go_quote(source)));
  }
  TRY(image::Index index, layout.read_index());

  // The entry the source names.
  std::optional<image::Descriptor> chosen;
  if (!src.digest.empty()) {
    for (const auto& m : index.manifests) {
      if (m.digest == src.digest) {
        chosen = m;
      }
    }
    if (!chosen) {
      // Any manifest in the blobs (a platform manifest of an index, say).
      TRY(std::string bytes, layout.read_blob(src.digest));
      TRY(image::Manifest probe, image::parse_manifest(bytes, layout.label() + " manifest " + src.digest));
      image::Descriptor d;
      d.media_type = probe.media_type.empty() ? std::string(image::media::oci_manifest) : probe.media_type;
      d.digest = src.digest;
      d.size = static_cast<int64_t>(bytes.size());
      chosen = d;
    }
  } else if (!src.tag.empty()) {
    for (const auto& m : index.manifests) {
      auto rn = m.annotations.find(std::string(k_ref_name));
      auto cn = m.annotations.find(std::string(k_containerd_name));
      bool match = (rn != m.annotations.end() && rn->second == src.tag) ||
                   (cn != m.annotations.end() && cn->second.ends_with(":" + src.tag));
      if (match && !chosen) {
        chosen = m;
      }
    }
    if (!chosen) {
      return fail(Errc::not_found, fmt::format("{}: no image tagged {}", layout.label(), str::go_quote(src.tag)));
    }
  } else {
    if (index.manifests.size() != 1) {
      return fail(Errc::invalid_argument,
                  fmt::format("{}: index.json lists {} images; name one with :TAG or @DIGEST", layout.label(),
                              index.manifests.size()));
    }
    chosen = index.manifests.front();
  }
  TRY(image::Descriptor desc, pick_platform(layout, *chosen, normalize_platform(platform)));

  // Manifest, config, layers: verified into a staging area, then committed.
  TRY(std::string manifest_bytes, layout.read_blob(desc.digest));
  TRY(image::Manifest manifest, image::parse_manifest(manifest_bytes, layout.label() + " manifest " + desc.digest));
  TRY(std::string config_bytes, layout.read_blob(manifest.config.digest));
  TRY(image::ImageConfig config, image::parse_config(config_bytes, layout.label() + " config " + manifest.config.digest));
  if (config.rootfs.diff_ids.size() != manifest.layers.size()) {
    return fail(Errc::corrupt, fmt::format("{}: manifest {} has {} layers but its config {} diff_ids", layout.label(),
                                           desc.digest, manifest.layers.size(), config.rootfs.diff_ids.size()));
  }
  TRY(auto staging, image::Staging::create(store.content()));
  image::NewImage ni;
  ni.media_type = manifest.media_type.empty() ? std::string(image::media::oci_manifest) : manifest.media_type;
  ni.created = config.created;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const image::Descriptor& l = manifest.layers[i];
    if (!OciLayoutDir::valid_digest(l.digest)) {
      return fail(Errc::invalid_argument, fmt::format("{}: invalid layer digest {}", layout.label(), str::go_quote(l.digest)));
    }
    TRY(auto w, staging->writer(l.digest));
    UniqueFd fd(::open(layout.blob_path(l.digest).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
      return fail(Errc::not_found,
                  fmt::format("{}: layer blob {} is missing: {}", layout.label(), l.digest, std::strerror(errno)));
    }
    TRY(uint64_t read, io::read_chunks(fd.get(), fmt::format("{}: layer {}", layout.label(), l.digest),
                                       [&](const void* data, size_t n) { return w.write(data, n); }));
    (void)read;
    uint64_t size = w.size();
    TRY(auto got, w.commit(l.digest));
    image::LayerRecord rec;
    rec.blob_digest = got;
    rec.blob_size = static_cast<int64_t>(size);
    rec.diff_id = config.rootfs.diff_ids[i];
    rec.media_type = l.media_type;
    ni.layers.push_back(rec);
  }
  TRY(ni.config_digest, staging->put(config_bytes));
  TRY(ni.manifest_digest, staging->put(manifest_bytes));
  TRY_VOID(store.commit(*staging, {ni}));
  TRY(auto rec, store.db().image(ni.manifest_digest));
  if (!rec) {
    return fail(Errc::internal, fmt::format("{}: image {} vanished after commit", layout.label(), ni.manifest_digest));
  }
  return store.load(*rec);
}

}  // namespace imgbuild::builder
