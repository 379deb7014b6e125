// The live tty view against a fake terminal that interprets the escapes the
// view uses (cursor up, clear to end of screen/line, colours), so the tests
// assert on what a user would see, with fake times.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "cli/tty_view.hpp"

using imgbuild::builder::StepInfo;
using imgbuild::cli::sanitize_terminal_line;
using imgbuild::cli::TerminalSink;
using imgbuild::cli::TtyView;

namespace {

// A screen of unbounded height: the cursor row moves with \n and ESC[nA;
// ESC[J clears from the cursor down, ESC[K to the end of the line; SGR
// colour codes are dropped. Anything else is a test failure.
class FakeTerminal final : public TerminalSink {
public:
  explicit FakeTerminal(int width) : m_width(width) {}
  void write(std::string_view bytes) override {
    ++writes;
    for (size_t i = 0; i < bytes.size(); ++i) {
      char c = bytes[i];
      if (c == '\x1b') {
        REQUIRE(i + 1 < bytes.size());
        REQUIRE(bytes[i + 1] == '[');
        size_t j = i + 2;
        int n = 0;
        bool has_n = false;
        while (j < bytes.size() && ((bytes[j] >= '0' && bytes[j] <= '9') || bytes[j] == ';')) {
          if (bytes[j] != ';') {
            n = n * 10 + (bytes[j] - '0');
            has_n = true;
          }
          ++j;
        }
        REQUIRE(j < bytes.size());
        char cmd = bytes[j];
        if (cmd == 'A') {
          m_row -= has_n ? n : 1;
          REQUIRE(m_row >= 0);
        } else if (cmd == 'J') {
          lines.resize(static_cast<size_t>(m_row));
          m_col = 0;
        } else if (cmd == 'K') {
          line().resize(std::min(line().size(), m_col));
        } else {
          REQUIRE(cmd == 'm');
        }
        i = j;
      } else if (c == '\r') {
        m_col = 0;
      } else if (c == '\n') {
        ++m_row;
        m_col = 0;
      } else {
        std::string& l = line();
        if (l.size() <= m_col) {
          l.resize(m_col, ' ');
          l += c;
        } else {
          l[m_col] = c;
        }
        ++m_col;
      }
    }
  }
  int width() const override { return m_width; }

  std::string& line() {
    if (lines.size() <= static_cast<size_t>(m_row)) {
      lines.resize(static_cast<size_t>(m_row) + 1);
    }
    return lines[static_cast<size_t>(m_row)];
  }
  /// The visible screen (trailing empty lines dropped).
  std::vector<std::string> screen() const {
    std::vector<std::string> out = lines;
    while (!out.empty() && out.back().empty()) {
      out.pop_back();
    }
    return out;
  }

  std::vector<std::string> lines;
  int writes = 0;

private:
  int m_width;
  int m_row = 0;
  size_t m_col = 0;
};

}  // namespace

TEST_CASE("tty view: running steps with timers and tails, finished steps collapse", "[cli]") {
  FakeTerminal term(60);
  TtyView view(term, 2);
  StepInfo a{1, "[base 1/2] RUN make", 2};
  StepInfo b{2, "[other 1/1] RUN test", 5};
  view.started(a, 10.0);
  view.started(b, 10.5);
  view.output(a, "compiling one", 11.0);
  view.output(a, "compiling two", 11.2);
  view.output(a, "compiling three", 11.4);
  view.output(b, "testing", 11.5);
  view.redraw(12.0);
  std::vector<std::string> s = term.screen();
  REQUIRE(s.size() == 6);
  CHECK(s[0] == "[+] Building 2.0s (0/2)");
  CHECK(s[1].starts_with(" => [base 1/2] RUN make"));
  CHECK(s[1].ends_with("2.0s"));
  CHECK(s[1].size() == 59);  // the timer sits at the right edge
  CHECK(s[2] == " => > compiling two");  // only the last two lines
  CHECK(s[3] == " => > compiling three");
  CHECK(s[4].ends_with("1.5s"));
  CHECK(s[5] == " => > testing");
  CHECK(view.live_lines() == 6);

  // A finishes: one line above the live area, its output gone.
  view.finished(a, 2.5, 12.5);
  s = term.screen();
  REQUIRE(s.size() == 4);
  CHECK(s[0].starts_with(" => [base 1/2] RUN make"));
  CHECK(s[0].ends_with("2.5s"));
  CHECK(s[1] == "[+] Building 2.5s (1/2)");
  CHECK(s[2].starts_with(" => [other 1/1] RUN test"));
  CHECK(s[3] == " => > testing");

  // B fails: its last lines are kept in an error block; nothing is live.
  view.failed(b, 3.0, "exit code: 1", 13.5);
  s = term.screen();
  CHECK(view.live_lines() == 0);
  CHECK_FALSE(view.running());
  REQUIRE(s.size() == 7);
  CHECK(s[1].starts_with(" => ERROR [other 1/1] RUN test"));
  CHECK(s[1].ends_with("3.0s"));
  CHECK(s[2] == "------");
  CHECK(s[3] == " > [other 1/1] RUN test:");
  CHECK(s[4] == "testing");
  CHECK(s[5] == "------");
  CHECK(s[6] == " exit code: 1");

  // Nothing running, nothing new: a redraw writes nothing.
  int before = term.writes;
  view.redraw(20.0);
  CHECK(term.writes == before);
}

