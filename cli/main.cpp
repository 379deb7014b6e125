// imgbuild: the executable is a thin layer over libimgbuild. main parses the
// command line, runs one command, and is the single place that turns errors
// into "imgbuild: error: …" and an exit status.

#include <cstdio>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "sandbox/userns.hpp"
#include "util/stats.hpp"

#ifndef IMGBUILD_VERSION
#define IMGBUILD_VERSION "0.0.0"
#endif

namespace {

using imgbuild::cli::Context;

const CLI::App* find_command(const CLI::App& app, const std::string& name) {
  for (const CLI::App* sub : app.get_subcommands({})) {
    if (sub->check_name(name)) {
      return sub;
    }
  }
  return nullptr;
}

// `imgbuild -f Dockerfile .` means `imgbuild build -f Dockerfile .`: when the
// first argument is neither a subcommand nor a global option, insert "build".
// Returns the arguments in order; *command is set to the command's name (""
// when there is none, or for --help/--version).
std::vector<std::string> with_default_command(const CLI::App& app, int argc, char** argv, std::string* command) {
  std::vector<std::string> args(argv + 1, argv + argc);
  static const std::set<std::string> k_globals = {"-h", "--help", "--version", "-v"};
  size_t i = 0;
  while (i < args.size()) {
    const std::string& a = args[i];
    if (a == "--root" || a == "--debug") {
      i += 2;
      continue;
    }
    if (a == "--root=") {
      // CLI11 would take the next argument as the value.
      throw imgbuild::cli::CommandError{"--root is empty: give the directory of the store", 1};
    }
    if (a.rfind("--root=", 0) == 0 || a.rfind("--debug=", 0) == 0) {
      ++i;
      continue;
    }
    break;
  }
  command->clear();
  if (i < args.size() && k_globals.count(args[i]) == 0) {
    if (find_command(app, args[i]) == nullptr && find_command(app, "build") != nullptr) {
      args.insert(args.begin() + static_cast<std::ptrdiff_t>(i), "build");
    }
    if (const CLI::App* sub = find_command(app, args[i])) {
      *command = sub->get_name();
    }
  }
  return args;
}

// Commands that read no store and run nothing need no user namespace.
bool runs_rootless(const std::string& command) {
  static const std::set<std::string> k_plain = {"", "help", "parse", "check", "login", "logout"};
  return k_plain.count(command) == 0;
}

}  // namespace

bool imgbuild::cli::Context::debug_enabled(const std::string& what) const {
  for (const auto& d : debug) {
    if (d == what) {
      return true;
    }
  }
  return false;
}

int main(int argc, char** argv) {
  Context ctx;
  CLI::App app{"imgbuild: a daemonless Dockerfile build engine and image toolkit", "imgbuild"};
  app.set_version_flag("--version", "imgbuild version " IMGBUILD_VERSION);
  app.require_subcommand(0, 1);
  app.add_option("--root", ctx.root, "Store root (default $IMGBUILD_ROOT, /var/lib/imgbuild as root)")
      ->each([](const std::string& value) {
        // An empty --root (an unset shell variable) must not fall back to
        // the default store.
        if (value.empty()) {
          throw imgbuild::cli::CommandError{"--root is empty: give the directory of the store", 1};
        }
      });
  app.add_option("--debug", ctx.debug, "Debug output: stats, cache-keys=DIR")->take_last();
  app.fallthrough();

  auto* help = app.add_subcommand("help", "Show help for imgbuild or one command");
  std::vector<std::string> help_topic;
  help->add_option("command", help_topic, "Command to describe");
  help->callback([&]() {
    if (!help_topic.empty()) {
      if (const CLI::App* sub = find_command(app, help_topic.front())) {
        std::fputs(sub->help().c_str(), stdout);
        return;
      }
      throw imgbuild::cli::CommandError{fmt::format("unknown command \"{}\"", help_topic.front()), 2};
    }
    std::fputs(app.get_formatter()->make_help(&app, "imgbuild", CLI::AppFormatMode::Normal).c_str(), stdout);
  });
  imgbuild::cli::register_image_commands(app, ctx);

  imgbuild::cli::register_parse_commands(app, ctx);
  imgbuild::cli::register_check_commands(app, ctx);
  imgbuild::cli::register_registry_commands(app, ctx);
  imgbuild::cli::register_manifest_commands(app, ctx);
  imgbuild::cli::register_container_commands(app, ctx);
  imgbuild::cli::register_build_commands(app, ctx);
  imgbuild::cli::register_cache_commands(app, ctx);
  imgbuild::cli::register_system_commands(app, ctx);

  try {
    std::string command;
    std::vector<std::string> args = with_default_command(app, argc, argv, &command);
    // A user who is not root runs in a user namespace of its own (rootless
    // mode); this must happen before anything starts a thread.
    if (runs_rootless(command)) {
      auto entered = imgbuild::sandbox::enter_rootless();
      if (!entered) {
        std::fprintf(stderr, "imgbuild: error: %s\n", entered.error().message.c_str());
        return 1;
      }
    }
    // CLI11 wants the arguments reversed when given as a vector.
    app.parse(std::vector<std::string>(args.rbegin(), args.rend()));
    if (app.get_subcommands().empty()) {
      std::fputs(app.help().c_str(), stdout);
    }
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const imgbuild::cli::CommandError& e) {
    std::string hint = e.no_space ? imgbuild::cli::no_space_hint(ctx.root) : "";
    std::fprintf(stderr, "imgbuild: error: %s%s\n", e.message.c_str(), hint.c_str());
    return e.status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "imgbuild: error: %s\n", e.what());
    return 1;
  }
  if (ctx.debug_enabled("stats")) {
    std::fputs(imgbuild::stats::report().c_str(), stderr);
  }
  return ctx.exit_code;
}
