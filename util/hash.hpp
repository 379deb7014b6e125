#pragma once
// SHA-256 through OpenSSL's EVP interface, streaming and one-shot.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "util/result.hpp"

namespace imgbuild {

/// A sha256 digest as 32 raw bytes.
struct Sha256Digest {
  std::array<uint8_t, 32> bytes{};

  /// Lower-case hex, 64 characters.
  std::string hex() const;
  /// "sha256:" + hex(), the OCI digest string.
  std::string str() const { return "sha256:" + hex(); }
  bool operator==(const Sha256Digest&) const = default;

  /// Parses "sha256:<64 hex>" (or bare hex when allow_bare is yes).
  enum class Bare { allowed, refused };
  static Result<Sha256Digest> parse(std::string_view s, Bare bare = Bare::refused);
};

/// Incremental SHA-256.
class Sha256 {
public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  /// Adds bytes to the hash.
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  /// Finishes and returns the digest; the object can't be updated afterwards.
  Sha256Digest finish();

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

/// One-shot digest of a byte string.
Sha256Digest sha256(std::string_view data);

/// The digest of the rest of `fd` (streamed, io::read_chunks) and how many
/// bytes it covered; read errors name `what`.
Result<std::pair<Sha256Digest, uint64_t>> sha256_fd(int fd, std::string_view what);

}  // namespace imgbuild
