#include "cache/stat_index.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "util/fd.hpp"
#include "util/hash.hpp"
#include "util/stats.hpp"

namespace imgbuild::cache {

namespace {

stats::Metric g_files_hashed("cache.context_files_hashed");
stats::Metric g_bytes_hashed("cache.context_bytes_hashed");
stats::Metric g_files_reused("cache.context_files_from_stat_index");
stats::Metric g_xattrs_listed("cache.context_xattrs_listed");

}  // namespace

StatIndex::StatIndex(StatIndex&& o) noexcept
    : m_entries(std::move(o.m_entries)),
      m_db(o.m_db),
      m_all_read(o.m_all_read),
      m_point_reads(o.m_point_reads),
      m_new(std::move(o.m_new)),
      m_hashed(o.m_hashed),
      m_reused(o.m_reused),
      m_xattrs_listed(o.m_xattrs_listed),
      m_hashed_bytes(o.m_hashed_bytes.load()) {}

Result<StatIndex> StatIndex::load(CacheDb& db) {
  StatIndex idx;
  idx.m_db = &db;
  return idx;
}

const StatEntry* StatIndex::find(const struct stat& st) {
  Id id{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  auto it = m_entries.find(id);
  if (it == m_entries.end() && m_db != nullptr && !m_all_read) {
    // A read error only costs a hash: the index is never the only truth.
    if (m_point_reads < k_point_lookups) {
      ++m_point_reads;
      auto e = m_db->stat_entry(id.first, id.second);
      if (e && *e) {
        it = m_entries.emplace(id, std::move(**e)).first;
      }
    } else {
      m_all_read = true;
      auto all = m_db->stat_entries();
      if (all) {
        m_entries.reserve(m_entries.size() + all->size());
        for (auto& e : *all) {
          m_entries.emplace(Id{e.dev, e.ino}, std::move(e));  // what this build learnt stays
        }
      }
      it = m_entries.find(id);
    }
  }
  if (it == m_entries.end()) {
    return nullptr;
  }
  const StatEntry& e = it->second;
  if (e.size != st.st_size || e.mtime_ns != timespec_ns(st.st_mtim) || e.ctime_ns != timespec_ns(st.st_ctim)) {
    return nullptr;
  }
  return &e;
}

Result<std::string> StatIndex::hash_file(int dirfd, const std::string& name, const std::string& display) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return fail(Errc::io, fmt::format("{}: open: {}", display, std::strerror(errno)));
  }
  UniqueFd owned(fd);
  TRY(auto hashed, sha256_fd(fd, display));
  uint64_t total = hashed.second;
  m_hashed_bytes += total;
  g_bytes_hashed.add(total);
  g_files_hashed.add();
  return hashed.first.str();
}

void StatIndex::learn(StatEntry e, bool hashed) {
  std::lock_guard lock(m_mu);
  if (hashed) {
    ++m_hashed;
  }
  m_new.push_back(e);
  Id id{e.dev, e.ino};
  m_entries.insert_or_assign(id, std::move(e));
}

Result<std::string> StatIndex::digest(int dirfd, const std::string& name, const struct stat& st,
                                      const std::string& display) {
  {
    std::lock_guard lock(m_mu);
    if (const StatEntry* e = find(st)) {
      ++m_reused;
      g_files_reused.add();
      return e->digest;
    }
  }
  TRY(std::string d, hash_file(dirfd, name, display));
  learn(StatEntry{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), st.st_size,
                  timespec_ns(st.st_mtim), timespec_ns(st.st_ctim), d, -1},
        true);
  return d;
}

Result<FileFacts> StatIndex::facts(int dirfd, const std::string& name, const struct stat& st,
                                   const std::string& display) {
  FileFacts out;
  bool hit = false;
  int known_xattrs = -1;
  {
    std::lock_guard lock(m_mu);
    if (const StatEntry* e = find(st)) {
      ++m_reused;
      g_files_reused.add();
      hit = true;
      out.digest = e->digest;
      known_xattrs = e->xattrs;
    }
  }
  if (known_xattrs == 0) {
    return out;  // seen without xattrs under this identity
  }
  if (!hit) {
    TRY(out.digest, hash_file(dirfd, name, display));
  }
  auto xs = fs::xattrs_at(dirfd, name);
  int now_known = 1;
  if (xs) {
    out.xattrs = std::move(*xs);
    now_known = out.xattrs.empty() ? 0 : 1;
  } else {
    out.xattrs_read = false;
  }
  {
    std::lock_guard lock(m_mu);
    ++m_xattrs_listed;
  }
  g_xattrs_listed.add();
  if (!hit || known_xattrs != now_known) {
    learn(StatEntry{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), st.st_size,
                    timespec_ns(st.st_mtim), timespec_ns(st.st_ctim), out.digest, now_known},
          !hit);
  }
  return out;
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
