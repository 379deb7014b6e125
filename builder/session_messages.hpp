#pragma once
// The lines a build session has for its user besides the step progress:
// pulls, pushes, cache imports and exports, warnings. The library words
// them; the command line decides where they go (cli: stderr).

#include <functional>
#include <string>

namespace imgbuild::builder {

/// Receives one whole line for the user, without its newline. It may be
/// called from several threads at once: the sink serializes. Null: the
/// lines are dropped (quiet).
using MessageSink = std::function<void(const std::string& line)>;

}  // namespace imgbuild::builder
