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

#include "support/paths.hpp"
#include "util/tar.hpp"

namespace imgbuild::test {

/// A fresh directory, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "imgbuild-it-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
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
    cmd += " " + sh_quote(a);
  }
  return run_sh(cmd + redirect);
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

/// One entry of a test archive: header plus body for files.
struct SpecEntry {
  tar::Entry entry;
  std::string body;
};

inline SpecEntry file(std::string path, std::string body, uint32_t mode = 0644) {
  SpecEntry s;
  s.entry.path = std::move(path);
  s.entry.type = tar::EntryType::file;
  s.entry.mode = mode;
  s.entry.size = body.size();
  s.body = std::move(body);
  return s;
}

inline SpecEntry dir(std::string path) {
  SpecEntry s;
  s.entry.path = std::move(path);
  s.entry.type = tar::EntryType::dir;
  s.entry.mode = 0755;
  return s;
}

inline SpecEntry symlink_entry(std::string path, std::string target) {
  SpecEntry s;
  s.entry.path = std::move(path);
  s.entry.type = tar::EntryType::symlink;
  s.entry.mode = 0777;
  s.entry.link_target = std::move(target);
  return s;
}

inline SpecEntry hardlink_entry(std::string path, std::string target) {
  SpecEntry s;
  s.entry.path = std::move(path);
  s.entry.type = tar::EntryType::hardlink;
  s.entry.link_target = std::move(target);
  return s;
}

/// The bytes of a tar built from entries, in the given order.
inline std::string make_tar(const std::vector<SpecEntry>& entries,
                            tar::Compression compression = tar::Compression::none) {
  std::string out;
  auto w = tar::Writer::open(
      [&out](const void* d, size_t n) -> Result<void> {
        out.append(static_cast<const char*>(d), n);
        return ok();
      },
      tar::WriterOptions{compression, 6});
  REQUIRE(w);
  for (const auto& e : entries) {
    auto added = (*w)->add(e.entry);
    REQUIRE(added);
    if (e.entry.type == tar::EntryType::file && !e.body.empty()) {
      REQUIRE((*w)->write_data(e.body.data(), e.body.size()));
    }
  }
  auto fin = (*w)->finish();
  REQUIRE(fin);
  return out;
}

/// The busybox-static rootfs as a tar (deterministic: sorted, zero times):
/// /bin/busybox, one symlink per applet, users root, app (1000), svc (1001)
/// and groups root, wheel (10), app, svc, audio (29). The base image of the
/// build tests, imported with `imgbuild import` and `docker import`.
inline std::string busybox_rootfs_tar() {
  std::vector<SpecEntry> entries = {dir("bin"), file("bin/busybox", read_file("/bin/busybox"), 0755)};
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
    entries.push_back(symlink_entry("bin/" + a, "busybox"));
  }
  entries.push_back(dir("etc"));
  entries.push_back(file("etc/group", "root:x:0:\nwheel:x:10:app\naudio:x:29:app,svc\napp:x:1000:\nsvc:x:1001:\n"));
  entries.push_back(file("etc/passwd",
                         "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
                         "svc:x:1001:1001::/srv:/bin/sh\n"));
  entries.push_back(dir("home"));
  entries.push_back(dir("root"));
  auto tmp = dir("tmp");
  tmp.entry.mode = 01777;
  entries.push_back(tmp);
  return make_tar(entries);
}

}  // namespace imgbuild::test
