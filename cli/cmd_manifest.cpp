// imgbuild manifest create: joins single-platform images of the store into
// one multi-platform image (an OCI image index) under a name, as `docker
// manifest create` does for registry images; `imgbuild push NAME` then
// pushes every platform and the index.

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/image_common.hpp"
#include "image/index.hpp"
#include "image/reference.hpp"

namespace imgbuild::cli {

namespace {

void run_manifest_create(Context& ctx, const std::string& name, const std::vector<std::string>& sources) {
  image::Reference ref = unwrap(image::parse_reference(name));
  if (!ref.digest.empty()) {
    throw CommandError{fmt::format("refusing to name a multi-platform image with a digest reference: {}", name), 1};
  }
  auto store = open_store(ctx);
  std::vector<image::IndexEntry> entries;
  for (const auto& src : sources) {
    image::ImageRecord rec = unwrap(store->resolve_target(src));
    auto entry = image::index_entry_of(*store, rec);
    if (!entry) {
      throw CommandError{fmt::format("{}: {}", src, entry.error().message), 1};
    }
    entries.push_back(std::move(*entry));
  }
  image::CommittedIndex idx = unwrap(image::commit_index(*store, entries, {ref}));
  std::fputs((idx.digest + "\n").c_str(), stdout);
}

}  // namespace

void register_manifest_commands(CLI::App& app, Context& ctx) {
  auto* manifest = app.add_subcommand("manifest", "Manage multi-platform images (image indexes)");
  manifest->require_subcommand(1);
  auto name = std::make_shared<std::string>();
  auto sources = std::make_shared<std::vector<std::string>>();
  auto* create = manifest->add_subcommand(
      "create", "Name one multi-platform image made of single-platform images of the store (platforms from their configs)");
  create->add_option("name", *name, "Name of the multi-platform image")->required();
  create->add_option("images", *sources, "Single-platform images, one per platform, in index order")->required();
  create->callback([&ctx, name, sources] { run_manifest_create(ctx, *name, *sources); });
}

}  // namespace imgbuild::cli
