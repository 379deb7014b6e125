#include "builder/copy_share.hpp"

#include <algorithm>

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

Result<PathFacts> path_facts(const fs::Root& root, const std::string& rel) {
  PathFacts f;
  TRY(std::optional<struct stat> st, root.lstat(rel));
  if (!st) {
    return f;
  }
  f.present = true;
  f.st = *st;
  if (S_ISLNK(f.st.st_mode)) {
    TRY(f.link, root.readlink(rel));
  }
  TRY(fs::Xattrs xattrs, root.xattrs(rel));
  for (auto& [name, value] : xattrs) {
    if (!name.starts_with("trusted.overlay.") && !name.starts_with("user.overlay.")) {
      f.xattrs.emplace_back(std::move(name), std::move(value));
    }
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
  std::vector<std::string> out;
  std::string prefix;
  for (const auto& c : fs::clean_components(dest.starts_with('/') ? dest : workdir + "/" + dest)) {
    prefix += prefix.empty() ? c : "/" + c;
    out.push_back(prefix);
  }
  return out;
}

Result<bool> same_dest_path(const std::vector<std::string>& prefixes, const fsys::path& theirs_dir,
                            const fsys::path& mine_dir) {
  TRY(fs::Root theirs, fs::Root::open(theirs_dir.string()));
  TRY(fs::Root mine, fs::Root::open(mine_dir.string()));
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

Result<bool> same_below(const fsys::path& layer_dir, const std::string& rel, const fs::Root& theirs,
                        const fs::Root& mine) {
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

Result<bool> same_copy_result(const fsys::path& layer_dir, const fsys::path& theirs_dir,
                              const fsys::path& mine_dir) {
  TRY(fs::Root theirs, fs::Root::open(theirs_dir.string()));
  TRY(fs::Root mine, fs::Root::open(mine_dir.string()));
  return same_below(layer_dir, "", theirs, mine);
}

Result<bool> same_targets(const std::vector<std::string>& targets, const fsys::path& theirs_dir,
                          const fsys::path& mine_dir) {
  TRY(fs::Root theirs, fs::Root::open(theirs_dir.string()));
  TRY(fs::Root mine, fs::Root::open(mine_dir.string()));
  // Per path looked at: absent in both, the same directory, the same
  // non-directory.
  enum class Seen { absent, dir, other };
  std::map<std::string, Seen> seen;
  for (const auto& t : targets) {
    const std::vector<std::string> comps = fs::clean_components(t);
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
