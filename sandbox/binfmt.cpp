#include "sandbox/binfmt.hpp"

#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace imgbuild::sandbox {

namespace {

constexpr std::string_view k_fix =
    "install qemu-user-static and register its emulators with the F flag (as root: scripts/binfmt in "
    "imgbuild's source tree)";

// qemu's name for an OCI architecture.
std::string qemu_arch(const std::string& arch) {
  if (arch == "amd64") {
    return "x86_64";
  }
  if (arch == "386") {
    return "i386";
  }
  if (arch == "arm64") {
    return "aarch64";
  }
  if (arch == "mips64le") {
    return "mips64el";
  }
  if (arch == "mipsle") {
    return "mipsel";
  }
  if (arch == "loong64") {
    return "loongarch64";
  }
  return arch;
}

}  // namespace

std::string binfmt_entry_name(const Platform& platform) {
  Platform want = normalize_platform(platform);
  Platform host = host_platform();
  if (want.architecture == host.architecture || (host.architecture == "amd64" && want.architecture == "386")) {
    return "";
  }
  return "qemu-" + qemu_arch(want.architecture);
}

Result<void> check_emulation(const Platform& platform, const std::filesystem::path& binfmt_dir) {
  std::string name = binfmt_entry_name(platform);
  if (name.empty()) {
    return ok();
  }
  std::string shown = normalize_platform(platform).str();
  std::filesystem::path entry = binfmt_dir / name;
  std::ifstream in(entry);
  if (!in) {
    std::error_code ec;
    std::string why = std::filesystem::exists(binfmt_dir / "register", ec)
                          ? fmt::format("no binfmt_misc entry {} is registered", entry.string())
                          : fmt::format("binfmt_misc is not mounted at {}", binfmt_dir.string());
    return fail(Errc::unsupported,
                fmt::format("cannot run {} binaries on this {} host: {}; {}", shown, host_platform().str(), why, k_fix));
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string body = text.str();
  if (!body.starts_with("enabled")) {
    return fail(Errc::unsupported, fmt::format("cannot run {} binaries: the binfmt_misc entry {} is disabled; {}",
                                               shown, entry.string(), k_fix));
  }
  size_t flags = body.find("\nflags: ");
  std::string flag_text;
  if (flags != std::string::npos) {
    size_t start = flags + 8;
    flag_text = body.substr(start, body.find('\n', start) - start);
  }
  if (flag_text.find('F') == std::string::npos) {
    return fail(Errc::unsupported,
                fmt::format("cannot run {} binaries in a build: the binfmt_misc entry {} lacks the F flag (flags: "
                            "{}), so its interpreter is not found inside the build's root; {}",
                            shown, entry.string(), flag_text.empty() ? "none" : flag_text, k_fix));
  }
  return ok();
}

}  // namespace imgbuild::sandbox
