#include "util/hash.hpp"

#include <openssl/evp.h>

#include <stdexcept>

#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

namespace {

// The sha256 implementation, fetched once: EVP_sha256() makes every
// EVP_DigestInit_ex look the algorithm up again in the provider tables (an
// implicit fetch, with locks), which cost more than hashing a small key.
const EVP_MD* sha256_md() {
  static const EVP_MD* const k_md = [] {
    const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return md != nullptr ? md : EVP_sha256();
  }();
  return k_md;
}

}  // namespace

Sha256::Sha256() : m_impl(std::make_unique<Impl>()) {
  m_impl->ctx = EVP_MD_CTX_new();
  if (m_impl->ctx == nullptr || EVP_DigestInit_ex(m_impl->ctx, sha256_md(), nullptr) != 1) {
    throw std::runtime_error("OpenSSL: cannot initialise sha256");
  }
}

Sha256::~Sha256() {
  if (m_impl && m_impl->ctx != nullptr) {
    EVP_MD_CTX_free(m_impl->ctx);
  }
}

Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, size_t size) {
  if (size > 0) {
    EVP_DigestUpdate(m_impl->ctx, data, size);
  }
}

Sha256Digest Sha256::finish() {
  Sha256Digest d;
  unsigned int len = 0;
  EVP_DigestFinal_ex(m_impl->ctx, d.bytes.data(), &len);
  return d;
}

std::string Sha256Digest::hex() const {
  static const char k_hex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = k_hex[bytes[i] >> 4];
    out[2 * i + 1] = k_hex[bytes[i] & 0xf];
  }
  return out;
}

Result<Sha256Digest> Sha256Digest::parse(std::string_view s, Bare bare) {
  std::string_view hex = s;
  if (hex.substr(0, 7) == "sha256:") {
    hex.remove_prefix(7);
  } else if (bare == Bare::refused) {
    return fail(Errc::invalid_argument, "invalid digest \"" + std::string(s) + "\": expected sha256:<64 hex digits>");
  }
  if (hex.size() != 64) {
    return fail(Errc::invalid_argument, "invalid digest \"" + std::string(s) + "\": expected 64 hex digits");
  }
  Sha256Digest d;
  for (size_t i = 0; i < 64; ++i) {
    char c = hex[i];
    int v = str::hex_digit(c);
    if (v < 0 || (c >= 'A' && c <= 'F')) {
      return fail(Errc::invalid_argument, "invalid digest \"" + std::string(s) + "\": not lower-case hex");
    }
    if (i % 2 == 0) {
      d.bytes[i / 2] = static_cast<uint8_t>(v << 4);
    } else {
      d.bytes[i / 2] = static_cast<uint8_t>(d.bytes[i / 2] | v);
    }
  }
  return d;
}

Sha256Digest sha256(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

Result<std::pair<Sha256Digest, uint64_t>> sha256_fd(int fd, std::string_view what) {
  Sha256 h;
  TRY(uint64_t size, io::read_chunks(fd, what, [&](const void* data, size_t n) -> Result<void> {
    h.update(data, n);
    return ok();
  }));
  return std::make_pair(h.finish(), size);
}

}  // namespace imgbuild
