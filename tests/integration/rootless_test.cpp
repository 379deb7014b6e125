// Rootless mode end to end: imgbuild run by an unprivileged user (made by
// scripts/test-user, with and without subordinate ids) builds, caches, runs
// containers and keeps its store in the user's XDG data directory; without
// subordinate ids it fails with a message that names the file and the fix.
// (compat_test.cpp's compat-rootless cases compare whole images with the
// root build.)

#include <sys/stat.h>
#include <unistd.h>

#include <sstream>

#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using namespace imgbuild::test;

namespace {

struct User {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

User make_user(bool with_range) {
  std::string cmd = sh_quote((source_dir() / "scripts" / "test-user").string());
  RunResult r = run_sh(with_range ? cmd : cmd + " --no-range");
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::istringstream in(r.out);
  User u;
  in >> u.name >> u.uid >> u.gid;
  REQUIRE(u.uid != 0);
  return u;
}

// A work directory the user owns (inside a temp dir others may enter).
struct Work {
  TempDir tmp;
  fs::path dir;
  User user;
  explicit Work(User u) : user(std::move(u)) {
    fs::permissions(tmp.path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                  fs::perms::others_read | fs::perms::others_exec);
    dir = tmp.path / "home";
    fs::create_directories(dir);
    REQUIRE(::chown(dir.c_str(), user.uid, user.gid) == 0);
    fs::path base = dir / "busybox.tar";
    write_file(base, busybox_rootfs_tar());
    REQUIRE(::chown(base.c_str(), user.uid, user.gid) == 0);
  }
  // Writes a file the user owns.
  void put(const std::string& rel, const std::string& body) {
    fs::path p = dir / rel;
    fs::create_directories(p.parent_path());
    write_file(p, body);
    for (fs::path q = p; q != dir; q = q.parent_path()) {
      REQUIRE(::lchown(q.c_str(), user.uid, user.gid) == 0);
    }
  }
  // imgbuild as the user, HOME = dir, no --root (the default store).
  RunResult run(const std::vector<std::string>& args, const std::string& env = "") {
    std::string cmd = "cd " + sh_quote(dir.string()) + " && setpriv --reuid=" + std::to_string(user.uid) +
                      " --regid=" + std::to_string(user.gid) + " --clear-groups env -u XDG_DATA_HOME -u IMGBUILD_ROOT HOME=" +
                      sh_quote(dir.string()) + " " + env + " " + sh_quote(imgbuild_binary_for(user.uid, user.gid).string());
    for (const auto& a : args) {
      cmd += ' ';
      cmd += sh_quote(a);
    }
    return run_sh(cmd);
  }
};

#define REQUIRE_ROOTLESS_PREREQS()                                                         \
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "making the test user needs root");            \
  IMGBUILD_REQUIRE_PREREQ(fs::exists("/bin/busybox"), "busybox-static is not installed"); \
  IMGBUILD_REQUIRE_PREREQ(have_tool("setpriv"), "setpriv (util-linux) is missing")

}  // namespace

