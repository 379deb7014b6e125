#include "util/stats.hpp"

#include <algorithm>
#include <mutex>

#include <fmt/format.h>

namespace imgbuild::stats {

namespace {
struct Registry {
  std::mutex mutex;
  std::vector<Metric*> metrics;
};
Registry& registry() {
  static Registry r;
  return r;
}
}  // namespace

Metric::Metric(const char* name) : m_name(name) {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.metrics.push_back(this);
}

ScopedTimer::~ScopedTimer() {
  auto elapsed = std::chrono::steady_clock::now() - m_start;
  m_metric.add(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count()));
}

std::string report() {
  auto& r = registry();
  std::vector<Metric*> metrics;
  {
    std::lock_guard lock(r.mutex);
    metrics = r.metrics;
  }
  std::sort(metrics.begin(), metrics.end(),
            [](const Metric* a, const Metric* b) { return std::string(a->name()) < b->name(); });
  std::string out;
  for (const Metric* m : metrics) {
    if (m->value() != 0) {
      out += fmt::format("{} {}\n", m->name(), m->value());
    }
  }
  return out;
}

}  // namespace imgbuild::stats
