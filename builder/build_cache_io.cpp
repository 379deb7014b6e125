// --cache-from / --cache-to of `imgbuild build` (see build_cache_io.hpp).

#include "builder/build_cache_io.hpp"

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild::builder {

Result<BuildCacheIo> open_build_cache_io(const std::vector<std::string>& cache_from,
                                         const std::vector<std::string>& cache_to, const MessageSink& warnings) {
  BuildCacheIo out;
  std::vector<builder::CacheSpec> imports;
  for (const auto& s : cache_from) {
    auto spec = builder::parse_cache_spec(s, false);
    if (!spec) {
      return fail(Errc::invalid_argument, spec.error().message);
    }
    imports.push_back(*spec);
  }
  for (const auto& s : cache_to) {
    auto spec = builder::parse_cache_spec(s, true);
    if (!spec) {
      return fail(Errc::invalid_argument, spec.error().message);
    }
    out.exports.push_back(*spec);
  }
  if (imports.empty() && out.exports.empty()) {
    return out;
  }
  out.io = std::make_unique<builder::CacheIo>([warnings](const std::string& message) {
    if (warnings) {
      warnings("WARNING: " + message);
    }
  });
  for (const auto& spec : imports) {
    auto remote = builder::open_cache_remote(spec);
    if (!remote) {
      if (warnings) {
        warnings(fmt::format("WARNING: ignoring --cache-from {}: {}", str::go_quote(spec.location),
                             remote.error().message));
      }
      continue;
    }
    out.io->add_import(std::move(remote).value(), spec.mounts_max_size);
  }
  return out;
}

Result<void> export_build_cache(BuildCacheIo& cache, image::ImageStore& store, std::span<const BuiltImage> built,
                                const MessageSink& messages) {
  std::vector<std::string> target_keys;
  for (const auto& img : built) {
    target_keys.push_back(img.cache_key);
  }
  for (const auto& spec : cache.exports) {
    auto remote = builder::open_cache_remote(spec);
    if (!remote) {
      return fail(remote.error().code,
                  fmt::format("failed to export cache to {}: {}", spec.location, remote.error().message));
    }
    auto done = cache.io->export_to(**remote, spec, store, target_keys);
    if (!done) {
      return fail(done.error().code,
                  fmt::format("failed to export cache to {}: {}", spec.location, done.error().message));
    }
    if (messages) {
      messages(fmt::format("exported cache to {}: {} records, {} blobs ({} new){}", spec.location, done->records,
                           done->blobs, done->new_blobs,
                           done->mounts > 0 ? fmt::format(", {} cache mounts", done->mounts) : ""));
    }
  }
  return ok();
}

}  // namespace imgbuild::builder
