#pragma once
// Platforms (os/architecture/variant): the one parser, formatter and matcher
// every module uses, with containerd's rules (platforms.Parse followed by
// platforms.Normalize, as BuildKit applies them to --platform):
//  - "os/arch[/variant]", or a single word: a known OS (the host's
//    architecture) or a known architecture (the host's OS);
//  - architecture aliases: x86_64/x86-64 → amd64, aarch64 → arm64,
//    i386 → 386, armhf → arm/v7, armel → arm/v6;
//  - default variants dropped: amd64/v1 → amd64, arm64/v8 → arm64, while
//    plain arm gets its default variant, arm → arm/v7;
//  - os, architecture and variant lower-cased; "macos" → darwin.
// Two platforms match when their normalised forms are equal.

#include <string>
#include <string_view>

#include "util/result.hpp"

namespace imgbuild {

/// An OCI platform (os, architecture, variant), normalised when it comes
/// from parse_platform, normalize_platform or host_platform.
struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;  ///< "" or v5…v8, v2…v4 (amd64), v9 (arm64)

  /// "os/arch" or "os/arch/variant" (containerd's platforms.Format).
  std::string str() const;
  bool operator==(const Platform&) const = default;
};

/// Parses a platform specifier and normalises it. Errors
/// (Errc::invalid_argument) name the specifier and the bad component.
Result<Platform> parse_platform(std::string_view text);

/// The canonical form of `p` (aliases resolved, default variants applied as
/// described above). Unknown names are kept, lower-cased.
Platform normalize_platform(Platform p);

/// True when `a` and `b` name the same platform once normalised.
bool platform_matches(const Platform& a, const Platform& b);

/// The platform this process runs on, normalised (linux/amd64, linux/arm64,
/// linux/arm/v7, …).
Platform host_platform();

/// True when `arch` (normalised) is an architecture containerd knows.
bool is_known_architecture(std::string_view arch);

}  // namespace imgbuild