TEST_CASE("tty view: cached steps, long lines cut to the width, timers tick", "[cli]") {
  FakeTerminal term(30);
  TtyView view(term);
  StepInfo c{1, "[s 1/2] COPY a b", 1};
  view.started(c, 0);
  view.cached(c, 0.1);
  StepInfo r{2, "[s 2/2] RUN a-very-long-command-line-that-does-not-fit", 2};
  view.started(r, 1.0);
  view.output(r, std::string(100, 'x'), 1.5);
  view.redraw(3.5);
  std::vector<std::string> s = term.screen();
  REQUIRE(s.size() == 4);
  CHECK(s[0] == " => CACHED [s 1/2] COPY a b");
  CHECK(s[1] == "[+] Building 3.5s (1/2)");
  CHECK(s[2].size() == 29);
  CHECK(s[2].ends_with(" 2.5s"));
  CHECK(s[3] == " => > " + std::string(23, 'x'));
  view.redraw(4.0);
  CHECK(term.screen()[2].ends_with(" 3.0s"));
  CHECK(term.screen().size() == 4);
}

TEST_CASE("tty view: output lines are made safe for the terminal", "[cli]") {
  CHECK(sanitize_terminal_line("progress 10%\rprogress 100%") == "progress 100%");
  CHECK(sanitize_terminal_line("a\tb") == "a       b");
  CHECK(sanitize_terminal_line("\x1b[31mred\x1b[0m") == " [31mred [0m");
  CHECK(sanitize_terminal_line("done\r\r") == "done");
}

TEST_CASE("tty view: the build's end replaces the live area with the FINISHED header", "[cli]") {
  FakeTerminal term(60);
  TtyView view(term);
  StepInfo a{1, "[s 1/2] COPY a b", 1};
  StepInfo b{2, "[s 2/2] RUN make", 2};
  view.started(a, 5.0);
  view.finished(a, 0.5, 5.5);
  view.started(b, 5.5);
  view.output(b, "building", 6.0);
  view.finished(b, 1.0, 6.5);
  view.done(6.7);
  std::vector<std::string> s = term.screen();
  REQUIRE(s.size() == 3);
  CHECK(s[0].starts_with(" => [s 1/2] COPY a b"));
  CHECK(s[1].starts_with(" => [s 2/2] RUN make"));
  CHECK(s[2] == "[+] Building 1.7s (2/2) FINISHED");
  CHECK(view.live_lines() == 0);

  // Once only: later redraws and a second done() write nothing.
  int before = term.writes;
  view.redraw(9.0);
  view.done(9.0);
  CHECK(term.writes == before);
}

TEST_CASE("tty view: a failed build ends with the FINISHED header too", "[cli]") {
  FakeTerminal term(60);
  TtyView view(term);
  StepInfo a{1, "[s 1/3] RUN true", 1};
  StepInfo b{2, "[s 2/3] RUN false", 2};
  StepInfo c{3, "[other 1/1] RUN sleep 9", 4};
  view.started(a, 0.0);
  view.finished(a, 0.2, 0.2);
  view.started(b, 0.2);
  view.started(c, 0.3);
  view.output(b, "oops", 0.4);
  view.failed(b, 0.3, "exit code: 1", 0.5);
  // The build stops while c still runs: the live area (c) goes away.
  view.done(0.6);
  std::vector<std::string> s = term.screen();
  REQUIRE(s.size() == 8);
  CHECK(s[1].starts_with(" => ERROR [s 2/3] RUN false"));
  CHECK(s[3] == " > [s 2/3] RUN false:");
  CHECK(s[4] == "oops");
  CHECK(s[7] == "[+] Building 0.6s (1/3) FINISHED");
  for (const auto& line : s) {
    CHECK(line.find("sleep 9") == std::string::npos);
  }
}

TEST_CASE("tty view: a build that stopped before its first step writes no header", "[cli]") {
  FakeTerminal term(60);
  TtyView view(term);
  view.done(3.0);
  CHECK(term.screen().empty());
  CHECK(term.writes == 0);
}
