#include "util/platform.hpp"

#include <sys/utsname.h>

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild {

namespace {

constexpr std::array<std::string_view, 17> k_known_os = {
    "aix",   "android", "darwin",  "dragonfly", "freebsd", "hurd",    "illumos", "ios",    "js",
    "linux", "nacl",    "netbsd",  "openbsd",   "plan9",   "solaris", "windows", "zos"};

constexpr std::array<std::string_view, 24> k_known_arch = {
    "386",     "amd64",     "amd64p32",    "arm",  "armbe",   "arm64",   "arm64be", "ppc64",
    "ppc64le", "loong64",   "mips",        "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le",
    "ppc",     "riscv",     "riscv64",     "s390", "s390x",   "sparc",   "sparc64", "wasm"};

bool is_known_os(std::string_view os) {
  return std::find(k_known_os.begin(), k_known_os.end(), os) != k_known_os.end();
}

std::string normalize_os(std::string os) {
  os = str::to_lower(os);
  return os == "macos" ? "darwin" : os;
}

// containerd's normalizeArch: aliases and default variants.
void normalize_arch(std::string& arch, std::string& variant) {
  arch = str::to_lower(arch);
  variant = str::to_lower(variant);
  if (arch == "i386") {
    arch = "386";
    variant.clear();
  } else if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    arch = "amd64";
    if (variant == "v1") {
      variant.clear();
    }
  } else if (arch == "aarch64" || arch == "arm64") {
    arch = "arm64";
    if (variant == "8" || variant == "v8" || variant == "v8.0") {
      variant.clear();
    } else if (variant == "9" || variant == "9.0" || variant == "v9.0") {
      variant = "v9";
    }
  } else if (arch == "armhf") {
    arch = "arm";
    variant = "v7";
  } else if (arch == "armel") {
    arch = "arm";
    variant = "v6";
  } else if (arch == "arm") {
    if (variant.empty() || variant == "7") {
      variant = "v7";
    } else if (variant == "5" || variant == "6" || variant == "8") {
      variant = "v" + variant;
    }
  }
}

bool is_specifier_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
}

Error bad_platform(std::string_view text, std::string_view why) {
  return Error(Errc::invalid_argument, fmt::format("invalid platform {}: {}", str::go_quote(text), why));
}

}  // namespace

std::string Platform::str() const {
  std::string out = os + "/" + architecture;
  if (!variant.empty()) {
    out += "/" + variant;
  }
  return out;
}

bool is_known_architecture(std::string_view arch) {
  return std::find(k_known_arch.begin(), k_known_arch.end(), arch) != k_known_arch.end();
}

Platform normalize_platform(Platform p) {
  p.os = p.os.empty() ? "linux" : normalize_os(p.os);
  normalize_arch(p.architecture, p.variant);
  return p;
}

bool platform_matches(const Platform& a, const Platform& b) { return normalize_platform(a) == normalize_platform(b); }

Platform host_platform() {
  Platform p{"linux", "amd64", ""};
  utsname u{};
  if (::uname(&u) == 0) {
    std::string machine = u.machine;
    if (machine == "armv7l" || machine == "armv7") {
      p.architecture = "arm";
      p.variant = "v7";
    } else if (machine == "armv6l") {
      p.architecture = "arm";
      p.variant = "v6";
    } else if (machine == "armv5tel" || machine == "armv5l") {
      p.architecture = "arm";
      p.variant = "v5";
    } else if (machine == "i686" || machine == "i586") {
      p.architecture = "386";
    } else if (machine == "loongarch64") {
      p.architecture = "loong64";
    } else {
      p.architecture = machine;
    }
  }
  return normalize_platform(p);
}

Result<Platform> parse_platform(std::string_view text) {
  if (text.find('*') != std::string_view::npos) {
    return fail(bad_platform(text, "wildcards are not supported"));
  }
  std::vector<std::string> parts = str::split(text, '/');
  if (parts.size() > 3) {
    return fail(bad_platform(text, "want os/arch[/variant]"));
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    if (part.empty() || !std::all_of(part.begin(), part.end(), is_specifier_char) ||
        (i == 0 && part.find('.') != std::string::npos)) {
      return fail(bad_platform(text, fmt::format("component {} must be letters, digits, '_', '-'{}",
                                                 str::go_quote(part), i == 0 ? "" : " or '.'")));
    }
  }
  Platform p;
  p.os = normalize_os(parts[0]);
  if (parts.size() == 1) {
    if (is_known_os(p.os)) {
      Platform host = host_platform();
      p.architecture = host.architecture;
      p.variant = host.variant;
      return normalize_platform(p);
    }
    p.architecture = parts[0];
    normalize_arch(p.architecture, p.variant);
    if (!is_known_architecture(p.architecture)) {
      return fail(bad_platform(text, "unknown operating system or architecture"));
    }
    p.os = host_platform().os;
    return normalize_platform(p);
  }
  p.architecture = parts[1];
  p.variant = parts.size() == 3 ? parts[2] : "";
  return normalize_platform(p);
}

}  // namespace imgbuild
