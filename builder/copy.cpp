// COPY/ADD file semantics (see copy.hpp for the rules).
//
// The copier resolves the destination once (symlinks followed inside the
// destination root), decides whether it names a directory, then copies each
// source: local sources through walk_source (so .dockerignore and --exclude
// hide the same entries the source digest skips), archives through
// snapshot::apply_layer into a Root opened at the destination directory, URL
// downloads and git checkouts through a private temporary directory that is
// then copied like a local source. Every write goes through fs::Root (openat2
// RESOLVE_IN_ROOT), so neither the sources nor the destination's own symlinks
// can lead outside the destination root. Directory mtimes are set last,
// deepest first, because writing children changes them.

#include "builder/copy.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "parser/instructions.hpp"
#include "parser/lower.hpp"
#include "registry/http.hpp"
#include "sandbox/user.hpp"
#include "snapshot/apply.hpp"
#include "util/hash.hpp"
#include "util/rootless.hpp"
#include "util/strings.hpp"
#include "util/tar.hpp"

extern char** environ;

namespace imgbuild::builder {
namespace {

std::string errno_message(int e) { return std::strerror(e); }

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

using str::join_path;

std::string base_name(std::string_view p) {
  size_t slash = p.rfind('/');
  return std::string(slash == std::string_view::npos ? p : p.substr(slash + 1));
}

std::string instruction_name(CopyKind k) { return k == CopyKind::copy ? "COPY" : "ADD"; }

// A temporary directory removed when the object goes away.
class TempDir {
public:
  static Result<TempDir> create(const std::string& parent, const std::string& prefix) {
    std::string base = parent;
    if (base.empty()) {
      const char* t = std::getenv("TMPDIR");
      base = (t != nullptr && *t != '\0') ? t : "/tmp";
    }
    std::string tmpl = base + "/" + prefix + "XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return fail(Errc::io, fmt::format("creating a temporary directory in {}: {}", base, errno_message(errno)));
    }
    TempDir d;
    d.m_path = tmpl;
    return d;
  }
  TempDir() = default;
  TempDir(TempDir&& o) noexcept : m_path(std::exchange(o.m_path, std::string())) {}
  TempDir& operator=(TempDir&& o) noexcept {
    std::swap(m_path, o.m_path);
    return *this;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (!m_path.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(m_path, ec);
    }
  }
  const std::string& path() const { return m_path; }

private:
  std::string m_path;
};

// ---------------------------------------------------------------- chmod

bool parse_octal(std::string_view s, uint32_t& out) {
  if (s.empty() || s.size() > 5) {
    return false;
  }
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '7') {
      return false;
    }
    v = v * 8 + static_cast<uint32_t>(c - '0');
  }
  out = v;
  return v <= 07777;
}


// ---------------------------------------------------------------- files

Result<std::optional<std::string>> read_small_file(const fs::Root& root, std::string_view path) {
  auto fd = root.open_at(path, O_RDONLY);
  if (!fd) {
    if (fd.error().code == Errc::not_found) {
      return std::optional<std::string>();
    }
    return fail(std::move(fd).error());
  }
  std::string out;
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd->get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Errc::io, fmt::format("/{}: read: {}", path, errno_message(errno)));
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 16 * 1024 * 1024) {
      return fail(Errc::limit, fmt::format("/{} is too large", path));
    }
  }
  return std::optional<std::string>(std::move(out));
}

// Copies in to out until EOF. `range_ok` (when given) remembers across calls
// that copy_file_range cannot work between these two filesystems (a context
// on ext4 into an overlay is EXDEV every time), so later files skip the
// failing call; `size` (when known from stat) lets a file read in one piece
// skip the read that would only confirm EOF.
Result<void> copy_fd_data(int in, int out, const std::string& what, bool* range_ok = nullptr,
                          std::optional<uint64_t> size = std::nullopt) {
  while (range_ok == nullptr || *range_ok) {
    ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, 1 << 30, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP || errno == EBADF) {
        if (range_ok != nullptr) {
          *range_ok = false;
        }
        break;  // fall back to read/write
      }
      return fail(Errc::io, fmt::format("{}: copy: {}", what, errno_message(errno)));
    }
    if (n == 0) {
      return ok();
    }
  }
  char buf[1 << 16];
  uint64_t copied = 0;
  while (true) {
    ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Errc::io, fmt::format("{}: read: {}", what, errno_message(errno)));
    }
    if (n == 0) {
      return ok();
    }
    ssize_t off = 0;
    while (off < n) {
      ssize_t w = ::write(out, buf + off, static_cast<size_t>(n - off));
      if (w < 0) {
        if (errno == EINTR) {
          continue;
        }
        return fail(Errc::io, fmt::format("{}: write: {}", what, errno_message(errno)));
      }
      off += w;
    }
    copied += static_cast<uint64_t>(n);
    if (size && copied == *size && static_cast<size_t>(n) < sizeof buf) {
      return ok();  // a short read that reached the stat size: at EOF
    }
  }
}

Result<void> write_all(int fd, std::string_view data, const std::string& what) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t w = ::write(fd, data.data() + off, data.size() - off);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Errc::io, fmt::format("{}: write: {}", what, errno_message(errno)));
    }
    off += static_cast<size_t>(w);
  }
  return ok();
}

// True when the file at fd starts with a tar archive (any compression).
bool is_archive_fd(int fd) {
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    return false;
  }
  auto r = tar::Reader::open_fd(fd, "probe");
  bool yes = false;
  if (r) {
    auto e = (*r)->next();
    yes = e.has_value() && e->has_value();
  }
  ::lseek(fd, 0, SEEK_SET);
  return yes;
}

