// COPY/ADD semantics on real directories (needs root for owners).

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <tuple>

#include "builder/copy.hpp"
#include "support/http_server.hpp"
#include "support/layer_spec.hpp"
#include "support/require.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;
using imgbuild::test::read_text;
using imgbuild::test::HttpServer;
using imgbuild::test::ScratchDir;
using imgbuild::test::write_text;
namespace sfs = std::filesystem;

namespace {

struct stat lst(const sfs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st;
}

// A source tree and a destination rootfs in one scratch dir.
struct Fixture {
  ScratchDir dir;
  sfs::path src = dir / "src";
  sfs::path dst = dir / "rootfs";
  Fixture() {
    sfs::create_directories(src);
    sfs::create_directories(dst);
  }
  Result<CopyResult> run(CopyRequest req, const IgnoreMatcher* ignore = nullptr) {
    auto sroot = fs::Root::open(src.string());
    REQUIRE(sroot);
    auto droot = fs::Root::open(dst.string());
    REQUIRE(droot);
    CopyEnv env;
    env.source = SourceTree{&*sroot, ignore};
    env.user_db = &*droot;
    env.temp_parent = dir.path().string();
    env.expand_heredoc = [](const std::string& body) -> Result<std::string> {
      std::string out = body;
      size_t at = out.find("$NAME");
      if (at != std::string::npos) {
        out.replace(at, 5, "world");
      }
      return out;
    };
    return apply_copy(req, env, *droot);
  }
};

CopyRequest copy_of(std::vector<std::string> sources, std::string dest) {
  CopyRequest r;
  r.sources = std::move(sources);
  r.dest = std::move(dest);
  return r;
}

bool is_root() { return ::geteuid() == 0; }

bool have_program(const char* name) {
  std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace

TEST_CASE("copy: a directory source copies its contents - trailing / and WORKDIR rules", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  sfs::create_directories(f.src / "dir/sub");
  write_text(f.src / "dir/sub/a", "A");
  write_text(f.src / "file", "F");
  REQUIRE(f.run(copy_of({"dir"}, "/app")));
  CHECK(read_text(f.dst / "app/sub/a") == "A");
  CHECK_FALSE(sfs::exists(f.dst / "app/dir"));
  // Relative dest against WORKDIR; trailing slash means directory.
  auto r = copy_of({"file"}, "rel/");
  r.workdir = "/work";
  REQUIRE(f.run(r));
  CHECK(read_text(f.dst / "work/rel/file") == "F");
  // No trailing slash and no existing dir: the dest is the file name.
  REQUIRE(f.run(copy_of({"file"}, "/renamed")));
  CHECK(read_text(f.dst / "renamed") == "F");
  // An existing directory takes the file inside.
  REQUIRE(f.run(copy_of({"file"}, "/app")));
  CHECK(read_text(f.dst / "app/file") == "F");
  // Empty dest means WORKDIR.
  auto e = copy_of({"file"}, "");
  e.workdir = "/wd";
  REQUIRE(f.run(e));
  CHECK(read_text(f.dst / "wd/file") == "F");
}

TEST_CASE("copy: several sources onto a dest without a trailing slash follow BuildKit v0.22", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  write_text(f.src / "a", "a");
  write_text(f.src / "b", "b");
  sfs::create_directories(f.src / "d");
  write_text(f.src / "d/in", "in");
  // No directory there: each source is copied onto the path, the last wins.
  REQUIRE(f.run(copy_of({"a", "b"}, "/x")));
  CHECK(read_text(f.dst / "x") == "b");
  // A trailing slash makes a directory.
  REQUIRE(f.run(copy_of({"a", "b"}, "/y/")));
  CHECK(read_text(f.dst / "y/a") == "a");
  CHECK(read_text(f.dst / "y/b") == "b");
  // An existing directory (or a symlink to one) takes them inside.
  sfs::create_directories(f.dst / "existing");
  sfs::create_directory_symlink("existing", f.dst / "link");
  REQUIRE(f.run(copy_of({"a", "b"}, "/link")));
  CHECK(read_text(f.dst / "existing/a") == "a");
  CHECK(read_text(f.dst / "existing/b") == "b");
  // A wildcard's matches are copied one by one too.
  REQUIRE(f.run(copy_of({"[ab]"}, "/w")));
  CHECK(read_text(f.dst / "w") == "b");
  // A directory source makes the dest a directory for the sources after it.
  REQUIRE(f.run(copy_of({"d", "a"}, "/m")));
  CHECK(read_text(f.dst / "m/in") == "in");
  CHECK(read_text(f.dst / "m/a") == "a");
  // After a file there, a directory source fails as in BuildKit.
  auto r = f.run(copy_of({"a", "d"}, "/n"));
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "cannot copy to non-directory: /n");
}

TEST_CASE("copy: two sources writing the same names into a directory the copy makes", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  // The first source fills /fresh/ (made by this copy, so its entries are
  // written without a look); the second writes the same names again and
  // must replace them: a file over a file, a directory over a file, a file
  // over a symlink, and a directory merged into a directory.
  sfs::create_directories(f.src / "one/sub");
  write_text(f.src / "one/f", "first");
  write_text(f.src / "one/d", "a file first");
  sfs::create_symlink("f", f.src / "one/l");
  write_text(f.src / "one/sub/x", "x1");
  sfs::create_directories(f.src / "two/d");
  sfs::create_directories(f.src / "two/sub");
  write_text(f.src / "two/f", "second");
  write_text(f.src / "two/d/in", "in");
  write_text(f.src / "two/l", "a file now");
  write_text(f.src / "two/sub/y", "y2");
  REQUIRE(f.run(copy_of({"one/", "two/"}, "/fresh/")));
  CHECK(read_text(f.dst / "fresh/f") == "second");
  CHECK(sfs::is_directory(f.dst / "fresh/d"));
  CHECK(read_text(f.dst / "fresh/d/in") == "in");
  CHECK_FALSE(sfs::is_symlink(f.dst / "fresh/l"));
  CHECK(read_text(f.dst / "fresh/l") == "a file now");
  CHECK(read_text(f.dst / "fresh/sub/x") == "x1");
  CHECK(read_text(f.dst / "fresh/sub/y") == "y2");
}

TEST_CASE("copy: created parents take an octal --chmod's mode and the --chown owner", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  write_text(f.src / "a", "a");
  sfs::create_directories(f.src / "d");
  write_text(f.src / "d/in", "in");
  sfs::create_directories(f.dst / "usr");
  ::chmod((f.dst / "usr").c_str(), 0711);
  auto r = copy_of({"a"}, "/usr/local/bin/a");
  r.chmod = "0750";
  r.chown = "1000:1001";
  REQUIRE(f.run(r));
  auto mode_of = [&](const char* p) {
    struct stat st {};
    REQUIRE(::lstat((f.dst / p).c_str(), &st) == 0);
    return std::make_tuple(st.st_mode & 07777, st.st_uid, st.st_gid);
  };
  CHECK(mode_of("usr") == std::make_tuple(0711u, 0u, 0u));  // existing: untouched
  CHECK(mode_of("usr/local") == std::make_tuple(0750u, 1000u, 1001u));
  CHECK(mode_of("usr/local/bin") == std::make_tuple(0750u, 1000u, 1001u));
  CHECK(mode_of("usr/local/bin/a") == std::make_tuple(0750u, 1000u, 1001u));
  // A directory source's missing dest takes it too; a symbolic --chmod leaves 0755.
  auto d = copy_of({"d"}, "/p/q/");
  d.chmod = "0700";
  REQUIRE(f.run(d));
  CHECK(std::get<0>(mode_of("p")) == 0700u);
  CHECK(std::get<0>(mode_of("p/q")) == 0700u);
  auto s = copy_of({"a"}, "/s/t/a");
  s.chmod = "u=rw,go=r";
  REQUIRE(f.run(s));
  CHECK(std::get<0>(mode_of("s/t")) == 0755u);
  CHECK(std::get<0>(mode_of("s/t/a")) == 0644u);
}

TEST_CASE("copy: missing literal source fails, unmatched wildcard is fine", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  auto r = f.run(copy_of({"nope"}, "/x"));
  REQUIRE_FALSE(r);
  CHECK(r.error().message == "failed to compute cache key: \"/nope\": not found");
  auto w = f.run(copy_of({"*.none"}, "/x/"));
  REQUIRE(w);
  CHECK(w->files == 0);
}

TEST_CASE("copy: modes and mtimes kept, owners 0:0 without --chown, parents 0755", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  sfs::create_directories(f.src / "d");
  write_text(f.src / "d/x", "x");
  REQUIRE(::chown((f.src / "d/x").c_str(), 1234, 5678) == 0);
  REQUIRE(::chmod((f.src / "d/x").c_str(), 04751) == 0);
  REQUIRE(::chmod((f.src / "d").c_str(), 0710) == 0);
  struct timespec ts[2] = {{1000000, 500}, {1000000, 500}};
  REQUIRE(::utimensat(AT_FDCWD, (f.src / "d/x").c_str(), ts, 0) == 0);
  struct timespec dts[2] = {{2000000, 0}, {2000000, 0}};
  REQUIRE(::utimensat(AT_FDCWD, (f.src / "d").c_str(), dts, 0) == 0);
  auto r = f.run(copy_of({"d"}, "/a/b/c"));
  REQUIRE(r);
  auto x = lst(f.dst / "a/b/c/x");
  CHECK((x.st_mode & 07777) == 04751);
  CHECK(x.st_uid == 0);
  CHECK(x.st_gid == 0);
  CHECK(x.st_mtim.tv_sec == 1000000);
  CHECK(x.st_mtim.tv_nsec == 500);
  // The target of a directory's contents is made first, like its parents
  // (0755, the --chown owner): BuildKit does not give it the source
  // directory's mode or mtime (testdata/compat/copy-chmod).
  auto c = lst(f.dst / "a/b/c");
  CHECK((c.st_mode & 07777) == 0755);
  CHECK(c.st_mtim.tv_sec != 2000000);
  auto a = lst(f.dst / "a");
  CHECK((a.st_mode & 07777) == 0755);
  CHECK(a.st_uid == 0);
  // An existing destination directory keeps its metadata.
  sfs::create_directories(f.dst / "keep");
  REQUIRE(::chmod((f.dst / "keep").c_str(), 0700) == 0);
  REQUIRE(f.run(copy_of({"d"}, "/keep")));
  CHECK((lst(f.dst / "keep").st_mode & 07777) == 0700);
}

TEST_CASE("copy: --chown resolves names in the destination rootfs", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  sfs::create_directories(f.dst / "etc");
  write_text(f.dst / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1500:app:/home/app:/bin/sh\n");
  write_text(f.dst / "etc/group", "root:x:0:\napp:x:1002:\nstaff:x:50:app\n");
  write_text(f.src / "f", "f");
  auto r = copy_of({"f"}, "/u/n/");
  r.chown = "app";
  REQUIRE(f.run(r));
  auto st = lst(f.dst / "u/n/f");
  CHECK(st.st_uid == 1001);
  CHECK(st.st_gid == 1500);  // the primary group, not the group named app
  CHECK(lst(f.dst / "u/n").st_uid == 1001);  // created dest dirs get the owner too
  r.chown = "app:staff";
  r.dest = "/g";
  REQUIRE(f.run(r));
  CHECK(lst(f.dst / "g").st_gid == 50);
  r.chown = "42";
  r.dest = "/num";
  REQUIRE(f.run(r));
  CHECK(lst(f.dst / "num").st_uid == 42);
  CHECK(lst(f.dst / "num").st_gid == 42);
  r.chown = "7:8";
  r.dest = "/num2";
  REQUIRE(f.run(r));
  CHECK(lst(f.dst / "num2").st_gid == 8);
  r.chown = "ghost";
  auto bad = f.run(r);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("unable to find user ghost") != std::string::npos);
  // The source tree's own passwd never counts.
  sfs::create_directories(f.src / "etc");
  write_text(f.src / "etc/passwd", "ghost:x:9:9::/:/bin/sh\n");
  CHECK_FALSE(f.run(r));
}

TEST_CASE("copy: --chmod octal and symbolic on files and directories", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  CHECK_FALSE(parse_chmod("64a"));
  CHECK(parse_chmod("64a").error().message.find("invalid chmod parameter: '64a'") == 0);
  CHECK_FALSE(parse_chmod("10000"));
  CHECK(parse_chmod("u=rwX,go=rX"));
  ChmodSpec sym = *parse_chmod("u=rwX,go=rX");
  CHECK(chmod_apply(sym, 0600, false) == 0644);
  CHECK(chmod_apply(sym, 0700, false) == 0755);
  CHECK(chmod_apply(sym, 0700, true) == 0755);
  CHECK(chmod_apply(sym, 0600, true) == 0755);
  CHECK(chmod_apply(*parse_chmod("g+w,o-r"), 0644, false) == 0660);
  CHECK(chmod_apply(*parse_chmod("+x"), 0644, false) == 0755);

  Fixture f;
  sfs::create_directories(f.src / "d/s");
  write_text(f.src / "d/s/f", "f");
  REQUIRE(::chmod((f.src / "d/s/f").c_str(), 0600) == 0);
  auto r = copy_of({"d"}, "/oct");
  r.chmod = "0640";
  REQUIRE(f.run(r));
  CHECK((lst(f.dst / "oct/s/f").st_mode & 07777) == 0640);
  CHECK((lst(f.dst / "oct/s").st_mode & 07777) == 0640);
  r.chmod = "u=rwX,go=rX";
  r.dest = "/sym";
  REQUIRE(f.run(r));
  CHECK((lst(f.dst / "sym/s/f").st_mode & 07777) == 0644);
  CHECK((lst(f.dst / "sym/s").st_mode & 07777) == 0755);
}

TEST_CASE("copy: --parents keeps parent dirs, /./ is the pivot", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  sfs::create_directories(f.src / "x/y/z");
  write_text(f.src / "x/y/z/a.txt", "a");
  write_text(f.src / "x/y/b.txt", "b");
  auto r = copy_of({"x/y/z/a.txt", "x/y/b.txt"}, "/out/");
  r.parents = true;
  REQUIRE(f.run(r));
  CHECK(read_text(f.dst / "out/x/y/z/a.txt") == "a");
  CHECK(read_text(f.dst / "out/x/y/b.txt") == "b");
  auto p = copy_of({"x/./y/z/a.txt"}, "/piv/");
  p.parents = true;
  REQUIRE(f.run(p));
  CHECK(read_text(f.dst / "piv/y/z/a.txt") == "a");
  auto w = copy_of({"x/*/*.txt"}, "/wild/");
  w.parents = true;
  REQUIRE(f.run(w));
  CHECK(read_text(f.dst / "wild/x/y/b.txt") == "b");
}

TEST_CASE("copy: --exclude and .dockerignore remove entries", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  sfs::create_directories(f.src / "d/sub");
  write_text(f.src / "d/a.txt", "a");
  write_text(f.src / "d/b.md", "b");
  write_text(f.src / "d/sub/c.txt", "c");
  write_text(f.src / "secret", "s");
  auto r = copy_of({"d"}, "/e");
  r.excludes = {"*.txt"};
  REQUIRE(f.run(r));
  CHECK_FALSE(sfs::exists(f.dst / "e/a.txt"));
  CHECK(sfs::exists(f.dst / "e/b.md"));
  CHECK(sfs::exists(f.dst / "e/sub/c.txt"));  // * does not cross /
  r.excludes = {"**/*.txt"};
  r.dest = "/e2";
  REQUIRE(f.run(r));
  CHECK_FALSE(sfs::exists(f.dst / "e2/sub/c.txt"));
  auto ig = IgnoreMatcher::parse("secret\nd/sub\n", ".dockerignore");
  REQUIRE(ig);
  auto all = copy_of({"."}, "/all");
  REQUIRE(f.run(all, &*ig));
  CHECK(sfs::exists(f.dst / "all/d/a.txt"));
  CHECK_FALSE(sfs::exists(f.dst / "all/secret"));
  CHECK_FALSE(sfs::exists(f.dst / "all/d/sub"));
  CHECK_FALSE(f.run(copy_of({"secret"}, "/s"), &*ig));
}

TEST_CASE("copy: hardlinks kept, symlinks copied as links, sockets become files", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  sfs::create_directories(f.src / "d");
  write_text(f.src / "d/one", "1");
  sfs::create_hard_link(f.src / "d/one", f.src / "d/two");
  sfs::create_symlink("/etc/shadow", f.src / "d/abs");
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::string sp = (f.src / "d/sock").string();
  REQUIRE(sp.size() < sizeof addr.sun_path);
  std::strcpy(addr.sun_path, sp.c_str());
  REQUIRE(::bind(s, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0);
  ::close(s);
  REQUIRE(f.run(copy_of({"d"}, "/h")));
  auto one = lst(f.dst / "h/one");
  auto two = lst(f.dst / "h/two");
  CHECK(one.st_ino == two.st_ino);
  CHECK(sfs::read_symlink(f.dst / "h/abs") == "/etc/shadow");
  auto sock = lst(f.dst / "h/sock");  // a socket becomes an empty regular file
  CHECK(S_ISREG(sock.st_mode));
  CHECK(sock.st_size == 0);
}

TEST_CASE("copy: a symlinked dir in the destination never leads outside it", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  sfs::create_symlink("/", f.dst / "escape");
  sfs::create_directories(f.dst / "run");
  sfs::create_directories(f.dst / "var");
  sfs::create_symlink("/run", f.dst / "var/run");
  write_text(f.src / "payload", "p");
  auto outside = test::snapshot_listing(f.dir.path() / "src");
  REQUIRE(f.run(copy_of({"payload"}, "/escape/tmp/")));
  CHECK(read_text(f.dst / "tmp/payload") == "p");
  REQUIRE(f.run(copy_of({"payload"}, "/var/run/x/")));
  CHECK(read_text(f.dst / "run/x/payload") == "p");
  CHECK(test::snapshot_listing(f.dir.path() / "src") == outside);
  CHECK_FALSE(sfs::exists("/tmp/payload"));
}

TEST_CASE("copy: COPY refuses URLs - checksum needs a remote source", "[builder]") {
  Fixture f;
  write_text(f.src / "a", "a");
  auto r = f.run(copy_of({"https://example.invalid/x"}, "/"));
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("URL") != std::string::npos);
  auto add = copy_of({"a"}, "/");
  add.kind = CopyKind::add;
  add.checksum = "sha256:" + std::string(64, '0');
  auto c = f.run(add);
  REQUIRE_FALSE(c);
  CHECK(c.error().message == "checksum requires HTTP(S) or Git sources");
  CHECK(classify_source("https://example.com/repo.git#main:sub") == SourceKind::git);
  CHECK(classify_source("git@github.com:moby/buildkit.git") == SourceKind::git);
  CHECK(classify_source("https://example.com/file.tar.gz") == SourceKind::url);
  CHECK(classify_source("dir/file") == SourceKind::local);
}

TEST_CASE("copy: ADD extracts local archives inside the root", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  using namespace imgbuild::test;
  Fixture f;
  for (auto comp : {tar::Compression::none, tar::Compression::gzip}) {
    write_text(f.src / "a.tar", make_layer({dir("pkg"), file("pkg/f", "data", 0640).owner(3, 4)}, comp));
    auto r = copy_of({"a.tar"}, "/opt/");
    r.kind = CopyKind::add;
    REQUIRE(f.run(r));
    CHECK(read_text(f.dst / "opt/pkg/f") == "data");
    CHECK((lst(f.dst / "opt/pkg/f").st_mode & 07777) == 0640);
    sfs::remove_all(f.dst / "opt");
  }
  // --unpack=false copies the archive as a file.
  auto keep = copy_of({"a.tar"}, "/k/");
  keep.kind = CopyKind::add;
  keep.unpack = false;
  REQUIRE(f.run(keep));
  CHECK(sfs::is_regular_file(f.dst / "k/a.tar"));
  // COPY never extracts.
  REQUIRE(f.run(copy_of({"a.tar"}, "/c/")));
  CHECK(sfs::is_regular_file(f.dst / "c/a.tar"));
}

TEST_CASE("copy: hostile archives stay inside the destination", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  using namespace imgbuild::test;
  Fixture f;
  sfs::create_directories(f.dst / "run");
  sfs::create_directories(f.dst / "var");
  sfs::create_symlink("/run", f.dst / "var/run");
  write_text(f.src / "through.tar", make_layer({file("var/run/pid", "1")}));
  auto r = copy_of({"through.tar"}, "/");
  r.kind = CopyKind::add;
  REQUIRE(f.run(r));
  CHECK(read_text(f.dst / "run/pid") == "1");
  auto before = test::snapshot_listing(f.dir.path() / "src");
  write_text(f.src / "evil.tar", make_layer({file("../../evil", "x")}));
  r.sources = {"evil.tar"};
  CHECK_FALSE(f.run(r));
  write_text(f.src / "evil2.tar", make_layer({symlink_to("l", "../../.."), file("l/evil2", "x")}));
  r.sources = {"evil2.tar"};
  (void)f.run(r);
  CHECK_FALSE(sfs::exists(f.dir.path() / "evil"));
  CHECK_FALSE(sfs::exists(f.dir.path() / "evil2"));
  CHECK_FALSE(sfs::exists("/evil2"));
  CHECK(sfs::exists(f.dst / "evil2"));  // resolved inside the root
}

TEST_CASE("copy: heredoc files", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  CopyRequest r;
  r.dest = "/h/";
  parser::Heredoc a;
  a.name = "greeting";
  a.content = "hello $NAME\n";
  a.expand = true;
  parser::Heredoc b;
  b.name = "raw";
  b.content = "hello $NAME\n";
  b.expand = false;
  r.heredocs = {a, b};
  REQUIRE(f.run(r));
  CHECK(read_text(f.dst / "h/greeting") == "hello world\n");
  CHECK(read_text(f.dst / "h/raw") == "hello $NAME\n");
  CHECK((lst(f.dst / "h/raw").st_mode & 07777) == 0644);
  CopyRequest c;
  c.dest = "/script";
  c.heredocs = {b};
  c.chmod = "0755";
  c.chown = "5:6";
  REQUIRE(f.run(c));
  auto st = lst(f.dst / "script");
  CHECK((st.st_mode & 07777) == 0755);
  CHECK(st.st_uid == 5);
  CHECK(st.st_gid == 6);
}

TEST_CASE("copy: ADD <url> downloads with mode 0600, Last-Modified and --checksum", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  IMGBUILD_REQUIRE_PREREQ(have_program("python3"), "python3 serves the test URL");
  Fixture f;
  sfs::create_directories(f.dir / "www");
  write_text(f.dir / "www/file.txt", "served");
  struct timespec ts[2] = {{1500000000, 0}, {1500000000, 0}};
  REQUIRE(::utimensat(AT_FDCWD, (f.dir / "www/file.txt").c_str(), ts, 0) == 0);
  HttpServer server(f.dir / "www");
  REQUIRE(server.ok());
  auto r = copy_of({server.url("/file.txt")}, "/dl/");
  r.kind = CopyKind::add;
  REQUIRE(f.run(r));
  auto st = lst(f.dst / "dl/file.txt");
  CHECK(read_text(f.dst / "dl/file.txt") == "served");
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_mtim.tv_sec == 1500000000);
  r.checksum = sha256("served").str();
  r.dest = "/ok";
  REQUIRE(f.run(r));
  CHECK(read_text(f.dst / "ok") == "served");
  r.checksum = sha256("other").str();
  auto bad = f.run(r);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("digest mismatch") != std::string::npos);
}

