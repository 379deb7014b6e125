#include "util/interrupt.hpp"

#include <linux/limits.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>

namespace imgbuild::interrupt {

namespace {

enum SlotState : int { k_free = 0, k_filling = 1, k_active = 2 };
enum class Kind : int { kill, unmount, unlink };

struct Slot {
  std::atomic<int> state{k_free};
  Kind kind = Kind::kill;
  pid_t pid = 0;
  char path[PATH_MAX] = {};
};

constexpr size_t k_slots = 256;
std::array<Slot, k_slots> g_slots;
std::mutex g_install_mutex;

void handle_signal(int sig) {
  run_emergency_actions();
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  raise(sig);
}

int claim_slot() {
  for (size_t i = 0; i < k_slots; ++i) {
    int expected = k_free;
    if (g_slots[i].state.compare_exchange_strong(expected, k_filling)) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

}  // namespace

void install_handlers() {
  std::lock_guard<std::mutex> lock(g_install_mutex);
  struct sigaction sa {};
  sa.sa_handler = handle_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    sigaction(sig, nullptr, &old);
    // Only where the default action would kill us without cleanup: an ignored
    // signal (nohup) stays ignored, and someone else's handler is kept (it
    // is expected to call run_emergency_actions).
    if ((old.sa_flags & SA_SIGINFO) == 0 && old.sa_handler == SIG_DFL) {
      sigaction(sig, &sa, nullptr);
    }
  }
}

void run_emergency_actions() noexcept {
  // Kill processes first so that nothing keeps a mount busy, then unmount.
  for (Slot& s : g_slots) {
    if (s.state.load() == k_active && s.kind == Kind::kill && s.pid > 0) {
      kill(s.pid, SIGKILL);
    }
  }
  for (Slot& s : g_slots) {
    if (s.state.load() == k_active && s.kind == Kind::unmount) {
      umount2(s.path, MNT_DETACH);
    }
  }
  for (Slot& s : g_slots) {
    if (s.state.load() == k_active && s.kind == Kind::unlink) {
      unlink(s.path);
    }
  }
}

Registration& Registration::operator=(Registration&& other) noexcept {
  if (this != &other) {
    release();
    m_slot = other.m_slot;
    other.m_slot = -1;
  }
  return *this;
}

void Registration::release() noexcept {
  if (m_slot >= 0) {
    g_slots[static_cast<size_t>(m_slot)].state.store(k_free);
    m_slot = -1;
  }
}

Registration kill_on_interrupt(pid_t pid) {
  int slot = claim_slot();
  if (slot < 0) {
    return Registration{};
  }
  Slot& s = g_slots[static_cast<size_t>(slot)];
  s.kind = Kind::kill;
  s.pid = pid;
  s.state.store(k_active);
  return Registration{slot};
}

namespace {

int claim_path_slot(Kind kind, const std::string& path) {
  if (path.size() >= PATH_MAX) {
    return -1;
  }
  int slot = claim_slot();
  if (slot < 0) {
    return -1;
  }
  Slot& s = g_slots[static_cast<size_t>(slot)];
  s.kind = kind;
  std::memcpy(s.path, path.c_str(), path.size() + 1);
  s.state.store(k_active);
  return slot;
}

}  // namespace

Registration unmount_on_interrupt(const std::string& path) {
  return Registration{claim_path_slot(Kind::unmount, path)};
}

Registration unlink_on_interrupt(const std::string& path) {
  return Registration{claim_path_slot(Kind::unlink, path)};
}

}  // namespace imgbuild::interrupt
