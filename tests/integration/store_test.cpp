// The store under faults, through the real binary: deletion while a build
// runs (leases), a full disk (a 20 MB tmpfs), and `system check [--repair]`
// on stores damaged in known ways. Synchronisation with a running build is
// by files (a marker line in its output, a gate file it waits for), never by
// timing.

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using namespace imgbuild::test;

namespace {

// A store with harness.hpp's busybox base named "busybox" and a context.
// A RUN announces that it runs with a computed marker (`echo x-$((6*7))`
// prints x-42), which the progress output's echo of the instruction does
// not contain.
struct StoreFixture {
  TempDir work;
  fs::path root;
  fs::path ctx;

  explicit StoreFixture(fs::path store = {}) {
    root = store.empty() ? work.path / "store" : store;
    ctx = work.path / "ctx";
    fs::create_directories(ctx);
    import_tar(root, work.path / "busybox.tar", busybox_rootfs_tar(), "busybox");
  }
  RunResult run(const std::vector<std::string>& args) { return run_imgbuild(root, args); }
  void dockerfile(const std::string& text) { write_file(ctx / "Dockerfile", text); }
  RunResult build(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"build", "--progress", "plain"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ctx.string());
    return run(args);
  }
  // The shell command line of `imgbuild build` for a background run.
  std::string build_cmdline(const std::vector<std::string>& extra) const {
    std::string cmd = sh_quote(imgbuild_binary().string()) + " --root " + sh_quote(root.string()) +
                      " build --progress plain";
    for (const auto& e : extra) {
      cmd += ' ';
      cmd += sh_quote(e);
    }
    return cmd + " " + sh_quote(ctx.string());
  }
};