TEST_CASE("copy: ADD <url> with nothing listening is a clear network error", "[builder]") {
  Fixture f;
  int port = imgbuild::test::free_loopback_port();  // nothing listens there
  auto r = copy_of({"http://127.0.0.1:" + std::to_string(port) + "/x"}, "/x");
  r.kind = CopyKind::add;
  auto res = f.run(r);
  REQUIRE_FALSE(res);
  CHECK(res.error().code == Errc::network);
  CHECK(res.error().message.find("failed to load http://127.0.0.1") == 0);
}

TEST_CASE("copy: ADD from a git repository served over HTTP", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  IMGBUILD_REQUIRE_PREREQ(have_program("git") && have_program("python3"), "git and python3");
  Fixture f;
  sfs::create_directories(f.dir / "work");
  std::string w = (f.dir / "work").string();
  std::string www = (f.dir / "www").string();
  std::string script = "set -e; cd " + w +
                       "; git init -q -b main .; git config user.email t@e; git config user.name t;"
                       " mkdir sub; echo one > sub/f; echo top > top; git add .; git commit -qm one;"
                       " git tag v1; echo two > sub/f; git commit -qam two;"
                       " mkdir -p " + www + "; git clone -q --bare . " + www + "/repo.git;"
                       " cd " + www + "/repo.git; git update-server-info";
  REQUIRE(std::system(("bash -c '" + script + "' >/dev/null 2>&1").c_str()) == 0);
  HttpServer server(f.dir / "www");
  REQUIRE(server.ok());
  auto r = copy_of({server.url("/repo.git")}, "/src/");
  r.kind = CopyKind::add;
  REQUIRE(f.run(r));
  CHECK(read_text(f.dst / "src/sub/f") == "two\n");
  CHECK_FALSE(sfs::exists(f.dst / "src/.git"));
  auto t = copy_of({server.url("/repo.git#v1:sub")}, "/tag/");
  t.kind = CopyKind::add;
  REQUIRE(f.run(t));
  CHECK(read_text(f.dst / "tag/f") == "one\n");
  CHECK_FALSE(sfs::exists(f.dst / "tag/top"));
  auto k = copy_of({server.url("/repo.git?branch=main")}, "/keep/");
  k.kind = CopyKind::add;
  k.keep_git_dir = true;
  REQUIRE(f.run(k));
  CHECK(sfs::exists(f.dst / "keep/.git"));
  auto bad = copy_of({server.url("/repo.git")}, "/bad/");
  bad.kind = CopyKind::add;
  bad.checksum = std::string(40, 'a');
  CHECK_FALSE(f.run(bad));
}