// ---------------------------------------------------------------- copier

struct Copier {
  const CopyRequest& req;
  const CopyEnv& env;
  const fs::Root& dest;
  std::optional<ChmodSpec> chmod;
  Owner owner;
  CopyResult result;
  /// Keep each source entry's uid/gid instead of `owner` (context export).
  bool keep_owner = false;
  /// Directories (relative paths) known to exist in dest during this copy.
  std::set<std::string> known_dirs;
  /// Directories whose mtime is set at the end: (path, sec, nsec).
  std::vector<std::tuple<std::string, int64_t, uint32_t>> dir_times;
  /// (dev, ino) of multiply-linked source files → first destination path.
  std::map<std::pair<dev_t, ino_t>, std::string> links;
  /// False once copy_file_range failed between source and dest (one COPY
  /// reads one tree into one view): the rest use read/write directly.
  bool copy_range_ok = true;
  /// Mode of the directories a copy makes on the way to its destination (and
  /// of a directory source's missing destination): an octal --chmod's mode,
  /// else 0755 — BuildKit v0.22 creates them with CopyInfo.Mode (a symbolic
  /// --chmod leaves it unset), permission bits only.
  uint32_t dir_mode = 0755;

  void record(const std::string& path, mode_t type) {
    result.written.push_back(WrittenEntry{"/" + path, type});
  }

