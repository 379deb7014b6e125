// Layer benchmarks (issue 4's performance targets), run as root:
//   bench_layers apply [MiB=1024] [files=20000]
//       unpack one generated layer with snapshot::apply_layer and with
//       `tar -xf` (GNU tar); target: imgbuild >= 0.9x tar's throughput.
//   bench_layers diff
//       touch one file over a 100-file and a 100,000-file base in a real
//       overlay mount and time diff_overlay; target: the same time (+-20%).
// Generated data lives under $TMPDIR (default /tmp) and is removed.

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "snapshot/apply.hpp"
#include "snapshot/diff.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/tar.hpp"

using namespace imgbuild;
namespace stdfs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string scratch() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/imgbuild-bench-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  return tmpl;
}

// Writes a plain layer with `files` files totalling about `bytes`, spread
// over 100 directories.
void write_layer(const std::string& path, uint64_t bytes, uint64_t files) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  auto w = tar::Writer::open_fd(fd.get());
  if (!w) {
    std::fprintf(stderr, "%s\n", w.error().to_string().c_str());
    std::exit(1);
  }
  std::vector<char> chunk(1 << 20);
  for (size_t i = 0; i < chunk.size(); ++i) {
    chunk[i] = static_cast<char>((i * 131) ^ (i >> 7));
  }
  uint64_t per_file = bytes / files;
  for (uint64_t d = 0; d < 100; ++d) {
    tar::Entry dir;
    dir.path = fmt::format("d{:03}", d);
    dir.type = tar::EntryType::dir;
    dir.mode = 0755;
    (void)(*w)->add(dir);
    for (uint64_t f = d; f < files; f += 100) {
      tar::Entry e;
      e.path = fmt::format("d{:03}/f{:07}", d, f);
      e.size = per_file;
      e.mtime_sec = 1600000000;
      (void)(*w)->add(e);
      uint64_t left = per_file;
      while (left > 0) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(left, chunk.size()));
        (void)(*w)->write_data(chunk.data(), n);
        left -= n;
      }
    }
  }
  (void)(*w)->finish();
}

int bench_apply(uint64_t mib, uint64_t files) {
  std::string dir = scratch();
  std::string layer = dir + "/layer.tar";
  write_layer(layer, mib << 20, files);
  stdfs::create_directories(dir + "/tar");
  stdfs::create_directories(dir + "/imgbuild");
  ::sync();
  auto t0 = Clock::now();
  std::string cmd = fmt::format("tar -C {}/tar --same-owner -xpf {}", dir, layer);
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "tar failed\n");
  }
  ::sync();
  double tar_s = seconds_since(t0);
  auto t1 = Clock::now();
  UniqueFd fd(::open(layer.c_str(), O_RDONLY | O_CLOEXEC));
  auto r = snapshot::apply_layer_fd(dir + "/imgbuild", fd.get(), "layer.tar");
  ::sync();
  double ours = seconds_since(t1);
  if (!r) {
    std::fprintf(stderr, "%s\n", r.error().to_string().c_str());
  }
  fmt::print("apply {} MiB / {} files: tar -x {:.2f}s, imgbuild {:.2f}s, throughput ratio {:.2f}x (target >= 0.9)\n",
             mib, files, tar_s, ours, tar_s / ours);
  stdfs::remove_all(dir);
  return r ? 0 : 1;
}

double diff_once(uint64_t base_files) {
  std::string dir = scratch();
  for (auto d : {"lower", "upper", "work", "merged"}) {
    stdfs::create_directories(dir + "/" + d);
  }
  std::string layer = dir + "/base.tar";
  write_layer(layer, base_files * 16, base_files);
  UniqueFd fd(::open(layer.c_str(), O_RDONLY | O_CLOEXEC));
  (void)snapshot::apply_layer_fd(dir + "/lower", fd.get(), "base.tar", {.mode = snapshot::ApplyMode::overlay_lower});
  std::string opts = fmt::format("lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work,index=off,redirect_dir=off,"
                                 "metacopy=off",
                                 dir);
  if (::mount("overlay", (dir + "/merged").c_str(), "overlay", 0, opts.c_str()) != 0) {
    std::perror("mount overlay");
    std::exit(1);
  }
  {
    std::FILE* f = std::fopen((dir + "/merged/d042/touched").c_str(), "w");
    std::fputs("x", f);
    std::fclose(f);
  }
  ::umount2((dir + "/merged").c_str(), 0);
  uint64_t sink = 0;
  auto t0 = Clock::now();
  const int rounds = 50;
  for (int i = 0; i < rounds; ++i) {
    auto r = snapshot::diff_overlay(dir + "/upper", {dir + "/lower"}, [&sink](const void*, size_t n) -> Result<void> {
      sink += n;
      return ok();
    });
    if (!r) {
      std::fprintf(stderr, "%s\n", r.error().to_string().c_str());
      std::exit(1);
    }
  }
  double s = seconds_since(t0) / rounds;
  stdfs::remove_all(dir);
  return s;
}

int bench_diff() {
  double small = diff_once(100);
  double large = diff_once(100000);
  fmt::print("diff of one touched file: 100-file base {:.3f} ms, 100,000-file base {:.3f} ms, ratio {:.2f} "
             "(target 0.8-1.2)\n",
             small * 1000, large * 1000, large / small);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "apply";
  if (what == "apply") {
    uint64_t mib = argc > 2 ? std::stoull(argv[2]) : 1024;
    uint64_t files = argc > 3 ? std::stoull(argv[3]) : 20000;
    return bench_apply(mib, files);
  }
  if (what == "diff") {
    return bench_diff();
  }
  std::fprintf(stderr, "usage: bench_layers apply [MiB] [files] | diff\n");
  return 2;
}