TEST_CASE("copy: ADD extracts bzip2, xz and zstd archives", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  using namespace imgbuild::test;
  Fixture f;
  write_text(f.src / "plain.tar", make_layer({file("inner/z", "zz")}));
  for (const char* prog : {"bzip2", "xz", "zstd"}) {
    if (!have_program(prog)) {
      WARN("SKIPPED: " << prog << " is not installed");
      continue;
    }
    std::string out = (f.src / (std::string("a.") + prog)).string();
    std::string cmd = std::string(prog) + " -c " + (f.src / "plain.tar").string() + " > " + out;
    REQUIRE(std::system(cmd.c_str()) == 0);
    auto r = copy_of({std::string("a.") + prog}, std::string("/") + prog + "/");
    r.kind = CopyKind::add;
    REQUIRE(f.run(r));
    CHECK(read_text(f.dst / prog / "inner/z") == "zz");
  }
}

TEST_CASE("copy: --link writes into an empty dir, --chown still resolves in the stage rootfs", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  sfs::create_directories(f.dst / "etc");
  write_text(f.dst / "etc/passwd", "app:x:1001:1500::/home/app:/bin/sh\n");
  sfs::create_directories(f.dst / "existing");
  write_text(f.src / "a", "a");
  sfs::path link_dir = f.dir / "link";
  sfs::create_directories(link_dir);
  auto sroot = fs::Root::open(f.src.string());
  auto stage = fs::Root::open(f.dst.string());
  auto empty = fs::Root::open(link_dir.string());
  REQUIRE(sroot);
  REQUIRE(stage);
  REQUIRE(empty);
  CopyRequest r = copy_of({"a"}, "/existing/");
  r.link_mode = LinkMode::linked;
  r.chown = "app";
  CopyEnv env;
  env.source = SourceTree{&*sroot, nullptr};
  env.user_db = &*stage;
  auto res = apply_copy(r, env, *empty);
  REQUIRE(res);
  auto st = lst(link_dir / "existing/a");
  CHECK(st.st_uid == 1001);
  CHECK(st.st_gid == 1500);
  CHECK_FALSE(sfs::exists(f.dst / "existing/a"));  // the stage rootfs is untouched
  REQUIRE(res->written.size() == 2);
  CHECK(res->written[0].path == "/existing");
  CHECK(res->written[1].path == "/existing/a");
  CHECK(res->files == 1);
  CHECK(res->bytes == 1);
}

