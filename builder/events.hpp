#pragma once
// Progress events: every build step reports started, output lines, cached,
// finished and failed to a ProgressSink. Renderers (plain, tty, quiet,
// rawjson) live in cli/; the builder only emits. Sinks are called from
// several threads (parallel stages) and must serialise themselves.

#include <cstdint>
#include <string>
#include <string_view>

namespace imgbuild::builder {

/// Which stream an output line came from.
enum class OutputStream { stdout_, stderr_ };

/// One step as progress shows it.
struct StepInfo {
  /// Sequence number in the build, from 1 (BuildKit's #N).
  int id = 0;
  /// "[base 2/3] RUN echo hi", "[internal] load build definition", …
  std::string name;
  /// Dockerfile line of the instruction (0 for internal steps).
  int line = 0;
};

/// Receives progress events.
class ProgressSink {
public:
  virtual ~ProgressSink() = default;
  /// A step began.
  virtual void started(const StepInfo& step) = 0;
  /// A line of output of a running step (never clipped).
  virtual void output(const StepInfo& step, OutputStream stream, std::string_view line) = 0;
  /// A note about the step from the builder, not from the step's process
  /// ("cache miss: …"): never part of the step's output.
  virtual void note(const StepInfo& step, std::string_view text) = 0;
  /// The step's result came from the cache.
  virtual void cached(const StepInfo& step) = 0;
  /// The step finished after `seconds`.
  virtual void finished(const StepInfo& step, double seconds) = 0;
  /// The step failed with `message`.
  virtual void failed(const StepInfo& step, double seconds, std::string_view message) = 0;
};

/// A sink that drops everything.
class NullProgress final : public ProgressSink {
public:
  void started(const StepInfo&) override {}
  void output(const StepInfo&, OutputStream, std::string_view) override {}
  void note(const StepInfo&, std::string_view) override {}
  void cached(const StepInfo&) override {}
  void finished(const StepInfo&, double) override {}
  void failed(const StepInfo&, double, std::string_view) override {}
};

}  // namespace imgbuild::builder
