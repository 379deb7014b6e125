#include "builder/copy_share.hpp"

#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace imgbuild::builder {

namespace fsys = std::filesystem;

std::pair<std::shared_ptr<CopyShare::Slot>, bool> CopyShare::claim(const std::string& key,
                                                                   const std::vector<fsys::path>& parents) {
  std::lock_guard lock(m_mu);
  auto [it, added] = m_slots.try_emplace(key, nullptr);
  if (added) {
    it->second = std::make_shared<Slot>();
    it->second->parents = parents;
  }
  return {it->second, added};
}

void CopyShare::publish(Slot& slot, std::optional<SharedCopyLayer> layer) {
  std::lock_guard lock(slot.mu);
  slot.layer = std::move(layer);
  slot.done = true;
  slot.cv.notify_all();
}

std::optional<SharedCopyLayer> CopyShare::wait(Slot& slot) {
  std::unique_lock lock(slot.mu);
  slot.cv.wait(lock, [&] { return slot.done; });
  return slot.layer;
}

std::optional<SourceFiles> CopyShare::digest(const std::string& key) {
  std::lock_guard lock(m_mu);
  auto it = m_digests.find(key);
  if (it == m_digests.end()) {
    return std::nullopt;
  }
  return it->second;
}

void CopyShare::remember_digest(const std::string& key, const SourceFiles& files) {
  std::lock_guard lock(m_mu);
  m_digests.try_emplace(key, files);
}

Result<PathFacts> path_facts(const fsys::path& root, const std::string& rel) {
  PathFacts f;
  const std::string path = (root / rel).string();
  if (::lstat(path.c_str(), &f.st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return f;
    }
    return fail(Errc::io, "cannot stat " + path + ": " + std::strerror(errno));
  }
  f.present = true;
  if (S_ISLNK(f.st.st_mode)) {
    std::string buf(static_cast<size_t>(f.st.st_size) + 1, '\0');
    ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) {
      return fail(Errc::io, "cannot read the link " + path + ": " + std::strerror(errno));
    }
    buf.resize(static_cast<size_t>(n));
    f.link = std::move(buf);
  }
  ssize_t size = ::llistxattr(path.c_str(), nullptr, 0);
  if (size <= 0) {
    return f;  // none, or a filesystem without xattrs
  }
  std::string names(static_cast<size_t>(size), '\0');
  size = ::llistxattr(path.c_str(), names.data(), names.size());
  if (size < 0) {
    return fail(Errc::io, "cannot list the xattrs of " + path + ": " + std::strerror(errno));
  }
  names.resize(static_cast<size_t>(size));
  for (size_t at = 0; at < names.size();) {
    std::string name(names.c_str() + at);
    at += name.size() + 1;
    if (name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")) {
      continue;
    }
    ssize_t vlen = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    std::string value(vlen > 0 ? static_cast<size_t>(vlen) : 0, '\0');
    if (vlen > 0) {
      vlen = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    }
    if (vlen < 0) {
      return fail(Errc::io, "cannot read the xattr " + name + " of " + path + ": " + std::strerror(errno));
    }
    value.resize(static_cast<size_t>(vlen));
    f.xattrs.emplace_back(std::move(name), std::move(value));
  }
  std::sort(f.xattrs.begin(), f.xattrs.end());
  return f;
}

bool same_facts(const PathFacts& a, const PathFacts& b) {
  if (a.present != b.present) {
    return false;
  }
  if (!a.present) {
    return true;
  }
  const struct stat& x = a.st;
  const struct stat& y = b.st;
  if (x.st_mode != y.st_mode || x.st_uid != y.st_uid || x.st_gid != y.st_gid || x.st_rdev != y.st_rdev ||
      x.st_mtim.tv_sec != y.st_mtim.tv_sec || x.st_mtim.tv_nsec != y.st_mtim.tv_nsec) {
    return false;
  }
  if (!S_ISDIR(x.st_mode) && x.st_size != y.st_size) {
    return false;
  }
  return a.link == b.link && a.xattrs == b.xattrs;
}

