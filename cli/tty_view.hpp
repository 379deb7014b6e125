#pragma once
// The live terminal view of a build (`--progress tty`, and `auto` on a
// terminal), with no library beyond ANSI escapes:
//  - at the bottom, a live area redrawn in place: a "[+] Building 3.2s
//    (4/6)" header, then each running step with its timer and its last few
//    output lines (" => > line");
//  - above it, finished steps collapsed to one line each, written once:
//    " => [base 2/3] RUN make                                  1.2s",
//    " => CACHED [base 1/3] …", " => ERROR [base 3/3] RUN …  0.2s" followed
//    by the failed step's last output lines in BuildKit's "------" block;
//    a builder note on a step (" => # cache miss: …") is a dimmed line
//    under the step's own line.
// Each redraw moves the cursor up over the previous live area, clears to
// the end of the screen, writes the newly finished lines and the new live
// area. Every line is cut to the terminal width so the line count is exact.
// When the build ends (success or failure) done() replaces the live area
// with BuildKit's closing header, "[+] Building 1.2s (8/8) FINISHED"; the
// step lines are already above it, so it is the last line of the view.
//
// TtyView holds the state and renders it to a TerminalSink; the caller
// serialises calls and supplies the clock, so tests drive it with a fake
// terminal and fake times.

#include <cstddef>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "builder/events.hpp"

namespace imgbuild::cli {

/// Where the view writes: a terminal, or a fake one in tests.
class TerminalSink {
public:
  virtual ~TerminalSink() = default;
  /// Writes bytes (text and ANSI escapes).
  virtual void write(std::string_view bytes) = 0;
  /// The terminal's width in columns.
  virtual int width() const = 0;
};

/// The live view's state and rendering.
class TtyView {
public:
  /// `tail_lines`: output lines shown under each running step.
  explicit TtyView(TerminalSink& term, size_t tail_lines = 6);

  /// Progress events; `now` is seconds on any monotonic clock.
  void started(const builder::StepInfo& step, double now);
  void output(const builder::StepInfo& step, std::string_view line, double now);
  /// A builder note on a step ("cache miss: …"): dimmed, under the step's
  /// line (live and finished), never among its output lines.
  void note(const builder::StepInfo& step, std::string_view text, double now);
  void cached(const builder::StepInfo& step, double now);
  void finished(const builder::StepInfo& step, double seconds, double now);
  void failed(const builder::StepInfo& step, double seconds, std::string_view message, double now);

  /// The build ended: writes what is pending and the FINISHED header in
  /// place of the live area (no header when no step ever started). Later
  /// calls (and events) write nothing.
  void done(double now);

  /// Redraws the live area (timers move on); cheap when nothing runs.
  void redraw(double now);
  /// True while some step runs (the caller's ticker redraws then).
  bool running() const { return !m_running.empty(); }
  /// Lines the live area occupies on screen now.
  size_t live_lines() const { return m_live_lines; }

private:
  struct Running {
    builder::StepInfo step;
    double started = 0;
    std::deque<std::string> tail;
    std::string note;
  };

  // The dimmed line of a note.
  std::string note_line(std::string_view note) const;

  std::string fit(std::string_view text) const;
  std::string with_time(std::string_view left, double seconds) const;

  TerminalSink& m_term;
  size_t m_tail_lines;
  std::map<int, Running> m_running;  // by step id: display order
  std::vector<std::string> m_pending;  // finished lines not yet written
  size_t m_live_lines = 0;
  double m_first = -1;
  int m_done = 0;
  int m_seen = 0;
  bool m_finished = false;
};

/// One output line made safe for the live view: text after the last \r,
/// control characters (escapes included) replaced by spaces, tabs expanded.
std::string sanitize_terminal_line(std::string_view line);

}  // namespace imgbuild::cli