TEST_CASE("copy: copy_request expands words from the instruction", "[builder]") {
  parser::CopyInstruction in;
  in.sources = {"$SRC/a"};
  in.dest = "$DST";
  in.chown = "$U";
  in.chmod = "0$M";
  in.parents = true;
  in.link = true;
  in.excludes = {"*.tmp"};
  WordExpander expand = [](std::string_view w) -> Result<std::string> {
    std::string s(w);
    auto rep = [&](const std::string& k, const std::string& v) {
      size_t at = s.find(k);
      if (at != std::string::npos) {
        s.replace(at, k.size(), v);
      }
    };
    rep("$SRC", "src");
    rep("$DST", "/dst/");
    rep("$U", "app");
    rep("$M", "755");
    return s;
  };
  auto r = copy_request(in, expand, "/work");
  REQUIRE(r);
  CHECK(r->sources == std::vector<std::string>{"src/a"});
  CHECK(r->dest == "/dst/");
  CHECK(r->chown == std::optional<std::string>("app"));
  CHECK(r->chmod == std::optional<std::string>("0755"));
  CHECK(r->parents);
  CHECK(r->link_mode == LinkMode::linked);
  CHECK(r->workdir == "/work");
  in.chmod = "64a";
  CHECK_FALSE(copy_request(in, expand, "/"));
  parser::AddInstruction add;
  add.sources = {"https://x/y.tar"};
  add.dest = "/";
  add.checksum = "sha256:$C";
  add.unpack = true;
  auto a = add_request(add, expand, "/");
  REQUIRE(a);
  CHECK(a->kind == CopyKind::add);
  CHECK(a->unpack == std::optional<bool>(true));
  CHECK(a->checksum == std::optional<std::string>("sha256:$C"));
}

