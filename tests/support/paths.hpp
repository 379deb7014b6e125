#pragma once
// Where tests find the binary under test, test data and the shared
// conformance corpus.

#include <cstdlib>
#include <filesystem>
#include <string>

namespace imgbuild::test {

/// The repository checkout the tests were built from.
inline std::filesystem::path source_dir() { return IMGBUILD_SOURCE_DIR; }

/// The imgbuild executable built alongside the tests.
inline std::filesystem::path imgbuild_binary() { return IMGBUILD_BINARY; }

/// testdata/ in the checkout.
inline std::filesystem::path testdata_dir() { return source_dir() / "testdata"; }

/// True when running under CI (CI=true): missing prerequisites are failures.
inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

/// The BuildKit v0.22 tools the compat suite uses as its oracle (install,
/// start, build; see their opening comments): $IMGBUILD_BUILDKIT_TOOLS, else
/// ../shared/tools/buildkit next to the checkout, as scripts/services finds
/// them.
inline std::filesystem::path buildkit_tools_dir() {
  if (const char* env = std::getenv("IMGBUILD_BUILDKIT_TOOLS"); env != nullptr && *env != '\0') {
    return env;
  }
  return source_dir().parent_path() / "shared" / "tools" / "buildkit";
}

/// The BuildKit conformance corpus: $IMGBUILD_CONFORMANCE_DIR, else
/// ../shared/conformance next to the checkout. Empty when neither exists.
inline std::filesystem::path conformance_dir() {
  if (const char* env = std::getenv("IMGBUILD_CONFORMANCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  std::filesystem::path p = source_dir().parent_path() / "shared" / "conformance";
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) {
    return p;
  }
  return {};
}

}  // namespace imgbuild::test
