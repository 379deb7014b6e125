#pragma once
// Running binaries of another platform: the kernel's binfmt_misc hands a
// foreign ELF to a qemu user-mode emulator (Debian's qemu-user-static). The
// entry must carry the F flag ("fix binary": the kernel opens the
// interpreter when the entry is registered), so that it still runs inside
// the sandbox's mount namespace and chroot, where the interpreter's path
// does not exist. scripts/binfmt registers Debian's entries that way.

#include <filesystem>
#include <string>

#include "util/platform.hpp"
#include "util/result.hpp"

namespace imgbuild::sandbox {

/// Where the kernel's binfmt_misc is mounted.
inline const std::filesystem::path k_binfmt_misc_dir = "/proc/sys/fs/binfmt_misc";

/// The name of the binfmt_misc entry qemu-user-static registers for
/// `platform`'s architecture ("qemu-aarch64" for arm64, "qemu-arm" for arm),
/// or "" when the host runs its binaries natively (same architecture; 386
/// on amd64).
std::string binfmt_entry_name(const Platform& platform);

/// Ok when RUN can execute `platform`'s binaries here: natively, or through
/// an enabled binfmt_misc entry (in `binfmt_dir`) with the F flag. Else an
/// Errc::unsupported error naming the platform, what is missing and the fix.
Result<void> check_emulation(const Platform& platform,
                             const std::filesystem::path& binfmt_dir = k_binfmt_misc_dir);

}  // namespace imgbuild::sandbox
