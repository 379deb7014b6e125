#include "cache/stat_index.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "util/fd.hpp"
#include "util/hash.hpp"

namespace imgbuild::cache {

StatIndex::StatIndex(StatIndex&& o) noexcept
    : m_entries(std::move(o.m_entries)), m_new(std::move(o.m_new)), m_hashed(o.m_hashed), m_reused(o.m_reused) {}

Result<StatIndex> StatIndex::load(CacheDb& db) {
  StatIndex idx;
  TRY(auto entries, db.stat_entries());
  for (auto& e : entries) {
    Id id{e.dev, e.ino};
    idx.m_entries[id] = std::move(e);
  }
  return idx;
}

Result<std::string> StatIndex::digest(int dirfd, const std::string& name, const struct stat& st,
                                      const std::string& display) {
  Id id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  int64_t mtime = timespec_ns(st.st_mtim);
  int64_t ctime = timespec_ns(st.st_ctim);
  {
    std::lock_guard lock(m_mu);
    auto it = m_entries.find(id);
    if (it != m_entries.end() && it->second.size == st.st_size && it->second.mtime_ns == mtime &&
        it->second.ctime_ns == ctime) {
      ++m_reused;
      return it->second.digest;
    }
  }
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return fail(Errc::io, fmt::format("{}: open: {}", display, std::strerror(errno)));
  }
  UniqueFd owned(fd);
  Sha256 h;
  char buf[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Errc::io, fmt::format("{}: read: {}", display, std::strerror(errno)));
    }
    if (n == 0) {
      break;
    }
    h.update(buf, static_cast<size_t>(n));
  }
  std::string d = h.finish().str();
  StatEntry e{id.first, id.second, st.st_size, mtime, ctime, d};
  std::lock_guard lock(m_mu);
  ++m_hashed;
  m_entries[id] = e;
  m_new.push_back(std::move(e));
  return d;
}

Result<void> StatIndex::save(CacheDb& db, int64_t now_ns) {
  std::vector<StatEntry> keep;
  {
    std::lock_guard lock(m_mu);
    for (auto& e : m_new) {
      if (e.ctime_ns < now_ns - 1'000'000'000 && e.mtime_ns < now_ns - 1'000'000'000) {
        keep.push_back(e);
      }
    }
    m_new.clear();
  }
  return db.put_stat_entries(keep);
}

}  // namespace imgbuild::cache
