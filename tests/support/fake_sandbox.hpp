#pragma once
// FakeSandbox: a Sandbox for hermetic builder tests. It runs nothing; it
// records every RunSpec and interprets the command (the last argv element,
// so `RUN …` in shell form under the default /bin/sh -c) as a tiny script of
// `&&`-separated commands on the rootfs directory:
//   write PATH TEXT   creates/overwrites the file PATH (in the rootfs) with TEXT
//   copy FROM TO      copies FROM — a path under a bind mount's target,
//                     read from the mount's host source — to TO in the rootfs
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

private:
  static std::filesystem::path in_root(const sandbox::RunSpec& spec, const std::string& path) {
    return spec.rootfs / std::filesystem::path(path).relative_path();
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
      for (const auto& m : spec.mounts) {
        std::filesystem::path rel = std::filesystem::path(a).lexically_relative(m.target);
        if (!rel.empty() && *rel.begin() != "..") {
          std::filesystem::path to = in_root(spec, rest);
          std::filesystem::create_directories(to.parent_path(), ec);
          std::filesystem::copy_file(rel == "." ? m.source : m.source / rel, to,
                                     std::filesystem::copy_options::overwrite_existing, ec);
          return ec ? 1 : 0;
        }
      }
      return 1;
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
  std::vector<sandbox::RunSpec> m_runs;
};

}  // namespace imgbuild::test
