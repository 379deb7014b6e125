// Containers end to end: the real imgbuild binary runs commands from an
// imported busybox-static base (`run`), keeps a container, turns its changes
// into an image (`commit`), lists and removes it (`ps -a`, `rm`).

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::TempDir;
using imgbuild::test::write_file;
using nlohmann::json;

namespace {

bool have_busybox() { return fs::exists("/bin/busybox"); }

std::string busybox_rootfs_tar() {
  using imgbuild::test::dir;
  using imgbuild::test::file;
  std::vector<imgbuild::test::SpecEntry> entries = {dir("bin"), file("bin/busybox", read_file("/bin/busybox"), 0755)};
  for (const char* applet : {"sh", "echo", "cat", "pwd", "ls", "rm", "id", "tail", "cut"}) {
    entries.push_back(imgbuild::test::symlink_entry(std::string("bin/") + applet, "busybox"));
  }
  entries.push_back(dir("etc"));
  entries.push_back(file("etc/group", "root:x:0:\napp:x:1000:\n"));
  entries.push_back(file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"));
  entries.push_back(dir("root"));
  auto tmp = dir("tmp");
  tmp.entry.mode = 01777;
  entries.push_back(tmp);
  return imgbuild::test::make_tar(entries);
}

// A store with a busybox base named "base".
struct Fixture {
  TempDir work;
  fs::path root;
  Fixture() {
    root = work.path / "store";
    fs::path tarball = work.path / "busybox.tar";
    write_file(tarball, busybox_rootfs_tar());
    RunResult r = run_imgbuild(root, {"import", tarball.string(), "base"});
    INFO(r.err);
    REQUIRE(r.status == 0);
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
  fs::path dir = f.work.path / "saved";
  fs::create_directories(dir);
  REQUIRE(run_sh("tar -xf " + sh_quote(archive.string()) + " -C " + sh_quote(dir.string())).status == 0);
  json manifest = json::parse(read_file(dir / "manifest.json"));
  REQUIRE(manifest.size() == 1);
  auto layers = manifest[0]["Layers"].get<std::vector<std::string>>();
  REQUIRE(layers.size() == 2);
  RunResult listing = run_sh("tar -tf " + sh_quote((dir / layers.back()).string()) + " | sort");
  REQUIRE(listing.status == 0);
  CHECK(listing.out.find("made") != std::string::npos);
  CHECK(listing.out.find("bin/.wh.ls") != std::string::npos);
  CHECK(listing.out.find("busybox") == std::string::npos);
  RunResult body = run_sh("tar -xOf " + sh_quote((dir / layers.back()).string()) + " made");
  CHECK(body.out == "made-here\n");
  json config = json::parse(read_file(dir / manifest[0]["Config"].get<std::string>()));
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
