// Containers end to end: the real imgbuild binary runs commands from an
// imported busybox-static base (`run`), keeps a container, turns its changes
// into an image (`commit`), lists and removes it (`ps -a`, `rm`).

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using namespace imgbuild::test;
using nlohmann::json;

namespace {

// A store with harness.hpp's busybox base named "base".
struct Fixture {
  TempDir work;
  fs::path root;
  Fixture() {
    root = work.path / "store";
    import_tar(root, work.path / "busybox.tar", busybox_rootfs_tar(), "base");
  }
  RunResult run(const std::vector<std::string>& args) { return run_imgbuild(root, args); }

  // Kept containers (record directories).
  size_t containers() const {
    std::error_code ec;
    size_t n = 0;
    for (auto it = fs::directory_iterator(root / "containers", ec); !ec && it != fs::directory_iterator(); ++it) {
      ++n;
    }
    return n;
  }

  // Mount points under the store that are still mounted.
  size_t mounts() const {
    std::string info = read_file("/proc/self/mountinfo");
    size_t n = 0;
    for (size_t pos = info.find(root.string()); pos != std::string::npos; pos = info.find(root.string(), pos + 1)) {
      ++n;
    }
    return n;
  }
};

}  // namespace

TEST_CASE("run --rm passes the exit status through and leaves nothing behind", "[integration][container]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  Fixture f;
  RunResult r = f.run({"run", "--rm", "base", "sh", "-c", "exit 3"});
  INFO(r.err);
  CHECK(r.status == 3);
  CHECK(f.containers() == 0);
  CHECK(f.mounts() == 0);

  r = f.run({"run", "--rm", "base", "sh", "-c", "echo out-line; echo err-line >&2"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "out-line\n");
  CHECK(r.err.find("err-line") != std::string::npos);
  CHECK(f.containers() == 0);
  CHECK(f.mounts() == 0);
}

TEST_CASE("run applies -e, -w, -u and --entrypoint as docker does", "[integration][container]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  Fixture f;
  RunResult r = f.run({"run", "--rm", "-e", "FOO=bar", "-w", "/work/dir", "-u", "app", "base", "sh", "-c",
                       "echo $FOO $(pwd) $(id -u) $HOME"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "bar /work/dir 1000 /home/app\n");

  r = f.run({"run", "--rm", "--entrypoint", "echo", "base", "hello", "world"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "hello world\n");

  // --network none: a fresh network namespace with only the loopback interface.
  r = f.run({"run", "--rm", "--network", "none", "base", "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "    lo\n");

  // The image has no Cmd: running it without a command is an error.
  r = f.run({"run", "--rm", "base"});
  CHECK(r.status != 0);
  CHECK(r.err.find("no command") != std::string::npos);
  CHECK(f.mounts() == 0);
}

TEST_CASE("run has Docker's seccomp filter and device policy", "[integration][container]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  Fixture f;
  RunResult r = f.run({"run", "--rm", "base", "sh", "-c",
                       "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; mknod /tmp/loop b 7 0 && "
                       "head -c1 /tmp/loop 2>&1 >/dev/null; unshare -U true 2>&1; echo rc=$?"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out ==
        "NoNewPrivs:\t0\nSeccomp:\t2\nhead: /tmp/loop: Operation not permitted\n"
        "unshare: unshare(0x10000000): Operation not permitted\nrc=1\n");
  CHECK(f.mounts() == 0);
}

TEST_CASE("a kept container commits into an image that holds its changes", "[integration][container]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  Fixture f;
  RunResult r = f.run({"run", "--name", "maker", "base", "sh", "-c", "echo made-here > /made; rm /bin/ls"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(f.containers() == 1);
  CHECK(f.mounts() == 0);

  r = f.run({"ps", "-a"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out.find("maker") != std::string::npos);
  CHECK(r.out.find("Exited (0)") != std::string::npos);

  r = f.run({"commit", "-m", "made a file", "-c", "CMD [\"cat\", \"/made\"]", "maker", "made:1"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.starts_with("sha256:"));

  // The new image: one more layer, holding /made and the whiteout for /bin/ls.
  fs::path archive = f.work.path / "made.tar";
  r = f.run({"save", "-o", archive.string(), "made:1"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  SavedArchive saved = unpack_saved(archive, f.work.path / "saved");
  REQUIRE(saved.layers.size() == 2);
  RunResult listing = run_sh("tar -tf " + sh_quote(saved.layers.back().string()) + " | sort");
  REQUIRE(listing.status == 0);
  CHECK(listing.out.find("made") != std::string::npos);
  CHECK(listing.out.find("bin/.wh.ls") != std::string::npos);
  CHECK(listing.out.find("busybox") == std::string::npos);
  RunResult body = run_sh("tar -xOf " + sh_quote(saved.layers.back().string()) + " made");
  CHECK(body.out == "made-here\n");
  const json& config = saved.config;
  CHECK(config["config"]["Cmd"] == json::array({"cat", "/made"}));
  CHECK(config["history"].back()["comment"] == "made a file");
  CHECK(config["rootfs"]["diff_ids"].size() == 2);

  // Running the committed image sees the change.
  r = f.run({"run", "--rm", "made:1"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "made-here\n");
  r = f.run({"run", "--rm", "made:1", "sh", "-c", "ls /bin/ls || echo gone"});
  CHECK(r.out.find("gone") != std::string::npos);

  r = f.run({"rm", "maker"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(f.containers() == 0);
  r = f.run({"ps", "-a"});
  CHECK(r.out.find("maker") == std::string::npos);
  r = f.run({"commit", "maker"});
  CHECK(r.status != 0);
  CHECK(r.err.find("No such container: maker") != std::string::npos);
  CHECK(f.mounts() == 0);
}

namespace {

// The shared libraries (and loader) a host binary needs, as ldd names them.
std::vector<std::string> shared_libs_of(const std::string& binary) {
  RunResult r = run_sh("ldd " + sh_quote(binary));
  std::vector<std::string> libs;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    size_t arrow = line.find("=> /");
    size_t start = arrow != std::string::npos ? arrow + 3 : line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] != '/') {
      continue;
    }
    libs.push_back(line.substr(start, line.find(" (", start) - start));
  }
  return libs;
}

// A base for the docker comparison: busybox with every applet, setcap and
// getcap with their libraries, and the lower files the container changes.
std::string docker_base_tar() {
  std::vector<LayerEntry> entries;
  std::set<std::string> dirs;
  auto add_parents = [&](const std::string& path) {
    for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
      std::string d = path.substr(0, slash);
      if (dirs.insert(d).second) {
        entries.push_back(dir(d));
      }
    }
  };
  auto add_file = [&](const std::string& path, const std::string& body, uint32_t mode) {
    add_parents(path);
    entries.push_back(file(path, body, mode));
  };
  entries = busybox_entries();
  dirs.insert("bin");
  std::set<std::string> libs;
  for (const char* tool : {"/usr/sbin/setcap", "/usr/sbin/getcap"}) {
    add_file(std::string(tool).substr(1), read_file(tool), 0755);
    for (const auto& lib : shared_libs_of(tool)) {
      libs.insert(lib);
    }
  }
  for (const auto& lib : libs) {
    add_file(lib.substr(1), read_file(fs::canonical(lib)), 0755);
  }
  add_file("etc/group", "root:x:0:\napp:x:1000:\n", 0644);
  add_file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", 0644);
  add_file("etc/motd", "deleted by the container\n", 0644);
  add_file("etc/conf", "mode and owner change\n", 0644);
  add_file("d/a", "gone with the opaque dir\n", 0644);
  add_file("d/sub/b", "gone too\n", 0644);
  add_file("srv/keep", "kept\n", 0644);
  entries.push_back(hardlink_to("srv/keep-link", "srv/keep"));
  add_parents("usr/local/bin/x");
  entries.push_back(dir("root"));
  entries.push_back(dir("tmp", 01777));
  return make_layer(entries);
}

// What the container does before commit: every kind of change a layer holds.
const char* const k_changes =
    "set -e\n"
    "echo new > /newfile\n"
    "rm /etc/motd\n"
    "rm -rf /d && mkdir /d && echo c > /d/c\n"
    "chmod 0600 /etc/conf && chown 1000:1000 /etc/conf\n"
    "echo '#!/bin/sh' > /usr/local/bin/suid && chmod 4755 /usr/local/bin/suid\n"
    "mkdir /shared && chmod 2775 /shared && chown 1234:5678 /shared\n"
    "ln -s /newfile /abs-link && ln -s ../newfile /d/rel-link\n"
    "echo pair > /hl1 && ln /hl1 /hl2\n"
    "mkdir -p /empty/dir\n"
    "echo cap > /capfile && setcap cap_net_bind_service+ep /capfile\n"
    "echo appended >> /srv/keep\n";

// Lists the whole root filesystem: stat of every entry, then symlink
// targets, then file capabilities. Run by docker and by imgbuild alike.
const char* const k_list_fs =
    "find / -xdev -exec stat -c '%n|%f|%u|%g|%s|%h|%i' {} +; echo '--links';"
    "find / -xdev -type l -exec sh -c 'for p; do echo \"$p|$(readlink \"$p\")\"; done' sh {} +; echo '--caps';"
    "find / -xdev -type f -exec getcap {} +";

bool excluded_path(const std::string& p) {
  for (const char* top : {"/proc", "/sys", "/dev"}) {
    if (p == top || p.starts_with(std::string(top) + "/")) {
      return true;
    }
  }
  return p == "/etc/hosts" || p == "/etc/resolv.conf" || p == "/etc/hostname" || p == "/.dockerenv" ||
         p == "/etc/mtab";
}

// The listing in comparable form, one sorted line per path: type, mode,
// owner, size and link count (not for directories: both are filesystem
// details), link target, hardlink group (the first path with its inode),
// capabilities.
std::map<std::string, std::string> normalize_listing(const std::string& raw) {
  std::map<std::string, std::string> out;
  std::map<std::string, std::string> inode_of;
  std::map<std::string, std::string> first_with_inode;
  std::istringstream in(raw);
  std::string section = "stat";
  for (std::string line; std::getline(in, line);) {
    if (line == "--links" || line == "--caps") {
      section = line.substr(2);
      continue;
    }
    if (section == "caps") {
      size_t sp = line.find(' ');
      std::string path = line.substr(0, sp);
      if (!excluded_path(path) && out.count(path) != 0) {
        out[path] += " caps=" + (sp == std::string::npos ? "" : line.substr(sp + 1));
      }
      continue;
    }
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string x; std::getline(fields, x, '|');) {
      f.push_back(x);
    }
    if (f.empty() || excluded_path(f[0])) {
      continue;
    }
    if (section == "links") {
      REQUIRE(f.size() == 2);
      out[f[0]] += " -> " + f[1];
      continue;
    }
    REQUIRE(f.size() == 7);
    unsigned mode = static_cast<unsigned>(std::stoul(f[1], nullptr, 16));
    char buf[64];
    std::snprintf(buf, sizeof buf, "%06o", mode);
    std::string row = std::string(buf) + " " + f[2] + ":" + f[3];
    if ((mode & 0170000) != 0040000) {
      row += " size=" + f[4] + " nlink=" + f[5];
      inode_of[f[0]] = f[6];
      auto [it, fresh] = first_with_inode.emplace(f[6], f[0]);
      if (!fresh && f[0] < it->second) {
        it->second = f[0];
      }
    }
    out[f[0]] = row;
  }
  for (const auto& [path, ino] : inode_of) {
    const std::string& first = first_with_inode[ino];
    if (first != path) {
      out[path] += " hardlink-of=" + first;
    }
  }
  return out;
}

std::string describe(const std::map<std::string, std::string>& listing) {
  std::string s;
  for (const auto& [p, row] : listing) {
    s += p + " " + row + "\n";
  }
  return s;
}

}  // namespace

TEST_CASE("committed changes saved and loaded into docker show the same filesystem as imgbuild run",
          "[integration][container][docker]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  IMGBUILD_REQUIRE_PREREQ(fs::exists("/usr/sbin/setcap") && fs::exists("/usr/sbin/getcap"),
                          "setcap/getcap (libcap2-bin) are not installed");
  IMGBUILD_REQUIRE_PREREQ(docker_available(), "no Docker engine (docker.io) could be reached or started");
  TempDir work;
  fs::path root = work.path / "store";
  fs::path base = work.path / "base.tar";
  import_tar(root, base, docker_base_tar(), "base");

  RunResult r = run_imgbuild(root, {"run", "--name", "changer", "base", "sh", "-c", k_changes});
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  std::string ref = "imgbuild-test-container-fs:" + std::to_string(::getpid());
  r = run_imgbuild(root, {"commit", "-m", "every kind of change", "changer", ref});
  INFO(r.err);
  REQUIRE(r.status == 0);
  fs::path archive = work.path / "committed.tar";
  r = run_imgbuild(root, {"save", "-o", archive.string(), ref});
  INFO(r.err);
  REQUIRE(r.status == 0);

  RunResult load = run_sh("/usr/bin/docker load -i " + sh_quote(archive.string()));
  INFO(load.out << load.err);
  REQUIRE(load.status == 0);
  RunResult in_docker = run_sh("/usr/bin/docker run --rm --network none " + ref + " sh -c " + sh_quote(k_list_fs));
  RunResult in_imgbuild = run_imgbuild(root, {"run", "--rm", "--network", "none", ref, "sh", "-c", k_list_fs});
  run_sh("/usr/bin/docker rmi " + ref);
  INFO(in_docker.err << in_imgbuild.err);
  REQUIRE(in_docker.status == 0);
  REQUIRE(in_imgbuild.status == 0);

  auto docker_fs = normalize_listing(in_docker.out);
  auto imgbuild_fs = normalize_listing(in_imgbuild.out);
  CHECK(describe(imgbuild_fs) == describe(docker_fs));

  // The changes are there (the comparison alone would pass on two empty roots).
  CHECK(imgbuild_fs.count("/newfile") == 1);
  CHECK(imgbuild_fs.count("/etc/motd") == 0);
  CHECK(imgbuild_fs.count("/etc/passwd") == 1);
  CHECK(imgbuild_fs.count("/d/a") == 0);
  CHECK(imgbuild_fs.count("/d/sub") == 0);
  CHECK(imgbuild_fs["/d/c"].starts_with("100644 0:0 size=2"));
  CHECK(imgbuild_fs["/etc/conf"].starts_with("100600 1000:1000"));
  CHECK(imgbuild_fs["/usr/local/bin/suid"].starts_with("104755 0:0"));
  CHECK(imgbuild_fs["/shared"] == "042775 1234:5678");
  CHECK(imgbuild_fs["/abs-link"].ends_with(" -> /newfile"));
  CHECK(imgbuild_fs["/d/rel-link"].ends_with(" -> ../newfile"));
  CHECK(imgbuild_fs["/hl2"].ends_with("nlink=2 hardlink-of=/hl1"));
  CHECK(imgbuild_fs["/empty/dir"] == "040755 0:0");
  CHECK(imgbuild_fs["/capfile"].find("caps=cap_net_bind_service=ep") != std::string::npos);
}

TEST_CASE("a run killed with SIGKILL leaves no mount behind once the next command has run",
          "[integration][container]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  Fixture f;
  const std::string marker = "4242" + std::to_string(::getpid());
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int null_fd = ::open("/dev/null", O_RDWR);
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(null_fd, 2);
    std::string bin = imgbuild_binary().string();
    std::string root = f.root.string();
    std::string script = "sleep " + marker;
    ::execl(bin.c_str(), bin.c_str(), "--root", root.c_str(), "run", "--rm", "base", "sh", "-c", script.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait (bounded) until the container's root is mounted.
  for (int i = 0; i < 2000 && f.mounts() == 0; ++i) {
    ::usleep(5000);
  }
  CHECK(f.mounts() > 0);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status));

  RunResult r = f.run({"run", "--rm", "base", "sh", "-c", "echo next"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "next\n");
  CHECK(f.mounts() == 0);
  // Nothing of the killed run's view stays on disk either.
  std::error_code ec;
  size_t views = 0;
  for (auto it = fs::directory_iterator(f.root / "snapshots" / "work" / "views", ec);
       !ec && it != fs::directory_iterator(); ++it) {
    ++views;
  }
  CHECK(views == 0);
  // The killed run's process went with its PID namespace.
  RunResult ps = run_sh("ps -eo args | grep -v grep | grep -c " + sh_quote("sleep " + marker));
  CHECK(ps.out == "0\n");
}

TEST_CASE("rmi and image prune keep images that containers were made from", "[integration][container]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  Fixture f;
  RunResult r = f.run({"tag", "base", "other:1"});
  REQUIRE(r.status == 0);
  r = f.run({"run", "--name", "user", "base", "sh", "-c", "echo used > /used"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::string image_id = f.run({"image", "inspect", "--format", "{{.Id}}", "base"}).out;
  while (!image_id.empty() && image_id.back() == '\n') {
    image_id.pop_back();
  }
  REQUIRE(image_id.starts_with("sha256:"));
  std::string short_image = image_id.substr(7, 12);
  fs::path record = fs::directory_iterator(f.root / "containers")->path() / "container.json";
  std::string short_container = read_json(record)["id"].get<std::string>().substr(0, 12);

  // With two names, removing one only untags, as docker does.
  r = f.run({"rmi", "other:1"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "Untagged: other:1\n");
  // The last name and the ID are refused while the container exists.
  r = f.run({"rmi", "base"});
  CHECK(r.status != 0);
  CHECK(r.err == "imgbuild: error: conflict: unable to remove repository reference \"base\" (must force) - container " +
                     short_container + " is using its referenced image " + short_image + "\n");
  r = f.run({"rmi", short_image});
  CHECK(r.status != 0);
  CHECK(r.err == "imgbuild: error: conflict: unable to delete " + short_image +
                     " (must be forced) - image is being used by stopped container " + short_container + "\n");
  CHECK(f.run({"image", "inspect", "base"}).status == 0);
  // prune -a leaves it too.
  r = f.run({"image", "prune", "-a", "-f"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out.find(short_image) == std::string::npos);
  CHECK(f.run({"image", "inspect", "base"}).status == 0);
  // Forced: the name goes, the image stays for the container, which still commits.
  r = f.run({"rmi", "-f", "base"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "Untagged: base:latest\n");
  CHECK(f.run({"image", "inspect", "base"}).status != 0);
  CHECK(f.run({"image", "inspect", image_id}).status == 0);
  r = f.run({"commit", "user", "after:1"});
  INFO(r.err);
  CHECK(r.status == 0);
  r = f.run({"run", "--rm", "after:1", "cat", "/used"});
  CHECK(r.out == "used\n");
  // Once the container is gone, prune removes the dangling image.
  REQUIRE(f.run({"rm", "user"}).status == 0);
  REQUIRE(f.run({"rmi", "after:1"}).status == 0);
  r = f.run({"image", "prune", "-f"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out.find("deleted: " + image_id) != std::string::npos);
  CHECK(f.run({"image", "inspect", image_id}).status != 0);
}

TEST_CASE("run --snapshotter overlay and copy give containers that commit the same layer entries",
          "[integration][container]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  Fixture f;
  const std::string script = "echo x > /new; rm /bin/ls; rm -rf /root && mkdir /root && echo r > /root/r; "
                             "chmod 4700 /etc/passwd; grep ' / ' /proc/mounts | cut -d' ' -f3";
  std::map<std::string, std::string> listing;
  for (const std::string kind : {"overlay", "copy"}) {
    RunResult r = f.run({"run", "--snapshotter", kind, "--name", "c-" + kind, "base", "sh", "-c", script});
    INFO(r.err);
    REQUIRE(r.status == 0);
    // The root is an overlay mount only with the overlay snapshotter.
    CHECK((r.out == "overlay\n") == (kind == "overlay"));
    r = f.run({"commit", "c-" + kind, "snap:" + kind});
    INFO(r.err);
    REQUIRE(r.status == 0);
    fs::path archive = f.work.path / (kind + ".tar");
    REQUIRE(f.run({"save", "-o", archive.string(), "snap:" + kind}).status == 0);
    SavedArchive saved = unpack_saved(archive, f.work.path / ("saved-" + kind));
    REQUIRE(saved.layers.size() == 2);
    // Entries without times: type+mode, owner, size, name, link target.
    RunResult l = run_sh("tar --numeric-owner -tvf " + sh_quote(saved.layers.back().string()) +
                         " | awk '{ $4 = \"\"; $5 = \"\"; print }'");
    REQUIRE(l.status == 0);
    listing[kind] = l.out;
  }
  CHECK(listing["copy"] == listing["overlay"]);
  CHECK(listing["overlay"].find("bin/.wh.ls") != std::string::npos);
  // The re-created /root: compared name by name, as BuildKit v0.22's differ
  // does (no opaque marker).
  CHECK(listing["overlay"].find("root/r") != std::string::npos);
  CHECK(listing["overlay"].find(".wh..wh..opq") == std::string::npos);
  CHECK(listing["overlay"].find("-rws------ 0/0 ") != std::string::npos);
  CHECK(f.run({"run", "--snapshotter", "zfs", "--rm", "base", "true"}).status != 0);
  CHECK(f.mounts() == 0);
}

TEST_CASE("start runs a kept container's command again over its earlier changes", "[integration][container]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  Fixture f;
  const std::string script = "echo \"$FOO $(pwd)\" >> /log; cat /log; rm -f /bin/id; rm -rf /root; mkdir /root; "
                             "echo r >> /root/f; exit 4";
  RunResult r = f.run({"run", "--name", "again", "-e", "FOO=foo", "-w", "/tmp", "base", "sh", "-c", script});
  INFO(r.err);
  CHECK(r.status == 4);
  CHECK(r.out == "foo /tmp\n");

  r = f.run({"start", "-a", "again"});
  INFO(r.err);
  CHECK(r.status == 4);
  CHECK(r.out == "foo /tmp\nfoo /tmp\n");
  r = f.run({"restart", "again"});
  CHECK(r.status == 4);
  CHECK(r.out == "foo /tmp\nfoo /tmp\nfoo /tmp\n");
  CHECK(f.mounts() == 0);
  CHECK(f.containers() == 1);

  // A commit holds everything the container did over all three runs.
  r = f.run({"commit", "again", "again:1"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  r = f.run({"run", "--rm", "again:1", "sh", "-c", "cat /log /root/f; ls /bin/id || echo no-id"});
  CHECK(r.out == "foo /tmp\nfoo /tmp\nfoo /tmp\nr\nno-id\n");
  r = f.run({"start", "nosuch"});
  CHECK(r.status != 0);
  CHECK(r.err.find("No such container: nosuch") != std::string::npos);
}

TEST_CASE("start and restart keep the container's upper directory with the overlay snapshotter",
          "[integration][container]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "the namespace sandbox needs root");
  Fixture f;
  // Each run: the root's filesystem type, one more line in /data, whether
  // /bin/ls is still there (the first run deletes it: a whiteout).
  const std::string script = "if grep -q '^[^ ]* / overlay ' /proc/mounts; then echo overlay; else echo plain; fi; "
                             "echo x >> /data; wc -l < /data; "
                             "ls /bin/ls 2>/dev/null || echo no-ls; rm -f /bin/ls";
  for (const std::string run_kind : {"overlay", "copy"}) {
    INFO("run --snapshotter " << run_kind);
    const std::string name = "keep-" + run_kind;
    RunResult r = f.run({"run", "--snapshotter", run_kind, "--name", name, "base", "sh", "-c", script});
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out == (run_kind == "overlay" ? "overlay\n1\n/bin/ls\n" : "plain\n1\n/bin/ls\n"));
    fs::path upper;
    for (const auto& e : fs::directory_iterator(f.root / "containers")) {
      if (read_file(e.path() / "container.json").find("\"" + name + "\"") != std::string::npos) {
        upper = e.path() / "upper";
      }
    }
    REQUIRE(fs::is_directory(upper));

    // start mounts the container's upper directory itself: the directory
    // and the file written in it stay the same inodes, and its lines add up.
    struct stat before {};
    struct stat data_before {};
    REQUIRE(::stat(upper.c_str(), &before) == 0);
    REQUIRE(::stat((upper / "data").c_str(), &data_before) == 0);
    r = f.run({"start", name});
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out == "overlay\n2\nno-ls\n");
    struct stat after {};
    struct stat data_after {};
    REQUIRE(::stat(upper.c_str(), &after) == 0);
    REQUIRE(::stat((upper / "data").c_str(), &data_after) == 0);
    CHECK(after.st_ino == before.st_ino);
    CHECK(data_after.st_ino == data_before.st_ino);

    r = f.run({"restart", "--snapshotter", "overlay", name});
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out == "overlay\n3\nno-ls\n");
    // --snapshotter copy still works over the same changes.
    r = f.run({"start", "--snapshotter", "copy", name});
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out == "plain\n4\nno-ls\n");
    CHECK(read_file(upper / "data") == "x\nx\nx\nx\n");
    CHECK(f.mounts() == 0);
  }
  CHECK(f.containers() == 2);
}
