#pragma once
// Progress renderers for builds: plain (BuildKit's `--progress=plain` lines),
// tty (a compact live view on a terminal), quiet and rawjson (one JSON event
// per line). All write to stderr and serialise their output.

#include <memory>
#include <string>

#include "builder/events.hpp"

namespace imgbuild::cli {

/// Creates the renderer for --progress MODE ("auto" picks tty on a terminal,
/// plain otherwise). Throws CommandError for an unknown mode.
std::unique_ptr<builder::ProgressSink> make_progress(const std::string& mode);

}  // namespace imgbuild::cli
