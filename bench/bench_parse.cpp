// bench_parse: how fast parse_dockerfile reads a large Dockerfile.
//
// Generates, in memory, a 10,000-instruction Dockerfile with a realistic mix
// (multi-stage FROMs, shell RUNs continued over several lines, exec-form
// CMD/RUN, COPY with flags, ENV and LABEL pairs, ARGs, heredocs, comments,
// HEALTHCHECK, ONBUILD) and reports the median wall time of several parses,
// with lines/s and MB/s. Usage: bench_parse [runs] (default 21).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <time.h>

#include <fmt/format.h>

#include "parser/syntax/dump.hpp"
#include "parser/syntax/parse.hpp"

namespace {

// CPU time of this thread, in milliseconds: unlike wall time it does not
// grow when other processes compete for the cores.
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

std::string generate(int instructions) {
  std::string out = "# syntax=docker/dockerfile:1\n# check=skip=JSONArgsRecommended\nARG BASE=debian:12\n";
  int count = 1;
  int stage = 0;
  while (count < instructions) {
    switch (count % 12) {
      case 0:
        out += fmt::format("\n# stage {}\nFROM --platform=$BUILDPLATFORM ${{BASE}} AS stage{}\n", stage, stage);
        ++stage;
        break;
      case 1:
        out += "RUN apt-get update && \\\n    apt-get install -y --no-install-recommends \\\n"
               "        ca-certificates curl git \\\n    && rm -rf /var/lib/apt/lists/*\n";
        break;
      case 2:
        out += fmt::format("ENV APP_HOME=/srv/app{} PATH=\"/srv/app{}/bin:$PATH\" LANG=C.UTF-8\n", count, count);
        break;
      case 3:
        out += fmt::format("COPY --from=stage{} --chown=app:app --chmod=0755 build/out{} /srv/app/\n",
                           std::max(0, stage - 1), count);
        break;
      case 4:
        out += "RUN [\"/bin/sh\", \"-c\", \"echo building && make -j4 all\"]\n";
        break;
      case 5:
        out += "RUN <<EOF\nset -eu\necho \"step $HOSTNAME\"\ntouch /tmp/done\nEOF\n";
        break;
      case 6:
        out += fmt::format("LABEL org.opencontainers.image.version=\"1.{}\" maintainer=\"team@example.com\"\n", count);
        break;
      case 7:
        out += fmt::format("ARG VERSION_{}=1.2.3\n", count);
        break;
      case 8:
        out += "WORKDIR /srv/app\n";
        break;
      case 9:
        out += "HEALTHCHECK --interval=30s --timeout=3s \\\n  CMD curl -f http://localhost/ || exit 1\n";
        break;
      case 10:
        out += "COPY <<-EOT /etc/app.conf\n\tkey = value\n\tother = 1\nEOT\n";
        break;
      case 11:
        out += "ONBUILD RUN make -C /srv/app test\nEXPOSE 8080/tcp 9090\n";
        ++count;
        break;
    }
    ++count;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 21;
  const int instructions = 10000;
  std::string text = generate(instructions);
  size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));

  auto first = imgbuild::parser::parse_dockerfile(text);
  if (!first) {
    std::fprintf(stderr, "bench_parse: generated Dockerfile does not parse: %s\n", first.error().to_string().c_str());
    return 1;
  }
  std::vector<double> ms;
  std::vector<double> cpu;
  size_t children = 0;
  for (int i = 0; i < runs; ++i) {
    double cpu_start = thread_cpu_ms();
    auto start = std::chrono::steady_clock::now();
    auto ast = imgbuild::parser::parse_dockerfile(text);
    auto end = std::chrono::steady_clock::now();
    cpu.push_back(thread_cpu_ms() - cpu_start);
    children = ast ? ast->children.size() : 0;
    ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
  }
  std::sort(ms.begin(), ms.end());
  std::sort(cpu.begin(), cpu.end());
  double median = ms[ms.size() / 2];
  auto dump_start = std::chrono::steady_clock::now();
  std::string dump = imgbuild::parser::dump_ast(*first);
  double dump_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - dump_start).count();
  fmt::print("bench_parse: {} instructions, {} lines, {:.2f} MB\n", children, lines,
             static_cast<double>(text.size()) / 1e6);
  fmt::print("parse: median {:.2f} ms over {} runs (min {:.2f}, max {:.2f}); {:.0f} lines/s, {:.1f} MB/s\n", median,
             runs, ms.front(), ms.back(), static_cast<double>(lines) / (median / 1000.0),
             static_cast<double>(text.size()) / 1e6 / (median / 1000.0));
  fmt::print("parse CPU time: median {:.2f} ms (min {:.2f})\n", cpu[cpu.size() / 2], cpu.front());
  fmt::print("dump: {:.2f} ms ({} bytes)\n", dump_ms, dump.size());
  return 0;
}
