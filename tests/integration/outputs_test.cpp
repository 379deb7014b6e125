// Output destinations through the real binary (util/output.hpp): `save -o`,
// `build -o type=…,dest=`, `--iidfile` and `--metadata-file` write a FIFO, a
// character device, standard output (also through a symlink to
// /proc/self/fd/1) in place as a stream, replace a regular file atomically
// with a new file, and refuse a directory or a missing parent before any
// work. Every node is a private one under a temporary directory.

#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <functional>
#include <set>
#include <string>
#include <thread>

#include "harness.hpp"

namespace fs = std::filesystem;
using imgbuild::test::imgbuild_binary;
using imgbuild::test::make_tar;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::TempDir;
using imgbuild::test::write_file;

namespace {

std::string imgbuild_cmd(const fs::path& root) {
  return sh_quote(imgbuild_binary().string()) + " --root " + sh_quote(root.string());
}

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out.insert(e.path().filename().string());
  }
  return out;
}

mode_t current_umask() {
  mode_t m = ::umask(0);
  ::umask(m);
  return m;
}

struct stat lstat_of(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st;
}

// A private copy of the null device (1:3) made with mknod in `dir`.
fs::path make_null(const fs::path& dir) {
  fs::path p = dir / "null";
  REQUIRE(::mknod(p.c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0);
  return p;
}

// Reads a FIFO to its end on a thread while `write` runs.
std::string read_fifo_while(const fs::path& fifo, const std::function<void()>& write) {
  std::string received;
  std::thread reader([&] { received = read_file(fifo); });
  write();
  reader.join();
  return received;
}

// A store holding a one-layer image "tiny".
struct Store {
  TempDir work;
  fs::path root = work.path / "store";
  fs::path out = work.path / "out";
  Store() {
    fs::create_directories(out);
    fs::path tarball = work.path / "tiny.tar";
    write_file(tarball, make_tar({imgbuild::test::file("hello", "hello\n")}));
    RunResult r = run_imgbuild(root, {"import", tarball.string(), "tiny"});
    INFO(r.err);
    REQUIRE(r.status == 0);
  }
};

}  // namespace

