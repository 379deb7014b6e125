// Snapshotters against real overlayfs and real directories (root needed for
// mounts, whiteout devices and trusted.* xattrs).

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include "snapshot/copy.hpp"
#include "snapshot/mounts.hpp"
#include "snapshot/snapshotter.hpp"
#include "support/busybox_rootfs.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using namespace imgbuild;
using namespace imgbuild::snapshot;

namespace {

struct Env {
  test::ScratchDir tmp;
  SnapshotterConfig config;
  fs::path layers;
  Env() {
    config.work_dir = tmp.path() / "work";
    config.runtime_dir = tmp.path() / "run";
    layers = tmp.path() / "layers";
    fs::create_directories(layers);
  }
  std::unique_ptr<Snapshotter> make(const std::string& kind) {
    auto s = make_snapshotter(kind, config);
    if (!s) {
      FAIL(s.error().to_string());
    }
    return std::move(s).value();
  }
};

void write(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void whiteout(const fs::path& p) { REQUIRE(::mknod(p.c_str(), S_IFCHR | 0, makedev(0, 0)) == 0); }

void opaque(const fs::path& p) { REQUIRE(::setxattr(p.c_str(), "trusted.overlay.opaque", "y", 1, 0) == 0); }

bool present(const fs::path& p) { return fs::exists(fs::symlink_status(p)); }

// A listing of an upper directory: path, type, mode, owner, content or link
// target, and the opaque marker. Times are left out: two views written at
// different moments differ in them.
std::string listing(const fs::path& dir) {
  std::vector<std::string> lines;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st {};
    REQUIRE(::lstat(it->path().c_str(), &st) == 0);
    std::string rel = fs::relative(it->path(), dir).string();
    std::ostringstream line;
    line << rel << " mode=" << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid;
    if (S_ISREG(st.st_mode)) {
      line << " data=" << read(it->path());
    } else if (S_ISLNK(st.st_mode)) {
      line << " -> " << fs::read_symlink(it->path()).string();
    } else if (S_ISCHR(st.st_mode)) {
      line << " dev=" << major(st.st_rdev) << "," << minor(st.st_rdev);
    } else if (S_ISDIR(st.st_mode)) {
      char v[8];
      ssize_t n = ::lgetxattr(it->path().c_str(), "trusted.overlay.opaque", v, sizeof v);
      if (n == 1 && v[0] == 'y') {
        line << " opaque";
      }
    }
    lines.push_back(line.str());
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const std::string& l : lines) {
    out += l + "\n";
  }
  return out;
}

#define REQUIRE_ROOT() IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "snapshotter tests need root (mounts, whiteouts)")

}  // namespace

TEST_CASE("an overlay view stacks 500 lower layers, and deeper chains are flattened", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  auto snap = env.make("overlay");
  REQUIRE(snap->name() == "overlay");
  const size_t count = GENERATE(size_t{500}, size_t{640});
  std::vector<fs::path> chain;
  for (size_t i = 0; i < count; ++i) {
    fs::path dir = env.layers / ("layer-with-a-longish-name-" + std::to_string(i));
    write(dir / std::string("l").append(std::to_string(i)), std::string("layer ").append(std::to_string(i)));
    write(dir / "common", std::to_string(i));
    chain.push_back(dir);
  }
  auto view = snap->prepare(chain);
  REQUIRE(view);
  const fs::path root = (*view)->root();
  CHECK(mounts::is_mount_point(root));
  CHECK(read(root / "l0") == "layer 0");
  CHECK(read(root / std::string("l").append(std::to_string(count - 1))) ==
        std::string("layer ").append(std::to_string(count - 1)));
  CHECK(read(root / "common") == std::to_string(count - 1));
  CHECK(present(env.config.work_dir / "flat") == (count > k_max_overlay_lowers));
  REQUIRE((*view)->remove());
  CHECK_FALSE(mounts::is_mount_point(root));
  CHECK_FALSE(present(root));
}