  // Creates missing parents of `path` (relative) as `mode` dirs owned by the
  // --chown owner (0:0 without). Existing ones, and symlinks to directories
  // inside the root, are left alone.
  Result<void> make_parents(const std::string& path, uint32_t mode) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos || known_dirs.count(path.substr(0, slash)) != 0) {
      return ok();  // top level, or a parent this copy already made or saw
    }
    std::vector<std::string> comps = fs::clean_components(path);
    std::string cur;
    for (size_t i = 0; i + 1 < comps.size(); ++i) {
      cur = join_path(cur, comps[i]);
      if (known_dirs.count(cur) != 0) {
        continue;
      }
      TRY(auto st, dest.lstat(cur));
      if (!st) {
        TRY_VOID(make_dir(cur, mode, owner, std::nullopt));
      }
      known_dirs.insert(cur);
    }
    return ok();
  }

  Result<void> make_dir(const std::string& path, uint32_t mode, Owner o,
                        std::optional<std::pair<int64_t, uint32_t>> mtime) {
    TRY_VOID(dest.mkdir(path, 0700));
    known_dirs.insert(path);
    TRY_VOID(dest.chown(path, o.uid, o.gid));
    TRY_VOID(dest.chmod(path, mode));
    if (mtime) {
      dir_times.emplace_back(path, mtime->first, mtime->second);
    }
    record(path, S_IFDIR);
    return ok();
  }

  // Removes a non-directory at path (or a directory when `dirs_too`).
  Result<bool> clear_target(const std::string& path, bool dirs_too) {
    TRY(auto st, dest.lstat(path));
    if (!st) {
      return false;
    }
    if (S_ISDIR(st->st_mode) && !dirs_too) {
      return true;  // an existing directory stays
    }
    TRY_VOID(dest.remove_all(path));
    return false;
  }

  uint32_t mode_for(uint32_t src_mode, bool is_dir) const {
    return chmod ? chmod_apply(*chmod, src_mode & 07777, is_dir) : (src_mode & 07777);
  }

  Result<void> copy_xattrs(int src_dirfd, const std::string& src_name, const std::string& target) {
    auto xs = fs::xattrs_at(src_dirfd, src_name);
    if (!xs) {
      return ok();  // filesystems without xattr support
    }
    for (const auto& [k, v] : *xs) {
      if (starts_with(k, "trusted.overlay.") || starts_with(k, "user.overlay.") || k == "security.selinux") {
        continue;
      }
      (void)dest.set_xattr(target, k, v);
    }
    return ok();
  }

  // Writes one walked entry at `target` (relative path in dest). An empty
  // e.rel marks the source itself (an existing directory there keeps its
  // metadata; below it, an existing directory takes the source's).
  Result<void> write_entry(const WalkEntry& e, const std::string& target) {
    const struct stat& st = e.st;
    if (target.empty()) {
      // The destination root itself: only directories can land there.
      if (!S_ISDIR(st.st_mode)) {
        return fail(Errc::invalid_argument, "cannot copy a file onto /");
      }
      return ok();
    }
    TRY_VOID(make_parents(target, dir_mode));
    if (S_ISDIR(st.st_mode)) {
      // Follow a symlink to a directory inside the root (var/run -> /run).
      auto existing = dest.open_at(target, O_PATH | O_DIRECTORY);
      if (existing) {
        known_dirs.insert(target);
        if (!e.rel.empty()) {
          TRY_VOID(overwrite_dir_meta(e, target));
        }
        return ok();
      }
      TRY(bool is_dir, clear_target(target, false));
      (void)is_dir;
      TRY_VOID(make_dir(target, mode_for(st.st_mode, true), owner_for(st),
                        std::make_pair(static_cast<int64_t>(st.st_mtim.tv_sec),
                                       static_cast<uint32_t>(st.st_mtim.tv_nsec))));
      TRY_VOID(copy_xattrs(e.dirfd, e.name, target));
      return ok();
    }
    TRY(bool is_dir, clear_target(target, false));
    if (is_dir) {
      return fail(Errc::invalid_argument,
                  fmt::format("cannot replace directory /{} with a non-directory", target));
    }
    if (S_ISSOCK(st.st_mode)) {
      // BuildKit turns a socket into an empty regular file.
      TRY(auto out, dest.create_file(target, 0600));
      TRY_VOID(finish_file(out.get(), target, mode_for(st.st_mode, false), st.st_mtim, owner_for(st)));
      result.files += 1;
      record(target, S_IFREG);
      return ok();
    }
    if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
      auto it = links.find({st.st_dev, st.st_ino});
      if (it != links.end()) {
        TRY_VOID(dest.link(it->second, target));
        record(target, S_IFREG);
        return ok();
      }
      links[{st.st_dev, st.st_ino}] = target;
    }
    if (S_ISREG(st.st_mode)) {
      int in = ::openat(e.dirfd, e.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (in < 0) {
        return fail(Errc::io, fmt::format("/{}: open: {}", e.path, errno_message(errno)));
      }
      UniqueFd infd(in);
      TRY(auto out, dest.create_file(target, 0600));
      TRY_VOID(copy_fd_data(in, out.get(), "/" + target, &copy_range_ok, static_cast<uint64_t>(st.st_size)));
      TRY_VOID(finish_file(out.get(), target, mode_for(st.st_mode, false), st.st_mtim, owner_for(st)));
      TRY_VOID(copy_xattrs(e.dirfd, e.name, target));
      result.files += 1;
      result.bytes += static_cast<uint64_t>(st.st_size);
      record(target, S_IFREG);
      return ok();
    }
    if (S_ISLNK(st.st_mode)) {
      std::string link_target(4096, '\0');
      ssize_t n = ::readlinkat(e.dirfd, e.name.c_str(), link_target.data(), link_target.size());
      if (n < 0) {
        return fail(Errc::io, fmt::format("/{}: readlink: {}", e.path, errno_message(errno)));
      }
      link_target.resize(static_cast<size_t>(n));
      TRY_VOID(dest.symlink(target, link_target));
      TRY_VOID(dest.chown(target, owner_for(st).uid, owner_for(st).gid));
      TRY_VOID(dest.set_mtime(target, st.st_mtim.tv_sec, static_cast<uint32_t>(st.st_mtim.tv_nsec)));
      record(target, S_IFLNK);
      return ok();
    }
    // Devices and fifos.
    TRY_VOID(dest.mknod(target, (st.st_mode & S_IFMT) | 0600, st.st_rdev));
    TRY_VOID(dest.chown(target, owner_for(st).uid, owner_for(st).gid));
    TRY_VOID(dest.chmod(target, mode_for(st.st_mode, false)));
    TRY_VOID(dest.set_mtime(target, st.st_mtim.tv_sec, static_cast<uint32_t>(st.st_mtim.tv_nsec)));
    record(target, st.st_mode & S_IFMT);
    return ok();
  }

  Owner owner_for(const struct stat& st) const { return keep_owner ? Owner{st.st_uid, st.st_gid} : owner; }

  // A directory below the source that already exists in dest (not through a
  // symlink) takes the source's owner, mode, xattrs and mtime, as BuildKit's
  // copier does; the destination of the source itself keeps its own.
  Result<void> overwrite_dir_meta(const WalkEntry& e, const std::string& target) {
    TRY(auto now, dest.lstat(target));
    if (!now || !S_ISDIR(now->st_mode)) {
      return ok();
    }
    const struct stat& st = e.st;
    TRY_VOID(dest.chown(target, owner_for(st).uid, owner_for(st).gid));
    TRY_VOID(dest.chmod(target, mode_for(st.st_mode, true)));
    TRY_VOID(copy_xattrs(e.dirfd, e.name, target));
    dir_times.emplace_back(target, static_cast<int64_t>(st.st_mtim.tv_sec), static_cast<uint32_t>(st.st_mtim.tv_nsec));
    record(target, S_IFDIR);
    return ok();
  }

  Result<void> finish_file(int fd, const std::string& target, uint32_t mode, struct timespec mtime,
                           std::optional<Owner> who = std::nullopt) {
    Owner o = who.value_or(owner);
    if (::fchown(fd, o.uid, o.gid) != 0) {
      return fail(Errc::io, fmt::format("/{}: {}", target, rootless::chown_failure(errno, o.uid, o.gid)));
    }
    if (::fchmod(fd, mode) != 0) {
      return fail(Errc::io, fmt::format("/{}: chmod: {}", target, errno_message(errno)));
    }
    struct timespec ts[2] = {mtime, mtime};
    if (::futimens(fd, ts) != 0) {
      return fail(Errc::io, fmt::format("/{}: utimens: {}", target, errno_message(errno)));
    }
    return ok();
  }

  // Writes a regular file with the given bytes (heredocs, downloads).
  // mtime: none keeps the time of writing.
  Result<void> write_bytes(const std::string& target, std::string_view data, uint32_t mode,
                           std::optional<int64_t> mtime) {
    TRY_VOID(make_parents(target, dir_mode));
    TRY(bool is_dir, clear_target(target, false));
    if (is_dir) {
      return fail(Errc::invalid_argument, fmt::format("cannot replace directory /{} with a file", target));
    }
    TRY(auto out, dest.create_file(target, 0600));
    TRY_VOID(write_all(out.get(), data, "/" + target));
    struct timespec ts {};
    if (mtime) {
      ts.tv_sec = static_cast<time_t>(*mtime);
    } else {
      ::clock_gettime(CLOCK_REALTIME, &ts);
    }
    TRY_VOID(finish_file(out.get(), target, mode_for(mode, false), ts));
    result.files += 1;
    result.bytes += data.size();
    record(target, S_IFREG);
    return ok();
  }

  Result<void> finish() {
    std::sort(dir_times.begin(), dir_times.end(), [](const auto& a, const auto& b) {
      return std::count(std::get<0>(a).begin(), std::get<0>(a).end(), '/') >
             std::count(std::get<0>(b).begin(), std::get<0>(b).end(), '/');
    });
    for (const auto& [path, sec, nsec] : dir_times) {
      TRY_VOID(dest.set_mtime(path, sec, nsec));
    }
    return ok();
  }
};

