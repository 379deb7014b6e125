#pragma once
// UniqueFd: an owned file descriptor, closed when the owner goes away.

#include <unistd.h>

#include <utility>

namespace imgbuild {

/// Owns one file descriptor (or none, -1) and closes it on destruction.
class UniqueFd {
public:
  UniqueFd() = default;
  /// Takes ownership of fd (may be -1).
  explicit UniqueFd(int fd) : m_fd(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& o) noexcept : m_fd(std::exchange(o.m_fd, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset(std::exchange(o.m_fd, -1));
    }
    return *this;
  }

  /// The descriptor, still owned.
  int get() const { return m_fd; }
  /// True when a descriptor is held.
  bool valid() const { return m_fd >= 0; }
  explicit operator bool() const { return valid(); }
  /// Gives up ownership and returns the descriptor.
  int release() { return std::exchange(m_fd, -1); }
  /// Closes the held descriptor (if any) and takes fd instead.
  void reset(int fd = -1) {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
    m_fd = fd;
  }

private:
  int m_fd = -1;
};

}  // namespace imgbuild