TEST_CASE("rootless: a plain user builds, caches and runs, in ~/.local/share/imgbuild", "[integration][rootless]") {
  REQUIRE_ROOTLESS_PREREQS();
  Work w(make_user(true));
  RunResult imp = w.run({"import", "busybox.tar", "busybox"});
  INFO(imp.err);
  REQUIRE(imp.status == 0);
  // The default store is the user's own, owned by the user.
  fs::path store = w.dir / ".local" / "share" / "imgbuild";
  REQUIRE(fs::exists(store / "blobs" / "sha256"));
  struct stat st {};
  REQUIRE(::stat(store.c_str(), &st) == 0);
  CHECK(st.st_uid == w.user.uid);

  w.put("ctx/Dockerfile",
        "FROM busybox\n"
        "RUN --mount=type=cache,target=/cache echo x >> /cache/n && wc -l < /cache/n > /runs\n"
        "COPY --chown=1000:1000 a.txt /home/app/a.txt\n"
        "RUN chown 1001:29 /home/app && chmod 4755 /bin/busybox && id -u > /uid\n"
        "USER app\n"
        "RUN id > /tmp/id\n");
  w.put("ctx/a.txt", "a\n");
  RunResult b = w.run({"build", "--progress", "plain", "-t", "app", "--metadata-file", "m1.json", "ctx"});
  INFO(b.err);
  REQUIRE(b.status == 0);
  CHECK(b.err.find("CACHED") == std::string::npos);

  // Owners of the range in the image: listed by a container (run works too).
  RunResult ls = w.run({"run", "--rm", "app", "sh", "-c",
                        "stat -c '%u:%g %a %n' /home/app/a.txt /home/app /bin/busybox; cat /uid /tmp/id /runs"});
  INFO(ls.err);
  REQUIRE(ls.status == 0);
  CHECK(ls.out ==
        "1000:1000 644 /home/app/a.txt\n1001:29 755 /home/app\n0:0 4755 /bin/busybox\n0\n"
        "uid=1000(app) gid=1000(app) groups=10(wheel),29(audio),1000(app)\n1\n");
  // On the host, the file of uid 1000 belongs to the user's subordinate id
  // 300000 + 1000 - 1 (scripts/test-user's range starts at 300000).
  bool found = false;
  for (const auto& e : fs::recursive_directory_iterator(store / "snapshots")) {
    if (e.path().filename() == "a.txt" && e.path().parent_path().filename() == "app") {
      REQUIRE(::lstat(e.path().c_str(), &st) == 0);
      CHECK(st.st_uid == 300999);
      found = true;
    }
  }
  CHECK(found);

  // A second build is all cached; a cache export and import work too.
  RunResult again = w.run({"build", "--progress", "plain", "-t", "app", "--cache-to", "type=local,dest=cache-dir,mode=max",
                           "ctx"});
  INFO(again.err);
  REQUIRE(again.status == 0);
  CHECK(again.err.find("#2 CACHED") != std::string::npos);
  // The same base in a fresh store (an import would date it anew).
  RunResult saved = w.run({"save", "-o", "base-image.tar", "busybox"});
  REQUIRE(saved.status == 0);
  RunResult fresh = w.run({"--root", (w.dir / "store2").string(), "load", "-i", "base-image.tar"});
  INFO(fresh.err);
  REQUIRE(fresh.status == 0);
  RunResult from_cache = w.run({"--root", (w.dir / "store2").string(), "build", "--progress", "plain", "--cache-from",
                                "type=local,src=cache-dir", "ctx"});
  INFO(from_cache.err);
  REQUIRE(from_cache.status == 0);
  CHECK(from_cache.err.find("#2 CACHED") != std::string::npos);
  CHECK(from_cache.err.find("#5 CACHED") != std::string::npos);
}

TEST_CASE("rootless without subordinate ids: root-only images build, other owners fail naming the fix",
          "[integration][rootless]") {
  REQUIRE_ROOTLESS_PREREQS();
  Work w(make_user(false));
  RunResult imp = w.run({"import", "busybox.tar", "busybox"});
  INFO(imp.err);
  REQUIRE(imp.status == 0);
  w.put("ok/Dockerfile", "FROM busybox\nRUN echo hi > /hi && id -u > /uid\n");
  RunResult ok = w.run({"build", "--progress", "plain", "-t", "ok", "ok"});
  INFO(ok.err);
  CHECK(ok.status == 0);

  w.put("chown/Dockerfile", "FROM busybox\nCOPY --chown=1000:1000 Dockerfile /f\n");
  RunResult chown = w.run({"build", "--progress", "plain", "chown"});
  CHECK(chown.status == 1);
  CHECK(chown.err.find("/f: cannot give it the owner 1000:1000: rootless mode maps only your own id") !=
        std::string::npos);
  CHECK(chown.err.find("usermod --add-subuids") != std::string::npos);

  w.put("user/Dockerfile", "FROM busybox\nUSER app\nRUN id\n");
  RunResult user = w.run({"build", "--progress", "plain", "user"});
  CHECK(user.status == 1);
  CHECK(user.err.find("cannot run as uid 1000 gid 1000: rootless mode without subordinate ids maps only root") !=
        std::string::npos);
}

