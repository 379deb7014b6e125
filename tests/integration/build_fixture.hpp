#pragma once
// The build-test fixture shared by the build integration tests: a store with
// a busybox-static base image imported as "busybox", a helper that writes a
// context and runs `imgbuild build`, and readers for the docker-save output
// (config and layer files, from image_compare.hpp).

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "image_compare.hpp"
#include "util/tar.hpp"

namespace imgbuild::test::build {

namespace fs = std::filesystem;
using nlohmann::json;
// The layer and archive readers live in image_compare.hpp (one copy).
using imgbuild::test::FileInfo;
using imgbuild::test::fmt_entry;
using imgbuild::test::LayerFiles;
using imgbuild::test::read_layer;
using imgbuild::test::read_saved;
using imgbuild::test::Saved;

inline bool have_busybox() { return fs::exists("/bin/busybox"); }

// A store with a busybox base named "busybox".
struct Fixture {
  TempDir work;
  fs::path root;
  Fixture() {
    root = work.path / "store";
    fs::path tarball = work.path / "busybox.tar";
    write_file(tarball, busybox_rootfs_tar());
    RunResult r = run_imgbuild(root, {"import", tarball.string(), "busybox"});
    INFO(r.err);
    REQUIRE(r.status == 0);
  }

  // Writes a context with the files given, builds it, returns the run.
  RunResult build(const std::string& name, const std::string& dockerfile,
                  const std::map<std::string, std::string>& files, std::vector<std::string> extra = {}) {
    fs::path ctx = work.path / ("ctx-" + name);
    fs::create_directories(ctx);
    write_file(ctx / "Dockerfile", dockerfile);
    for (const auto& [p, body] : files) {
      fs::create_directories((ctx / p).parent_path());
      write_file(ctx / p, body);
    }
    std::vector<std::string> args = {"build", "--progress", "plain"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(ctx.string());
    return run_imgbuild(root, args);
  }
};

// A Fixture whose store also holds Debian's arm64 busybox-static
// (harness.hpp arm64_busybox_rootfs_tar) as "busybox-arm64", imported with
// --platform linux/arm64.
struct PlatformFixture : Fixture {
  PlatformFixture() {
    fs::path tarball = work.path / "busybox-arm64.tar";
    write_file(tarball, imgbuild::test::arm64_busybox_rootfs_tar(work.path));
    RunResult r = run_imgbuild(root, {"import", "--platform", "linux/arm64", tarball.string(), "busybox-arm64"});
    INFO(r.err);
    REQUIRE(r.status == 0);
  }
};

/// The files of all layers of a saved image merged (later layers win; a
/// whiteout is kept as the entry it is).
inline LayerFiles merged(const Saved& s) {
  LayerFiles out;
  for (const auto& l : s.layers) {
    for (const auto& [p, f] : l) {
      out[p] = f;
    }
  }
  return out;
}

/// The mtime (seconds) of every entry of a layer blob, by normalised path.
inline std::map<std::string, int64_t> layer_mtimes(const fs::path& blob) {
  std::map<std::string, int64_t> out;
  int fd = ::open(blob.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto reader = tar::Reader::open_fd(fd, blob.string());
  REQUIRE(reader);
  while (true) {
    auto e = (*reader)->next();
    REQUIRE(e);
    if (!*e) {
      break;
    }
    std::string path = (**e).path;
    while (path.starts_with("./")) {
      path = path.substr(2);
    }
    while (path.ends_with("/")) {
      path.pop_back();
    }
    out[path] = (**e).mtime_sec;
  }
  return out;
}

/// Sets an environment variable for the scope (the commands the test runs
/// inherit it); the old value comes back at scope exit.
class ScopedEnv {
public:
  ScopedEnv(std::string name, const std::string& value) : m_name(std::move(name)) {
    if (const char* old = std::getenv(m_name.c_str())) {
      m_old = old;
    }
    ::setenv(m_name.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (m_old) {
      ::setenv(m_name.c_str(), m_old->c_str(), 1);
    } else {
      ::unsetenv(m_name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
  std::string m_name;
  std::optional<std::string> m_old;
};

inline std::vector<std::string> history_created_by(const json& config) {
  std::vector<std::string> out;
  for (const auto& h : config["history"]) {
    out.push_back(h.value("created_by", ""));
  }
  return out;
}


}  // namespace imgbuild::test::build