TEST_CASE("whiteouts and opaque directories of lower layers are honoured", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  const std::string kind = GENERATE("overlay", "copy");
  auto snap = env.make(kind);
  fs::path l0 = env.layers / "0";
  fs::path l1 = env.layers / "1";
  write(l0 / "a" / "x", "x");
  write(l0 / "a" / "y", "y");
  write(l0 / "b" / "z", "z");
  write(l0 / "f", "f");
  fs::create_directories(l1 / "a");
  opaque(l1 / "a");
  write(l1 / "a" / "new", "new");
  whiteout(l1 / "f");
  auto view = snap->prepare({l0, l1});
  REQUIRE(view);
  const fs::path root = (*view)->root();
  INFO(kind);
  CHECK_FALSE(present(root / "f"));
  CHECK(present(root / "a" / "new"));
  CHECK_FALSE(present(root / "a" / "x"));
  CHECK_FALSE(present(root / "a" / "y"));
  CHECK(read(root / "b" / "z") == "z");
  // The overlay xattr of the layer is not visible as such in a copy.
  char v[8];
  CHECK(::lgetxattr((root / "a").c_str(), "trusted.overlay.opaque", v, sizeof v) < 0);
}

TEST_CASE("overlay and copy record the same changes", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  fs::path l0 = env.layers / "0";
  write(l0 / "etc" / "group", "root:x:0:\n");
  write(l0 / "etc" / "keep", "keep\n");
  write(l0 / "d" / "old", "old");
  write(l0 / "mod", "before");
  write(l0 / "deep" / "er" / "file", "deep");
  fs::create_symlink("mod", l0 / "link");
  auto change = [](const fs::path& root) {
    write(root / "f", "hi\n");
    fs::remove(root / "etc" / "group");
    fs::remove_all(root / "d");
    fs::create_directories(root / "d");
    write(root / "d" / "fresh", "fresh");
    write(root / "mod", "after");
    ::chmod((root / "deep" / "er" / "file").c_str(), 0600);
    ::lchown((root / "link").c_str(), 7, 8);
    fs::create_directories(root / "n1" / "n2");
    fs::create_hard_link(root / "f", root / "n1" / "f2");
  };
  std::string listings[2];
  int i = 0;
  for (const char* kind : {"overlay", "copy"}) {
    auto snap = env.make(kind);
    auto view = snap->prepare({l0});
    REQUIRE(view);
    change((*view)->root());
    auto upper = (*view)->changes();
    REQUIRE(upper);
    listings[i++] = listing(*upper);
  }
  CHECK(listings[0] == listings[1]);
  CHECK(listings[1].find("etc/group mode=20000 0:0 dev=0,0\n") != std::string::npos);
  CHECK(listings[1].find("d mode=40755 0:0 opaque\n") != std::string::npos);
  CHECK(listings[1].find("etc/keep") == std::string::npos);
}

TEST_CASE("commit turns the changes into a layer directory the next view stacks on", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  const std::string kind = GENERATE("overlay", "copy");
  INFO(kind);
  auto snap = env.make(kind);
  fs::path l0 = env.layers / "0";
  write(l0 / "base", "base");
  write(l0 / "gone", "gone");
  auto view = snap->prepare({l0});
  REQUIRE(view);
  write((*view)->root() / "added", "added");
  fs::remove((*view)->root() / "gone");
  const fs::path l1 = env.layers / "1";
  REQUIRE((*view)->commit(l1));
  CHECK(read(l1 / "added") == "added");
  CHECK(fs::is_character_file(fs::symlink_status(l1 / "gone")));
  CHECK_FALSE(present(l1 / "base"));
  auto next = snap->prepare({l0, l1});
  REQUIRE(next);
  CHECK(read((*next)->root() / "base") == "base");
  CHECK(read((*next)->root() / "added") == "added");
  CHECK_FALSE(present((*next)->root() / "gone"));
  CHECK(fs::is_empty(env.config.work_dir / "views") == false);
  REQUIRE((*next)->remove());
  CHECK(fs::is_empty(env.config.work_dir / "views"));
  CHECK(fs::is_empty(env.config.runtime_dir / "mounts"));
}

