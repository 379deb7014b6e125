#include "util/io.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "util/fd.hpp"

namespace imgbuild::io {

namespace {

Error io_error(int err, std::string_view what, std::string_view doing) {
  if (err == ENOSPC || err == EDQUOT) {
    return Error(Errc::no_space, fmt::format("no space left on device while writing {}", what));
  }
  return Error(err == ENOENT ? Errc::not_found : Errc::io, fmt::format("{}: {}: {}", what, doing, std::strerror(err)));
}

}  // namespace

Result<uint64_t> read_chunks(int fd, std::string_view what, const ChunkSink& sink) {
  char buf[65536];
  uint64_t total = 0;
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(io_error(errno, what, "read"));
    }
    if (n == 0) {
      return total;
    }
    TRY_VOID(sink(buf, static_cast<size_t>(n)));
    total += static_cast<uint64_t>(n);
  }
}

Result<std::string> read_all(int fd, std::string_view what, size_t cap) {
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    return fail(Errc::invalid_argument, fmt::format("{} is a directory", what));
  }
  std::string out;
  if (S_ISREG(st.st_mode) && st.st_size > 0) {
    out.reserve(static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(st.st_size), cap)));
  }
  // read_chunks does the reading; each chunk is checked against the cap
  // before it is kept.
  TRY(uint64_t total, read_chunks(fd, what, [&](const void* data, size_t n) -> Result<void> {
    if (n > cap - out.size()) {
      std::string mib = cap >= (size_t{1} << 20) && cap % (size_t{1} << 20) == 0
                            ? fmt::format(" ({} MiB)", cap >> 20)
                            : std::string();
      return fail(Errc::limit, fmt::format("{} is larger than the limit of {} bytes{}", what, cap, mib));
    }
    out.append(static_cast<const char*>(data), n);
    return ok();
  }));
  (void)total;
  return out;
}

Result<std::string> read_all(const std::string& path, size_t cap) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return fail(io_error(errno, path, "open"));
  }
  return read_all(fd.get(), path, cap);
}

Result<void> write_all(int fd, const void* data, size_t size, std::string_view what) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t w = ::write(fd, p, size);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(io_error(errno, what, "write"));
    }
    p += w;
    size -= static_cast<size_t>(w);
  }
  return ok();
}

Result<void> write_all(int fd, std::string_view data, std::string_view what) {
  return write_all(fd, data.data(), data.size(), what);
}

Result<void> write_all(const std::string& path, std::string_view data, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) {
    return fail(io_error(errno, path, "open"));
  }
  TRY_VOID(write_all(fd.get(), data, path));
  if (::close(fd.release()) != 0) {
    return fail(io_error(errno, path, "close"));
  }
  return ok();
}

std::string random_hex(size_t bytes) {
  static constexpr char k_hex[] = "0123456789abcdef";
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      // getrandom exists since Linux 3.17 and does not fail once the pool
      // is initialised; failing here would be a broken kernel.
      std::abort();
    }
  }
  std::string out;
  out.reserve(bytes * 2);
  for (char c : raw) {
    auto b = static_cast<unsigned char>(c);
    out += k_hex[b >> 4];
    out += k_hex[b & 15];
  }
  return out;
}

Result<TempDir> TempDir::create(const std::string& parent, std::string_view prefix) {
  std::string base = parent;
  if (base.empty()) {
    const char* t = std::getenv("TMPDIR");
    base = (t != nullptr && *t != '\0') ? t : "/tmp";
  }
  std::string tmpl = fmt::format("{}/{}XXXXXX", base, prefix);
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return fail(Errc::io, fmt::format("creating a temporary directory in {}: {}", base, std::strerror(errno)));
  }
  return TempDir(std::move(tmpl));
}

TempDir::TempDir(TempDir&& other) noexcept : m_path(std::exchange(other.m_path, std::string())) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    remove();
    m_path = std::exchange(other.m_path, std::string());
  }
  return *this;
}

TempDir::~TempDir() { remove(); }

void TempDir::remove() {
  if (!m_path.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
    m_path.clear();
  }
}

}  // namespace imgbuild::io