std::vector<std::string> dest_prefixes(const std::string& dest, const std::string& workdir) {
  const std::string full = dest.starts_with('/') ? dest : workdir + "/" + dest;
  std::vector<std::string> parts;
  size_t at = 0;
  while (at <= full.size()) {
    size_t end = full.find('/', at);
    if (end == std::string::npos) {
      end = full.size();
    }
    std::string part = full.substr(at, end - at);
    at = end + 1;
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      if (!parts.empty()) {
        parts.pop_back();
      }
      continue;
    }
    parts.push_back(std::move(part));
  }
  std::vector<std::string> out;
  std::string prefix;
  for (const auto& p : parts) {
    prefix += prefix.empty() ? p : "/" + p;
    out.push_back(prefix);
  }
  return out;
}

Result<bool> same_dest_path(const std::vector<std::string>& prefixes, const fsys::path& theirs,
                            const fsys::path& mine) {
  for (const auto& p : prefixes) {
    TRY(PathFacts a, path_facts(theirs, p));
    TRY(PathFacts b, path_facts(mine, p));
    if (!same_facts(a, b)) {
      return false;
    }
    if (!a.present) {
      return true;  // absent in both: created the same way below
    }
    if (!S_ISDIR(a.st.st_mode)) {
      // A symlink leads elsewhere; a file is replaced or refused: not
      // worth proving the same.
      return false;
    }
  }
  return true;
}

namespace {

Result<bool> same_below(const fsys::path& layer_dir, const std::string& rel, const fsys::path& theirs,
                        const fsys::path& mine) {
  std::error_code ec;
  fsys::directory_iterator it(rel.empty() ? layer_dir : layer_dir / rel, ec);
  if (ec) {
    return fail(Errc::io, "cannot read " + (layer_dir / rel).string() + ": " + ec.message());
  }
  for (const auto& entry : it) {
    const std::string child = rel.empty() ? entry.path().filename().string()
                                          : rel + "/" + entry.path().filename().string();
    TRY(PathFacts a, path_facts(theirs, child));
    TRY(PathFacts b, path_facts(mine, child));
    if (!same_facts(a, b)) {
      return false;
    }
    if (!a.present || !S_ISDIR(a.st.st_mode)) {
      continue;  // absent in both (all of it is the copy's), or the same file
    }
    if (entry.is_directory(ec) && !entry.is_symlink(ec)) {
      TRY(bool same, same_below(layer_dir, child, theirs, mine));
      if (!same) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

Result<bool> same_copy_result(const fsys::path& layer_dir, const fsys::path& theirs, const fsys::path& mine) {
  return same_below(layer_dir, "", theirs, mine);
}

Result<bool> same_targets(const std::vector<std::string>& targets, const fsys::path& theirs,
                          const fsys::path& mine) {
  // Per path looked at: absent in both, the same directory, the same
  // non-directory.
  enum class Seen { absent, dir, other };
  std::map<std::string, Seen> seen;
  for (const auto& t : targets) {
    std::vector<std::string> comps;
    for (size_t at = 0; at <= t.size();) {
      size_t end = t.find('/', at);
      if (end == std::string::npos) {
        end = t.size();
      }
      if (end > at) {
        comps.push_back(t.substr(at, end - at));
      }
      at = end + 1;
    }
    std::string prefix;
    for (size_t i = 0; i < comps.size(); ++i) {
      prefix += prefix.empty() ? comps[i] : "/" + comps[i];
      Seen state;
      if (auto it = seen.find(prefix); it != seen.end()) {
        state = it->second;
      } else {
        TRY(PathFacts a, path_facts(theirs, prefix));
        TRY(PathFacts b, path_facts(mine, prefix));
        if (!same_facts(a, b) || (a.present && S_ISLNK(a.st.st_mode))) {
          return false;
        }
        state = !a.present ? Seen::absent : S_ISDIR(a.st.st_mode) ? Seen::dir : Seen::other;
        seen.emplace(prefix, state);
      }
      if (state == Seen::absent) {
        break;  // made by the copy in both, all of it
      }
      if (state == Seen::other && i + 1 < comps.size()) {
        return false;  // a file on the way: replaced or refused, not proven
      }
    }
  }
  return true;
}

}  // namespace imgbuild::builder