TEST_CASE("a view is unmounted and deleted when an exception unwinds it", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  auto snap = env.make("overlay");
  fs::path l0 = env.layers / "0";
  write(l0 / "x", "x");
  fs::path root;
  try {
    auto view = snap->prepare({l0});
    REQUIRE(view);
    root = (*view)->root();
    REQUIRE(mounts::is_mount_point(root));
    throw std::runtime_error("step failed");
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(mounts::is_mount_point(root));
  CHECK_FALSE(present(root));
  CHECK(fs::is_empty(env.config.runtime_dir / "mounts"));
}

TEST_CASE("mounts go when the holder is interrupted or killed, and the next prepare cleans the rest", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  fs::path l0 = env.layers / "0";
  write(l0 / "x", "x");
  const std::string kind = GENERATE("overlay", "copy");
  const int sig = GENERATE(SIGKILL, SIGTERM);
  INFO(kind << " " << sig);
  int p[2];
  REQUIRE(::pipe(p) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(p[0]);
    int null_fd = ::open("/dev/null", O_WRONLY);  // no Catch report from the child
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    // Behave like a plain imgbuild process, not one under Catch's handlers.
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    auto s = make_snapshotter(kind, env.config);
    if (!s) {
      ::_exit(1);
    }
    auto view = (*s)->prepare({l0});
    if (!view) {
      ::_exit(2);
    }
    std::string root = (*view)->root().string();
    if (::write(p[1], root.data(), root.size()) != static_cast<ssize_t>(root.size())) {
      ::_exit(3);
    }
    ::close(p[1]);
    for (;;) {
      ::pause();
    }
  }
  ::close(p[1]);
  std::string root;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) {
    root.append(buf, static_cast<size_t>(n));
  }
  ::close(p[0]);
  ::kill(child, sig);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status));
  REQUIRE_FALSE(root.empty());
  CHECK(present(root));
  // SIGTERM runs the interrupt handler, which unmounts at once; after
  // SIGKILL the mount stays until the next snapshotter cleans up.
  CHECK(mounts::is_mount_point(root) == (kind == "overlay" && sig == SIGKILL));
  CHECK_FALSE(fs::is_empty(env.config.runtime_dir / "mounts"));

  auto snap = env.make(kind);
  auto view = snap->prepare({l0});
  REQUIRE(view);
  CHECK_FALSE(mounts::is_mount_point(root));
  CHECK_FALSE(present(fs::path(root).parent_path()));
}

TEST_CASE("snapshotters are chosen automatically or by name", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  auto a = make_snapshotter("auto", env.config);
  REQUIRE(a);
  CHECK((*a)->name() == "overlay");
  auto bad = make_snapshotter("zfs", env.config);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "unknown snapshotter \"zfs\" (known: auto, overlay, copy)");
}

TEST_CASE("overlay and copy views give the same layer digest for the same changes", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  fs::path l0 = env.layers / "0";
  write(l0 / "etc" / "group", "root:x:0:\n");
  write(l0 / "etc" / "keep", "keep\n");
  write(l0 / "d" / "old", "old");
  write(l0 / "mod", "before");
  write(l0 / "deep" / "er" / "file", "deep");
  fs::create_symlink("mod", l0 / "link");
  write(l0 / "bin" / "tool", "tool");
  // A v2 file capability: effective, cap_net_bind_service permitted.
  const unsigned char cap[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x04};
  REQUIRE(::setxattr((l0 / "bin" / "tool").c_str(), "security.capability", cap, sizeof cap, 0) == 0);
  write(l0 / "pair" / "a", "pair");
  fs::create_hard_link(l0 / "pair" / "a", l0 / "pair" / "b");
  std::string digests[2];
  uint64_t entries[2] = {0, 0};
  int i = 0;
  for (const char* kind : {"overlay", "copy"}) {
    auto snap = env.make(kind);
    auto view = snap->prepare({l0});
    REQUIRE(view);
    const fs::path root = (*view)->root();
    write(root / "f", "hi\n");
    fs::remove(root / "etc" / "group");
    fs::remove_all(root / "d");
    fs::create_directories(root / "d");
    write(root / "d" / "fresh", "fresh");
    write(root / "mod", "after");
    ::chmod((root / "deep" / "er" / "file").c_str(), 04755);
    ::lchown((root / "link").c_str(), 7, 8);
    fs::create_hard_link(root / "f", root / "f2");
    REQUIRE(::setxattr((root / "mod").c_str(), "user.note", "v", 1, 0) == 0);
    ::chmod((root / "bin" / "tool").c_str(), 0700);
    fs::create_directories(root / "empty" / "dir");
    DiffOptions options;
    options.compression = tar::Compression::none;
    options.source_date_epoch = 1000;  // the two runs write at different moments
    std::string tar;
    auto r = diff_view(**view, [&](const void* data, size_t size) -> Result<void> {
      tar.append(static_cast<const char*>(data), size);
      return ok();
    }, options);
    REQUIRE(r);
    // The file capability came through the merge (copy) or copy-up (overlay).
    size_t pos = 0;
    auto reader = tar::Reader::open(
        [&](void* buf, size_t cap_size) -> Result<size_t> {
          size_t n = std::min(cap_size, tar.size() - pos);
          std::memcpy(buf, tar.data() + pos, n);
          pos += n;
          return n;
        },
        "layer");
    REQUIRE(reader);
    bool tool_has_cap = false;
    for (;;) {
      auto e = (*reader)->next();
      REQUIRE(e);
      if (!*e) {
        break;
      }
      for (const auto& [k, v] : (*e)->xattrs) {
        tool_has_cap = tool_has_cap || ((*e)->path == "bin/tool" && k == "security.capability" && v.size() == 20);
      }
    }
    CHECK(tool_has_cap);
    digests[i] = r->layer.diff_id.str();
    entries[i] = r->entries;
    ++i;
  }
  CHECK(entries[0] > 5);
  CHECK(entries[0] == entries[1]);
  CHECK(digests[0] == digests[1]);
}

