#pragma once
// FakeSandbox: a Sandbox for hermetic builder tests. It runs nothing; it
// records every RunSpec and interprets the command (the last argv element,
// so `RUN …` in shell form under the default /bin/sh -c) as a tiny script of
// `&&`-separated commands. Paths are inside the sandbox: one under a bind
// mount's target is the mount's host source (the last mount that covers
// it), one under a tmpfs target is in a directory of the fake's own that is
// removed when the run ends, any other is under the rootfs directory.
//   write PATH TEXT   creates/overwrites the file PATH with TEXT
//   copy FROM TO      copies the file FROM to TO
//   show PATH         prints the file's content on stdout
//   say TEXT          prints TEXT on stdout
//   exit N            stops with exit status N
//   meet N SECONDS    waits until N runs of this sandbox have reached a
//                     `meet` (counted over its life), status 1 when they have
//                     not within SECONDS: N runs that all meet prove they
//                     ran at the same time
// Anything else stops with status 127, like a shell's "not found".

#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "sandbox/sandbox.hpp"

namespace imgbuild::test {

/// A sandbox that interprets a tiny script (see the file comment).
class FakeSandbox final : public sandbox::Sandbox {
public:
  std::string_view name() const override { return "fake"; }

  Result<sandbox::RunResult> run(const sandbox::RunSpec& spec) override {
    {
      std::lock_guard lock(m_mu);
      sandbox::RunSpec copy = spec;
      copy.on_stdout = nullptr;
      copy.on_stderr = nullptr;
      m_runs.push_back(std::move(copy));
    }
    // Each tmpfs target is a private directory for this run only.
    std::map<std::string, std::filesystem::path> tmpfs;
    for (const auto& t : spec.tmpfs) {
      std::string pattern = (std::filesystem::temp_directory_path() / "fake-tmpfs-XXXXXX").string();
      if (::mkdtemp(pattern.data()) == nullptr) {
        return fail(Errc::io, "fake sandbox: cannot make a tmpfs directory");
      }
      tmpfs[t.target] = pattern;
    }
    sandbox::RunResult result;
    std::string script = spec.argv.empty() ? "" : spec.argv.back();
    size_t start = 0;
    while (start <= script.size()) {
      size_t end = script.find(" && ", start);
      std::string cmd = script.substr(start, end == std::string::npos ? std::string::npos : end - start);
      result.exit_code = step(spec, tmpfs, cmd);
      if (result.exit_code != 0 || end == std::string::npos) {
        break;
      }
      start = end + 4;
    }
    for (const auto& [target, dir] : tmpfs) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
    return result;
  }

  /// Every spec run so far, in order (without the output sinks).
  std::vector<sandbox::RunSpec> runs() const {
    std::lock_guard lock(m_mu);
    return m_runs;
  }

  /// Any platform runs here; each one asked about is recorded.
  Result<void> can_run(const Platform& platform) const override {
    std::lock_guard lock(m_mu);
    m_platforms.push_back(platform.str());
    return ok();
  }

  /// The platforms can_run was asked about, in order.
  std::vector<std::string> platforms_asked() const {
    std::lock_guard lock(m_mu);
    return m_platforms;
  }

private:
  using TmpfsDirs = std::map<std::string, std::filesystem::path>;

  static std::filesystem::path in_root(const sandbox::RunSpec& spec, const TmpfsDirs& tmpfs, const std::string& path) {
    std::filesystem::path p(path);
    for (const auto& [target, dir] : tmpfs) {
      std::filesystem::path rel = p.lexically_relative(target);
      if (!rel.empty() && *rel.begin() != "..") {
        return rel == "." ? dir : dir / rel;
      }
    }
    for (auto it = spec.mounts.rbegin(); it != spec.mounts.rend(); ++it) {
      std::filesystem::path rel = p.lexically_relative(it->target);
      if (!rel.empty() && *rel.begin() != "..") {
        return rel == "." ? it->source : it->source / rel;
      }
    }
    return spec.rootfs / p.relative_path();
  }

  int step(const sandbox::RunSpec& spec, const TmpfsDirs& tmpfs, const std::string& cmd) {
    std::istringstream in(cmd);
    std::string verb;
    std::string a;
    in >> verb >> a;
    std::string rest;
    std::getline(in >> std::ws, rest);
    std::error_code ec;
    if (verb == "write") {
      std::filesystem::path p = in_root(spec, tmpfs, a);
      std::filesystem::create_directories(p.parent_path(), ec);
      std::ofstream(p, std::ios::binary | std::ios::trunc) << rest;
      return 0;
    }
    if (verb == "copy") {
      std::filesystem::path to = in_root(spec, tmpfs, rest);
      std::filesystem::create_directories(to.parent_path(), ec);
      std::filesystem::copy_file(in_root(spec, tmpfs, a), to, std::filesystem::copy_options::overwrite_existing, ec);
      return ec ? 1 : 0;
    }
    if (verb == "show") {
      std::ifstream file(in_root(spec, tmpfs, a), std::ios::binary);
      if (!file) {
        return 1;
      }
      std::stringstream content;
      content << file.rdbuf();
      if (spec.on_stdout) {
        spec.on_stdout(content.str());
      }
      return 0;
    }
    if (verb == "say") {
      if (spec.on_stdout) {
        spec.on_stdout(rest.empty() ? a : a + " " + rest);
      }
      return 0;
    }
    if (verb == "exit") {
      return std::stoi(a);
    }
    if (verb == "meet") {
      return meet(std::stoi(a), std::stoi(rest));
    }
    return 127;
  }

  int meet(int count, int seconds) {
    std::unique_lock lock(m_meet_mu);
    ++m_met;
    m_meet_cv.notify_all();
    bool all = m_meet_cv.wait_for(lock, std::chrono::seconds(seconds), [&] { return m_met >= count; });
    return all ? 0 : 1;
  }

  mutable std::mutex m_mu;
  mutable std::vector<std::string> m_platforms;
  std::vector<sandbox::RunSpec> m_runs;
  std::mutex m_meet_mu;
  std::condition_variable m_meet_cv;
  int m_met = 0;
};

}  // namespace imgbuild::test