TEST_CASE("save -o streams to stdout, a FIFO and a character device, and replaces a file atomically",
          "[integration]") {
  if (::geteuid() != 0) {
    WARN("SKIPPED: needs root (mknod)");
    return;
  }
  Store s;
  // The reference: a new file.
  fs::path ref = s.work.path / "ref.tar";
  RunResult r = run_imgbuild(s.root, {"save", "-o", ref.string(), "tiny"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  const std::string archive = read_file(ref);
  REQUIRE(archive.size() > 1024);
  CHECK((lstat_of(ref).st_mode & 07777) == (0666 & ~current_umask()));

  SECTION("standard output, as -, and through a symlink to /proc/self/fd/1") {
    fs::path link = s.out / "stdout-link";
    fs::create_symlink("/proc/self/fd/1", link);
    for (const std::string& dest : {std::string("-"), link.string()}) {
      INFO(dest);
      RunResult piped = run_sh(imgbuild_cmd(s.root) + " save -o " + sh_quote(dest) + " tiny | wc -c");
      INFO(piped.err);
      REQUIRE(piped.status == 0);
      CHECK(std::stoul(piped.out) == archive.size());
      RunResult copied = run_sh(imgbuild_cmd(s.root) + " save -o " + sh_quote(dest) + " tiny | cat");
      CHECK(copied.out == archive);
    }
    CHECK(fs::is_symlink(link));
    CHECK(names_in(s.out) == std::set<std::string>{"stdout-link"});
  }
  SECTION("a FIFO receives the stream and stays a FIFO") {
    fs::path fifo = s.out / "fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    RunResult w;
    std::string got = read_fifo_while(fifo, [&] { w = run_imgbuild(s.root, {"save", "-o", fifo.string(), "tiny"}); });
    INFO(w.err);
    CHECK(w.status == 0);
    CHECK(got == archive);
    CHECK(S_ISFIFO(lstat_of(fifo).st_mode));
    CHECK(names_in(s.out) == std::set<std::string>{"fifo"});
  }
  SECTION("a character device (and a symlink to it) is written, not replaced") {
    fs::path null = make_null(s.out);
    fs::path link = s.out / "null-link";
    fs::create_symlink("null", link);
    for (const fs::path& dest : {null, link}) {
      RunResult w = run_imgbuild(s.root, {"save", "-o", dest.string(), "tiny"});
      INFO(w.err);
      CHECK(w.status == 0);
    }
    struct stat st = lstat_of(null);
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_rdev == ::makedev(1, 3));
    CHECK(fs::is_symlink(link));
    CHECK(names_in(s.out) == std::set<std::string>{"null", "null-link"});
  }
  SECTION("a regular file is replaced whole by a new file; a failed save keeps the old one") {
    fs::path target = s.out / "image.tar";
    write_file(target, "old contents");
    REQUIRE(::chmod(target.c_str(), 0600) == 0);
    fs::create_hard_link(target, s.out / "hardlink");
    fs::create_symlink("image.tar", s.out / "link");
    RunResult w = run_imgbuild(s.root, {"save", "-o", (s.out / "link").string(), "tiny"});
    INFO(w.err);
    REQUIRE(w.status == 0);
    CHECK(read_file(target) == archive);
    CHECK(fs::is_symlink(s.out / "link"));
    CHECK(read_file(s.out / "hardlink") == "old contents");  // the old inode is not written
    CHECK((lstat_of(target).st_mode & 07777) == (0666 & ~current_umask()));
    CHECK(names_in(s.out) == std::set<std::string>{"image.tar", "hardlink", "link"});

    // A save that fails while writing (a layer blob is gone) leaves the
    // file as it was and no temporary file.
    write_file(target, "old again");
    for (const auto& e : fs::recursive_directory_iterator(s.root / "blobs")) {
      if (e.is_regular_file() && read_file(e.path()).find("ustar") != std::string::npos) {
        fs::remove(e.path());  // the layer tar
      }
    }
    RunResult broken = run_imgbuild(s.root, {"save", "-o", target.string(), "tiny"});
    CHECK(broken.status == 1);
    CHECK(read_file(target) == "old again");
    CHECK(names_in(s.out) == std::set<std::string>{"image.tar", "hardlink", "link"});
  }
}

TEST_CASE("save -o a directory or under a missing directory fails before any work", "[integration]") {
  Store s;
  struct Case {
    fs::path dest;
    std::string says;
  };
  for (const Case& c : {Case{s.out, "is a directory"},
                        Case{s.out / "missing" / "x.tar", "the directory " + (s.out / "missing").string() +
                                                              " does not exist"}}) {
    INFO(c.dest.string());
    // Not even the image is looked up: the destination is checked first.
    RunResult r = run_imgbuild(s.root, {"save", "-o", c.dest.string(), "no-such-image"});
    CHECK(r.status == 1);
    CHECK(r.err.starts_with("imgbuild: error: cannot write to " + c.dest.string()));
    CHECK(r.err.find(c.says) != std::string::npos);
  }
  CHECK(names_in(s.out).empty());
  CHECK(names_in(s.work.path).count("out.imgbuild-tmp") == 0);
}

TEST_CASE("build outputs, --iidfile and --metadata-file stream to FIFOs and devices and replace files",
          "[integration]") {
  if (::geteuid() != 0) {
    WARN("SKIPPED: needs root (builds, mknod)");
    return;
  }
  TempDir work;
  fs::path root = work.path / "store";
  fs::path ctx = work.path / "ctx";
  fs::path out = work.path / "out";
  fs::create_directories(ctx);
  fs::create_directories(out);
  write_file(ctx / "Dockerfile", "FROM scratch\nCOPY f /f\n");
  write_file(ctx / "f", "payload\n");
  auto build = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"build", "--progress", "plain"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ctx.string());
    return run_imgbuild(root, args);
  };
  fs::path ref = work.path / "ref.tar";
  fs::path iid = work.path / "iid";
  RunResult first = build({"-o", "type=docker,dest=" + ref.string(), "--iidfile", iid.string()});
  INFO(first.err);
  REQUIRE(first.status == 0);
  const std::string archive = read_file(ref);
  const std::string id = read_file(iid);
  REQUIRE(id.starts_with("sha256:"));

  // stdout through a symlink to /proc/self/fd/1 (the build is cached: same image).
  fs::path link = out / "stdout-link";
  fs::create_symlink("/proc/self/fd/1", link);
  RunResult piped = run_sh(imgbuild_cmd(root) + " build --progress plain -o " +
                           sh_quote("type=docker,dest=" + link.string()) + " " + sh_quote(ctx.string()) + " | cat");
  INFO(piped.err);
  REQUIRE(piped.status == 0);
  CHECK(piped.out == archive);

  // type=tar into a FIFO, the iid into a mknod'ed null device, the metadata
  // into a FIFO through a symlink.
  fs::path tar_fifo = out / "rootfs.fifo";
  fs::path md_fifo = out / "md.fifo";
  REQUIRE(::mkfifo(tar_fifo.c_str(), 0600) == 0);
  REQUIRE(::mkfifo(md_fifo.c_str(), 0600) == 0);
  fs::create_symlink("md.fifo", out / "md-link");
  fs::path null = make_null(out);
  std::string metadata;
  RunResult streamed;
  std::string rootfs = read_fifo_while(tar_fifo, [&] {
    metadata = read_fifo_while(md_fifo, [&] {
      streamed = build({"-o", "type=tar,dest=" + tar_fifo.string(), "--iidfile", null.string(), "--metadata-file",
                        (out / "md-link").string()});
    });
  });
  INFO(streamed.err);
  CHECK(streamed.status == 0);
  CHECK(rootfs.find("payload") != std::string::npos);
  CHECK(metadata.find("\"containerimage.config.digest\": \"" + id + "\"") != std::string::npos);
  CHECK(S_ISFIFO(lstat_of(tar_fifo).st_mode));
  CHECK(S_ISFIFO(lstat_of(md_fifo).st_mode));
  CHECK(S_ISCHR(lstat_of(null).st_mode));
  CHECK(fs::is_symlink(out / "md-link"));

  // A 0600 iid file with a hard link is replaced by a new file.
  fs::path old = out / "old-iid";
  write_file(old, "previous");
  REQUIRE(::chmod(old.c_str(), 0600) == 0);
  fs::create_hard_link(old, out / "old-iid-link");
  RunResult replaced = build({"--iidfile", old.string()});
  INFO(replaced.err);
  REQUIRE(replaced.status == 0);
  CHECK(read_file(old) == id);
  CHECK(read_file(out / "old-iid-link") == "previous");
  CHECK((lstat_of(old).st_mode & 07777) == (0666 & ~current_umask()));
  CHECK(names_in(out) == std::set<std::string>{"stdout-link", "rootfs.fifo", "md.fifo", "md-link", "null", "old-iid",
                                               "old-iid-link"});
}

