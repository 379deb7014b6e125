#include "builder/copy_step.hpp"

#include <cstring>
#include <string_view>

#include "parser/shell.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace {
constexpr std::string_view k_docker_image = "docker-image://";
constexpr std::string_view k_oci_layout = "oci-layout://";
}  // namespace

SourceOrigin source_origin(const std::optional<SourceRef>& ref) {
  if (!ref) {
    return SourceOrigin::context;
  }
  switch (ref->kind) {
    case BaseKind::stage:
      return SourceOrigin::stage;
    case BaseKind::context:
      if (ref->source.starts_with(k_docker_image)) {
        return SourceOrigin::image;
      }
      if (ref->source.starts_with(k_oci_layout)) {
        return SourceOrigin::oci_layout;
      }
      return SourceOrigin::context;
    case BaseKind::image:
    case BaseKind::scratch:
      break;
  }
  return SourceOrigin::image;
}

std::string source_image(const SourceRef& ref) {
  if (ref.kind == BaseKind::context && ref.source.starts_with(k_docker_image)) {
    return ref.source.substr(k_docker_image.size());
  }
  return ref.name;
}

Result<ResolvedCopy> resolve_copy(const parser::Instruction& ins, const StageState& state, const Plan& plan,
                                  int stage) {
  parser::Lexer lexer(plan.escape);
  WordExpander expand = [&](std::string_view w) -> Result<std::string> { return lexer.process_word(w, state.env); };
  const std::string& wd = state.image.config->working_dir;
  std::string workdir = wd.empty() ? "/" : wd;
  ResolvedCopy out;
  if (const auto* copy = ins.as<parser::CopyInstruction>()) {
    TRY(out.request, copy_request(*copy, expand, workdir));
    out.keyword = "COPY";
    out.from = copy->from.value_or("");
  } else {
    TRY(out.request, add_request(*ins.as<parser::AddInstruction>(), expand, workdir));
    out.keyword = "ADD";
  }
  out.request.heredoc_mtime = plan.source_date_epoch;
  out.text = ins.header().original;
  // BuildKit v0.22's history text: --parents, --chown and --chmod (values
  // expanded) before the sources; --from, --link, --exclude, --checksum and
  // --keep-git-dir are not shown.
  std::vector<std::string> shown;
  if (out.request.parents) {
    shown.emplace_back("--parents");
  }
  if (out.request.chown && !out.request.chown->empty()) {
    shown.push_back("--chown=" + *out.request.chown);
  }
  if (out.request.chmod && !out.request.chmod->empty()) {
    shown.push_back("--chmod=" + *out.request.chmod);
  }
  shown.insert(shown.end(), out.request.sources.begin(), out.request.sources.end());
  for (const auto& h : out.request.heredocs) {
    out.text += "\n" + h.content + h.name;
    shown.push_back("<<" + h.name);
  }
  out.created_by = out.keyword + " " + str::join(shown, " ") + " " + out.request.dest;
  if (!out.from.empty()) {
    out.ref = plan.resolve_source(out.from, stage);
  }
  out.origin = source_origin(out.ref);
  return out;
}

}  // namespace imgbuild::builder
