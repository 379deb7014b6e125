#pragma once
// Multi-platform images in the local store, as containerd's image store keeps
// them: a name points at an image index (OCI index or Docker manifest list);
// the index is an image record of its own (its ID is its digest) and each
// platform image the store holds is an unnamed image record linked to it
// (MetaDb index_children). Platforms the index lists but the store does not
// hold (a `pull --platform` of one platform) stay listed in the index
// document; they have no child record, and selecting one is a clear error.
//
// This file holds the platform matching used to pick a child, the building
// of a deterministic OCI index from N single-platform images, and the commit
// of such an index under names.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/reference.hpp"
#include "image/store.hpp"
#include "image/types.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// "os/arch[/variant]".
std::string platform_text(const Platform& p);

/// Parses "os/arch[/variant]" (or "arch" alone, meaning linux/arch), with the
/// usual architecture aliases (x86_64 → amd64, aarch64 → arm64).
Result<Platform> parse_platform_text(std::string_view text);

/// The platform this process runs on (util/platform.hpp host_platform()).
Platform host_oci_platform();

/// True when an image of platform `have` is what `want` asks for: os and
/// architecture equal, variants equal once defaulted (arm64 "" = v8, amd64
/// "" = v1, arm "" = v7); a `want` without a variant accepts any variant.
bool platform_matches(const Platform& have, const Platform& want);

/// The platform an index entry names (empty os and architecture when none).
Platform descriptor_platform(const Descriptor& d);

/// The platform of an image config.
Platform config_platform(const ImageConfig& c);

/// One single-platform image for an index.
struct IndexEntry {
  std::string manifest_digest;
  std::string media_type;  ///< of the manifest
  int64_t size = 0;        ///< bytes of the manifest
  Platform platform;       ///< os, architecture and variant are written
};

/// The bytes of an OCI image index (application/vnd.oci.image.index.v1+json)
/// listing `entries` in the given order, each with its platform {os,
/// architecture[, variant]}. Canonical JSON: the same entries give the same
/// bytes and digest. Fails when two entries name the same platform or an
/// entry has no os or architecture.
Result<std::string> make_index(const std::vector<IndexEntry>& entries);

/// The index entry of a stored single-platform image (platform from its config).
Result<IndexEntry> index_entry_of(ImageStore& store, const ImageRecord& rec);

/// What commit_index stored.
struct CommittedIndex {
  std::string digest;
  std::string bytes;
};

/// An index staged for ImageStore::commit.
struct StagedIndex {
  NewIndex index;     ///< ready for commit(staging, images, {index})
  std::string bytes;  ///< the document (its sha256 is index.digest)
};

/// Makes the index of `entries` (see make_index) and puts it in `staging`,
/// for platform images not committed yet: commit them and the index in one
/// ImageStore::commit(staging, images, {staged.index}).
Result<StagedIndex> stage_index(Staging& staging, const std::vector<IndexEntry>& entries,
                                const std::vector<Reference>& names);

/// Makes the index of `entries` (see make_index; every manifest must be an
/// image of the store) and commits it under `names` in one transaction: the
/// names then point at the index, and the index keeps its platform images.
Result<CommittedIndex> commit_index(ImageStore& store, const std::vector<IndexEntry>& entries,
                                    const std::vector<Reference>& names);

/// A stored index with its document and the children the store holds.
struct LoadedIndex {
  ImageRecord record;
  std::string bytes;
  Index index;
  std::vector<IndexChildRecord> children;  ///< present platforms, by position
};

/// Reads a stored index record's document and children.
Result<LoadedIndex> load_index(ImageStore& store, const ImageRecord& rec);

/// Writes `bytes` into the store as a blob no record references (a rewritten
/// manifest or index an output needs), leased to this process. Returns its
/// digest.
Result<std::string> put_loose_blob(ImageStore& store, std::string_view bytes);

}  // namespace imgbuild::image