// The number of leading components before a `/./` pivot in a source
// argument (for --parents), or nullopt when there is none.
std::optional<size_t> pivot_components(std::string_view source) {
  size_t at = source.find("/./");
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  return fs::clean_components(source.substr(0, at)).size();
}

std::string strip_components(const std::string& path, size_t n) {
  std::vector<std::string> comps = fs::clean_components(path);
  std::string out;
  for (size_t i = n; i < comps.size(); ++i) {
    out = join_path(out, comps[i]);
  }
  return out;
}

// ---------------------------------------------------------------- URLs

std::string url_path(std::string_view url) {
  size_t scheme = url.find("://");
  std::string_view rest = scheme == std::string_view::npos ? url : url.substr(scheme + 3);
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) {
    return "";
  }
  std::string_view p = rest.substr(slash);
  size_t cut = p.find_first_of("?#");
  if (cut != std::string_view::npos) {
    p = p.substr(0, cut);
  }
  return std::string(p);
}

std::optional<int64_t> parse_http_date(const std::string& s) {
  struct tm tm {};
  const char* end = ::strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (end == nullptr) {
    return std::nullopt;
  }
  return static_cast<int64_t>(::timegm(&tm));
}

Result<Sha256Digest> parse_checksum(const std::string& value) {
  if (!starts_with(value, "sha256:")) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid checksum digest format: {} (only sha256:<hex> is supported)", value));
  }
  auto d = Sha256Digest::parse(value);
  if (!d) {
    return fail(Errc::invalid_argument, fmt::format("invalid checksum digest format: {}", value));
  }
  return *d;
}

struct Download {
  std::string file;  // temp file path
  std::string name;  // file name for the destination
  std::optional<int64_t> mtime;
};

Result<Download> download(const std::string& url, const CopyEnv& env, const TempDir& tmp, size_t index,
                          const std::optional<std::string>& checksum) {
  std::unique_ptr<registry::HttpTransport> own;
  registry::HttpTransport* http = env.http;
  if (http == nullptr) {
    registry::TransportOptions o;
    o.connect_timeout = std::chrono::milliseconds(15000);
    own = std::make_unique<registry::HttpTransport>(o);
    http = own.get();
  }
  Download d;
  d.file = fmt::format("{}/download-{}", tmp.path(), index);
  int fd = ::open(d.file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(Errc::io, fmt::format("{}: {}", d.file, errno_message(errno)));
  }
  UniqueFd out(fd);
  Sha256 hash;
  registry::HttpRequest req;
  req.url = url;
  req.sink = [&](std::string_view chunk) -> Result<void> {
    hash.update(chunk);
    return write_all(out.get(), chunk, d.file);
  };
  registry::TransportFailure why = registry::TransportFailure::none;
  auto resp = http->send(std::move(req), &why);
  if (!resp) {
    Error e = std::move(resp).error();
    std::string hint = why == registry::TransportFailure::connection ? " (is the network reachable?)" : "";
    return fail(Errc::network, fmt::format("failed to load {}: {}{}", url, e.message, hint));
  }
  if (resp->status < 200 || resp->status > 299) {
    return fail(Errc::network, fmt::format("failed to load {}: invalid response status {}", url, resp->status));
  }
  Sha256Digest got = hash.finish();
  if (checksum) {
    TRY(auto want, parse_checksum(*checksum));
    if (!(want == got)) {
      return fail(Errc::corrupt, fmt::format("digest mismatch {}: {}", want.str(), got.str()));
    }
  }
  if (auto lm = resp->header("last-modified")) {
    d.mtime = parse_http_date(*lm);
  }
  std::string p = url_path(url);
  d.name = base_name(p);
  if (d.name.empty()) {
    d.name = "index.html";
  }
  return d;
}

// ---------------------------------------------------------------- git

struct GitRef {
  std::string remote;
  std::string ref;
  std::string subdir;
  std::string commit;
  bool keep_git_dir = false;
  bool submodules = true;
};

Result<GitRef> parse_git_source(const std::string& source, const CopyRequest& req) {
  GitRef g;
  g.keep_git_dir = req.keep_git_dir;
  std::string s = source;
  std::string fragment;
  size_t hash = s.find('#');
  if (hash != std::string::npos) {
    fragment = s.substr(hash + 1);
    s = s.substr(0, hash);
  }
  size_t q = s.find('?');
  if (q != std::string::npos && !starts_with(s, "git@")) {
    std::string query = s.substr(q + 1);
    s = s.substr(0, q);
    size_t pos = 0;
    while (pos <= query.size()) {
      size_t amp = query.find('&', pos);
      std::string kv = query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
      pos = amp == std::string::npos ? query.size() + 1 : amp + 1;
      if (kv.empty()) {
        continue;
      }
      size_t eq = kv.find('=');
      std::string k = kv.substr(0, eq);
      std::string v = eq == std::string::npos ? "" : kv.substr(eq + 1);
      if (k == "ref" || k == "tag" || k == "branch") {
        if (!g.ref.empty()) {
          return fail(Errc::invalid_argument, fmt::format("git source {}: ref given twice", source));
        }
        g.ref = k == "tag" ? "refs/tags/" + v : (k == "branch" ? "refs/heads/" + v : v);
      } else if (k == "subdir") {
        g.subdir = v;
      } else if (k == "checksum" || k == "commit") {
        g.commit = v;
      } else if (k == "keep-git-dir") {
        g.keep_git_dir = v.empty() || v == "true" || v == "1";
      } else if (k == "submodules") {
        g.submodules = !(v == "false" || v == "0");
      } else {
        return fail(Errc::invalid_argument, fmt::format("git source {}: unexpected query key {:?}", source, k));
      }
    }
  }
  if (!fragment.empty()) {
    size_t colon = fragment.find(':');
    std::string ref = fragment.substr(0, colon);
    if (!ref.empty()) {
      g.ref = ref;
    }
    if (colon != std::string::npos) {
      g.subdir = fragment.substr(colon + 1);
    }
  }
  if (req.checksum) {
    g.commit = *req.checksum;
  }
  g.remote = s;
  return g;
}

