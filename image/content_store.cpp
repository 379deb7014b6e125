#include "image/content_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "image/types.hpp"
#include "util/fault.hpp"
#include "util/fd.hpp"
#include "util/io.hpp"
#include "util/rootless.hpp"

namespace imgbuild::image {

namespace fs = std::filesystem;

namespace {

Unexpected sys_fail(std::string_view what, const fs::path& p) {
  int err = errno;
  if (err == ENOSPC || err == EDQUOT) {
    return errno_fail(err, "writing", p.string());  // Errc::no_space, whatever the call
  }
  return fail(Errc::io, fmt::format("{} {}: {}", what, p.string(), std::strerror(err)));
}

Result<void> fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return sys_fail("open", dir);
  }
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) {
    return sys_fail("fsync", dir);
  }
  return ok();
}

Result<void> make_dirs(const fs::path& p) {
  std::error_code ec;
  fs::create_directories(p, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("create directory {}: {}", p.string(), ec.message()));
  }
  return ok();
}

Result<std::string> read_file_capped(const fs::path& p, size_t max, std::string_view what) {
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return sys_fail("open", p);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return sys_fail("stat", p);
  }
  if (static_cast<uint64_t>(st.st_size) > max) {
    return fail(Errc::limit, fmt::format("{}: document of {} bytes exceeds the limit of {} bytes", what,
                                         st.st_size, max));
  }
  return io::read_all(fd.get(), p.string(), max);
}

std::string hex_of(std::string_view digest) { return std::string(digest.substr(7)); }

}  // namespace

fs::path default_store_root(const std::string& flag) {
  // Relative roots are made absolute here, once: mounts and the sandbox
  // need absolute paths, and a later chdir must not move the store.
  if (!flag.empty()) {
    return fs::absolute(flag).lexically_normal();
  }
  if (const char* env = std::getenv("IMGBUILD_ROOT"); env != nullptr && *env != '\0') {
    return fs::absolute(env).lexically_normal();
  }
  // Root of a rootless user namespace is still the user: its own store.
  if (::geteuid() == 0 && !rootless::active()) {
    return "/var/lib/imgbuild";
  }
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && *xdg != '\0') {
    return fs::path(xdg) / "imgbuild";
  }
  const char* home = std::getenv("HOME");
  return fs::path(home != nullptr ? home : "/") / ".local" / "share" / "imgbuild";
}

Result<ContentStore> ContentStore::open(const fs::path& root) {
  TRY_VOID(make_dirs(root / "blobs" / "sha256"));
  TRY_VOID(make_dirs(root / "tmp"));
  return ContentStore(root);
}

fs::path ContentStore::blob_path(std::string_view digest) const {
  return m_root / "blobs" / "sha256" / hex_of(digest);
}

