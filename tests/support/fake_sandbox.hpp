#pragma once
// FakeSandbox: a Sandbox for hermetic builder tests. It runs nothing; it
// records every RunSpec and interprets the command (the last argv element,
// so `RUN …` in shell form under the default /bin/sh -c) as a tiny script of
// `&&`-separated commands. Paths are inside the sandbox: one under a bind
// mount's target is the mount's host source (the last mount that covers
// it), any other is under the rootfs directory.
//   write PATH TEXT   creates/overwrites the file PATH with TEXT
//   copy FROM TO      copies the file FROM to TO
//   show PATH         prints the file's content on stdout
//   say TEXT          prints TEXT on stdout
//   exit N            stops with exit status N
// Anything else stops with status 127, like a shell's "not found".

#include <filesystem>
#include <fstream>
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
    sandbox::RunResult result;
    std::string script = spec.argv.empty() ? "" : spec.argv.back();
    size_t start = 0;
    while (start <= script.size()) {
      size_t end = script.find(" && ", start);
      std::string cmd = script.substr(start, end == std::string::npos ? std::string::npos : end - start);
      result.exit_code = step(spec, cmd);
      if (result.exit_code != 0 || end == std::string::npos) {
        break;
      }
      start = end + 4;
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
  static std::filesystem::path in_root(const sandbox::RunSpec& spec, const std::string& path) {
    std::filesystem::path p(path);
    for (auto it = spec.mounts.rbegin(); it != spec.mounts.rend(); ++it) {
      std::filesystem::path rel = p.lexically_relative(it->target);
      if (!rel.empty() && *rel.begin() != "..") {
        return rel == "." ? it->source : it->source / rel;
      }
    }
    return spec.rootfs / p.relative_path();
  }

  static int step(const sandbox::RunSpec& spec, const std::string& cmd) {
    std::istringstream in(cmd);
    std::string verb;
    std::string a;
    in >> verb >> a;
    std::string rest;
    std::getline(in >> std::ws, rest);
    std::error_code ec;
    if (verb == "write") {
      std::filesystem::path p = in_root(spec, a);
      std::filesystem::create_directories(p.parent_path(), ec);
      std::ofstream(p, std::ios::binary | std::ios::trunc) << rest;
      return 0;
    }
    if (verb == "copy") {
      std::filesystem::path to = in_root(spec, rest);
      std::filesystem::create_directories(to.parent_path(), ec);
      std::filesystem::copy_file(in_root(spec, a), to, std::filesystem::copy_options::overwrite_existing, ec);
      return ec ? 1 : 0;
    }
    if (verb == "show") {
      std::ifstream file(in_root(spec, a), std::ios::binary);
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
    return 127;
  }

  mutable std::mutex m_mu;
  mutable std::vector<std::string> m_platforms;
  std::vector<sandbox::RunSpec> m_runs;
};

}  // namespace imgbuild::test