// Runs a program (no shell) and returns its exit status; stderr is captured
// into `err` (for messages) through a temp file.
Result<void> run_program(const std::vector<std::string>& argv, const std::string& what, const TempDir& tmp,
                         std::string* out_text = nullptr) {
  std::string out_path = tmp.path() + "/.git-out";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));  // NOLINT: posix_spawn's signature
  }
  args.push_back(nullptr);
  std::vector<std::string> envs = {"GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
                                   "LC_ALL=C", "HOME=/nonexistent"};
  if (const char* p = std::getenv("PATH")) {
    envs.push_back(std::string("PATH=") + p);
  }
  if (const char* s = std::getenv("SSH_AUTH_SOCK")) {
    envs.push_back(std::string("SSH_AUTH_SOCK=") + s);
  }
  std::vector<char*> envp;
  for (auto& e : envs) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    return fail(Errc::not_found, fmt::format("{}: cannot run {}: {}", what, argv[0], errno_message(rc)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return fail(Errc::io, fmt::format("{}: waitpid: {}", what, errno_message(errno)));
    }
  }
  std::string text;
  {
    std::ifstream in(out_path);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  ::unlink(out_path.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
      text.pop_back();
    }
    return fail(Errc::io, fmt::format("{} failed: {}", what, text));
  }
  if (out_text != nullptr) {
    *out_text = text;
  }
  return ok();
}

}  // namespace

// ---------------------------------------------------------------- public

std::vector<std::string> written_paths(const CopyResult& result) {
  std::vector<std::string> out;
  out.reserve(result.written.size());
  for (const auto& w : result.written) {
    out.push_back(w.path);
  }
  return out;
}

SourceKind classify_source(std::string_view source) {
  if (starts_with(source, "git@") && source.find(':') != std::string_view::npos) {
    return SourceKind::git;
  }
  if (starts_with(source, "git://") || starts_with(source, "ssh://")) {
    return SourceKind::git;
  }
  if (starts_with(source, "http://") || starts_with(source, "https://")) {
    std::string p = url_path(source);
    if (ends_with(p, ".git")) {
      return SourceKind::git;
    }
    return SourceKind::url;
  }
  return SourceKind::local;
}

Result<ChmodSpec> parse_chmod(std::string_view value) {
  ChmodSpec spec;
  uint32_t v = 0;
  if (parse_octal(value, v)) {
    spec.octal = v;
    return spec;
  }
  // One validator (the parser's) for every --chmod. The value here is
  // already expanded; the parser lets '$' through for exactly this later
  // check, so a '$' left now is simply invalid.
  if (value.find('$') != std::string_view::npos) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid chmod parameter: '{}'. it should be octal string and between 0 and 07777", value));
  }
  TRY_VOID(parser::validate_chmod(value));
  spec.symbolic = std::string(value);
  return spec;
}

uint32_t chmod_apply(const ChmodSpec& spec, uint32_t mode, bool is_dir) {
  if (spec.octal) {
    return *spec.octal;
  }
  uint32_t m = mode & 07777;
  std::string_view s = spec.symbolic;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string_view clause = s.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? s.size() + 1 : comma + 1;
    uint32_t who = 0;
    size_t i = 0;
    for (; i < clause.size() && std::string_view("ugoa").find(clause[i]) != std::string_view::npos; ++i) {
      switch (clause[i]) {
        case 'u': who |= 04700; break;
        case 'g': who |= 02070; break;
        case 'o': who |= 01007; break;
        default: who |= 07777; break;
      }
    }
    if (who == 0) {
      who = 07777;
    }
    while (i < clause.size()) {
      char op = clause[i++];
      uint32_t bits = 0;
      if (i < clause.size() && std::string_view("ugo").find(clause[i]) != std::string_view::npos) {
        uint32_t src = 0;
        switch (clause[i]) {
          case 'u': src = (m >> 6) & 7; break;
          case 'g': src = (m >> 3) & 7; break;
          default: src = m & 7; break;
        }
        bits = src | (src << 3) | (src << 6);
        ++i;
      } else {
        for (; i < clause.size() && std::string_view("rwxXst").find(clause[i]) != std::string_view::npos; ++i) {
          switch (clause[i]) {
            case 'r': bits |= 0444; break;
            case 'w': bits |= 0222; break;
            case 'x': bits |= 0111; break;
            case 'X':
              if (is_dir || (m & 0111) != 0) {
                bits |= 0111;
              }
              break;
            case 's': bits |= 06000; break;
            default: bits |= 01000; break;
          }
        }
      }
      bits &= who;
      if (op == '+') {
        m |= bits;
      } else if (op == '-') {
        m &= ~bits;
      } else {
        m = (m & ~(who & 0777)) | bits;
        if ((who & 04000) != 0 && (bits & 04000) == 0) {
          m &= ~04000u;
        }
        if ((who & 02000) != 0 && (bits & 02000) == 0) {
          m &= ~02000u;
        }
        if ((who & 01000) != 0 && (bits & 01000) == 0) {
          m &= ~01000u;
        }
      }
    }
  }
  return m & 07777;
}

