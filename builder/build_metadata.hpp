#pragma once
// The --metadata-file JSON of a build: the summary numbers, the build-check
// warnings, the record of a successful build and that of a failed one.

#include <span>
#include <string>
#include <vector>

#include <optional>

#include <nlohmann/json.hpp>

#include "builder/executor.hpp"
#include "image/reference.hpp"
#include "image/store.hpp"
#include "parser/checks.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// The warnings as "imgbuild.build.warnings" lists them (rule, message,
/// line, url).
nlohmann::json warnings_json(const std::vector<parser::CheckWarning>& warnings);

/// The numbers of the summary line (and of "imgbuild.summary"): total
/// time, steps run and cached, bytes of the layer blobs written, the
/// image's content size.
nlohmann::json build_summary(const BuiltImage& built, double seconds, int64_t image_size);
/// The same over every platform image of a multi-platform build (a step
/// shared by the platforms is in one image's steps only).
nlohmann::json build_summary(std::span<const BuiltImage> built, double seconds, int64_t image_size);

/// The metadata file of a successful build: the config digest, the
/// manifest as pushed (`pushed`, push_built_image's descriptor: its layers
/// compressed; none: as stored), the names, layers, steps, `summary`
/// (build_summary), the layer report's numbers (`report`, without its
/// treemap) and the warnings. A multi-platform build passes the image index
/// it committed as `index`: the containerimage descriptor is then the
/// index's (as pushed, or as stored) and there is no config digest, as in
/// buildx's metadata; the imgbuild.* fields stay those of `built`.
Result<nlohmann::json> success_metadata(image::ImageStore& store, const BuiltImage& built,
                                        const std::optional<image::Descriptor>& pushed,
                                        const std::vector<image::Reference>& tags,
                                        const nlohmann::json& summary, const std::optional<nlohmann::json>& report,
                                        const std::vector<parser::CheckWarning>& warnings,
                                        const image::ImageRecord* index = nullptr);

/// Writes the metadata file of a failed build: "imgbuild.error" holds the
/// message, the Dockerfile line (when known) and the failing RUN's exit
/// code (when the failure is one), next to the warnings. The file is written
/// as util/output.hpp writes every output (a regular file replaced whole).
Result<void> write_failure_metadata(const std::string& path, const Error& error,
                            const std::vector<parser::CheckWarning>& warnings);

}  // namespace imgbuild::builder