TEST_CASE("build with an output that is a directory or under a missing directory fails before the build",
          "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  fs::path ctx = work.path / "ctx";
  fs::create_directories(ctx);
  // Were the build to run, COPY would fail on the missing file.
  write_file(ctx / "Dockerfile", "FROM scratch\nCOPY not-in-the-context /x\n");
  fs::path missing = work.path / "nonexistent";
  struct Case {
    std::vector<std::string> flags;
    std::string dest;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"-o", "type=docker,dest=" + ctx.string()}, ctx.string(), "is a directory"},
      {{"-o", "type=tar,dest=" + (missing / "x.tar").string()}, (missing / "x.tar").string(), "does not exist"},
      {{"-o", "type=oci,dest=" + (missing / "x.tar").string()}, (missing / "x.tar").string(), "does not exist"},
      {{"--iidfile", (missing / "x").string()}, (missing / "x").string(), "does not exist"},
      {{"--metadata-file", (missing / "m.json").string()}, (missing / "m.json").string(), "does not exist"},
      {{"--metadata-file", ctx.string()}, ctx.string(), "is a directory"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"build", "--progress", "plain"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.push_back(ctx.string());
    RunResult r = run_imgbuild(root, args);
    INFO(c.flags.back() << "\n" << r.err);
    CHECK(r.status == 1);
    CHECK(r.err.find("imgbuild: error: cannot write to " + c.dest + ": ") != std::string::npos);
    CHECK(r.err.find(c.says) != std::string::npos);
    CHECK(r.err.find("not-in-the-context") == std::string::npos);  // no step ran
  }
  CHECK_FALSE(fs::exists(missing));
}

TEST_CASE("save -o killed at any point leaves the old file or the whole archive, and no temporary file",
          "[integration]") {
  TempDir work;
  fs::path root = work.path / "store";
  fs::path out = work.path / "out";
  fs::create_directories(out);
  // A 48 MiB layer, so that the save takes long enough to be killed inside it.
  std::string body(48 << 20, '\0');
  for (size_t i = 0; i < body.size(); i += 4096) {
    body[i] = static_cast<char>(i >> 12);
  }
  fs::path tarball = work.path / "big.tar";
  write_file(tarball, make_tar({imgbuild::test::file("blob", body)}));
  body.clear();
  RunResult imported = run_imgbuild(root, {"import", tarball.string(), "big"});
  INFO(imported.err);
  REQUIRE(imported.status == 0);
  fs::remove(tarball);

  fs::path target = out / "image.tar";
  RunResult whole = run_imgbuild(root, {"save", "-o", target.string(), "big"});
  REQUIRE(whole.status == 0);
  const uintmax_t full_size = fs::file_size(target);
  int killed = 0;
  for (const char* delay : {"0.01", "0.03", "0.06", "0.1", "0.15", "0.25", "0.4"}) {
    INFO(delay);
    write_file(target, "old");
    RunResult r = run_sh("timeout -s KILL " + std::string(delay) + " " + imgbuild_cmd(root) + " save -o " +
                         sh_quote(target.string()) + " big; exit $?");  // the shell's "Killed" goes to r.err
    killed += r.status == 137 ? 1 : 0;
    CHECK(names_in(out) == std::set<std::string>{"image.tar"});
    uintmax_t size = fs::file_size(target);
    CHECK((size == 3 || size == full_size));
    if (size == 3) {
      CHECK(read_file(target) == "old");
    }
  }
  CHECK(killed > 0);  // at least one kill landed before the save finished
}