bool ContentStore::has(std::string_view digest) const {
  if (!is_valid_digest(digest)) {
    return false;
  }
  struct stat st {};
  return ::stat(blob_path(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<uint64_t> ContentStore::size(std::string_view digest) const {
  struct stat st {};
  fs::path p = blob_path(digest);
  if (::stat(p.c_str(), &st) != 0) {
    return fail(Errc::not_found, fmt::format("blob {} is not in the store", digest));
  }
  return static_cast<uint64_t>(st.st_size);
}

Result<std::string> ContentStore::read_small(std::string_view digest, size_t max) const {
  if (!has(digest)) {
    return fail(Errc::not_found, fmt::format("blob {} is not in the store", digest));
  }
  return read_file_capped(blob_path(digest), max, digest);
}

Result<std::vector<std::string>> ContentStore::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(m_root / "blobs" / "sha256", ec)) {
    std::string d = "sha256:" + entry.path().filename().string();
    if (is_valid_digest(d)) {
      out.push_back(std::move(d));
    }
  }
  if (ec) {
    return fail(Errc::io, fmt::format("list blobs in {}: {}", m_root.string(), ec.message()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<uint64_t> ContentStore::remove(std::string_view digest) const {
  fs::path p = blob_path(digest);
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    return uint64_t{0};
  }
  if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
    return sys_fail("remove", p);
  }
  return static_cast<uint64_t>(st.st_size);
}

// ---- BlobWriter -------------------------------------------------------------

BlobWriter::BlobWriter(Staging* staging, int fd, fs::path tmp_path, bool discard)
    : m_staging(staging), m_fd(fd), m_tmp_path(std::move(tmp_path)), m_discard(discard) {}

BlobWriter::BlobWriter(BlobWriter&& o) noexcept
    : m_staging(o.m_staging),
      m_fd(o.m_fd),
      m_tmp_path(std::move(o.m_tmp_path)),
      m_discard(o.m_discard),
      m_hash(std::move(o.m_hash)),
      m_digest(o.m_digest),
      m_synced(o.m_synced),
      m_size(o.m_size) {
  o.m_fd = -1;
  o.m_staging = nullptr;
  o.m_tmp_path.clear();
}

BlobWriter& BlobWriter::operator=(BlobWriter&& o) noexcept {
  if (this != &o) {
    abort();
    m_staging = o.m_staging;
    m_fd = o.m_fd;
    m_tmp_path = std::move(o.m_tmp_path);
    m_discard = o.m_discard;
    m_hash = std::move(o.m_hash);
    m_digest = o.m_digest;
    m_synced = o.m_synced;
    m_size = o.m_size;
    o.m_fd = -1;
    o.m_staging = nullptr;
    o.m_tmp_path.clear();
  }
  return *this;
}

BlobWriter::~BlobWriter() { abort(); }

void BlobWriter::abort() {
  if (m_fd >= 0) {
    ::close(m_fd);
    m_fd = -1;
  }
  if (!m_tmp_path.empty()) {
    ::unlink(m_tmp_path.c_str());
    m_tmp_path.clear();
  }
}

Result<void> BlobWriter::write(const void* data, size_t size) {
  if (m_staging == nullptr) {
    return fail(Errc::internal, "write to a finished blob writer");
  }
  if (m_digest || m_synced) {
    return fail(Errc::internal, "write to a blob writer that was already synced or hashed");
  }
  m_hash.update(data, size);
  m_size += size;
  if (m_discard) {
    return ok();
  }
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(m_fd, p, size);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return sys_fail("write", m_tmp_path);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  fault::point("blob-write");
  return ok();
}

Result<Sha256Digest> BlobWriter::digest() {
  if (m_staging == nullptr) {
    return fail(Errc::internal, "digest of a finished blob writer");
  }
  if (!m_digest) {
    m_digest = m_hash.finish();
  }
  return *m_digest;
}

Result<void> BlobWriter::sync() {
  if (m_staging == nullptr) {
    return fail(Errc::internal, "sync of a finished blob writer");
  }
  if (!m_discard && !m_synced && ::fsync(m_fd) != 0) {
    return sys_fail("fsync", m_tmp_path);
  }
  m_synced = true;
  return ok();
}

Result<std::string> BlobWriter::commit(std::optional<std::string_view> expected) {
  if (m_staging == nullptr) {
    return fail(Errc::internal, "commit of a finished blob writer");
  }
  TRY(Sha256Digest finished, digest());
  std::string got = finished.str();
  Staging* staging = m_staging;
  m_staging = nullptr;
  if (expected && *expected != got) {
    abort();
    return fail(Errc::corrupt, fmt::format("digest mismatch: content hashes to {}, expected {}", got, *expected));
  }
  if (m_discard) {
    return got;
  }
  if (!m_synced && ::fsync(m_fd) != 0) {
    Error e = sys_fail("fsync", m_tmp_path).error;
    abort();
    return fail(std::move(e));
  }
  ::close(m_fd);
  m_fd = -1;
  if (staging->m_staged.count(got) != 0 || staging->m_store.has(got)) {
    abort();  // identical content is already there
    return got;
  }
  fs::path dest = staging->m_dir / hex_of(got);
  if (::rename(m_tmp_path.c_str(), dest.c_str()) != 0) {
    Error e = sys_fail("rename", m_tmp_path).error;
    abort();
    return fail(std::move(e));
  }
  m_tmp_path.clear();
  staging->m_staged[got] = m_size;
  return got;
}

// ---- Staging ----------------------------------------------------------------

Result<std::unique_ptr<Staging>> Staging::create(const ContentStore& store) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    fs::path dir = store.root() / "tmp" / fmt::format("stage-{}-{}", ::getpid(), io::random_hex(4));
    if (::mkdir(dir.c_str(), 0700) == 0) {
      return std::unique_ptr<Staging>(new Staging(store, dir));
    }
    if (errno != EEXIST) {
      return sys_fail("create staging directory", dir);
    }
  }
  return fail(Errc::io, "could not create a staging directory under " + (store.root() / "tmp").string());
}

Staging::~Staging() {
  std::error_code ec;
  fs::remove_all(m_dir, ec);
}

Result<BlobWriter> Staging::writer(std::optional<std::string_view> expected) {
  bool discard = expected && is_valid_digest(*expected) && m_store.has(*expected);
  if (discard) {
    return BlobWriter(this, -1, {}, true);
  }
  fs::path tmp = m_dir / fmt::format("part-{}", m_counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return sys_fail("create", tmp);
  }
  return BlobWriter(this, fd, tmp, false);
}

Result<std::string> Staging::put(std::string_view bytes) {
  std::string digest = sha256(bytes).str();
  TRY(BlobWriter w, writer(digest));
  TRY_VOID(w.write(bytes));
  return w.commit(digest);
}

bool Staging::has(std::string_view digest) const {
  return m_staged.count(std::string(digest)) != 0 || m_store.has(digest);
}

fs::path Staging::path(std::string_view digest) const {
  if (m_staged.count(std::string(digest)) != 0) {
    return m_dir / hex_of(digest);
  }
  return m_store.blob_path(digest);
}

Result<uint64_t> Staging::size(std::string_view digest) const {
  if (auto it = m_staged.find(std::string(digest)); it != m_staged.end()) {
    return it->second;
  }
  return m_store.size(digest);
}

Result<std::string> Staging::read_small(std::string_view digest, size_t max) const {
  if (!has(digest)) {
    return fail(Errc::not_found, fmt::format("blob {} is missing", digest));
  }
  return read_file_capped(path(digest), max, digest);
}

Result<std::vector<std::string>> Staging::publish(const std::set<std::string>& wanted) {
  std::vector<std::string> added;
  for (const auto& [digest, size] : m_staged) {
    fs::path src = m_dir / hex_of(digest);
    fs::path dest = m_store.blob_path(digest);
    if (wanted.count(digest) == 0 || m_store.has(digest)) {
      ::unlink(src.c_str());
      continue;
    }
    if (::rename(src.c_str(), dest.c_str()) != 0) {
      Error e = sys_fail("rename", src).error;
      rollback(added);
      return fail(std::move(e));
    }
    added.push_back(digest);
  }
  m_staged.clear();
  if (!added.empty()) {
    TRY_VOID(fsync_dir(m_store.root() / "blobs" / "sha256"));
  }
  return added;
}

Result<bool> Staging::publish_one(std::string_view digest) {
  auto it = m_staged.find(std::string(digest));
  if (it == m_staged.end()) {
    if (m_store.has(digest)) {
      return false;
    }
    return fail(Errc::not_found, fmt::format("blob {} is neither staged nor stored", digest));
  }
  fs::path src = m_dir / hex_of(it->first);
  fs::path dest = m_store.blob_path(it->first);
  m_staged.erase(it);
  if (m_store.has(digest)) {
    ::unlink(src.c_str());
    return false;
  }
  if (::rename(src.c_str(), dest.c_str()) != 0) {
    return sys_fail("rename", src);
  }
  TRY_VOID(fsync_dir(m_store.root() / "blobs" / "sha256"));
  return true;
}

void Staging::rollback(const std::vector<std::string>& added) {
  for (const auto& d : added) {
    (void)m_store.remove(d);
  }
}

}  // namespace imgbuild::image
