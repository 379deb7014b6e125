#pragma once
// Helpers for integration tests: temporary directories, running commands
// with captured output, and building test archives from readable specs.

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support/busybox.hpp"
#include "support/layer_spec.hpp"
#include "support/paths.hpp"
#include "support/scratch_dir.hpp"
#include "util/tar.hpp"

namespace imgbuild::test {

/// A fresh directory, removed at scope exit: support/scratch_dir.hpp's
/// ScratchDir with its path as a member, as the integration tests use it.
struct TempDir {
  ScratchDir dir;
  std::filesystem::path path = dir.path();
};

/// Output of a finished command.
struct RunResult {
  int status = -1;
  std::string out;
  std::string err;
};

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::filesystem::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << data;
}

/// Single-quotes a word for /bin/sh.
inline std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

/// Runs a shell command line, capturing stdout and stderr.
inline RunResult run_sh(const std::string& cmdline) {
  TempDir io;
  std::string full = "(" + cmdline + ") >" + sh_quote((io.path / "out").string()) + " 2>" +
                     sh_quote((io.path / "err").string()) + " </dev/null";
  int rc = std::system(full.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
  r.out = read_file(io.path / "out");
  r.err = read_file(io.path / "err");
  return r;
}

/// Runs imgbuild with a store root and arguments (each shell-quoted).
inline RunResult run_imgbuild(const std::filesystem::path& root, const std::vector<std::string>& args,
                          const std::string& redirect = "") {
  std::string cmd = sh_quote(imgbuild_binary().string()) + " --root " + sh_quote(root.string());
  for (const auto& a : args) {
    cmd += ' ';
    cmd += sh_quote(a);
  }
  return run_sh(cmd + redirect);
}

/// The imgbuild binary as another user (uid:gid) can run it: the build's own
/// when that user may execute it, else a copy in a directory anyone may
/// enter (made once per test process, removed at exit). A checkout below a
/// private directory (/root, a 0700 home) is not reachable by the rootless
/// tests' user.
inline std::filesystem::path imgbuild_binary_for(unsigned uid, unsigned gid) {
  static std::filesystem::path copy;
  static ScratchDir* holder = nullptr;
  const std::string bin = imgbuild_binary().string();
  std::string probe = "setpriv --reuid=" + std::to_string(uid) + " --regid=" + std::to_string(gid) +
                      " --clear-groups test -x " + sh_quote(bin) + " </dev/null >/dev/null 2>&1";
  if (std::system(probe.c_str()) == 0) {
    return bin;
  }
  if (copy.empty()) {
    holder = new ScratchDir();  // lives until exit
    std::filesystem::permissions(holder->path(), std::filesystem::perms::owner_all |
                                                     std::filesystem::perms::group_read |
                                                     std::filesystem::perms::group_exec |
                                                     std::filesystem::perms::others_read |
                                                     std::filesystem::perms::others_exec);
    copy = holder->path() / "imgbuild";
    std::filesystem::copy_file(bin, copy);
    std::filesystem::permissions(copy, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                           std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                                           std::filesystem::perms::others_exec);
    std::atexit([] { delete holder; });
  }
  return copy;
}

// A container image holding this imgbuild (and what it links), busybox,
// uidmap's newuidmap/newgidmap and a user "builder" (1000:1000) with
// subordinate ids: what a CI job image for rootless imgbuild holds. The
// map tools carry file capabilities (cap_setuid/cap_setgid), not the setuid
// bit: a setuid-root newuidmap opens uid_map as root, who lacks
// CAP_SYS_ADMIN in a container, and the kernel refuses the write. Imported
// into dockerd once per binary (tagged by its digest, under a lock).
inline std::string container_image() {
  const std::string bin = imgbuild_binary().string();
  RunResult sum = run_sh("sha256sum " + sh_quote(bin) + " | cut -c1-16");
  REQUIRE(sum.status == 0);
  std::string digest = sum.out;
  while (!digest.empty() && (digest.back() == '\n' || digest.back() == ' ')) {
    digest.pop_back();
  }
  std::string tag = "imgbuild-incontainer:" + digest;
  std::string have = "/usr/bin/docker image inspect " + sh_quote(tag) + " >/dev/null 2>&1";
  if (run_sh(have).status == 0) {
    return tag;
  }
  TempDir t;
  std::filesystem::path r = t.path / "rootfs";
  // Each file with the libraries it needs, at their own paths.
  std::string script =
      "set -e; r=" + sh_quote(r.string()) + "; mkdir -p $r/usr/local/bin $r/bin $r/etc $r/tmp $r/work; "
      "chmod 1777 $r/tmp; cp " + sh_quote(bin) + " $r/usr/local/bin/imgbuild; "
      "cp /usr/bin/newuidmap /usr/bin/newgidmap /bin/busybox $r/bin/; "
      "setcap cap_setuid=ep $r/bin/newuidmap; setcap cap_setgid=ep $r/bin/newgidmap; "
      "for a in $(/bin/busybox --list); do [ $a = busybox ] || ln -sf busybox $r/bin/$a; done; "
      "for f in " + sh_quote(bin) + " /usr/bin/newuidmap /usr/bin/newgidmap; do "
      "for l in $(ldd $f | grep -o '/[^ ]*'); do mkdir -p $r$(dirname $l); cp -L $l $r$l; done; done; "
      "printf 'root:x:0:0:root:/root:/bin/sh\\nbuilder:x:1000:1000::/work:/bin/sh\\n' > $r/etc/passwd; "
      "printf 'root:x:0:\\nbuilder:x:1000:\\n' > $r/etc/group; "
      "echo builder:100000:65536 > $r/etc/subuid; echo builder:100000:65536 > $r/etc/subgid; "
      "tar --xattrs --xattrs-include=security.capability --numeric-owner -C $r -cf " + sh_quote((t.path / "rootfs.tar").string()) + " .; "
      "exec 9>/tmp/imgbuild-incontainer.lock; flock 9; " + have + " || /usr/bin/docker import " +
      sh_quote((t.path / "rootfs.tar").string()) + " " + sh_quote(tag) + " >/dev/null";
  RunResult made = run_sh("sh -c " + sh_quote(script));
  INFO(made.err);
  REQUIRE(made.status == 0);
  return tag;
}

// imgbuild inside that image, as "builder", under Docker's default profile
// but seccomp=unconfined (user namespaces): the rootless BuildKit set-up.
// `dir` is bound at the same path, so every path in args holds inside.
// With as_root: as root under Docker's default profile, no extra flags (no
// CAP_SYS_ADMIN, no user namespaces: chroot isolation).
inline RunResult run_imgbuild_in_container(const std::string& image, const std::filesystem::path& dir, const std::filesystem::path& home,
                                    const std::filesystem::path& root, const std::vector<std::string>& args, bool as_root = false) {
  std::string cmd = "/usr/bin/docker run --rm --network none " +
                    std::string(as_root ? "" : "--security-opt seccomp=unconfined --user 1000:1000 ") + "-v " +
                    sh_quote(dir.string() + ":" + dir.string()) + " -e HOME=" + sh_quote(home.string()) + " " +
                    sh_quote(image) + " imgbuild --root " + sh_quote(root.string());
  for (const auto& a : args) {
    cmd += ' ';
    cmd += sh_quote(a);
  }
  return run_sh(cmd);
}

/// True when `tool` is an executable on PATH.
inline bool have_tool(const std::string& tool) {
  return run_sh("command -v " + sh_quote(tool)).status == 0;
}

/// True when Debian's Docker engine answers at /usr/bin/docker, starting it
/// through scripts/services (which clears a stale socket left by an earlier
/// unclean stop) when it does not. One implementation for every test.
inline bool docker_available() {
  if (!std::filesystem::exists("/usr/bin/docker")) {
    return false;
  }
  RunResult r = run_sh(sh_quote((source_dir() / "scripts" / "services").string()) + " dockerd");
  if (r.status != 0) {
    WARN("scripts/services dockerd: " << r.err);
  }
  return r.status == 0;
}

/// True when BuildKit v0.22's buildkitd answers, building (once per machine)
/// and starting it through scripts/services buildkit when it does not.
inline bool buildkit_available() {
  if (!std::filesystem::exists(buildkit_tools_dir() / "build")) {
    return false;
  }
  RunResult r = run_sh(sh_quote((source_dir() / "scripts" / "services").string()) + " buildkit");
  if (r.status != 0) {
    WARN("scripts/services buildkit: " << r.err);
  }
  return r.status == 0;
}

/// A JSON file, parsed (REQUIREs that it parses).
inline nlohmann::json read_json(const std::filesystem::path& p) {
  nlohmann::json j = nlohmann::json::parse(read_file(p), nullptr, false);
  INFO(p.string());
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

/// A single-image docker-save archive unpacked into a directory.
struct SavedArchive {
  std::filesystem::path dir;
  nlohmann::json manifest;  ///< the one entry of manifest.json
  std::string config_bytes;
  nlohmann::json config;
  std::vector<std::filesystem::path> layers;  ///< layer tars, lowest first
};

/// Extracts `archive` (docker-save format, one image) into `dir` (created)
/// with GNU tar and reads its manifest and config.
inline SavedArchive unpack_saved(const std::filesystem::path& archive, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  RunResult x = run_sh("tar -xf " + sh_quote(archive.string()) + " -C " + sh_quote(dir.string()));
  INFO(x.err);
  REQUIRE(x.status == 0);
  nlohmann::json manifest = read_json(dir / "manifest.json");
  REQUIRE(manifest.size() == 1);
  SavedArchive s;
  s.dir = dir;
  s.manifest = manifest[0];
  s.config_bytes = read_file(dir / s.manifest["Config"].get<std::string>());
  s.config = nlohmann::json::parse(s.config_bytes);
  for (const auto& l : s.manifest["Layers"]) {
    s.layers.push_back(dir / l.get<std::string>());
  }
  return s;
}

/// Every applet of the host's busybox-static (support/busybox_rootfs.hpp),
/// sorted, "busybox" itself left out.
inline std::vector<std::string> busybox_applets() {
  RunResult list = run_sh(sh_quote(busybox_path().string()) + " --list");
  std::vector<std::string> applets;
  std::istringstream in(list.out);
  for (std::string a; std::getline(in, a);) {
    if (!a.empty() && a != "busybox") {
      applets.push_back(a);
    }
  }
  std::sort(applets.begin(), applets.end());
  return applets;
}

/// The start of a busybox rootfs tar: bin/, bin/busybox and a symlink
/// bin/<applet> -> busybox for each of `applets` (all of them when empty).
/// Tests add their own etc/ files.
inline std::vector<LayerEntry> busybox_entries(const std::vector<std::string>& applets = {}) {
  std::vector<LayerEntry> entries = {dir("bin"), file("bin/busybox", read_file(busybox_path()), 0755)};
  for (const auto& a : applets.empty() ? busybox_applets() : applets) {
    entries.push_back(symlink_to("bin/" + a, "busybox"));
  }
  return entries;
}

/// Writes the bytes `tar` to `tarball` and imports it as image `name` (extra
/// arguments such as --change follow) into the store at root.
inline void import_tar(const std::filesystem::path& root, const std::filesystem::path& tarball, const std::string& tar,
                       const std::string& name, const std::vector<std::string>& extra = {}) {
  write_file(tarball, tar);
  std::vector<std::string> args = {"import", tarball.string(), name};
  args.insert(args.end(), extra.begin(), extra.end());
  RunResult r = run_imgbuild(root, args);
  INFO(r.err);
  REQUIRE(r.status == 0);
}

// Test archives are built with support/layer_spec.hpp (file, dir,
// symlink_to, hardlink_to, make_layer). The names below are the ones the
// integration tests were first written with; they forward to it.

/// One entry of a test archive (support/layer_spec.hpp's LayerEntry).
using SpecEntry = LayerEntry;

/// A symlink entry (symlink_to).
inline SpecEntry symlink_entry(std::string path, std::string target) {
  return symlink_to(std::move(path), std::move(target));
}

/// A hardlink entry (hardlink_to).
inline SpecEntry hardlink_entry(std::string path, std::string target) {
  return hardlink_to(std::move(path), std::move(target));
}

/// The bytes of a tar built from entries, in the given order (make_layer).
inline std::string make_tar(const std::vector<SpecEntry>& entries,
                            tar::Compression compression = tar::Compression::none) {
  return make_layer(entries, compression);
}

/// `entries` (a busybox's bin/) completed as every test busybox rootfs is:
/// users root, app (1000), svc (1001), groups root, wheel (10), app, svc,
/// audio (29), /home, /root and /tmp (1777); the tar of it.
inline std::string busybox_rootfs_layer(std::vector<LayerEntry> entries) {
  entries.push_back(dir("etc"));
  entries.push_back(file("etc/group", "root:x:0:\nwheel:x:10:app\naudio:x:29:app,svc\napp:x:1000:\nsvc:x:1001:\n"));
  entries.push_back(file("etc/passwd",
                         "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
                         "svc:x:1001:1001::/srv:/bin/sh\n"));
  entries.push_back(dir("home"));
  entries.push_back(dir("root"));
  entries.push_back(dir("tmp", 01777));
  return make_layer(entries);
}

/// The busybox-static rootfs as a tar (deterministic: sorted, fixed times):
/// /bin/busybox, one symlink per applet, users root, app (1000), svc (1001)
/// and groups root, wheel (10), app, svc, audio (29). The base image of the
/// build tests, imported with `imgbuild import` and `docker import`.
inline std::string busybox_rootfs_tar() {
  std::vector<LayerEntry> entries = busybox_entries();
  return busybox_rootfs_layer(std::move(entries));
}

/// Debian's arm64 busybox-static package, downloaded once by `scripts/deps
/// --test` into /var/cache/imgbuild-test/debs ("" when it is not there).
inline std::filesystem::path arm64_busybox_deb() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/var/cache/imgbuild-test/debs", ec)) {
    std::string name = e.path().filename().string();
    if (name.starts_with("busybox-static_") && name.ends_with("_arm64.deb")) {
      return e.path();
    }
  }
  return {};
}

