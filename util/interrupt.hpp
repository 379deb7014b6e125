#pragma once
// Emergency cleanup on SIGINT, SIGTERM and SIGHUP.
//
// Code that holds resources the kernel does not release when imgbuild dies —
// a sandbox process tree, an overlay mount — registers them here for as long
// as it holds them. When one of those signals arrives, the handler kills the
// registered processes (SIGKILL), lazily unmounts the registered mount points
// (only async-signal-safe system calls), restores the default disposition and
// re-raises the signal, so imgbuild still dies of it with the usual status.
// Directories left behind are reclaimed by the next run (see the snapshotter's
// mount records). A fixed table of slots keeps the handler free of locks and
// allocation; when it is full a registration is a no-op (the records remain).

#include <sys/types.h>

#include <string>

namespace imgbuild::interrupt {

/// Installs the handler for each of SIGINT, SIGTERM and SIGHUP whose
/// disposition is the default one (an ignored signal or another handler is
/// left alone). Called by the sandbox and the snapshotters before they
/// acquire anything; cheap and idempotent.
void install_handlers();

/// Runs every registered emergency action now (for a caller that installs its
/// own signal handler). Async-signal-safe.
void run_emergency_actions() noexcept;

/// A registered emergency action; unregisters itself when destroyed.
class Registration {
public:
  Registration() = default;
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  /// Takes over other's slot.
  Registration(Registration&& other) noexcept : m_slot(other.m_slot) { other.m_slot = -1; }
  /// Releases the current slot and takes over other's.
  Registration& operator=(Registration&& other) noexcept;
  ~Registration() { release(); }

  /// Unregisters now (the action will no longer run).
  void release() noexcept;
  /// True when a slot was obtained.
  bool active() const { return m_slot >= 0; }

private:
  friend Registration kill_on_interrupt(pid_t pid);
  friend Registration unmount_on_interrupt(const std::string& path);
  friend Registration unlink_on_interrupt(const std::string& path);
  explicit Registration(int slot) : m_slot(slot) {}
  int m_slot = -1;
};

/// SIGKILLs pid if imgbuild is interrupted while the registration lives.
Registration kill_on_interrupt(pid_t pid);

/// Lazily unmounts path (umount2 MNT_DETACH) if imgbuild is interrupted while
/// the registration lives. Paths of PATH_MAX or more are not registered.
Registration unmount_on_interrupt(const std::string& path);

/// Removes the file at path (unlink) if imgbuild is interrupted while the
/// registration lives: a temporary file that must not outlive the process.
/// Paths of PATH_MAX or more are not registered.
Registration unlink_on_interrupt(const std::string& path);

}  // namespace imgbuild::interrupt