// Waits (polling a file, no fixed sleep decides the outcome) until `path`
// contains `needle`; false after a generous bound, when the build surely
// failed.
bool wait_for_text(const fs::path& path, const std::string& needle, const fs::path& rc_file) {
  for (int i = 0; i < 3000; ++i) {
    if (read_file(path).find(needle) != std::string::npos) {
      return true;
    }
    if (fs::exists(rc_file)) {
      return read_file(path).find(needle) != std::string::npos;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Waits for the background command's exit status file; returns the status.
int wait_rc(const fs::path& rc_file) {
  for (int i = 0; i < 6000 && !fs::exists(rc_file); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string text = read_file(rc_file);
  return text.empty() ? -1 : std::stoi(text);
}

// Flips one byte in the middle of a file.
void flip_byte(const fs::path& p) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  auto size = static_cast<std::streamoff>(f.tellg());
  f.seekg(size / 2);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(size / 2);
  f.write(&c, 1);
}

fs::path blob_file(const fs::path& root, const std::string& digest) {
  return root / "blobs" / "sha256" / digest.substr(7);
}

// The layer blobs of an image, lowest first (from `save`'s manifest.json).
std::vector<std::string> manifest_layers(StoreFixture& f, const std::string& image) {
  TempDir out;
  fs::path tar = out.path / "img.tar";
  REQUIRE(f.run({"save", "-o", tar.string(), image}).status == 0);
  SavedArchive saved = unpack_saved(tar, out.path / "x");
  std::vector<std::string> layers;
  for (const auto& l : saved.manifest["Layers"]) {
    std::string path = l.get<std::string>();  // blobs/sha256/<hex>
    layers.push_back("sha256:" + path.substr(path.rfind('/') + 1));
  }
  return layers;
}

}  // namespace

TEST_CASE("store: cache prune --all and image prune -a while a build runs keep what it uses", "[store][lease]") {
  StoreFixture f;
  // A first build leaves a cache record whose unpacked layer the second
  // build mounts as a lower layer.
  f.dockerfile("FROM busybox\nRUN echo one > /one\n");
  RunResult r = f.build();
  INFO(r.err);
  REQUIRE(r.status == 0);
  // The second build hits that record, fills a cache mount, then waits in a
  // RUN for a gate file in its (live, bind-mounted) context.
  f.dockerfile(
      "FROM busybox\n"
      "RUN echo one > /one\n"
      "RUN --mount=type=cache,target=/cache,id=held echo kept > /cache/c\n"
      "RUN --mount=type=bind,target=/ctx --mount=type=cache,target=/cache,id=held "
      "echo waiting-at-gate-$((6*7)); while [ ! -e /ctx/gate ]; do sleep 0.1; done; "
      "cat /one /cache/c > /three\n");
  fs::path log = f.work.path / "build.log";
  fs::path rc = f.work.path / "build.rc";
  // Appended, not `"(" + rvalue`: GCC 12 -O3 -Wrestrict false positive (bug 105329).
  std::string cmd = "(";
  cmd += f.build_cmdline({"-t", "result"}) + " >" + sh_quote(log.string()) + " 2>&1; echo $? >" +
         sh_quote(rc.string()) + ") &";
  REQUIRE(std::system(cmd.c_str()) == 0);
  REQUIRE(wait_for_text(log, "waiting-at-gate-42", rc));

  RunResult cache_prune = f.run({"cache", "prune", "--all"});
  INFO(cache_prune.out << cache_prune.err);
  CHECK(cache_prune.status == 0);
  CHECK(cache_prune.out.find("in use by a running build") != std::string::npos);
  RunResult image_prune = f.run({"image", "prune", "-a"});
  INFO(image_prune.out << image_prune.err);
  CHECK(image_prune.status == 0);
  CHECK(image_prune.out.find("Kept busybox:latest: in use by a running build or container") != std::string::npos);
  // rmi of the base refuses while the build holds it, forced or not.
  RunResult rmi = f.run({"rmi", "-f", "busybox"});
  CHECK(rmi.status == 1);
  CHECK(rmi.err.find("in use by a running build or container") != std::string::npos);

  write_file(f.ctx / "gate", "");
  int status = wait_rc(rc);
  INFO(read_file(log));
  REQUIRE(status == 0);
  RunResult out = f.run({"run", "--rm", "result", "cat", "/three"});
  INFO(out.err);
  CHECK(out.status == 0);
  CHECK(out.out == "one\nkept\n");
  // Nothing is left over once the build is gone, and its lease went with it.
  RunResult check = f.run({"system", "check"});
  INFO(check.out << check.err);
  CHECK(check.status == 0);
  CHECK(check.out.find("No problems found") != std::string::npos);
  // Now that nothing holds them, prune removes the base and the records.
  RunResult again = f.run({"image", "prune", "-a"});
  CHECK(again.out.find("Kept") == std::string::npos);
  CHECK(f.run({"images", "-q"}).out.empty());
}

TEST_CASE("store: a full disk names ENOSPC, prune frees it and the next build works", "[store][enospc]") {
  TempDir work;
  fs::path disk = work.path / "disk";
  fs::create_directories(disk);
  REQUIRE(::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=20m") == 0);
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{disk};
  StoreFixture f(disk / "store");

  // Imports of incompressible 3 MB files until one fails.
  RunResult failed;
  int imported = 0;
  for (int i = 0; i < 20; ++i) {
    fs::path dir = work.path / ("data" + std::to_string(i));
    fs::create_directories(dir);
    REQUIRE(run_sh("head -c 3000000 /dev/urandom > " + sh_quote((dir / "blob").string()) + " && tar -cf " +
                   sh_quote((work.path / "data.tar").string()) + " -C " + sh_quote(dir.string()) + " blob")
                .status == 0);
    RunResult r = f.run({"import", (work.path / "data.tar").string(), "big:" + std::to_string(i)});
    if (r.status != 0) {
      failed = r;
      break;
    }
    ++imported;
  }
  INFO(failed.err);
  REQUIRE(imported > 0);
  REQUIRE(failed.status == 1);
  CHECK(failed.err.find("no space left on device while writing") != std::string::npos);
  CHECK(failed.err.find("`imgbuild image prune -a` can free") != std::string::npos);
  CHECK(failed.err.find("`imgbuild cache prune`") != std::string::npos);
  CHECK(failed.err.find("disk I/O error") == std::string::npos);

  // Deletion works on the full disk: rmi one, then prune the rest.
  RunResult rmi = f.run({"rmi", "big:0"});
  INFO(rmi.err);
  CHECK(rmi.status == 0);
  RunResult prune = f.run({"image", "prune", "-a"});
  INFO(prune.out << prune.err);
  REQUIRE(prune.status == 0);
  CHECK(prune.out.find("untagged: big:1") != std::string::npos);
  CHECK(f.run({"cache", "prune"}).status == 0);

  // The next build works.
  import_tar(f.root, work.path / "busybox2.tar", busybox_rootfs_tar(), "busybox");
  f.dockerfile("FROM busybox\nRUN echo after > /after\n");
  RunResult b = f.build({"-t", "after"});
  INFO(b.err);
  REQUIRE(b.status == 0);
  RunResult out = f.run({"run", "--rm", "after", "cat", "/after"});
  CHECK(out.out == "after\n");
  RunResult check = f.run({"system", "check"});
  INFO(check.out);
  CHECK(check.status == 0);
}

TEST_CASE("store: system check finds a corrupt cache blob and --repair removes it with its record",
          "[store][check]") {
  StoreFixture f;
  RunResult clean = f.run({"system", "check"});
  INFO(clean.out << clean.err);
  REQUIRE(clean.status == 0);
  CHECK(clean.out.find("No problems found") != std::string::npos);

  f.dockerfile("FROM busybox\nRUN echo data > /data\n");
  REQUIRE(f.build({"-t", "tmp"}).status == 0);
  std::vector<std::string> layers = manifest_layers(f, "tmp");
  REQUIRE(layers.size() == 2);
  std::string cache_blob = layers[1];
  REQUIRE(f.run({"rmi", "tmp"}).status == 0);  // the layer is the cache's alone now
  REQUIRE(fs::exists(blob_file(f.root, cache_blob)));
  flip_byte(blob_file(f.root, cache_blob));

  RunResult found = f.run({"system", "check"});
  INFO(found.out << found.err);
  CHECK(found.status == 1);
  CHECK(found.out.find("problem: blob " + cache_blob + " is corrupt: its content hashes to sha256:") !=
        std::string::npos);
  CHECK(found.out.find("layer blob " + cache_blob + " is corrupt") != std::string::npos);
  CHECK(found.out.find("repairable with `imgbuild system check --repair`") != std::string::npos);
  CHECK(fs::exists(blob_file(f.root, cache_blob)));  // a check alone changes nothing

  RunResult repaired = f.run({"system", "check", "--repair"});
  INFO(repaired.out << repaired.err);
  CHECK(repaired.status == 0);
  CHECK(repaired.out.find("all repaired") != std::string::npos);
  CHECK(!fs::exists(blob_file(f.root, cache_blob)));
  RunResult after = f.run({"system", "check"});
  INFO(after.out);
  CHECK(after.status == 0);
  // The step runs again (its record went with the blob) and the build works.
  RunResult b = f.build({"-t", "again"});
  INFO(b.err);
  REQUIRE(b.status == 0);
  CHECK(f.run({"run", "--rm", "again", "cat", "/data"}).out == "data\n");
}

TEST_CASE("store: system check reports an image's missing blob as not repairable", "[store][check]") {
  StoreFixture f;
  std::vector<std::string> layers = manifest_layers(f, "busybox");
  REQUIRE(layers.size() == 1);
  fs::remove(blob_file(f.root, layers[0]));
  RunResult found = f.run({"system", "check", "--repair"});
  INFO(found.out << found.err);
  CHECK(found.status == 1);
  CHECK(found.out.find("problem: image docker.io/library/busybox:latest: blob " + layers[0] + " is missing") !=
        std::string::npos);
  CHECK(found.out.find("not repairable: remove it (imgbuild rmi") != std::string::npos);
  CHECK(found.out.find("1 remain") != std::string::npos);
  // The user's way out works, and the store is clean after it.
  REQUIRE(f.run({"rmi", "busybox"}).status == 0);
  CHECK(f.run({"system", "check"}).status == 0);
}

TEST_CASE("store: system check cleans up after a build killed with SIGKILL", "[store][check]") {
  StoreFixture f;
  f.dockerfile("FROM busybox\nRUN --mount=type=bind,target=/ctx echo in-run-$((6*7)); while [ ! -e /ctx/gate ]; do sleep 0.1; done\n");
  fs::path log = f.work.path / "build.log";
  fs::path rc = f.work.path / "build.rc";
  fs::path pid = f.work.path / "build.pid";
  std::string cmd = "(";
  cmd += f.build_cmdline({}) + " >" + sh_quote(log.string()) + " 2>&1 & echo $! >" + sh_quote(pid.string()) +
         "; wait $!; echo $? >" + sh_quote(rc.string()) + ") &";
  REQUIRE(std::system(cmd.c_str()) == 0);
  REQUIRE(wait_for_text(log, "in-run-42", rc));
  // Leftovers a SIGKILL'ed process can leave besides its mounts: a
  // half-unpacked layer and an unpacked layer nothing references.
  fs::create_directories(f.root / "snapshots" / ".unpack-0123456789abcdef" / "fs");
  std::string orphan(64, 'a');
  fs::create_directories(f.root / "snapshots" / orphan / "fs");
  long build_pid = std::stol(read_file(pid));
  REQUIRE(::kill(static_cast<pid_t>(build_pid), SIGKILL) == 0);
  wait_rc(rc);
  write_file(f.ctx / "gate", "");  // lets the orphaned RUN process end

  RunResult found = f.run({"system", "check"});
  INFO(found.out << found.err);
  CHECK(found.status == 1);
  CHECK(found.out.find("stale mount record") != std::string::npos);
  CHECK(found.out.find("problem: stale temporary directory snapshots/.unpack-0123456789abcdef") != std::string::npos);
  CHECK(found.out.find("problem: unpacked layer snapshots/" + orphan + " is not used") != std::string::npos);
  RunResult mounts = run_sh("grep -c " + sh_quote(f.root.string()) + " /proc/self/mountinfo");
  CHECK(mounts.out != "0\n");  // the killed build's overlay is still there

  RunResult repaired = f.run({"system", "check", "--repair"});
  INFO(repaired.out << repaired.err);
  CHECK(repaired.status == 0);
  CHECK(run_sh("grep -c " + sh_quote(f.root.string()) + " /proc/self/mountinfo").out == "0\n");
  CHECK(!fs::exists(f.root / "snapshots" / orphan));
  RunResult after = f.run({"system", "check"});
  INFO(after.out);
  CHECK(after.status == 0);
  CHECK(after.out.find("No problems found") != std::string::npos);
  // The build runs again.
  RunResult b = f.build();
  INFO(b.err);
  CHECK(b.status == 0);
}
