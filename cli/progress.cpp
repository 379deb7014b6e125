#include "cli/progress.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"

namespace imgbuild::cli {

namespace {

using builder::OutputStream;
using builder::StepInfo;
using Clock = std::chrono::steady_clock;

// BuildKit's plain output: "#N name", "#N 0.123 line", "#N DONE 0.2s".
class PlainProgress final : public builder::ProgressSink {
public:
  explicit PlainProgress(bool timestamps) : m_timestamps(timestamps) {}
  void started(const StepInfo& step) override {
    std::lock_guard lock(m_mu);
    m_start[step.id] = Clock::now();
    std::fprintf(stderr, "#%d %s\n", step.id, step.name.c_str());
    std::fflush(stderr);
  }
  void output(const StepInfo& step, OutputStream, std::string_view line) override {
    std::lock_guard lock(m_mu);
    if (m_timestamps) {
      double t = std::chrono::duration<double>(Clock::now() - m_start[step.id]).count();
      std::fprintf(stderr, "#%d %.3f %.*s\n", step.id, t, static_cast<int>(line.size()), line.data());
    } else {
      std::fprintf(stderr, "#%d %.*s\n", step.id, static_cast<int>(line.size()), line.data());
    }
    std::fflush(stderr);
  }
  void cached(const StepInfo& step) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "#%d CACHED\n\n", step.id);
  }
  void finished(const StepInfo& step, double seconds) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "#%d DONE %.1fs\n\n", step.id, seconds);
    std::fflush(stderr);
  }
  void failed(const StepInfo& step, double seconds, std::string_view message) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "#%d ERROR: %.*s\n", step.id, static_cast<int>(message.size()), message.data());
    (void)seconds;
    std::fflush(stderr);
  }

private:
  bool m_timestamps;
  std::mutex m_mu;
  std::map<int, Clock::time_point> m_start;
};

class QuietProgress final : public builder::ProgressSink {
public:
  void started(const StepInfo&) override {}
  void output(const StepInfo&, OutputStream, std::string_view) override {}
  void cached(const StepInfo&) override {}
  void finished(const StepInfo&, double) override {}
  void failed(const StepInfo&, double, std::string_view) override {}
};

// One JSON object per event.
class JsonProgress final : public builder::ProgressSink {
public:
  void started(const StepInfo& step) override { emit({{"event", "started"}, {"id", step.id}, {"name", step.name}}); }
  void output(const StepInfo& step, OutputStream s, std::string_view line) override {
    emit({{"event", "output"},
          {"id", step.id},
          {"stream", s == OutputStream::stdout_ ? "stdout" : "stderr"},
          {"line", std::string(line)}});
  }
  void cached(const StepInfo& step) override { emit({{"event", "cached"}, {"id", step.id}}); }
  void finished(const StepInfo& step, double seconds) override {
    emit({{"event", "finished"}, {"id", step.id}, {"seconds", seconds}});
  }
  void failed(const StepInfo& step, double seconds, std::string_view message) override {
    emit({{"event", "failed"}, {"id", step.id}, {"seconds", seconds}, {"error", std::string(message)}});
  }

private:
  void emit(const nlohmann::json& j) {
    std::lock_guard lock(m_mu);
    std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::fprintf(stderr, "%s\n", s.c_str());
    std::fflush(stderr);
  }
  std::mutex m_mu;
};

// A compact terminal view: one line per step as it starts and ends, with the
// running step's output indented under it.
class TtyProgress final : public builder::ProgressSink {
public:
  void started(const StepInfo& step) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "\033[34m => %s\033[0m\n", step.name.c_str());
    std::fflush(stderr);
  }
  void output(const StepInfo&, OutputStream, std::string_view line) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "    %.*s\n", static_cast<int>(line.size()), line.data());
    std::fflush(stderr);
  }
  void cached(const StepInfo& step) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, " => CACHED %s\n", step.name.c_str());
  }
  void finished(const StepInfo& step, double seconds) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, " => %s \033[2m%.1fs\033[0m\n", step.name.c_str(), seconds);
    std::fflush(stderr);
  }
  void failed(const StepInfo& step, double seconds, std::string_view message) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "\033[31m => ERROR %s %.1fs: %.*s\033[0m\n", step.name.c_str(), seconds,
                 static_cast<int>(message.size()), message.data());
    std::fflush(stderr);
  }

private:
  std::mutex m_mu;
};

}  // namespace

std::unique_ptr<builder::ProgressSink> make_progress(const std::string& mode) {
  if (mode == "auto") {
    return ::isatty(STDERR_FILENO) != 0 ? make_progress("tty") : make_progress("plain");
  }
  if (mode == "plain") {
    return std::make_unique<PlainProgress>(true);
  }
  if (mode == "tty") {
    return std::make_unique<TtyProgress>();
  }
  if (mode == "quiet" || mode == "none") {
    return std::make_unique<QuietProgress>();
  }
  if (mode == "rawjson") {
    return std::make_unique<JsonProgress>();
  }
  throw CommandError{fmt::format("invalid progress mode \"{}\": use auto, plain, tty, quiet or rawjson", mode), 2};
}

}  // namespace imgbuild::cli
