#pragma once
// Secret values never reach a log line: a RUN step's output is passed through
// a SecretMask holding the values of the secrets that step mounts, and every
// occurrence is replaced before the line goes to the progress sink.

#include <string>
#include <string_view>
#include <vector>

namespace imgbuild::builder {

/// Replaces the values of a step's secrets in its output lines.
class SecretMask {
public:
  /// What a masked value becomes.
  static constexpr std::string_view k_mask = "****";

  /// Adds a secret value. Empty values are ignored; a trailing newline
  /// (a secret file written with echo) is dropped, and each line of a
  /// multi-line value is masked on its own, as output arrives line by line.
  void add(std::string_view value);

  /// True when no value is held (lines pass through unchanged).
  bool empty() const { return m_values.empty(); }

  /// The line with every held value replaced by k_mask (longest values
  /// first, so a value containing another is masked whole).
  std::string apply(std::string_view line) const;

private:
  std::vector<std::string> m_values;
};

}  // namespace imgbuild::builder
