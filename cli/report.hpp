#pragma once
// The layer report of `imgbuild history --analyze IMAGE` and `imgbuild
// build --report FILE.html|-`: one JSON model (what --metadata-file gets as
// "imgbuild.report") rendered as text or as one self-contained HTML page
// (inline style and script, no network) with a treemap of the final
// filesystem by layer. image/analyze.hpp computes the layer numbers; a
// build adds its steps (time, cache hit or miss and why) and the critical
// path of its stage graph.

#include <string>

#include <nlohmann/json.hpp>

#include "builder/executor.hpp"
#include "image/analyze.hpp"

namespace imgbuild::cli {

/// The report model of an image: `analysis` of the image `image_id` (named
/// `name`, "" for none); `build`, when given, adds the steps and the
/// critical path.
nlohmann::json report_model(const image::ImageAnalysis& analysis, const std::string& image_id,
                            const std::string& name, const builder::BuiltImage* build);

/// The critical path of a build's stage graph: from the target back through,
/// at each stage, the stage it needed that finished last. Stage names,
/// first to run first, with each stage's own time.
nlohmann::json critical_path(const builder::BuiltImage& build);

/// The text form (history --analyze, --report -).
std::string report_text(const nlohmann::json& model);

/// The HTML page (--report FILE.html).
std::string report_html(const nlohmann::json& model);

}  // namespace imgbuild::cli
