#pragma once
// A COPY or ADD resolved once: the request with its words expanded in the
// stage's environment and WORKDIR (builder/copy.hpp), the texts its key and
// its history entry use, and where its sources come from (--from resolved
// against the plan). The cache key (copy_key) and the copy (do_copy) both
// read this one value; the executor adds the build context the sources are
// read from when that is a directory (the context or a named context).
//
// Pure: no I/O.

#include <optional>
#include <string>

#include "builder/config.hpp"
#include "builder/context.hpp"
#include "builder/copy.hpp"
#include "builder/plan.hpp"
#include "parser/instructions.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// What kind of root a COPY --from / RUN --mount from= names.
enum class SourceOrigin {
  context,     ///< the build context, or a named context that is a directory
  stage,       ///< another stage's rootfs
  image,       ///< an image (a reference, or a docker-image:// named context)
  oci_layout,  ///< an oci-layout:// named context
};

/// The origin `ref` names (nullopt: the build context).
SourceOrigin source_origin(const std::optional<SourceRef>& ref);

/// The image reference of an image origin (the reference, or the named
/// context's source without "docker-image://").
std::string source_image(const SourceRef& ref);

/// A COPY/ADD, resolved for one stage state.
struct ResolvedCopy {
  /// The request, words expanded, heredoc_mtime set.
  CopyRequest request;
  /// "COPY" or "ADD".
  std::string keyword;
  /// The instruction as written plus its heredoc bodies (the key's text).
  std::string text;
  /// The history entry's created_by ("COPY --chown=app a <<EOF /dst").
  std::string created_by;
  /// --from as written ("" = the build context).
  std::string from;
  /// --from resolved against the plan (nullopt = the build context).
  std::optional<SourceRef> ref;
  /// SourceOrigin of ref.
  SourceOrigin origin = SourceOrigin::context;
  /// The context directory the sources are read from (origin context; set
  /// by the executor, which opens named contexts).
  const BuildContext* context = nullptr;
};

/// Resolves a COPY or ADD (`ins` must be one) of stage `stage` in `state`.
/// Errors: the expansion and request errors of copy_request/add_request.
Result<ResolvedCopy> resolve_copy(const parser::Instruction& ins, const StageState& state, const Plan& plan,
                                  int stage);

}  // namespace imgbuild::builder
