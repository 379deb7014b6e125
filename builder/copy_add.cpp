// ADD's own sources (see builder/copy_add.hpp): archive extraction, URL
// downloads through registry::HttpTransport, and git checkouts with the
// `git` program (no shell, a fixed environment, output kept for messages).

#include "builder/copy_add.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "registry/http.hpp"
#include "snapshot/apply.hpp"
#include "util/fd.hpp"
#include "util/hash.hpp"
#include "util/strings.hpp"
#include "util/tar.hpp"

namespace imgbuild::builder {

namespace {

std::optional<int64_t> parse_http_date(const std::string& s) {
  struct tm tm {};
  const char* end = ::strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (end == nullptr) {
    return std::nullopt;
  }
  return static_cast<int64_t>(::timegm(&tm));
}

Result<Sha256Digest> parse_checksum(const std::string& value) {
  if (!value.starts_with("sha256:")) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid checksum digest format: {} (only sha256:<hex> is supported)", value));
  }
  auto d = Sha256Digest::parse(value);
  if (!d) {
    return fail(Errc::invalid_argument, fmt::format("invalid checksum digest format: {}", value));
  }
  return *d;
}

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
  if (q != std::string::npos && !s.starts_with("git@")) {
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
Result<void> run_program(const std::vector<std::string>& argv, const std::string& what, const io::TempDir& tmp,
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
    return fail(Errc::not_found, fmt::format("{}: cannot run {}: {}", what, argv[0], std::strerror(rc)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return fail(Errc::io, fmt::format("{}: waitpid: {}", what, std::strerror(errno)));
    }
  }
  auto output = io::read_all(out_path);
  std::string text = output ? std::move(*output) : std::string();
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

Result<void> extract_archive(Copier& copier, int fd, const std::string& label, const std::string& into,
                             bool chown) {
  const fs::Root& dest = copier.dest;
  TRY_VOID(copier.ensure_dir(into, 0755));  // BuildKit's unpack: 0755 whatever --chmod says
  TRY(auto sub_fd, dest.open_at(into, O_PATH | O_DIRECTORY));
  fs::Root sub = fs::Root::from_fd(std::move(sub_fd), dest.label() + "/" + into);
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    return fail(Errc::io, fmt::format("{}: seek: {}", label, std::strerror(errno)));
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
  // `into` itself was recorded if ensure_dir made it; an existing one keeps
  // its metadata (the archive's root entry is skipped).
  for (const auto& p : extracted) {
    TRY(auto st, sub.lstat(p));
    if (!st) {
      continue;  // replaced by a later entry's parent, or removed by a whiteout
    }
    copier.record(str::join_path(into, p), st->st_mode & S_IFMT);
    if (chown) {
      TRY_VOID(sub.chown(p, copier.owner.uid, copier.owner.gid));
      if (!S_ISLNK(st->st_mode) && (st->st_mode & 06000) != 0) {
        TRY_VOID(sub.chmod(p, st->st_mode & 07777));  // chown cleared setuid/setgid
      }
    }
  }
  return ok();
}

Result<Download> download(const std::string& url, const CopyEnv& env, const io::TempDir& tmp, size_t index,
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
  UniqueFd out(::open(d.file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) {
    return fail(Errc::io, fmt::format("{}: {}", d.file, std::strerror(errno)));
  }
  Sha256 hash;
  registry::HttpRequest req;
  req.url = url;
  req.sink = [&](std::string_view chunk) -> Result<void> {
    hash.update(chunk);
    return io::write_all(out.get(), chunk, d.file);
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
  d.name = str::base_name(p);
  if (d.name.empty()) {
    d.name = "index.html";
  }
  return d;
}


Result<GitCheckout> checkout_git(const std::string& source, const CopyRequest& req, const CopyEnv& env,
                                 const io::TempDir& tmp, size_t index) {
  TRY(auto g, parse_git_source(source, req));
  std::string checkout = fmt::format("{}/git-{}", tmp.path(), index);
  std::string what = fmt::format("git clone {}", g.remote);
  TRY_VOID(run_program({env.git_program, "-c", "advice.detachedHead=false", "clone", "--quiet", "--no-checkout",
                        "--", g.remote, checkout},
                       what, tmp));
  std::string ref = g.ref.empty() ? "HEAD" : g.ref;
  std::string resolved_ref = ref;
  if (ref.starts_with("refs/heads/")) {
    resolved_ref = "refs/remotes/origin/" + ref.substr(11);
  }
  TRY_VOID(run_program({env.git_program, "-C", checkout, "-c", "advice.detachedHead=false", "checkout", "--quiet",
                        "--detach", resolved_ref, "--"},
                       fmt::format("git checkout {} in {}", ref, g.remote), tmp));
  if (g.submodules) {
    TRY_VOID(run_program({env.git_program, "-C", checkout, "submodule", "update", "--init", "--recursive",
                          "--quiet"},
                         fmt::format("git submodule update in {}", g.remote), tmp));
  }
  if (!g.commit.empty()) {
    std::string head;
    TRY_VOID(run_program({env.git_program, "-C", checkout, "rev-parse", "HEAD"}, "git rev-parse", tmp, &head));
    while (!head.empty() && (head.back() == '\n' || head.back() == '\r')) {
      head.pop_back();
    }
    std::string want = g.commit.starts_with("sha1:") ? g.commit.substr(5) : g.commit;
    if (want.size() < 7 || !head.starts_with(want)) {
      return fail(Errc::corrupt, fmt::format("expected checksum to match {}, got {}", want, head));
    }
  }
  if (!g.keep_git_dir) {
    std::error_code ec;
    std::filesystem::remove_all(checkout + "/.git", ec);
  }
  return GitCheckout{checkout, g.subdir};
}

}  // namespace imgbuild::builder
