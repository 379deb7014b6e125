#include "cli/tty_view.hpp"

#include <fmt/format.h>

namespace imgbuild::cli {

namespace {

// Display columns of UTF-8 text (one per code point; wide characters are
// rare in build logs and only make a line shorter than it could be).
size_t columns(std::string_view s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) {
      ++n;
    }
  }
  return n;
}

// The longest prefix of s taking at most `width` columns, whole code points.
std::string_view cut(std::string_view s, size_t width) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == width) {
        return s.substr(0, i);
      }
      ++n;
    }
  }
  return s;
}

}  // namespace

std::string sanitize_terminal_line(std::string_view line) {
  while (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  if (size_t cr = line.rfind('\r'); cr != std::string_view::npos) {
    line = line.substr(cr + 1);
  }
  std::string out;
  out.reserve(line.size());
  for (char c : line) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\t') {
      out.append(8 - columns(out) % 8, ' ');
    } else if (u < 0x20 || u == 0x7F) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

TtyView::TtyView(TerminalSink& term, size_t tail_lines) : m_term(term), m_tail_lines(tail_lines) {}

std::string TtyView::fit(std::string_view text) const {
  int w = m_term.width();
  size_t width = w > 1 ? static_cast<size_t>(w - 1) : 79;
  return std::string(cut(text, width));
}

// "left ……… 1.2s" with the time at the right edge of the terminal.
std::string TtyView::with_time(std::string_view left, double seconds) const {
  std::string t = fmt::format("{:.1f}s", seconds);
  int w = m_term.width();
  size_t width = w > 1 ? static_cast<size_t>(w - 1) : 79;
  if (width <= t.size() + 1) {
    return fit(left);
  }
  std::string l(cut(left, width - t.size() - 1));
  size_t pad = width - columns(l) - t.size();
  return l + std::string(pad, ' ') + t;
}

void TtyView::started(const builder::StepInfo& step, double now) {
  if (m_first < 0) {
    m_first = now;
  }
  ++m_seen;
  m_running[step.id] = Running{step, now, {}, {}};
  redraw(now);
}

void TtyView::output(const builder::StepInfo& step, std::string_view line, double now) {
  auto it = m_running.find(step.id);
  if (it == m_running.end()) {
    return;
  }
  it->second.tail.push_back(sanitize_terminal_line(line));
  while (it->second.tail.size() > m_tail_lines) {
    it->second.tail.pop_front();
  }
  redraw(now);
}

void TtyView::note(const builder::StepInfo& step, std::string_view text, double now) {
  auto it = m_running.find(step.id);
  if (it == m_running.end()) {
    return;
  }
  it->second.note = sanitize_terminal_line(text);
  redraw(now);
}

std::string TtyView::note_line(std::string_view note) const {
  return "\x1b[2m" + fit(" => # " + std::string(note)) + "\x1b[0m";
}

void TtyView::cached(const builder::StepInfo& step, double now) {
  m_running.erase(step.id);
  ++m_done;
  m_pending.push_back(fit(" => CACHED " + sanitize_terminal_line(step.name)));
  redraw(now);
}

void TtyView::finished(const builder::StepInfo& step, double seconds, double now) {
  std::string note;
  if (auto it = m_running.find(step.id); it != m_running.end()) {
    note = std::move(it->second.note);
    m_running.erase(it);
  }
  ++m_done;
  m_pending.push_back(with_time(" => " + sanitize_terminal_line(step.name), seconds));
  if (!note.empty()) {
    m_pending.push_back(note_line(note));
  }
  redraw(now);
}

void TtyView::failed(const builder::StepInfo& step, double seconds, std::string_view message, double now) {
  auto it = m_running.find(step.id);
  std::deque<std::string> tail;
  std::string note;
  if (it != m_running.end()) {
    tail = std::move(it->second.tail);
    note = std::move(it->second.note);
    m_running.erase(it);
  }
  std::string name = sanitize_terminal_line(step.name);
  m_pending.push_back(with_time(" => ERROR " + name, seconds));
  if (!note.empty()) {
    m_pending.push_back(note_line(note));
  }
  m_pending.push_back("------");
  m_pending.push_back(fit(" > " + name + ":"));
  for (const auto& l : tail) {
    m_pending.push_back(fit(l));
  }
  m_pending.push_back("------");
  // Appended, not `" " + rvalue`: GCC 12 at -O3 sees a false -Wrestrict
  // overlap there (GCC bug 105329).
  std::string last = " ";
  last += sanitize_terminal_line(message);
  m_pending.push_back(fit(last));
  redraw(now);
}

void TtyView::done(double now) {
  if (m_finished) {
    return;
  }
  m_running.clear();
  if (m_seen > 0) {
    // (A build that stopped before its first step, e.g. on a usage error,
    // never had a view to close.)
    m_pending.push_back(fit(fmt::format("[+] Building {:.1f}s ({}/{}) FINISHED", now - m_first, m_done, m_seen)));
  }
  redraw(now);
  m_finished = true;
}

void TtyView::redraw(double now) {
  if (m_finished || (m_pending.empty() && m_running.empty() && m_live_lines == 0)) {
    return;
  }
  std::string out;
  if (m_live_lines > 0) {
    // Back to the first line of the live area, then clear everything below.
    out += fmt::format("\r\x1b[{}A\x1b[J", m_live_lines);
  }
  for (const auto& l : m_pending) {
    out += l;
    out += "\x1b[K\n";
  }
  m_pending.clear();
  size_t lines = 0;
  if (!m_running.empty()) {
    out += fit(fmt::format("[+] Building {:.1f}s ({}/{})", now - m_first, m_done, m_seen));
    out += "\x1b[K\n";
    ++lines;
    for (const auto& [id, r] : m_running) {
      out += "\x1b[34m" + with_time(" => " + sanitize_terminal_line(r.step.name), now - r.started) + "\x1b[0m";
      out += "\x1b[K\n";
      ++lines;
      if (!r.note.empty()) {
        out += note_line(r.note) + "\x1b[K\n";
        ++lines;
      }
      for (const auto& l : r.tail) {
        out += "\x1b[2m" + fit(" => > " + l) + "\x1b[0m";
        out += "\x1b[K\n";
        ++lines;
      }
    }
  }
  m_live_lines = lines;
  m_term.write(out);
}

}  // namespace imgbuild::cli
