#pragma once
// The build-test fixture shared by the build integration tests: a store with
// a busybox-static base image imported as "busybox", a helper that writes a
// context and runs `imgbuild build`, and readers for the docker-save output
// (config and layer files).

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "util/tar.hpp"

namespace imgbuild::test::build {

namespace fs = std::filesystem;
using nlohmann::json;

// One file in a layer.
struct FileInfo {
  std::string type;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string link;
  std::string content;  // regular files up to 4 KiB
  bool operator==(const FileInfo&) const = default;
};

using LayerFiles = std::map<std::string, FileInfo>;

inline std::string fmt_entry(const std::string& path, const FileInfo& f) {
  char mode[16];
  std::snprintf(mode, sizeof mode, "%04o", f.mode);
  return path + " " + f.type + " " + mode + " " + std::to_string(f.uid) + ":" + std::to_string(f.gid) +
         (f.link.empty() ? "" : " -> " + f.link) + (f.content.empty() ? "" : " [" + f.content + "]") + "\n";
}

inline std::string type_name(imgbuild::tar::EntryType t) { return std::string(imgbuild::tar::entry_type_name(t)); }

inline LayerFiles read_layer(const fs::path& blob) {
  LayerFiles out;
  int fd = ::open(blob.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto reader = imgbuild::tar::Reader::open_fd(fd, blob.string());
  REQUIRE(reader);
  while (true) {
    auto e = (*reader)->next();
    REQUIRE(e);
    if (!*e) {
      break;
    }
    const imgbuild::tar::Entry& entry = **e;
    FileInfo fi;
    fi.type = type_name(entry.type);
    fi.mode = entry.mode & 07777;
    fi.uid = entry.uid;
    fi.gid = entry.gid;
    fi.link = entry.link_target;
    if (entry.type == imgbuild::tar::EntryType::file && entry.size <= 4096) {
      std::string body(entry.size, '\0');
      size_t got = 0;
      while (got < body.size()) {
        auto n = (*reader)->read_data(body.data() + got, body.size() - got);
        REQUIRE(n);
        if (*n == 0) {
          break;
        }
        got += *n;
      }
      fi.content = body;
    }
    std::string path = entry.path;
    while (path.starts_with("./")) {
      path = path.substr(2);
    }
    while (path.size() > 1 && path.ends_with("/")) {
      path.pop_back();
    }
    out[path] = fi;
  }
  ::close(fd);
  return out;
}

// A docker-save archive unpacked: config and layers.
struct Saved {
  std::string config_bytes;
  json config;
  std::vector<LayerFiles> layers;
};

inline Saved read_saved(const fs::path& archive, const fs::path& work) {
  fs::path dir = work / ("unpacked-" + archive.filename().string());
  fs::create_directories(dir);
  RunResult x = run_sh("tar -xf " + sh_quote(archive.string()) + " -C " + sh_quote(dir.string()));
  REQUIRE(x.status == 0);
  json manifest = json::parse(read_file(dir / "manifest.json"));
  REQUIRE(manifest.size() == 1);
  Saved s;
  s.config_bytes = read_file(dir / manifest[0]["Config"].get<std::string>());
  s.config = json::parse(s.config_bytes);
  for (const auto& l : manifest[0]["Layers"]) {
    s.layers.push_back(read_layer(dir / l.get<std::string>()));
  }
  return s;
}

// The busybox-static rootfs: /bin/busybox, applet links, users and groups.
inline std::string busybox_rootfs_tar() {
  using imgbuild::test::dir;
  using imgbuild::test::file;
  std::vector<imgbuild::test::SpecEntry> entries = {dir("bin"), file("bin/busybox", read_file("/bin/busybox"), 0755)};
  RunResult list = run_sh("/bin/busybox --list");
  std::vector<std::string> applets;
  size_t start = 0;
  while (start < list.out.size()) {
    size_t nl = list.out.find('\n', start);
    std::string a = list.out.substr(start, nl - start);
    if (!a.empty() && a != "busybox") {
      applets.push_back(a);
    }
    start = nl == std::string::npos ? list.out.size() : nl + 1;
  }
  std::sort(applets.begin(), applets.end());
  for (const auto& a : applets) {
    entries.push_back(imgbuild::test::symlink_entry("bin/" + a, "busybox"));
  }
  entries.push_back(dir("etc"));
  entries.push_back(file("etc/group", "root:x:0:\napp:x:1000:\nwheel:x:10:app\n"));
  entries.push_back(file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"));
  entries.push_back(dir("home"));
  entries.push_back(dir("root"));
  auto tmp = dir("tmp");
  tmp.entry.mode = 01777;
  entries.push_back(tmp);
  return imgbuild::test::make_tar(entries);
}

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
