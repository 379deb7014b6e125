#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "sandbox/binfmt.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild;

namespace {

void write(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
}

std::string error_of(const Result<void>& r) { return r ? "ok" : r.error().message; }

}  // namespace

TEST_CASE("binfmt_entry_name maps platforms to qemu's entries", "[sandbox][platform]") {
  Platform host = host_platform();
  CHECK(sandbox::binfmt_entry_name(host).empty());
  if (host.architecture == "amd64") {
    CHECK(sandbox::binfmt_entry_name({"linux", "386", ""}).empty());
    CHECK(sandbox::binfmt_entry_name({"linux", "arm64", ""}) == "qemu-aarch64");
    CHECK(sandbox::binfmt_entry_name({"linux", "aarch64", "v8"}) == "qemu-aarch64");
    CHECK(sandbox::binfmt_entry_name({"linux", "arm", "v7"}) == "qemu-arm");
    CHECK(sandbox::binfmt_entry_name({"linux", "mips64le", ""}) == "qemu-mips64el");
    CHECK(sandbox::binfmt_entry_name({"linux", "loong64", ""}) == "qemu-loongarch64");
    CHECK(sandbox::binfmt_entry_name({"linux", "s390x", ""}) == "qemu-s390x");
  }
}

TEST_CASE("check_emulation reads binfmt_misc entries: registered, enabled, F flag", "[sandbox][platform]") {
  Platform host = host_platform();
  Platform foreign = host.architecture == "arm64" ? Platform{"linux", "amd64", ""} : Platform{"linux", "arm64", ""};
  std::string entry = sandbox::binfmt_entry_name(foreign);
  REQUIRE(!entry.empty());
  test::ScratchDir dir;

  // The host's own platform needs nothing, whatever the directory holds.
  CHECK(error_of(sandbox::check_emulation(host, dir.path())) == "ok");

  // binfmt_misc not mounted (no register file), then mounted without the entry.
  std::string unmounted = error_of(sandbox::check_emulation(foreign, dir.path()));
  CHECK(unmounted.find("cannot run " + foreign.str() + " binaries") != std::string::npos);
  CHECK(unmounted.find("binfmt_misc is not mounted at " + dir.path().string()) != std::string::npos);
  CHECK(unmounted.find("install qemu-user-static") != std::string::npos);
  write(dir / "register", "");
  std::string missing = error_of(sandbox::check_emulation(foreign, dir.path()));
  CHECK(missing.find("no binfmt_misc entry " + (dir / entry).string() + " is registered") != std::string::npos);
  CHECK(missing.find("scripts/binfmt") != std::string::npos);

  // Registered without F: the interpreter would not be found in the build's root.
  write(dir / entry, "enabled\ninterpreter /usr/libexec/qemu-binfmt/x-binfmt-P\nflags: PO\noffset 0\n");
  std::string no_f = error_of(sandbox::check_emulation(foreign, dir.path()));
  CHECK(no_f.find("lacks the F flag (flags: PO)") != std::string::npos);

  // Disabled.
  write(dir / entry, "disabled\ninterpreter /usr/libexec/qemu-binfmt/x-binfmt-P\nflags: POF\noffset 0\n");
  CHECK(error_of(sandbox::check_emulation(foreign, dir.path())).find("is disabled") != std::string::npos);

  // Enabled with F.
  write(dir / entry, "enabled\ninterpreter /usr/libexec/qemu-binfmt/x-binfmt-P\nflags: POF\noffset 0\n");
  CHECK(error_of(sandbox::check_emulation(foreign, dir.path())) == "ok");
}