Result<Owner> resolve_chown(std::string_view spec, const fs::Root& user_db) {
  std::string_view user = spec;
  std::optional<std::string_view> group;
  size_t colon = spec.find(':');
  if (colon != std::string_view::npos) {
    user = spec.substr(0, colon);
    group = spec.substr(colon + 1);
  }
  auto numeric = [](std::string_view s) -> std::optional<uint32_t> {
    if (s.empty() || s.size() > 10) {
      return std::nullopt;
    }
    uint64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') {
        return std::nullopt;
      }
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > 0xFFFFFFFEull) {
      return std::nullopt;
    }
    return static_cast<uint32_t>(v);
  };
  TRY(auto passwd, read_small_file(user_db, "/etc/passwd"));
  TRY(auto groups, read_small_file(user_db, "/etc/group"));
  Owner o;
  if (user.empty()) {
    o.uid = 0;
    o.gid = 0;
  } else if (auto n = numeric(user)) {
    o.uid = *n;
    o.gid = *n;
  } else {
    TRY(auto u, sandbox::resolve_user(user, passwd, groups));
    o.uid = u.uid;
    o.gid = u.gid;
  }
  if (group) {
    if (auto n = numeric(*group)) {
      o.gid = *n;
    } else if (group->empty()) {
      return fail(Errc::invalid_argument, fmt::format("invalid --chown value {:?}: empty group", std::string(spec)));
    } else {
      TRY(auto g, sandbox::resolve_user("0:" + std::string(*group), passwd, groups));
      o.gid = g.gid;
    }
  }
  return o;
}

