#include "builder/basic_copy.hpp"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "sandbox/user.hpp"
#include "util/fs.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace {

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
};

Result<std::optional<std::string>> read_in_root(const fs::Root& root, std::string_view path) {
  TRY(auto st, root.lstat(path));
  if (!st || !S_ISREG(st->st_mode)) {
    return std::optional<std::string>{};
  }
  TRY(UniqueFd fd, root.open_at(path, O_RDONLY));
  std::string out;
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      return fail(Errc::io, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (size_t{16} << 20)) {
      return fail(Errc::limit, fmt::format("{} is too large", path));
    }
  }
  return std::optional<std::string>(std::move(out));
}

Result<std::optional<mode_t>> parse_chmod(const std::string& text) {
  if (text.empty()) {
    return std::optional<mode_t>{};
  }
  if (text.find_first_not_of("01234567") != std::string::npos || text.size() > 5) {
    return fail(Errc::unsupported, fmt::format("invalid chmod parameter: '{}'", text));
  }
  unsigned long v = std::stoul(text, nullptr, 8);
  if (v > 07777) {
    return fail(Errc::invalid_argument, fmt::format("invalid chmod parameter: '{}'", text));
  }
  return std::optional<mode_t>(static_cast<mode_t>(v));
}

bool has_wildcard(std::string_view s) { return s.find_first_of("*?[") != std::string_view::npos; }

std::string join_path(const std::string& a, const std::string& b) {
  if (a.empty()) {
    return b;
  }
  return a + "/" + b;
}

class Copier {
public:
  Copier(const fs::Root& src, const fs::Root& dst, Owner owner, std::optional<mode_t> chmod)
      : m_src(src), m_dst(dst), m_owner(owner), m_chmod(chmod) {}

  Result<void> copy(const std::string& src, const std::string& dst, bool follow) {
    struct stat st {};
    if (follow) {
      TRY(UniqueFd fd, m_src.open_at(src.empty() ? "." : src, O_PATH));
      if (::fstat(fd.get(), &st) != 0) {
        return fail(Errc::io, fmt::format("cannot stat {}: {}", src, std::strerror(errno)));
      }
    } else {
      TRY(auto ost, m_src.lstat(src));
      if (!ost) {
        return ok();
      }
      st = *ost;
    }
    if (S_ISDIR(st.st_mode)) {
      TRY_VOID(make_dir(dst, st));
      TRY(UniqueFd dfd, m_src.open_at(src.empty() ? "." : src, O_RDONLY | O_DIRECTORY));
      TRY(auto names, fs::list_dir(dfd.get()));
      for (const auto& n : names) {
        TRY_VOID(copy(join_path(src, n), join_path(dst, n), false));
      }
      return finish(dst, st, false);
    }
    TRY_VOID(remove_existing(dst));
    if (S_ISLNK(st.st_mode)) {
      TRY(std::string target, m_src.readlink(src));
      TRY_VOID(m_dst.symlink(dst, target));
      TRY_VOID(m_dst.chown(dst, m_owner.uid, m_owner.gid));
      return m_dst.set_mtime(dst, st.st_mtim.tv_sec, static_cast<uint32_t>(st.st_mtim.tv_nsec));
    }
    if (S_ISREG(st.st_mode) || S_ISSOCK(st.st_mode)) {
      TRY(UniqueFd out, m_dst.create_file(dst, 0600));
      if (S_ISREG(st.st_mode)) {
        TRY(UniqueFd in, m_src.open_at(src, O_RDONLY | (follow ? 0 : O_NOFOLLOW)));
        TRY_VOID(copy_data(in.get(), out.get(), src));
      }
      return finish(dst, st, true);
    }
    if (S_ISFIFO(st.st_mode)) {
      TRY_VOID(m_dst.mknod(dst, S_IFIFO | 0600, 0));
      return finish(dst, st, true);
    }
    return ok();  // devices are not copied
  }

private:
  Result<void> copy_data(int in, int out, const std::string& name) {
    char buf[65536];
    while (true) {
      ssize_t n = ::read(in, buf, sizeof buf);
      if (n < 0) {
        return fail(Errc::io, fmt::format("cannot read {}: {}", name, std::strerror(errno)));
      }
      if (n == 0) {
        return ok();
      }
      ssize_t off = 0;
      while (off < n) {
        ssize_t w = ::write(out, buf + off, static_cast<size_t>(n - off));
        if (w < 0) {
          return fail(Errc::io, fmt::format("cannot write {}: {}", name, std::strerror(errno)));
        }
        off += w;
      }
    }
  }

  Result<void> remove_existing(const std::string& dst) {
    TRY(auto cur, m_dst.lstat(dst));
    if (cur) {
      TRY_VOID(m_dst.remove_all(dst));
    } else {
      TRY(auto parent, m_dst.parent(dst, fs::Parents::create));
      (void)parent;
    }
    return ok();
  }

  Result<void> make_dir(const std::string& dst, const struct stat& st) {
    if (dst.empty()) {
      return ok();
    }
    TRY(auto cur, m_dst.lstat(dst));
    if (cur && S_ISDIR(cur->st_mode)) {
      return ok();
    }
    if (cur) {
      TRY_VOID(m_dst.remove_all(dst));
    }
    TRY(auto parent, m_dst.parent(dst, fs::Parents::create));
    (void)parent;
    TRY_VOID(m_dst.mkdir(dst, st.st_mode & 07777));
    return ok();
  }

