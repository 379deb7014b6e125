#include "cli/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/tty_view.hpp"

namespace imgbuild::cli {

namespace {

using builder::OutputStream;
using builder::StepInfo;
using Clock = std::chrono::steady_clock;

// BuildKit's plain output: "#N name", "#N 0.123 line", "#N DONE 0.2s", a
// blank line between steps (none after the last, so what follows the build
// starts after exactly one). A failed step is followed by BuildKit's block
// with its last output lines: "------", " > name:", "0.123 line", "------".
class PlainProgress final : public builder::ProgressSink {
public:
  explicit PlainProgress(bool timestamps) : m_timestamps(timestamps) {}
  void started(const StepInfo& step) override {
    std::lock_guard lock(m_mu);
    m_start[step.id] = Clock::now();
    separate();
    std::fprintf(stderr, "#%d %s\n", step.id, step.name.c_str());
    std::fflush(stderr);
  }
  void output(const StepInfo& step, OutputStream, std::string_view line) override {
    std::lock_guard lock(m_mu);
    std::string text(line);
    if (m_timestamps) {
      double t = std::chrono::duration<double>(Clock::now() - m_start[step.id]).count();
      text = fmt::format("{:.3f} {}", t, line);
    }
    std::fprintf(stderr, "#%d %s\n", step.id, text.c_str());
    std::fflush(stderr);
    std::deque<std::string>& tail = m_tail[step.id];
    tail.push_back(std::move(text));
    if (tail.size() > k_error_lines) {
      tail.pop_front();
    }
  }
  // A note is the builder's, not the step's: no timestamp, and not kept
  // for the failed step's output block.
  void note(const StepInfo& step, std::string_view text) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "#%d %.*s\n", step.id, static_cast<int>(text.size()), text.data());
    std::fflush(stderr);
  }
  void cached(const StepInfo& step) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "#%d CACHED\n", step.id);
    m_blank = true;
    m_tail.erase(step.id);
  }
  void finished(const StepInfo& step, double seconds) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "#%d DONE %.1fs\n", step.id, seconds);
    std::fflush(stderr);
    m_blank = true;
    m_tail.erase(step.id);
  }
  void failed(const StepInfo& step, double seconds, std::string_view message) override {
    std::lock_guard lock(m_mu);
    std::fprintf(stderr, "#%d ERROR: %.*s\n", step.id, static_cast<int>(message.size()), message.data());
    (void)seconds;
    std::string block = fmt::format("------\n > {}:\n", step.name);
    for (const auto& l : m_tail[step.id]) {
      block += l + "\n";
    }
    block += "------\n";
    std::fputs(block.c_str(), stderr);
    std::fflush(stderr);
    m_tail.erase(step.id);
  }

private:
  // BuildKit keeps this many lines of a failed step for its error block.
  static constexpr size_t k_error_lines = 10;

  void separate() {
    if (m_blank) {
      std::fputc('\n', stderr);
      m_blank = false;
    }
  }

  bool m_timestamps;
  bool m_blank = false;
  std::mutex m_mu;
  std::map<int, Clock::time_point> m_start;
  std::map<int, std::deque<std::string>> m_tail;
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
  void note(const StepInfo& step, std::string_view text) override {
    emit({{"event", "note"}, {"id", step.id}, {"text", std::string(text)}});
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

// The live terminal view (cli/tty_view.hpp) on stderr, redrawn on every
// event and by a ticker thread every 100 ms while steps run (timers move).
class StderrTerminal final : public TerminalSink {
public:
  void write(std::string_view bytes) override {
    std::fwrite(bytes.data(), 1, bytes.size(), stderr);
    std::fflush(stderr);
  }
  int width() const override {
    struct winsize ws {};
    if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
      return ws.ws_col;
    }
    return 80;
  }
};

class TtyProgress final : public builder::ProgressSink {
public:
  TtyProgress() : m_view(m_term), m_epoch(Clock::now()) {
    m_ticker = std::thread([this] { tick(); });
  }
  ~TtyProgress() override {
    {
      std::lock_guard lock(m_mu);
      m_stop = true;
    }
    m_cv.notify_all();
    m_ticker.join();
    std::lock_guard lock(m_mu);
    m_view.done(now());
  }
  TtyProgress(const TtyProgress&) = delete;
  TtyProgress& operator=(const TtyProgress&) = delete;

  void started(const StepInfo& step) override {
    std::lock_guard lock(m_mu);
    m_view.started(step, now());
    m_cv.notify_all();
  }
  void output(const StepInfo& step, OutputStream, std::string_view line) override {
    std::lock_guard lock(m_mu);
    m_view.output(step, line, now());
  }
  void note(const StepInfo& step, std::string_view text) override {
    std::lock_guard lock(m_mu);
    m_view.note(step, text, now());
  }
  void cached(const StepInfo& step) override {
    std::lock_guard lock(m_mu);
    m_view.cached(step, now());
  }
  void finished(const StepInfo& step, double seconds) override {
    std::lock_guard lock(m_mu);
    m_view.finished(step, seconds, now());
  }
  void failed(const StepInfo& step, double seconds, std::string_view message) override {
    std::lock_guard lock(m_mu);
    m_view.failed(step, seconds, message, now());
  }

private:
  double now() const { return std::chrono::duration<double>(Clock::now() - m_epoch).count(); }
  void tick() {
    std::unique_lock lock(m_mu);
    while (!m_stop) {
      m_cv.wait_for(lock, std::chrono::milliseconds(100));
      if (!m_stop && m_view.running()) {
        m_view.redraw(now());
      }
    }
  }

  StderrTerminal m_term;
  std::mutex m_mu;
  std::condition_variable m_cv;
  TtyView m_view;
  Clock::time_point m_epoch;
  bool m_stop = false;
  std::thread m_ticker;
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
    return std::make_unique<builder::NullProgress>();
  }
  if (mode == "rawjson") {
    return std::make_unique<JsonProgress>();
  }
  throw CommandError{fmt::format("invalid progress mode \"{}\": use auto, plain, tty, quiet or rawjson", mode), 2};
}

}  // namespace imgbuild::cli