Result<CopyResult> apply_copy(const CopyRequest& req, const CopyEnv& env, const fs::Root& dest) {
  const std::string name = instruction_name(req.kind);
  // Source kinds and the rules that depend on them.
  bool any_remote = false;
  for (const auto& s : req.sources) {
    SourceKind k = classify_source(s);
    if (k != SourceKind::local) {
      any_remote = true;
      if (req.kind == CopyKind::copy) {
        return fail(Errc::invalid_argument, fmt::format("source can't be a URL for COPY"));
      }
    } else if (req.checksum) {
      return fail(Errc::invalid_argument, "checksum requires HTTP(S) or Git sources");
    }
  }
  if (req.checksum && req.sources.size() != 1) {
    return fail(Errc::invalid_argument, "checksum can't be specified for multiple sources");
  }
  (void)any_remote;

  Copier c{req, env, dest, std::nullopt, Owner{}, {}, false, {}, {}, {}};
  if (req.chmod) {
    TRY(c.chmod, parse_chmod(*req.chmod));
    if (c.chmod->octal) {
      // Go's os.Mkdir takes a FileMode: the 07000 bits of a plain number
      // are not its setuid/setgid/sticky flags, so only 0777 reaches mkdir.
      c.dir_mode = *c.chmod->octal & 0777;
    }
  }
  if (req.chown) {
    const fs::Root& db = env.user_db != nullptr ? *env.user_db : dest;
    TRY(c.owner, resolve_chown(*req.chown, db));
  } else {
    c.keep_owner = env.keep_source_owner;
  }
  TRY(auto excludes, IgnoreMatcher::from_patterns(req.excludes));

  // Destination.
  std::string dest_abs = req.dest;
  if (dest_abs.empty()) {
    dest_abs = req.workdir.empty() ? "/" : req.workdir + "/";
  } else if (dest_abs[0] != '/') {
    dest_abs = (req.workdir.empty() ? std::string("/") : req.workdir) + "/" + dest_abs;
  }
  bool dir_hint = ends_with(dest_abs, "/") || ends_with(dest_abs, "/.") || ends_with(dest_abs, "/..");
  TRY(auto dest_path, resolve_real_path(dest, dest_abs, true));
  // BuildKit v0.22 copies each source (each wildcard match) on its own: a
  // dest without a trailing "/" is a directory to copy into when one exists
  // there at that moment, else the path the source is copied onto — with
  // several sources the last one wins, and a directory source's contents
  // go into a directory made there (after a file source: an error).
  auto dest_is_dir = [&]() -> bool {
    return dir_hint || dest_path.empty() || static_cast<bool>(dest.open_at(dest_path, O_PATH | O_DIRECTORY));
  };

  // Local sources first: select everything (so a missing one fails before
  // anything is written), then copy.
  struct LocalItem {
    SelectedSource src;
    std::optional<size_t> pivot;
    size_t source_index = 0;  // which of req.sources matched it
  };
  std::vector<LocalItem> locals;
  for (size_t source_index = 0; source_index < req.sources.size(); ++source_index) {
    const std::string& s = req.sources[source_index];
    if (classify_source(s) != SourceKind::local) {
      continue;
    }
    if (env.source.root == nullptr) {
      return fail(Errc::internal, "apply_copy: no source tree for local sources");
    }
    TRY(auto matches, select_sources(env.source, s, &excludes, req.parents));
    for (auto& m : matches) {
      locals.push_back(LocalItem{std::move(m), pivot_components(s), source_index});
    }
  }

  auto copy_local = [&](const SourceTree& tree, const SelectedSource& src, const std::string& base_target,
                        const IgnoreMatcher* ex) -> Result<void> {
    return walk_source(tree, src, ex, [&](const WalkEntry& e) -> Result<void> {
      return c.write_entry(e, join_path(base_target, e.rel));
    });
  };

  auto ensure_dest_dir = [&](const std::string& path, uint32_t mode) -> Result<void> {
    if (path.empty()) {
      return ok();
    }
    auto existing = dest.open_at(path, O_PATH | O_DIRECTORY);
    if (existing) {
      return ok();
    }
    TRY(auto st, dest.lstat(path));
    if (st) {
      return fail(Errc::invalid_argument, fmt::format("cannot copy to non-directory: /{}", path));
    }
    TRY_VOID(c.make_parents(path, mode));
    return c.make_dir(path, mode, c.owner, std::nullopt);
  };

  // Extracts the archive at fd into the directory `into` (relative), inside
  // a Root opened there; with --chown every extracted entry gets the owner
  // (a second pass over the archive names them).
  auto extract_archive = [&](int fd, const std::string& label, const std::string& into) -> Result<void> {
    TRY_VOID(ensure_dest_dir(into, 0755));  // BuildKit's unpack: 0755 whatever --chmod says
    TRY(auto sub_fd, dest.open_at(into, O_PATH | O_DIRECTORY));
    fs::Root sub = fs::Root::from_fd(std::move(sub_fd), dest.label() + "/" + into);
    if (::lseek(fd, 0, SEEK_SET) != 0) {
      return fail(Errc::io, fmt::format("{}: seek: {}", label, errno_message(errno)));
    }
    std::vector<std::string> extracted;
    {
      TRY(auto reader, tar::Reader::open_fd(fd, label));
      snapshot::ApplyOptions ao;
      ao.mode = snapshot::ApplyMode::merged;
      ao.skip_root_entry = true;
      ao.written_paths = &extracted;
      TRY(auto applied, snapshot::apply_layer(sub, *reader, ao));
      (void)applied;
    }
    // `into` itself was recorded if ensure_dest_dir made it; an existing one
    // keeps its metadata (the archive's root entry is skipped).
    for (const auto& p : extracted) {
      TRY(auto st, sub.lstat(p));
      if (!st) {
        continue;  // replaced by a later entry's parent, or removed by a whiteout
      }
      c.record(join_path(into, p), st->st_mode & S_IFMT);
      if (req.chown) {
        TRY_VOID(sub.chown(p, c.owner.uid, c.owner.gid));
        if (!S_ISLNK(st->st_mode) && (st->st_mode & 06000) != 0) {
          TRY_VOID(sub.chmod(p, st->st_mode & 07777));  // chown cleared setuid/setgid
        }
      }
    }
    return ok();
  };

  std::optional<size_t> links_of_source;
  for (const auto& item : locals) {
    const SelectedSource& src = item.src;
    bool is_dir = S_ISDIR(src.st.st_mode);
    std::string target;
    if (req.parents) {
      std::string keep = item.pivot ? strip_components(src.named_path, *item.pivot) : src.named_path;
      target = join_path(dest_path, keep);
    } else if (is_dir) {
      target = dest_path;
    } else {
      target = dest_is_dir() ? join_path(dest_path, base_name(src.named_path)) : dest_path;
    }
    if (req.kind == CopyKind::add && !is_dir && S_ISREG(src.st.st_mode) && req.unpack.value_or(true)) {
      TRY(auto fd, env.source.root->open_at(src.path, O_RDONLY | O_NOFOLLOW));
      if (is_archive_fd(fd.get())) {
        std::string into = req.parents ? fs::clean_path(target + "/..") : dest_path;
        TRY_VOID(extract_archive(fd.get(), "/" + src.named_path, into));
        continue;
      }
    }
    if (is_dir && !req.parents) {
      // BuildKit makes the target of a directory's contents first (0755 or an
      // octal --chmod's mode, the --chown owner; an existing directory keeps
      // its metadata): the source directory's mode does not reach it.
      TRY_VOID(ensure_dest_dir(target, c.dir_mode));
    }
    // Hardlinks are kept within one source (all its wildcard matches), as
    // BuildKit copies each source separately.
    if (links_of_source != item.source_index) {
      c.links.clear();
      links_of_source = item.source_index;
    }
    TRY_VOID(copy_local(env.source, src, target, &excludes));
  }

  // Remote sources.
  std::optional<TempDir> tmp;
  size_t index = 0;
  for (const auto& s : req.sources) {
    SourceKind k = classify_source(s);
    if (k == SourceKind::local) {
      continue;
    }
    if (!tmp) {
      TRY(auto t, TempDir::create(env.temp_parent, "imgbuild-add-"));
      tmp.emplace(std::move(t));
    }
    ++index;
    if (k == SourceKind::url) {
      TRY(auto d, download(s, env, *tmp, index, req.checksum));
      std::string target = dest_is_dir() ? join_path(dest_path, d.name) : dest_path;
      int fd = ::open(d.file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        return fail(Errc::io, fmt::format("{}: {}", d.file, errno_message(errno)));
      }
      UniqueFd in(fd);
      if (req.unpack.value_or(false) && is_archive_fd(fd)) {
        TRY_VOID(extract_archive(fd, s, dest_path));
        continue;
      }
      TRY_VOID(c.make_parents(target, c.dir_mode));
      TRY(bool was_dir, c.clear_target(target, false));
      if (was_dir) {
        return fail(Errc::invalid_argument, fmt::format("cannot replace directory /{} with a file", target));
      }
      TRY(auto out, dest.create_file(target, 0600));
      TRY_VOID(copy_fd_data(fd, out.get(), "/" + target));
      struct timespec ts {};
      ts.tv_sec = static_cast<time_t>(d.mtime.value_or(0));
      TRY_VOID(c.finish_file(out.get(), target, c.mode_for(0600, false), ts));
      struct stat st {};
      ::fstat(out.get(), &st);
      c.result.files += 1;
      c.result.bytes += static_cast<uint64_t>(st.st_size);
      c.record(target, S_IFREG);
      continue;
    }
    // git
    TRY(auto g, parse_git_source(s, req));
    std::string checkout = fmt::format("{}/git-{}", tmp->path(), index);
    std::string what = fmt::format("git clone {}", g.remote);
    TRY_VOID(run_program({env.git_program, "-c", "advice.detachedHead=false", "clone", "--quiet", "--no-checkout",
                          "--", g.remote, checkout},
                         what, *tmp));
    std::string ref = g.ref.empty() ? "HEAD" : g.ref;
    std::string resolved_ref = ref;
    if (starts_with(ref, "refs/heads/")) {
      resolved_ref = "refs/remotes/origin/" + ref.substr(11);
    }
    TRY_VOID(run_program({env.git_program, "-C", checkout, "-c", "advice.detachedHead=false", "checkout", "--quiet",
                          "--detach", resolved_ref, "--"},
                         fmt::format("git checkout {} in {}", ref, g.remote), *tmp));
    if (g.submodules) {
      TRY_VOID(run_program({env.git_program, "-C", checkout, "submodule", "update", "--init", "--recursive",
                            "--quiet"},
                           fmt::format("git submodule update in {}", g.remote), *tmp));
    }
    if (!g.commit.empty()) {
      std::string head;
      TRY_VOID(run_program({env.git_program, "-C", checkout, "rev-parse", "HEAD"}, "git rev-parse", *tmp, &head));
      while (!head.empty() && (head.back() == '\n' || head.back() == '\r')) {
        head.pop_back();
      }
      std::string want = starts_with(g.commit, "sha1:") ? g.commit.substr(5) : g.commit;
      if (want.size() < 7 || !starts_with(head, want)) {
        return fail(Errc::corrupt, fmt::format("expected checksum to match {}, got {}", want, head));
      }
    }
    if (!g.keep_git_dir) {
      std::error_code ec;
      std::filesystem::remove_all(checkout + "/.git", ec);
    }
    TRY(auto git_root, fs::Root::open(checkout));
    SourceTree tree{&git_root, nullptr};
    std::string sub = fs::clean_path(g.subdir);
    TRY(auto matches, select_sources(tree, sub.empty() ? "." : sub, nullptr));
    for (const auto& m : matches) {
      SelectedSource top = m;
      std::string target = S_ISDIR(m.st.st_mode) ? dest_path
                                                 : (dest_is_dir() ? join_path(dest_path, base_name(m.named_path))
                                                                : dest_path);
      TRY_VOID(copy_local(tree, top, target, &excludes));
    }
  }

  // Heredocs.
  for (const auto& h : req.heredocs) {
    std::string body = parser::heredoc_body(h);
    if (h.expand && env.expand_heredoc) {
      TRY(body, env.expand_heredoc(body));
    }
    std::string target = dest_is_dir() ? join_path(dest_path, h.name) : dest_path;
    TRY_VOID(c.write_bytes(target, body, 0644, req.heredoc_mtime));
  }

  TRY_VOID(c.finish());
  return std::move(c.result);
}

