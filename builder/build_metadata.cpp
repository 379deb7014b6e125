#include "builder/build_metadata.hpp"

#include <regex>

#include "builder/build_checks.hpp"
#include "util/output.hpp"

namespace imgbuild::builder {

nlohmann::json warnings_json(const std::vector<parser::CheckWarning>& warnings) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& w : warnings) {
    out.push_back({{"rule", w.rule}, {"message", w.message}, {"line", w.line}, {"url", check_rule_url(w.rule)}});
  }
  return out;
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
