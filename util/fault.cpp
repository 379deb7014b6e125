#include "util/fault.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace imgbuild::fault {

namespace {

struct Plan {
  bool active = false;
  std::string name;  // "*" = every point
  long count = 0;    // 0 = count only, report at exit
};

std::atomic<long> g_passages{0};

void report() { std::fprintf(stderr, "imgbuild-fault: %ld passages\n", g_passages.load()); }

const Plan& plan() {
  static const Plan p = [] {
    Plan out;
    const char* env = std::getenv("IMGBUILD_FAULT_KILL_AT");
    if (env == nullptr) {
      return out;
    }
    std::string text(env);
    size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return out;
    }
    out.name = text.substr(0, colon);
    out.count = std::strtol(text.c_str() + colon + 1, nullptr, 10);
    out.active = out.count >= 0;
    if (out.active && out.count == 0) {
      std::atexit(report);
    }
    return out;
  }();
  return p;
}

}  // namespace

void point(std::string_view name) {
  const Plan& p = plan();
  if (!p.active || (p.name != "*" && p.name != name)) {
    return;
  }
  long n = ++g_passages;
  if (p.count > 0 && n == p.count) {
    ::kill(::getpid(), SIGKILL);
  }
}

}  // namespace imgbuild::fault
