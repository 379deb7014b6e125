#pragma once
// Pieces of the --metadata-file JSON shared by a build's success and failure
// paths: the build-check warnings, and the record of a failed build.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "parser/checks.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// The warnings as "imgbuild.build.warnings" lists them (rule, message,
/// line, url).
nlohmann::json warnings_json(const std::vector<parser::CheckWarning>& warnings);

/// Writes the metadata file of a failed build: "imgbuild.error" holds the
/// message, the Dockerfile line (when known) and the failing RUN's exit
/// code (when the failure is one), next to the warnings. The file is written
/// as util/output.hpp writes every output (a regular file replaced whole).
Result<void> write_failure_metadata(const std::string& path, const Error& error,
                            const std::vector<parser::CheckWarning>& warnings);

}  // namespace imgbuild::builder