TEST_CASE("copy: ADD --chown applies to extracted archive entries", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  using namespace imgbuild::test;
  Fixture f;
  write_text(f.src / "a.tar", make_layer({dir("d").owner(1, 1), file("d/f", "x").owner(2, 2)}));
  auto r = copy_of({"a.tar"}, "/x/");
  r.kind = CopyKind::add;
  REQUIRE(f.run(r));
  CHECK(lst(f.dst / "x/d/f").st_uid == 2);  // archive owners kept without --chown
  r.chown = "7:9";
  r.dest = "/y/";
  REQUIRE(f.run(r));
  CHECK(lst(f.dst / "y/d/f").st_uid == 7);
  CHECK(lst(f.dst / "y/d/f").st_gid == 9);
  CHECK(lst(f.dst / "y/d").st_uid == 7);
}

TEST_CASE("copy: export_tree materializes the filtered context with owners kept", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(is_root(), "needs root to set owners");
  Fixture f;
  sfs::create_directories(f.src / "d");
  write_text(f.src / "d/keep", "k");
  write_text(f.src / "d/skip.log", "s");
  REQUIRE(::chown((f.src / "d/keep").c_str(), 33, 44) == 0);
  sfs::create_symlink("/etc/passwd", f.src / "abs");
  auto ig = IgnoreMatcher::parse("**/*.log\n", ".dockerignore");
  REQUIRE(ig);
  auto sroot = fs::Root::open(f.src.string());
  auto droot = fs::Root::open(f.dst.string());
  REQUIRE(sroot);
  REQUIRE(droot);
  auto r = export_tree(SourceTree{&*sroot, &*ig}, *droot);
  REQUIRE(r);
  CHECK(read_text(f.dst / "d/keep") == "k");
  CHECK(lst(f.dst / "d/keep").st_uid == 33);
  CHECK(lst(f.dst / "d/keep").st_gid == 44);
  CHECK_FALSE(sfs::exists(f.dst / "d/skip.log"));
  CHECK(sfs::read_symlink(f.dst / "abs") == "/etc/passwd");
}

