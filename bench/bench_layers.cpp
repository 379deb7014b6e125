// Layer benchmarks (issue 4's performance targets), run as root:
//   bench_layers apply [MiB=1024] [files=20000]
//       unpack one generated layer with snapshot::apply_layer and with
//       `tar -xf` (GNU tar); target: imgbuild >= 0.9x tar's throughput.
//   bench_layers apply-file LAYER DIR
//       one apply of an existing layer tar into DIR (for profiling)
//   bench_layers diff
//       touch one file over a 100-file and a 100,000-file base in a real
//       overlay mount and time diff_overlay; target: the same time (+-20%).
// Generated data lives under $TMPDIR (default /tmp) and is removed.

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

// User+system CPU seconds of this process (all threads) or of its waited-for
// children.
double cpu_seconds(int who) {
  rusage ru{};
  ::getrusage(who, &ru);
  auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

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
// over 100 directories. With `mixed`, half the bytes go to one big file per
// 1,000 files (at least one) and the rest to small files; otherwise every
// file has the same size.
void write_layer(const std::string& path, uint64_t bytes, uint64_t files, bool mixed = false) {
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
  uint64_t big_files = mixed ? std::max<uint64_t>(1, files / 1000) : 0;
  uint64_t big_size = mixed ? bytes / 2 / big_files : 0;
  uint64_t small_size = (bytes - big_files * big_size) / (files - big_files);
  for (uint64_t d = 0; d < 100; ++d) {
    tar::Entry dir;
    dir.path = fmt::format("d{:03}", d);
    dir.type = tar::EntryType::dir;
    dir.mode = 0755;
    (void)(*w)->add(dir);
    for (uint64_t f = d; f < files; f += 100) {
      bool big = mixed && f % (files / big_files) == 0;
      tar::Entry e;
      e.path = fmt::format("d{:03}/f{:07}", d, f);
      e.size = big ? big_size : small_size;
      e.mtime_sec = 1600000000;
      (void)(*w)->add(e);
      uint64_t left = e.size;
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
  write_layer(layer, mib << 20, files, true);
  ::sync();
  // Alternating rounds, best of each: neither side profits from going second.
  double tar_s = 1e9;
  double ours = 1e9;
  double tar_cpu = 1e9;
  double our_cpu = 1e9;
  bool failed = false;
  for (int round = 0; round < 2; ++round) {
    std::string tar_dir = fmt::format("{}/tar{}", dir, round);
    std::string our_dir = fmt::format("{}/imgbuild{}", dir, round);
    stdfs::create_directories(tar_dir);
    stdfs::create_directories(our_dir);
    auto t0 = Clock::now();
    double c0 = cpu_seconds(RUSAGE_CHILDREN);
    std::string cmd = fmt::format("tar -C {} --same-owner -xpf {}", tar_dir, layer);
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "tar failed\n");
    }
    ::sync();
    tar_s = std::min(tar_s, seconds_since(t0));
    tar_cpu = std::min(tar_cpu, cpu_seconds(RUSAGE_CHILDREN) - c0);
    auto t1 = Clock::now();
    double c1 = cpu_seconds(RUSAGE_SELF);
    UniqueFd fd(::open(layer.c_str(), O_RDONLY | O_CLOEXEC));
    auto r = snapshot::apply_layer_fd(our_dir, fd.get(), "layer.tar");
    ::sync();
    ours = std::min(ours, seconds_since(t1));
    our_cpu = std::min(our_cpu, cpu_seconds(RUSAGE_SELF) - c1);
    if (!r) {
      std::fprintf(stderr, "%s\n", r.error().to_string().c_str());
      failed = true;
    }
    stdfs::remove_all(tar_dir);
    stdfs::remove_all(our_dir);
    ::sync();
  }
  fmt::print("apply {} MiB / {} files (half in {} big files): tar -x {:.2f}s ({:.2f}s CPU), imgbuild {:.2f}s "
             "({:.2f}s CPU, diff_id hashing included), throughput ratio {:.2f}x (target >= 0.9)\n",
             mib, files, std::max<uint64_t>(1, files / 1000), tar_s, tar_cpu, ours, our_cpu, tar_s / ours);
  stdfs::remove_all(dir);
  return failed ? 1 : 0;
}

// A base of `base_files` files unpacked as an overlay lower dir, and an
// upper dir holding one file written through a real overlay mount.
std::string make_diff_base(uint64_t base_files) {
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
  return dir;
}

// Mean time of one diff_overlay over 50 rounds.
double time_diff(const std::string& dir) {
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
  return seconds_since(t0) / rounds;
}

int bench_diff() {
  std::string small_dir = make_diff_base(100);
  std::string large_dir = make_diff_base(100000);
  // Alternating batches, best of each: load from other processes hits both.
  double small = 1e9;
  double large = 1e9;
  for (int batch = 0; batch < 9; ++batch) {
    small = std::min(small, time_diff(small_dir));
    large = std::min(large, time_diff(large_dir));
  }
  stdfs::remove_all(small_dir);
  stdfs::remove_all(large_dir);
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
  if (what == "apply-file" && argc == 4) {
    // One apply of an existing layer, for profiling (perf record ...).
    UniqueFd fd(::open(argv[2], O_RDONLY | O_CLOEXEC));
    auto t0 = Clock::now();
    auto r = snapshot::apply_layer_fd(argv[3], fd.get(), argv[2]);
    if (!r) {
      std::fprintf(stderr, "%s\n", r.error().to_string().c_str());
      return 1;
    }
    fmt::print("applied in {:.2f}s\n", seconds_since(t0));
    return 0;
  }
  if (what == "diff") {
    return bench_diff();
  }
  std::fprintf(stderr, "usage: bench_layers apply [MiB] [files] | apply-file LAYER DIR | diff\n");
  return 2;
}
