#pragma once
// How progress names a step, as BuildKit's Dockerfile frontend does:
// "[base  2/11] RUN …" — the stage's name (none at all when the Dockerfile
// has a single stage: "[2/3] RUN …"), then the step's index right-aligned to
// the width of the stage's step count.

#include <string>

namespace imgbuild::builder {

/// "[stage i/n] " for step `index` of `total` in stage `stage_name` ("" =
/// the Dockerfile's only stage: no name shown).
std::string step_label(const std::string& stage_name, int index, int total);

}  // namespace imgbuild::builder
