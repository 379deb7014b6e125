#pragma once
// Process-wide counters and scoped timers, printed by `--debug stats`.
// Recording is cheap (an atomic add); nothing is formatted unless enabled.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace imgbuild::stats {

/// A named counter or accumulated duration; instances are static objects.
class Metric {
public:
  /// Registers the metric; name should be "module.what".
  explicit Metric(const char* name);
  void add(uint64_t n = 1) { m_value.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return m_value.load(std::memory_order_relaxed); }
  const char* name() const { return m_name; }

private:
  const char* m_name;
  std::atomic<uint64_t> m_value{0};
};

/// Adds the lifetime of the scope, in microseconds, to a Metric.
class ScopedTimer {
public:
  explicit ScopedTimer(Metric& m) : m_metric(m), m_start(std::chrono::steady_clock::now()) {}
  ~ScopedTimer();
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;

private:
  Metric& m_metric;
  std::chrono::steady_clock::time_point m_start;
};

/// "name value" lines for every metric with a non-zero value, sorted by name.
std::string report();

}  // namespace imgbuild::stats
