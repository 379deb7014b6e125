#pragma once
// Cache keys. A step key is the sha256 of a byte stream a KeyBuilder writes:
// the version salt first, then one record per field, each preceded by a typed
// delimiter so that no two different field lists can produce the same bytes:
//
//   0x1e <type byte> <name length, 4 bytes BE> <name> <value length, 8 bytes BE> <value>
//
// Types: 's' string, 'i' integer (decimal text), 'd' digest, 'k' key (a
// parent or stage key), 'b' bool ("1"/"0"), 'l' list start (value = item
// count), 'm' map start (value = entry count). Lists and maps are written as a
// start record followed by their items, so ["a b"] and ["a", "b"] differ.
//
// Next to the hash the builder keeps a transcript: one "name: value" line per
// field, which `--debug cache-keys DIR` writes out so two builds can be
// diffed. Only what goes through the builder can change a key: fields that
// must not (progress names, proxy args, display text) are never passed to it.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "util/hash.hpp"

namespace imgbuild::cache {

/// Salt of every key; bump when the meaning of any key field changes, so old
/// records stop matching.
inline constexpr std::string_view k_key_version = "imgbuild-cache-key-v2";

/// Writes typed fields into a key (see the file comment).
class KeyBuilder {
public:
  /// Whether the builder keeps the transcript (off for the many small keys
  /// nobody reads, such as one context file's entry digest).
  enum class Transcript { kept, skipped };
  /// Starts a key with the version salt.
  explicit KeyBuilder(Transcript transcript = Transcript::kept);
  KeyBuilder(const KeyBuilder&) = delete;
  KeyBuilder& operator=(const KeyBuilder&) = delete;

  /// A string field.
  KeyBuilder& str(std::string_view name, std::string_view value);
  /// An integer field.
  KeyBuilder& integer(std::string_view name, int64_t value);
  /// A boolean field.
  KeyBuilder& boolean(std::string_view name, bool value);
  /// A digest field ("sha256:…").
  KeyBuilder& digest(std::string_view name, std::string_view value);
  /// A key field (a parent key or another stage's key).
  KeyBuilder& key(std::string_view name, std::string_view value);
  /// A list of strings (count, then each item).
  KeyBuilder& list(std::string_view name, const std::vector<std::string>& items);
  /// A map of strings, written in key order.
  KeyBuilder& map(std::string_view name, const std::map<std::string, std::string>& entries);

  /// The key, "sha256:<hex>". The builder can't take fields afterwards.
  std::string finish();
  /// The fields written so far, one "name: value" line each (empty when
  /// skipped).
  const std::string& transcript() const { return m_transcript; }

private:
  void field(char type, std::string_view name, std::string_view value);
  Sha256 m_hash;
  std::string m_transcript;
  bool m_keep = true;
  bool m_finished = false;
};

}  // namespace imgbuild::cache
