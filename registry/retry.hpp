#pragma once
// When to retry a registry request and how long to wait first: 429, 5xx
// (except 501/505) and connection failures are retried a bounded number of
// times with exponential backoff; a Retry-After header (seconds or HTTP-date)
// sets the wait instead, capped. The clock and the sleeper are injected so
// tests run without waiting.

#include <chrono>
#include <functional>
#include <optional>
#include <string_view>

namespace imgbuild::registry {

/// Bounds of the retry loop.
struct RetryPolicy {
  /// Total attempts including the first (1 = never retry).
  int max_attempts = 5;
  /// Wait before the second attempt; doubles each time.
  std::chrono::milliseconds initial_delay{250};
  /// Upper bound of the exponential wait.
  std::chrono::milliseconds max_delay{8000};
  /// Upper bound of a server-requested wait (Retry-After).
  std::chrono::milliseconds max_retry_after{60000};
};

/// Sleeps for a duration; tests substitute a recorder.
using Sleeper = std::function<void(std::chrono::milliseconds)>;
/// The current wall-clock time; tests substitute a fixed clock.
using Clock = std::function<std::chrono::system_clock::time_point()>;

/// The real sleeper (std::this_thread::sleep_for).
Sleeper real_sleeper();
/// The real clock (std::chrono::system_clock::now).
Clock real_clock();

/// True for HTTP statuses worth retrying: 408, 429, 500, 502, 503, 504.
/// Everything else (404 not found, 401/403 after authenticating, 400 …)
/// is an answer a retry cannot change: it fails at once.
bool is_retryable_status(long status);

/// True for distribution-spec error codes (the "code" of an error body)
/// whose answer a retry cannot change: MANIFEST_UNKNOWN, NAME_UNKNOWN,
/// NAME_INVALID, TAG_INVALID, BLOB_UNKNOWN, MANIFEST_INVALID, DIGEST_INVALID,
/// SIZE_INVALID, UNAUTHORIZED, DENIED, UNSUPPORTED. An answer carrying one
/// is not retried whatever its status. (BLOB_UPLOAD_UNKNOWN is not among
/// them: a lost upload session is started afresh.)
bool is_permanent_error_code(std::string_view code);

/// Parses Retry-After: delta-seconds or an IMF-fixdate ("Sun, 06 Nov 1994
/// 08:49:37 GMT") relative to now. Past dates give 0; junk gives nullopt.
std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now);

/// The wait before attempt number `next_attempt` (2 = first retry), or
/// nullopt when the policy's attempts are used up. `retry_after` is the
/// server's requested wait, if any.
std::optional<std::chrono::milliseconds> retry_delay(
    const RetryPolicy& policy, int next_attempt,
    std::optional<std::chrono::milliseconds> retry_after);

}  // namespace imgbuild::registry