namespace {

template <class I>
Result<CopyRequest> common_request(const I& in, CopyKind kind, const WordExpander& expand,
                                   const std::string& workdir) {
  CopyRequest r;
  r.kind = kind;
  r.workdir = workdir.empty() ? "/" : workdir;
  for (const auto& s : in.sources) {
    TRY(auto v, expand(s));
    r.sources.push_back(std::move(v));
  }
  r.heredocs = in.inline_sources;
  TRY(r.dest, expand(in.dest));
  if (in.chown) {
    TRY(auto v, expand(*in.chown));
    r.chown = std::move(v);
  }
  if (in.chmod) {
    TRY(auto v, expand(*in.chmod));
    TRY(auto spec, parse_chmod(v));
    (void)spec;
    r.chmod = std::move(v);
  }
  r.excludes = in.excludes;
  r.link_mode = in.link ? LinkMode::linked : LinkMode::merged;
  return r;
}

}  // namespace

Result<CopyRequest> copy_request(const parser::CopyInstruction& instruction, const WordExpander& expand,
                                 const std::string& workdir) {
  TRY(auto r, common_request(instruction, CopyKind::copy, expand, workdir));
  r.parents = instruction.parents;
  return r;
}

Result<CopyRequest> add_request(const parser::AddInstruction& instruction, const WordExpander& expand,
                                const std::string& workdir) {
  TRY(auto r, common_request(instruction, CopyKind::add, expand, workdir));
  if (instruction.checksum) {
    TRY(auto v, expand(*instruction.checksum));
    r.checksum = std::move(v);
  }
  r.unpack = instruction.unpack;
  r.keep_git_dir = instruction.keep_git_dir;
  return r;
}

Result<CopyResult> export_tree(const SourceTree& tree, const fs::Root& dest) {
  if (tree.root == nullptr) {
    return fail(Errc::internal, "export_tree: no source root");
  }
  CopyRequest req;
  CopyEnv env;
  env.source = tree;
  Copier c{req, env, dest, std::nullopt, Owner{}, {}, true, {}, {}, {}};
  SelectedSource top;
  top.path = "";
  TRY(auto st, tree.root->lstat(""));
  top.st = st.value_or(top.st);
  TRY_VOID(walk_source(tree, top, nullptr, [&](const WalkEntry& e) -> Result<void> {
    if (e.rel.empty()) {
      return ok();
    }
    return c.write_entry(e, e.rel);
  }));
  TRY_VOID(c.finish());
  return std::move(c.result);
}

}  // namespace imgbuild::builder
