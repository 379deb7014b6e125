#pragma once
// Prerequisite handling: a test whose prerequisite (root, overlayfs, the
// conformance data, a peer tool) is missing reports itself skipped with the
// reason — except under CI=true, where a missing prerequisite is a failure.

#include <string>

#include <catch2/catch.hpp>

#include "support/paths.hpp"

/// Skips the current test (or fails it under CI=true) unless `cond` holds.
#define IMGBUILD_REQUIRE_PREREQ(cond, reason)                                  \
  do {                                                                         \
    if (!(cond)) {                                                             \
      if (::imgbuild::test::in_ci()) {                                         \
        FAIL("prerequisite missing in CI: " << (reason));                      \
      }                                                                        \
      WARN("SKIPPED: " << (reason));                                           \
      return;                                                                  \
    }                                                                          \
  } while (0)
