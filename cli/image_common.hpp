#pragma once
// Helpers shared by the image command files (cmd_image.cpp, cmd_image_io.cpp,
// cmd_container.cpp).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "image/store.hpp"
#include "util/result.hpp"

namespace imgbuild::cli {

/// The value of a Result, or a CommandError carrying its message.
template <class T>
T unwrap(Result<T> r) {
  if (!r) {
    throw CommandError{r.error().to_string(), 1, r.error().code == Errc::no_space};
  }
  return std::move(r).value();
}
/// Throws a CommandError for a failed Result<void>.
inline void unwrap(Result<void> r) {
  if (!r) {
    throw CommandError{r.error().to_string(), 1, r.error().code == Errc::no_space};
  }
}

/// Opens the store at the context's root (--root, $IMGBUILD_ROOT, default);
/// commands that delete pass StoreUse::freeing (image/store.hpp).
std::unique_ptr<image::ImageStore> open_store(const Context& ctx, image::StoreUse use = image::StoreUse::normal);
/// Deletes unpacked layer directories under the store's snapshots/, for
/// ImageStore::remove and prune.
image::RemoveLayerDir layer_dir_remover(const image::ImageStore& store);
/// Parses an RFC 3339 time to unix seconds.
std::optional<int64_t> parse_rfc3339(const std::string& s);
/// docker's HumanDuration ("2 weeks", "About an hour").
std::string human_duration(int64_t seconds);
/// "<duration> ago" for an RFC 3339 time, "N/A" when unparsable.
std::string created_since(const std::string& created);
/// A size with three significant digits and SI units ("4.26MB").
std::string size3(int64_t bytes);
/// Rows laid out like Go's tabwriter(minwidth 10, padding 3).
std::string format_table(const std::vector<std::vector<std::string>>& rows);
/// The 12-hex-digit short form of a digest.
std::string short_id(const std::string& digest);
/// The platform a --platform flag names (inspect, history, run): none when
/// the flag is empty; a CommandError when it does not parse.
std::optional<image::Platform> platform_flag(const std::string& text);

/// The images kept containers were made from (cmd_container.cpp), for rmi
/// and prune to keep.
image::ImagesInUse images_in_use(const image::ImageStore& store);

/// Registers import, save and load (top level and under `image`).
void register_image_io_commands(CLI::App& app, CLI::App& image_cmd, Context& ctx);

}  // namespace imgbuild::cli
