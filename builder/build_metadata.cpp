#include "builder/build_metadata.hpp"

#include <regex>

#include "builder/build_checks.hpp"
#include "util/output.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

nlohmann::json warnings_json(const std::vector<parser::CheckWarning>& warnings) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& w : warnings) {
    out.push_back({{"rule", w.rule}, {"message", w.message}, {"line", w.line}, {"url", check_rule_url(w.rule)}});
  }
  return out;
}

nlohmann::json build_summary(const BuiltImage& built, double seconds, int64_t image_size) {
  return build_summary(std::span<const BuiltImage>(&built, 1), seconds, image_size);
}

nlohmann::json build_summary(std::span<const BuiltImage> built, double seconds, int64_t image_size) {
  int run = 0;
  int cached = 0;
  int64_t written = 0;
  for (const auto& img : built) {
    for (const auto& s : img.steps) {
      if (s.cached) {
        ++cached;
      } else {
        ++run;
        written += s.layer_bytes;
      }
    }
  }
  return {{"seconds", seconds}, {"steps_run", run}, {"steps_cached", cached}, {"bytes_written", written},
          {"image_size", image_size}};
}

Result<nlohmann::json> success_metadata(image::ImageStore& store, const BuiltImage& built,
                                        const std::optional<image::Descriptor>& pushed,
                                        const std::vector<image::Reference>& tags,
                                        const nlohmann::json& summary, const std::optional<nlohmann::json>& report,
                                        const std::vector<parser::CheckWarning>& warnings,
                                        const image::ImageRecord* index) {
  nlohmann::json md;
  std::string digest = built.manifest_digest;
  uint64_t size = built.manifest_bytes.size();
  std::string media_type = built.record.media_type;
  if (index != nullptr) {
    digest = index->manifest_digest;
    TRY(size, store.content().size(digest));
    media_type = index->media_type;
  } else {
    md["containerimage.config.digest"] = built.config_digest;
  }
  if (pushed) {
    digest = pushed->digest;
    size = static_cast<uint64_t>(pushed->size);
    media_type = pushed->media_type;
  }
  md["containerimage.digest"] = digest;
  md["containerimage.descriptor"] = {{"mediaType", media_type}, {"digest", digest}, {"size", size}};
  std::vector<std::string> names;
  for (const auto& t : tags) {
    names.push_back(t.str());
  }
  if (!names.empty()) {
    md["image.name"] = str::join(names, ",");
  }
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : built.layers) {
    layers.push_back({{"digest", l.blob_digest}, {"size", l.blob_size}, {"diff_id", l.diff_id}});
  }
  md["imgbuild.layers"] = layers;
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : built.steps) {
    nlohmann::json js = {{"name", s.name}, {"line", s.line}, {"duration", s.seconds}, {"cached", s.cached}};
    if (!s.cached) {
      js["cache_reason"] = s.cache_reason;
    } else {
      js["cache_source"] = s.cache_source.empty() ? "local" : s.cache_source;
    }
    if (!s.layer_digest.empty()) {
      js["layer"] = s.layer_digest;
    }
    steps.push_back(js);
  }
  md["imgbuild.steps"] = steps;
  md["imgbuild.summary"] = summary;
  if (report) {
    nlohmann::json numbers = *report;
    numbers.erase("treemap");  // every file of the image: the page's, not the metadata's
    md["imgbuild.report"] = numbers;
  }
  md["imgbuild.build.warnings"] = warnings_json(warnings);
  return md;
}

Result<void> write_failure_metadata(const std::string& path, const Error& error,
                            const std::vector<parser::CheckWarning>& warnings) {
  nlohmann::json err = {{"message", error.message}};
  if (error.location && error.location->line > 0) {
    err["line"] = error.location->line;
  }
  // The executor words a failed RUN as BuildKit does; the code ends it.
  static const std::regex k_exit_code(R"(did not complete successfully: exit code: (\d+)$)");
  std::smatch m;
  if (std::regex_search(error.message, m, k_exit_code)) {
    err["exit_code"] = std::stoi(m[1].str());
  }
  nlohmann::json md;
  md["imgbuild.error"] = err;
  md["imgbuild.build.warnings"] = warnings_json(warnings);
  return output::write_file(path, md.dump(2) + "\n");
}

}  // namespace imgbuild::builder
