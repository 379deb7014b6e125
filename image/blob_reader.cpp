// Verified reading of stored blobs (see blob_reader.hpp).

#include "image/blob_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "image/types.hpp"

namespace imgbuild::image {

namespace {

constexpr size_t k_chunk = 128 * 1024;

}  // namespace

BlobReader::BlobReader(UniqueFd fd, std::filesystem::path path, std::string digest, uint64_t size)
    : m_fd(std::move(fd)), m_path(std::move(path)), m_digest(std::move(digest)), m_size(size) {}

Result<BlobReader> BlobReader::open(const ContentStore& store, std::string_view digest) {
  if (!is_valid_digest(digest)) {
    return fail(Errc::invalid_argument, fmt::format("invalid blob digest \"{}\"", digest));
  }
  auto r = open_file(store.blob_path(digest), digest);
  if (!r && r.error().code == Errc::not_found) {
    return fail(Errc::corrupt, fmt::format("blob {} is missing from the store ({})", digest,
                                           store.blob_path(digest).string()));
  }
  return r;
}

Result<BlobReader> BlobReader::open_file(const std::filesystem::path& path, std::string_view digest) {
  if (!is_valid_digest(digest)) {
    return fail(Errc::invalid_argument, fmt::format("invalid blob digest \"{}\"", digest));
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    Errc code = errno == ENOENT ? Errc::not_found : Errc::io;
    return fail(code, fmt::format("blob {}: open {}: {}", digest, path.string(), std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return fail(Errc::io, fmt::format("blob {}: stat {}: {}", digest, path.string(), std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(Errc::corrupt, fmt::format("blob {}: {} is not a regular file", digest, path.string()));
  }
  return BlobReader(std::move(fd), path, std::string(digest), static_cast<uint64_t>(st.st_size));
}

Result<size_t> BlobReader::read(void* buf, size_t n) {
  uint64_t left = m_size - m_done;
  if (left == 0) {
    TRY_VOID(check());  // an empty blob, or a read after the end
    return size_t{0};
  }
  if (n == 0) {
    return size_t{0};
  }
  size_t want = static_cast<size_t>(std::min<uint64_t>(n, left));
  size_t got = 0;
  auto* out = static_cast<char*>(buf);
  while (got < want) {
    ssize_t r = ::read(m_fd.get(), out + got, want - got);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      return fail(Errc::io, fmt::format("blob {}: read {}: {}", m_digest, m_path.string(), std::strerror(errno)));
    }
    if (r == 0) {
      return fail(Errc::corrupt, fmt::format("blob {}: {} shrank while being read ({} of {} bytes)", m_digest,
                                             m_path.string(), m_done + got, m_size));
    }
    got += static_cast<size_t>(r);
  }
  m_hash.update(out, got);
  m_done += got;
  if (m_done == m_size) {
    TRY_VOID(check());
  }
  return got;
}

Result<void> BlobReader::check() {
  if (!m_checked) {
    m_checked = true;
    m_has = m_hash.finish().str();
  }
  if (m_has != m_digest) {
    return fail(Errc::corrupt, fmt::format("blob {} is corrupt: its {} bytes in {} hash to {}", m_digest, m_size,
                                           m_path.string(), m_has));
  }
  return ok();
}

Result<void> BlobReader::copy_to(const BlobChunkFn& sink) {
  std::vector<char> buf(static_cast<size_t>(std::min<uint64_t>(k_chunk, std::max<uint64_t>(m_size - m_done, 1))));
  for (;;) {
    TRY(size_t n, read(buf.data(), buf.size()));
    if (n == 0) {
      return ok();
    }
    TRY_VOID(sink(buf.data(), n));
  }
}

}  // namespace imgbuild::image