TEST_CASE("the copy snapshotter refuses absurdly deep trees instead of exhausting fds", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  fs::path l0 = env.layers / "0";
  fs::create_directories(l0);
  int dir = ::open(l0.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (int i = 0; i < 1100 && dir >= 0; ++i) {
    REQUIRE(::mkdirat(dir, "d", 0755) == 0);
    int sub = ::openat(dir, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(dir);
    dir = sub;
  }
  REQUIRE(dir >= 0);
  ::close(dir);
  auto snap = env.make("copy");
  auto view = snap->prepare({l0});
  REQUIRE_FALSE(view);
  CHECK(view.error().code == Errc::limit);
  CHECK(fs::is_empty(env.config.work_dir / "views"));
}

namespace {

// The entry paths of an uncompressed layer tar.
std::vector<std::string> layer_paths(const std::string& tar) {
  size_t pos = 0;
  auto reader = tar::Reader::open(
      [&](void* buf, size_t cap_size) -> Result<size_t> {
        size_t n = std::min(cap_size, tar.size() - pos);
        std::memcpy(buf, tar.data() + pos, n);
        pos += n;
        return n;
      },
      "layer");
  REQUIRE(reader);
  std::vector<std::string> out;
  for (;;) {
    auto e = (*reader)->next();
    REQUIRE(e);
    if (!*e) {
      break;
    }
    out.push_back((*e)->path);
  }
  return out;
}

// Replaces root/rel with a new file of the same content, mode, owner and
// mtime (what COPY does to a file an earlier step wrote).
void rewrite_identically(const fs::path& root, const std::string& rel) {
  fs::path p = root / rel;
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  std::string body = read(p);
  REQUIRE(::unlink(p.c_str()) == 0);
  write(p, body);
  REQUIRE(::chown(p.c_str(), st.st_uid, st.st_gid) == 0);
  REQUIRE(::chmod(p.c_str(), st.st_mode & 07777) == 0);
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

}  // namespace

TEST_CASE("a step that rewrites files identically leaves them out of its layer, with both snapshotters", "[snapshot][integration]") {
  REQUIRE_ROOT();
  Env env;
  fs::path l0 = env.layers / "0";
  write(l0 / "app" / "a.txt", "a\n");
  write(l0 / "app" / "sub" / "s.txt", "s\n");
  write(l0 / "app" / "other.txt", "untouched\n");
  write(l0 / "keep" / "k", "k\n");
  ::chmod((l0 / "app" / "sub").c_str(), 0700);
  struct timespec old_time[2] = {{1500000000, 0}, {1500000000, 0}};
  for (const char* p : {"app/a.txt", "app/sub/s.txt", "app/sub", "app/other.txt", "app"}) {
    REQUIRE(::utimensat(AT_FDCWD, (l0 / p).c_str(), old_time, AT_SYMLINK_NOFOLLOW) == 0);
  }
  std::string digests[2];
  std::vector<std::string> paths[2];
  int i = 0;
  for (const char* kind : {"overlay", "copy"}) {
    INFO(kind);
    auto snap = env.make(kind);
    auto view = snap->prepare({l0});
    REQUIRE(view);
    const fs::path root = (*view)->root();
    // As `COPY . /app/` over files an earlier COPY wrote: a file replaced
    // by an identical one, and an existing directory given its own metadata.
    rewrite_identically(root, "app/a.txt");
    REQUIRE(::chmod((root / "app" / "sub").c_str(), 0700) == 0);
    REQUIRE(::utimensat(AT_FDCWD, (root / "app" / "sub").c_str(), old_time, AT_SYMLINK_NOFOLLOW) == 0);
    (*view)->note_written({"/app/a.txt", "/app/sub"});
    DiffOptions options;
    options.compression = tar::Compression::none;
    options.source_date_epoch = 1600000000;  // app/'s mtime moved at a different moment in each run
    std::string tar;
    auto r = diff_view(**view, [&](const void* data, size_t size) -> Result<void> {
      tar.append(static_cast<const char*>(data), size);
      return ok();
    }, options);
    REQUIRE(r);
    paths[i] = layer_paths(tar);
    digests[i] = r->layer.diff_id.str();
    ++i;
  }
  // As BuildKit v0.22: the same type, mode, owner, size, mtime and bytes is
  // no change, whoever wrote it.
  CHECK(paths[0].empty());
  CHECK(paths[1] == paths[0]);
  CHECK(digests[0] == digests[1]);
}

TEST_CASE("the copy snapshotter's changes hold written paths even when nothing about them moved", "[snapshot][integration]") {
  REQUIRE_ROOT();
  test::ScratchDir tmp;
  fs::path dir = tmp.path() / "tree";
  write(dir / "app" / "a.txt", "a\n");
  write(dir / "app" / "b.txt", "b\n");
  fs::create_directories(dir / "app" / "empty");
  auto base = Baseline::record(dir);
  REQUIRE(base);
  // No change at all: an identical rewrite within one clock tick looks so.
  fs::path upper = tmp.path() / "upper";
  fs::create_directories(upper);
  REQUIRE(write_changes(*base, dir, upper));
  CHECK(fs::is_empty(upper));
  fs::path upper2 = tmp.path() / "upper2";
  fs::create_directories(upper2);
  REQUIRE(write_changes(*base, dir, upper2, {"app/a.txt", "app/empty", "not/there"}));
  CHECK(read(upper2 / "app" / "a.txt") == "a\n");
  CHECK(fs::is_directory(upper2 / "app" / "empty"));
  CHECK_FALSE(fs::exists(upper2 / "app" / "b.txt"));
  CHECK_FALSE(fs::exists(upper2 / "not"));
}

TEST_CASE("a source view shows a layer's hardlinked pair as one file, as overlay does", "[snapshot][integration]") {
  Env env;
  fs::path l0 = env.layers / "l0";
  write(l0 / "pair" / "a", "linked");
  fs::create_hard_link(l0 / "pair" / "a", l0 / "pair" / "b");
  auto ino = [](const fs::path& p) {
    struct stat st {};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    return std::make_pair(st.st_ino, st.st_nlink);
  };
  for (const char* kind : {"overlay", "copy"}) {
    INFO(kind);
    auto s = env.make(kind);
    auto src = s->prepare_source({l0});
    REQUIRE(src);
    const fs::path root = src.value()->root();
    CHECK(ino(root / "pair" / "a") == ino(root / "pair" / "b"));
    CHECK(ino(root / "pair" / "a").second == 2);
    REQUIRE(src.value()->remove());
  }
  // The builder's lazily made snapshotter hands prepare_source on.
  auto lazy = make_lazy_snapshotter("copy", env.config);
  REQUIRE(lazy);
  auto lazy_src = lazy.value()->prepare_source({l0});
  REQUIRE(lazy_src);
  CHECK(ino(lazy_src.value()->root() / "pair" / "a") == ino(lazy_src.value()->root() / "pair" / "b"));
  REQUIRE(lazy_src.value()->remove());
  // A writable copy view breaks the pair (a write to one path must change
  // that path alone, as overlay's copy-up does).
  auto s = env.make("copy");
  auto view = s->prepare({l0});
  REQUIRE(view);
  CHECK(ino(view.value()->root() / "pair" / "a").first != ino(view.value()->root() / "pair" / "b").first);
  REQUIRE(view.value()->remove());
}
