#pragma once
// A minimal COPY/ADD used by the executor until the full implementation
// (builder/copy.hpp, context and .dockerignore rules, ADD extraction, URLs,
// git) is wired in: local files, directories (contents copied), symlinks
// kept, Go-style wildcards in the last component, heredoc files, --chown
// (names resolved in the destination rootfs) and octal --chmod. Every path
// is resolved inside its root (util/fs).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "parser/ast.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// One COPY/ADD after expansion.
struct BasicCopyRequest {
  /// Host directory the sources are read from (context or a stage rootfs).
  std::string source_root;
  /// Source paths, expanded, relative to source_root.
  std::vector<std::string> sources;
  /// Heredoc sources: (file name, content).
  std::vector<std::pair<std::string, std::string>> inline_sources;
  /// Destination, expanded and made absolute (a trailing '/' kept).
  std::string dest;
  /// Host directory of the destination rootfs (a mounted view).
  std::string dest_root;
  /// --chown value, expanded ("" = 0:0).
  std::string chown;
  /// --chmod value, expanded ("" = keep).
  std::string chmod;
  /// Clamp for mtimes of heredoc files (SOURCE_DATE_EPOCH), else 0.
  int64_t heredoc_mtime = 0;
};

/// Runs one COPY/ADD into dest_root.
Result<void> basic_copy(const BasicCopyRequest& request);

}  // namespace imgbuild::builder