TEST_CASE("copy: existing directories below a source dir take its metadata, the dest keeps its own, all written",
          "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root to chown");
  Fixture f;
  sfs::create_directories(f.src / "tree/e");
  write_text(f.src / "tree/f", "f");
  ::chmod((f.src / "tree/e").c_str(), 0755);
  sfs::create_directories(f.dst / "d/e");
  ::chmod((f.dst / "d").c_str(), 0700);
  ::chmod((f.dst / "d/e").c_str(), 0700);
  REQUIRE(::chown((f.dst / "d/e").c_str(), 5, 5) == 0);
  write_text(f.dst / "d/f", "f");
  CopyRequest r = copy_of({"tree"}, "/d/");
  r.chown = "9:9";
  auto res = f.run(r);
  REQUIRE(res);
  auto d = lst(f.dst / "d");
  CHECK((d.st_mode & 07777) == 0700);  // the destination itself is left alone
  CHECK(d.st_uid == 0);
  auto e = lst(f.dst / "d/e");
  CHECK((e.st_mode & 07777) == 0755);
  CHECK(e.st_uid == 9);
  CHECK(e.st_gid == 9);
  // Both the re-owned directory and the replaced file are written (the
  // layer keeps them even when nothing about them changed).
  std::vector<std::string> paths = written_paths(*res);
  std::sort(paths.begin(), paths.end());
  CHECK(paths == std::vector<std::string>{"/d/e", "/d/f"});
}
