#pragma once
// The build-test fixture shared by the build integration tests: a store with
// a busybox-static base image imported as "busybox", a helper that writes a
// context and runs `imgbuild build`, and readers for the docker-save output
// (config and layer files, from image_compare.hpp).

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "image_compare.hpp"
#include "util/tar.hpp"

namespace imgbuild::test::build {

namespace fs = std::filesystem;
using nlohmann::json;

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

inline std::vector<std::string> history_created_by(const json& config) {
  std::vector<std::string> out;
  for (const auto& h : config["history"]) {
    out.push_back(h.value("created_by", ""));
  }
  return out;
}


}  // namespace imgbuild::test::build