  Result<void> finish(const std::string& dst, const struct stat& st, bool file) {
    if (dst.empty()) {
      return ok();
    }
    (void)file;
    TRY_VOID(m_dst.chown(dst, m_owner.uid, m_owner.gid));
    TRY_VOID(m_dst.chmod(dst, m_chmod ? *m_chmod : (st.st_mode & 07777)));
    return m_dst.set_mtime(dst, st.st_mtim.tv_sec, static_cast<uint32_t>(st.st_mtim.tv_nsec));
  }

  const fs::Root& m_src;
  const fs::Root& m_dst;
  Owner m_owner;
  std::optional<mode_t> m_chmod;
};

}  // namespace

Result<void> basic_copy(const BasicCopyRequest& request) {
  TRY(fs::Root dst, fs::Root::open(request.dest_root));
  TRY(fs::Root src, fs::Root::open(request.source_root.empty() ? request.dest_root : request.source_root));
  Owner owner;
  if (!request.chown.empty()) {
    TRY(auto passwd, read_in_root(dst, "etc/passwd"));
    TRY(auto group, read_in_root(dst, "etc/group"));
    TRY(auto user, sandbox::resolve_user(request.chown, passwd, group));
    owner.uid = user.uid;
    owner.gid = user.gid;
  }
  TRY(auto chmod, parse_chmod(request.chmod));

  // Expand the sources.
  struct Item {
    std::string path;
    bool literal;
  };
  std::vector<Item> items;
  bool wildcard = false;
  for (const auto& s : request.sources) {
    std::string clean = fs::clean_path(s);
    if (!has_wildcard(clean)) {
      TRY(auto st, src.lstat(clean));
      if (!st && !clean.empty()) {
        // A symlink chain may still resolve.
        auto fd = src.open_at(clean, O_PATH);
        if (!fd) {
          return fail(Errc::not_found, fmt::format("failed to calculate checksum: \"/{}\": not found", clean));
        }
      }
      items.push_back({clean, true});
      continue;
    }
    wildcard = true;
    size_t slash = clean.rfind('/');
    std::string dir = slash == std::string::npos ? "" : clean.substr(0, slash);
    std::string pattern = slash == std::string::npos ? clean : clean.substr(slash + 1);
    if (has_wildcard(dir)) {
      return fail(Errc::unsupported, fmt::format("wildcards in directory names are not supported yet: {}", s));
    }
    auto dfd = src.open_at(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
    if (!dfd) {
      continue;
    }
    TRY(auto names, fs::list_dir(dfd->get()));
    for (const auto& n : names) {
      if (::fnmatch(pattern.c_str(), n.c_str(), FNM_PATHNAME) == 0) {
        items.push_back({join_path(dir, n), false});
      }
    }
  }

  std::string dest = request.dest;
  bool dest_dir = dest.ends_with("/") || request.sources.size() + request.inline_sources.size() > 1 || wildcard;
  std::string dest_clean = fs::clean_path(dest);
  if (!dest_dir) {
    TRY(auto st, dst.lstat(dest_clean));
    if (st && S_ISDIR(st->st_mode)) {
      dest_dir = true;
    }
    if (dest_clean.empty()) {
      dest_dir = true;
    }
  }
  if (dest_dir && !dest_clean.empty()) {
    TRY(UniqueFd d, dst.mkdir_all(dest_clean));
    (void)d;
  }
  Copier copier(src, dst, owner, chmod);
  for (const auto& item : items) {
    struct stat st {};
    {
      TRY(UniqueFd fd, src.open_at(item.path.empty() ? "." : item.path, O_PATH));
      if (::fstat(fd.get(), &st) != 0) {
        return fail(Errc::io, fmt::format("cannot stat {}", item.path));
      }
    }
    std::string base = item.path.substr(item.path.rfind('/') == std::string::npos ? 0 : item.path.rfind('/') + 1);
    if (S_ISDIR(st.st_mode)) {
      if (!dest_clean.empty()) {
        TRY(UniqueFd d, dst.mkdir_all(dest_clean));
        (void)d;
      }
      // Directory contents go into dest (wildcard matches keep their name).
      std::string target = item.literal ? dest_clean : join_path(dest_clean, base);
      TRY_VOID(copier.copy(item.path, target, true));
      continue;
    }
    std::string target = dest_dir ? join_path(dest_clean, base) : dest_clean;
    TRY_VOID(copier.copy(item.path, target, true));
  }
  for (const auto& [name, content] : request.inline_sources) {
    std::string target = dest_dir ? join_path(dest_clean, fs::clean_path(name)) : dest_clean;
    TRY(auto cur, dst.lstat(target));
    if (cur) {
      TRY_VOID(dst.remove_all(target));
    }
    TRY(auto parent, dst.parent(target, fs::Parents::create));
    (void)parent;
    TRY(UniqueFd out, dst.create_file(target, 0644));
    size_t off = 0;
    while (off < content.size()) {
      ssize_t w = ::write(out.get(), content.data() + off, content.size() - off);
      if (w < 0) {
        return fail(Errc::io, fmt::format("cannot write {}", target));
      }
      off += static_cast<size_t>(w);
    }
    TRY_VOID(dst.chown(target, owner.uid, owner.gid));
    TRY_VOID(dst.chmod(target, chmod ? *chmod : 0644));
    TRY_VOID(dst.set_mtime(target, request.heredoc_mtime, 0));
  }
  return ok();
}

}  // namespace imgbuild::builder
