#include "image/index.hpp"

#include <sys/utsname.h>

#include <set>

#include <fmt/format.h>

#include "image/json.hpp"
#include "util/hash.hpp"
#include "util/platform.hpp"
#include "util/strings.hpp"

namespace imgbuild::image {

// The text forms, the normalising and the host are util/platform's (the
// one parser); only the matching rule below is this module's: a wanted
// platform without a variant accepts any variant of its architecture, as an
// index lookup should.
namespace {

Platform from_util(const imgbuild::Platform& u) {
  Platform p;
  p.os = u.os;
  p.architecture = u.architecture;
  p.variant = u.variant;
  return p;
}

}  // namespace

std::string platform_text(const Platform& p) { return imgbuild::Platform{p.os, p.architecture, p.variant}.str(); }

Result<Platform> parse_platform_text(std::string_view text) {
  TRY(imgbuild::Platform u, imgbuild::parse_platform(text));
  return from_util(u);
}

Platform host_oci_platform() { return from_util(imgbuild::host_platform()); }

bool platform_matches(const Platform& have, const Platform& want) {
  const imgbuild::Platform h = normalize_platform({have.os, have.architecture, have.variant});
  const imgbuild::Platform w = normalize_platform({want.os, want.architecture, want.variant});
  if (h.os != w.os || h.architecture != w.architecture) {
    return false;
  }
  return want.variant.empty() || h.variant == w.variant;  // no variant wanted: any
}

Platform descriptor_platform(const Descriptor& d) {
  if (!d.platform) {
    return Platform{};
  }
  Platform p;
  p.os = d.platform->os;
  p.architecture = d.platform->architecture;
  p.variant = d.platform->variant;
  return p;
}

Platform config_platform(const ImageConfig& c) {
  Platform p;
  p.os = c.os;
  p.architecture = c.architecture;
  p.variant = c.variant;
  return p;
}

Result<std::string> make_index(const std::vector<IndexEntry>& entries) {
  if (entries.empty()) {
    return fail(Errc::invalid_argument, "an image index needs at least one image");
  }
  Index idx;
  idx.media_type = std::string(media::oci_index);
  std::set<std::string> seen;
  for (const auto& e : entries) {
    if (!is_valid_digest(e.manifest_digest) || media_kind(e.media_type) != MediaKind::manifest) {
      return fail(Errc::invalid_argument,
                  fmt::format("image {} ({}) is not an image manifest", e.manifest_digest, e.media_type));
    }
    if (e.platform.os.empty() || e.platform.architecture.empty()) {
      return fail(Errc::invalid_argument,
                  fmt::format("image {} has no platform (its config lacks os or architecture)", e.manifest_digest));
    }
    Platform p;
    p.os = e.platform.os;
    p.architecture = e.platform.architecture;
    p.variant = e.platform.variant;
    if (p.variant.empty() && p.architecture == "arm64") {
      p.variant = "v8";  // as BuildKit writes arm64 entries
    }
    if (!seen.insert(platform_text(p)).second) {
      return fail(Errc::invalid_argument,
                  fmt::format("two images for platform {} (image {})", platform_text(p), e.manifest_digest));
    }
    Descriptor d;
    d.media_type = e.media_type;
    d.digest = e.manifest_digest;
    d.size = e.size;
    d.platform = std::move(p);
    idx.manifests.push_back(std::move(d));
  }
  return serialize(idx);
}

Result<IndexEntry> index_entry_of(ImageStore& store, const ImageRecord& rec) {
  if (rec.is_index()) {
    return fail(Errc::invalid_argument,
                fmt::format("image {} is itself a multi-platform image index", rec.manifest_digest));
  }
  TRY(LoadedImage img, store.load(rec));
  return IndexEntry{rec.manifest_digest, rec.media_type, static_cast<int64_t>(img.manifest_bytes.size()),
                    config_platform(img.config)};
}

Result<StagedIndex> stage_index(Staging& staging, const std::vector<IndexEntry>& entries,
                                const std::vector<Reference>& names) {
  StagedIndex out;
  TRY(out.bytes, make_index(entries));
  TRY(out.index.digest, staging.put(out.bytes));
  out.index.media_type = std::string(media::oci_index);
  out.index.names = names;
  for (size_t i = 0; i < entries.size(); ++i) {
    Platform p = entries[i].platform;
    if (p.variant.empty() && p.architecture == "arm64") {
      p.variant = "v8";
    }
    out.index.children.push_back(IndexChildRecord{static_cast<int>(i), entries[i].manifest_digest, platform_text(p)});
  }
  return out;
}

Result<CommittedIndex> commit_index(ImageStore& store, const std::vector<IndexEntry>& entries,
                                    const std::vector<Reference>& names) {
  TRY(auto staging, Staging::create(store.content()));
  TRY(StagedIndex staged, stage_index(*staging, entries, names));
  TRY_VOID(store.commit(*staging, {}, {staged.index}));
  return CommittedIndex{staged.index.digest, staged.bytes};
}

Result<LoadedIndex> load_index(ImageStore& store, const ImageRecord& rec) {
  if (!rec.is_index()) {
    return fail(Errc::invalid_argument, fmt::format("image {} is not an image index", rec.manifest_digest));
  }
  LoadedIndex out;
  out.record = rec;
  TRY(out.bytes, store.content().read_small(rec.manifest_digest, k_max_json_size));
  TRY(out.index, parse_index(out.bytes, "index " + rec.manifest_digest));
  TRY(out.children, store.db().index_children(rec.manifest_digest));
  return out;
}

Result<std::string> put_loose_blob(ImageStore& store, std::string_view bytes) {
  std::string digest = sha256(bytes).str();
  TRY_VOID(store.lease().hold({{LeaseKind::blob, digest}}));
  if (!store.content().has(digest)) {
    TRY(auto staging, Staging::create(store.content()));
    TRY(std::string put, staging->put(bytes));
    TRY(MetaDb::Transaction tx, store.db().begin());
    TRY(bool added, staging->publish_one(put));
    (void)added;
    TRY_VOID(tx.commit());
  }
  return digest;
}

}  // namespace imgbuild::image
