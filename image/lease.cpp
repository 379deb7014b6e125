#include "image/lease.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include <fmt/format.h>

#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild::image {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view k_magic = "imgbuild-lease 1";

const char* kind_name(LeaseKind kind) {
  switch (kind) {
    case LeaseKind::blob:
      return "blob";
    case LeaseKind::layer:
      return "layer";
    case LeaseKind::record:
      return "record";
    case LeaseKind::cache_mount:
      return "cache-mount";
  }
  return "blob";
}

// flock that retries on EINTR.
int lock_fd(int fd, int op) {
  int rc = 0;
  do {
    rc = ::flock(fd, op);
  } while (rc != 0 && errno == EINTR);
  return rc;
}

Result<UniqueFd> open_lock(const fs::path& root) {
  fs::path dir = lease_dir(root);
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::path p = dir / "lock";
  UniqueFd fd(::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) {
    return errno_fail(errno, "opening", p.string());
  }
  return fd;
}

}  // namespace

fs::path lease_dir(const fs::path& root) { return root / "leases"; }

Lease::~Lease() {
  if (m_fd) {
    ::unlink(m_path.c_str());
  }
}

Result<void> Lease::create_locked() {
  fs::path dir = lease_dir(m_root);
  std::string name = io::random_hex();
  fs::path tmp = dir / (".new-" + name);
  UniqueFd fd(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600));
  if (!fd) {
    return errno_fail(errno, "creating lease file", tmp.string());
  }
  if (lock_fd(fd.get(), LOCK_EX) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return errno_fail(err, "locking", tmp.string());
  }
  auto header = io::write_all(fd.get(), fmt::format("{}\npid {}\n", k_magic, ::getpid()), tmp.string());
  if (!header) {
    ::unlink(tmp.c_str());
    return header;
  }
  fs::path final_path = dir / (name + ".lease");
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return errno_fail(err, "renaming lease file to", final_path.string());
  }
  m_fd = std::move(fd);
  m_path = final_path;
  return ok();
}

Result<void> Lease::hold(const std::vector<LeaseEntry>& entries) {
  std::lock_guard guard(m_mu);
  std::string text;
  std::vector<std::pair<int, std::string>> fresh;
  for (const auto& e : entries) {
    if (e.id.empty() || e.id.find('\n') != std::string::npos) {
      continue;
    }
    std::pair<int, std::string> key{static_cast<int>(e.kind), e.id};
    if (m_held.count(key) != 0 || std::find(fresh.begin(), fresh.end(), key) != fresh.end()) {
      continue;
    }
    fresh.push_back(key);
    text += fmt::format("{} {}\n", kind_name(e.kind), e.id);
  }
  if (text.empty()) {
    return ok();
  }
  TRY(UniqueFd lock, open_lock(m_root));
  if (lock_fd(lock.get(), LOCK_SH) != 0) {
    return errno_fail(errno, "locking", (lease_dir(m_root) / "lock").string());
  }
  if (!m_fd) {
    TRY_VOID(create_locked());
  }
  TRY_VOID(io::write_all(m_fd.get(), text, m_path.string()));
  m_held.insert(fresh.begin(), fresh.end());
  return ok();  // closing `lock` releases the shared lock
}

Result<LeaseSnapshot> LeaseSnapshot::take(const fs::path& root) {
  LeaseSnapshot snap;
  TRY(snap.m_lock, open_lock(root));
  if (lock_fd(snap.m_lock.get(), LOCK_EX) != 0) {
    return errno_fail(errno, "locking", (lease_dir(root) / "lock").string());
  }
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(lease_dir(root), ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() > 6 && name.ends_with(".lease")) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& p : files) {
    UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      continue;  // gone meanwhile
    }
    if (lock_fd(fd.get(), LOCK_SH | LOCK_NB) == 0) {
      // Nobody holds it: its process is gone.
      ::unlink(p.c_str());
      ++snap.m_stale_removed;
      continue;
    }
    auto text = io::read_all(fd.get(), p.string());
    if (!text) {
      continue;  // unreadable: not a lease this process can honour
    }
    auto lines = str::record_lines(*text, k_magic);
    if (!lines) {
      continue;
    }
    for (const auto& [key, value] : *lines) {
      if (key == "pid") {
        snap.m_holders.push_back(std::strtol(value.c_str(), nullptr, 10));
      } else if (key == "blob") {
        snap.m_blobs.insert(value);
      } else if (key == "layer") {
        snap.m_layers.insert(value);
      } else if (key == "record") {
        snap.m_records.insert(value);
      } else if (key == "cache-mount") {
        snap.m_cache_mounts.insert(value);
      }
    }
  }
  std::sort(snap.m_holders.begin(), snap.m_holders.end());
  return snap;
}

bool LeaseSnapshot::holds(LeaseKind kind, const std::string& id) const {
  switch (kind) {
    case LeaseKind::blob:
      return m_blobs.count(id) != 0;
    case LeaseKind::layer:
      return m_layers.count(id) != 0;
    case LeaseKind::record:
      return m_records.count(id) != 0;
    case LeaseKind::cache_mount:
      return m_cache_mounts.count(id) != 0;
  }
  return false;
}

}  // namespace imgbuild::image
