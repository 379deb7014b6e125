#include "registry/retry.hpp"

#include <ctime>
#include <string>
#include <thread>

#include "util/strings.hpp"

namespace imgbuild::registry {

Sleeper real_sleeper() {
  return [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
}

Clock real_clock() {
  return [] { return std::chrono::system_clock::now(); };
}

bool is_retryable_status(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

bool is_permanent_error_code(std::string_view code) {
  for (std::string_view c : {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "NAME_INVALID", "TAG_INVALID", "BLOB_UNKNOWN",
                             "MANIFEST_INVALID", "DIGEST_INVALID", "SIZE_INVALID", "UNAUTHORIZED", "DENIED",
                             "UNSUPPORTED"}) {
    if (code == c) {
      return true;
    }
  }
  return false;
}

std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now) {
  std::string_view v = str::trim(value);
  if (v.empty()) {
    return std::nullopt;
  }
  bool digits = true;
  for (char c : v) {
    digits = digits && c >= '0' && c <= '9';
  }
  if (digits) {
    if (v.size() > 9) {
      return std::chrono::milliseconds(std::chrono::hours(24 * 365));
    }
    return std::chrono::milliseconds(std::stoll(std::string(v)) * 1000);
  }
  std::tm tm{};
  std::string s(v);
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') {
    return std::nullopt;
  }
  time_t when = timegm(&tm);
  auto at = std::chrono::system_clock::from_time_t(when);
  if (at <= now) {
    return std::chrono::milliseconds(0);
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(at - now);
}

std::optional<std::chrono::milliseconds> retry_delay(
    const RetryPolicy& policy, int next_attempt,
    std::optional<std::chrono::milliseconds> retry_after) {
  if (next_attempt > policy.max_attempts || next_attempt < 2) {
    return std::nullopt;
  }
  if (retry_after) {
    return std::min(*retry_after, policy.max_retry_after);
  }
  std::chrono::milliseconds d = policy.initial_delay;
  for (int i = 2; i < next_attempt && d < policy.max_delay; ++i) {
    d *= 2;
  }
  return std::min(d, policy.max_delay);
}

}  // namespace imgbuild::registry
