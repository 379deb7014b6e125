#pragma once
// The build outputs of a multi-platform image (an image index in the store,
// image/index.hpp), as buildx writes them:
//  - type=oci: one OCI layout tar whose index.json names the image index:
//    image::save_archive with a SaveItem of the index record and
//    SaveFormat::oci (image/archive.hpp does it; nothing here);
//  - type=local,dest=DIR: DIR/<os>_<arch>[_<variant>]/ per platform, each the
//    platform image's root filesystem;
//  - type=tar: the same tree as one tar (entries under linux_amd64/, …);
//  - type=docker: refused with buildx's error when there are several
//    platforms (Docker's classic store cannot load an index).
// Only the platforms the store holds for the index are written.

#include <cstddef>
#include <filesystem>
#include <string>

#include "image/store.hpp"
#include "image/types.hpp"
#include "util/platform.hpp"
#include "util/result.hpp"
#include "util/tar.hpp"

namespace imgbuild::builder {

/// util/platform's Platform as an image index entry's platform.
image::Platform oci_platform(const Platform& p);

/// The directory buildx gives one platform of a multi-platform local or tar
/// output: the platform with '/' as '_', the default variants of arm64 (v8)
/// and amd64 (v1) left out: "linux_amd64", "linux_arm64", "linux_arm_v7".
std::string platform_dir_name(const image::Platform& p);

/// -o type=local for the index `index` (an index record of the store):
/// each platform image's root filesystem under dest/<platform_dir_name>/.
/// `dest` is created when missing.
Result<void> export_index_rootfs(image::ImageStore& store, const image::ImageRecord& index,
                                 const std::filesystem::path& dest);

/// -o type=tar for the index `index`: the tree export_index_rootfs writes,
/// as one uncompressed tar written to `out`. `scratch` is a directory to
/// unpack into (created, removed afterwards).
Result<void> export_index_tar(image::ImageStore& store, const image::ImageRecord& index,
                              const std::filesystem::path& scratch, const tar::WriteFn& out);

/// -o type=docker of a build for `platforms` target platforms: buildx's
/// error ("docker exporter does not currently support exporting manifest
/// lists") when there are several.
Result<void> check_docker_output(size_t platforms);

}  // namespace imgbuild::builder
