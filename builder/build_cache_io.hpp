#pragma once
// A build's --cache-from SPEC… and --cache-to SPEC…: the specs parsed
// (builder/cache_io.hpp), the imports opened before the build, the exports
// written after it. Warnings are "WARNING: …" lines for the user.

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "builder/cache_io.hpp"
#include "builder/executor.hpp"
#include "builder/session_messages.hpp"
#include "image/store.hpp"

namespace imgbuild::builder {

/// The cache imports and exports of one build.
struct BuildCacheIo {
  /// Null when the build has neither --cache-from nor --cache-to.
  std::unique_ptr<builder::CacheIo> io;
  /// The --cache-to specs, in order.
  std::vector<builder::CacheSpec> exports;
};

/// Parses every spec (a bad one is an Errc::invalid_argument error with the
/// spec parser's message) and reads the imports (an unreadable one is a
/// warning). `warnings` gets the warnings of the imports, now and during
/// the build.
Result<BuildCacheIo> open_build_cache_io(const std::vector<std::string>& cache_from,
                                         const std::vector<std::string>& cache_to, const MessageSink& warnings);

/// Writes every --cache-to export of the finished build, whose images are
/// `built` (one per target platform: mode=min exports each one's chain); a
/// failure is an error naming the destination. Reports one line per export
/// to `messages`.
Result<void> export_build_cache(BuildCacheIo& cache, image::ImageStore& store, std::span<const BuiltImage> built,
                                const MessageSink& messages);

}  // namespace imgbuild::builder
