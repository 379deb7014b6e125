#pragma once
// How subcommands plug into the imgbuild executable. Each cmd_*.cpp file
// defines one register_* function that adds its subcommands to the app and
// sets their callbacks; a callback stores its exit status in Context.

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace imgbuild::cli {

/// Options that every command sees, and the exit status of the one that ran.
struct Context {
  /// --root, else $IMGBUILD_ROOT, else the default store location.
  std::string root;
  /// --debug values ("stats", …).
  std::vector<std::string> debug;
  /// Exit status set by the command that ran.
  int exit_code = 0;

  bool debug_enabled(const std::string& what) const;
};

/// Thrown by commands for a user-facing failure; main prints
/// "imgbuild: error: <message>" and exits with `status`.
struct CommandError {
  std::string message;
  int status = 1;
  /// The filesystem of the store is full: main adds what prune could free.
  bool no_space = false;
};

/// For an error caused by a full store: "; `imgbuild image prune -a` can
/// free … and `imgbuild cache prune` …", measured in the store at
/// `root_flag` (as --root); "" when it cannot be measured.
std::string no_space_hint(const std::string& root_flag);


/// Each command family adds one line here and one register_* call in main.cpp.

/// `imgbuild parse`: Dockerfile syntax tree (cmd_parse.cpp).
void register_parse_commands(CLI::App& app, Context& ctx);

/// `imgbuild check`: build-check warnings (cmd_check.cpp).
void register_check_commands(CLI::App& app, Context& ctx);

/// The image commands: images, image …, inspect, history, tag, rmi, import, save, load.
void register_image_commands(CLI::App& app, Context& ctx);

/// `imgbuild build` (cli/cmd_build.cpp); `imgbuild -f Dockerfile .` maps to it.
void register_build_commands(CLI::App& app, Context& ctx);

/// login, logout (cli/cmd_registry.cpp).
void register_registry_commands(CLI::App& app, Context& ctx);
/// manifest create (cmd_manifest.cpp).
void register_manifest_commands(CLI::App& app, Context& ctx);
/// run, commit, ps, rm (cli/cmd_container.cpp).
void register_container_commands(CLI::App& app, Context& ctx);
/// cache ls, du, prune (cli/cmd_cache.cpp).
void register_cache_commands(CLI::App& app, Context& ctx);
/// system check (cli/cmd_system.cpp).
void register_system_commands(CLI::App& app, Context& ctx);

}  // namespace imgbuild::cli
