#pragma once
// `--change 'INSTRUCTION'` for import: the Dockerfile instructions that only
// touch the image config (CMD ENTRYPOINT ENV EXPOSE LABEL USER VOLUME WORKDIR
// STOPSIGNAL ONBUILD), applied to a ContainerConfig.

#include <string_view>

#include "image/types.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// Applies one instruction to `config`. Shell-form CMD/ENTRYPOINT become
/// ["/bin/sh", "-c", text]; JSON-form arrays are used as they are. Errors
/// (Errc::invalid_argument) quote the instruction.
Result<void> apply_change(ContainerConfig& config, std::string_view instruction);

}  // namespace imgbuild::image