/// The arm64 busybox-static rootfs as a tar, laid out as busybox_rootfs_tar
/// (the aarch64 /bin/busybox from arm64_busybox_deb(), one symlink per
/// applet it lists, the same users and groups); `work` holds the extracted
/// binary. Listing the applets runs the binary: qemu's binfmt entry
/// (scripts/binfmt) must be registered.
inline std::string arm64_busybox_rootfs_tar(const std::filesystem::path& work) {
  std::filesystem::path deb = arm64_busybox_deb();
  INFO("the arm64 busybox-static package is missing: run scripts/deps --test");
  REQUIRE(!deb.empty());
  std::filesystem::path bin = work / "busybox-arm64";
  RunResult x = run_sh("dpkg-deb --fsys-tarfile " + sh_quote(deb.string()) + " | tar -xO ./bin/busybox > " +
                       sh_quote(bin.string()) + " && chmod 755 " + sh_quote(bin.string()));
  INFO(x.err);
  REQUIRE(x.status == 0);
  RunResult list = run_sh(sh_quote(bin.string()) + " --list");
  INFO("running the aarch64 busybox failed (is qemu-aarch64 registered? scripts/binfmt): " + list.err);
  REQUIRE(list.status == 0);
  std::vector<std::string> applets;
  std::istringstream in(list.out);
  for (std::string a; std::getline(in, a);) {
    if (!a.empty() && a != "busybox") {
      applets.push_back(a);
    }
  }
  std::sort(applets.begin(), applets.end());
  std::vector<LayerEntry> entries = {dir("bin"), file("bin/busybox", read_file(bin), 0755)};
  for (const auto& a : applets) {
    entries.push_back(symlink_to("bin/" + a, "busybox"));
  }
  return busybox_rootfs_layer(std::move(entries));
}

}  // namespace imgbuild::test