TEST_CASE("rootless in containers: cached rebuilds and a local cache export and import, as user 1000 and as root",
          "[integration][rootless]") {
  REQUIRE_ROOTLESS_PREREQS();
  IMGBUILD_REQUIRE_PREREQ(docker_available(), "no Docker engine (/usr/bin/docker, dockerd) is available");
  const std::string image = container_image();
  for (bool as_root : {false, true}) {
    INFO((as_root ? "root, Docker's default profile (chroot isolation)" : "user 1000, seccomp=unconfined"));
    TempDir t;
    fs::permissions(t.path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                fs::perms::others_read | fs::perms::others_exec);
    fs::path w = t.path / "w";
    fs::create_directories(w / "ctx");
    write_file(w / "busybox.tar", busybox_rootfs_tar());
    write_file(w / "ctx" / "a.txt", "a\n");
    write_file(w / "ctx" / "Dockerfile",
               "FROM busybox\nRUN echo hi > /x\nCOPY a.txt /a\nRUN --mount=type=cache,target=/c echo y >> /c/n && "
               "cp /c/n /n\nUSER app\nRUN id -u > /tmp/uid\n");
    if (!as_root) {
      REQUIRE(run_sh("chown -R 1000:1000 " + sh_quote(w.string())).status == 0);
    }
    auto in = [&](const std::string& store, const std::vector<std::string>& args) {
      return run_imgbuild_in_container(image, w, w, w / store, args, as_root);
    };
    RunResult imp = in("store", {"import", (w / "busybox.tar").string(), "busybox"});
    INFO(imp.err);
    REQUIRE(imp.status == 0);
    const std::string ctx = (w / "ctx").string();
    RunResult first = in("store", {"build", "--progress", "plain", "-t", "app", "--cache-to",
                                   "type=local,dest=" + (w / "cache").string() + ",mode=max", ctx});
    INFO(first.err);
    REQUIRE(first.status == 0);
    CHECK(first.err.find("CACHED") == std::string::npos);
    CHECK((first.err.find("isolation: chroot") != std::string::npos) == as_root);
    RunResult again = in("store", {"build", "--progress", "plain", "-t", "app", ctx});
    INFO(again.err);
    REQUIRE(again.status == 0);
    for (const char* step : {"#2 CACHED", "#3 CACHED", "#4 CACHED", "#5 CACHED"}) {
      CHECK(again.err.find(step) != std::string::npos);
    }
    // A fresh store with the same base (saved and loaded: an import would
    // date it anew) takes every step from the exported cache.
    REQUIRE(in("store", {"save", "-o", (w / "base-image.tar").string(), "busybox"}).status == 0);
    REQUIRE(in("store2", {"load", "-i", (w / "base-image.tar").string()}).status == 0);
    RunResult imported = in("store2", {"build", "--progress", "plain", "--cache-from",
                                       "type=local,src=" + (w / "cache").string(), ctx});
    INFO(imported.err);
    REQUIRE(imported.status == 0);
    for (const char* step : {"#2 CACHED", "#3 CACHED", "#4 CACHED", "#5 CACHED"}) {
      CHECK(imported.err.find(step) != std::string::npos);
    }
  }
}

TEST_CASE("rootless: run keeps a container and commit makes an image of it, on the host and in a container",
          "[integration][rootless]") {
  REQUIRE_ROOTLESS_PREREQS();
  Work w(make_user(true));
  REQUIRE(w.run({"import", "busybox.tar", "busybox"}).status == 0);
  // On the host (mode 1): a kept container's change, owned by uid 1000, is
  // in the committed image.
  RunResult run = w.run({"run", "--name", "c1", "busybox", "sh", "-c", "echo kept > /f && chown 1000:1000 /f"});
  INFO(run.err);
  REQUIRE(run.status == 0);
  RunResult commit = w.run({"commit", "c1", "committed:1"});
  INFO(commit.err);
  REQUIRE(commit.status == 0);
  RunResult check = w.run({"run", "--rm", "committed:1", "stat", "-c", "%u %n", "/f"});
  INFO(check.err);
  REQUIRE(check.status == 0);
  CHECK(check.out == "1000 /f\n");

  // In a container with seccomp=unconfined as user 1000 (mode 3): run too.
  IMGBUILD_REQUIRE_PREREQ(docker_available(), "no Docker engine (/usr/bin/docker, dockerd) is available");
  const std::string image = container_image();
  TempDir t;
  fs::permissions(t.path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
  fs::path d = t.path / "w";
  fs::create_directories(d);
  write_file(d / "busybox.tar", busybox_rootfs_tar());
  REQUIRE(run_sh("chown -R 1000:1000 " + sh_quote(d.string())).status == 0);
  REQUIRE(run_imgbuild_in_container(image, d, d, d / "store", {"import", (d / "busybox.tar").string(), "busybox"})
              .status == 0);
  RunResult in = run_imgbuild_in_container(image, d, d, d / "store",
                                           {"run", "--name", "c2", "busybox", "sh", "-c", "id -u; echo x > /g"});
  INFO(in.err);
  REQUIRE(in.status == 0);
  CHECK(in.out == "0\n");
  RunResult in_commit = run_imgbuild_in_container(image, d, d, d / "store", {"commit", "c2", "committed:2"});
  INFO(in_commit.err);
  REQUIRE(in_commit.status == 0);
  RunResult in_check = run_imgbuild_in_container(image, d, d, d / "store", {"run", "--rm", "committed:2", "cat", "/g"});
  INFO(in_check.err);
  CHECK(in_check.out == "x\n");
}
