// GCC 12 reports a false maybe-uninitialized for std::optional<std::string>
// members assigned in a default-constructed aggregate (BuildOptions).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <catch2/catch.hpp>

#include <string>

#include "builder/config.hpp"
#include "builder/copy_step.hpp"
#include "builder/plan.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;

namespace {

// Plans `df`, applies the target stage's metadata instructions to a scratch
// state and resolves its last COPY/ADD.
Result<ResolvedCopy> resolve_last_copy(const std::string& df, const BuildOptions& options = {}) {
  auto plan = make_plan(df, options);
  REQUIRE(plan);
  const PlannedStage& stage = plan->stages.back();
  StageState state = start_stage(std::nullopt, plan->platform, "");
  const parser::Instruction* last = nullptr;
  ArgInputs inputs{&plan->build_args, &plan->global_args};
  for (const auto& ins : stage.steps) {
    if (ins.as<parser::CopyInstruction>() != nullptr || ins.as<parser::AddInstruction>() != nullptr) {
      last = &ins;
    } else if (ins.as<parser::RunInstruction>() == nullptr) {
      REQUIRE(apply_metadata(state, ins, inputs, plan->escape));
    }
  }
  REQUIRE(last != nullptr);
  return resolve_copy(*last, state, *plan, stage.index);
}

}  // namespace

TEST_CASE("resolve_copy: the request expanded once, with its key and history texts", "[builder][copy]") {
  auto r = resolve_last_copy("FROM scratch\nARG F=a.txt D=dst\nWORKDIR /w\nCOPY --chmod=644 $F b <<EOF $D/\nhi\nEOF\n");
  REQUIRE(r);
  CHECK(r->keyword == "COPY");
  CHECK(r->request.sources == std::vector<std::string>{"a.txt", "b"});
  CHECK(r->request.dest == "dst/");
  CHECK(r->request.workdir == "/w");
  CHECK(r->request.chmod == std::optional<std::string>("644"));
  REQUIRE(r->request.heredocs.size() == 1);
  CHECK(r->text == "COPY --chmod=644 $F b <<EOF $D/\nhi\nEOF");
  CHECK(r->created_by == "COPY --chmod=644 a.txt b <<EOF dst/");  // BuildKit v0.22 keeps --chmod
  CHECK(r->from.empty());
  CHECK_FALSE(r->ref);
  CHECK(r->origin == SourceOrigin::context);
  CHECK(r->context == nullptr);  // the executor fills it in

  auto add = resolve_last_copy("FROM scratch\nADD --checksum=sha256:00 https://example.com/x.tgz /x\n");
  REQUIRE(add);
  CHECK(add->keyword == "ADD");
  CHECK(add->created_by == "ADD https://example.com/x.tgz /x");
}

TEST_CASE("resolve_copy: where --from points", "[builder][copy]") {
  auto stage = resolve_last_copy("FROM scratch AS build\nFROM scratch\nCOPY --from=build /a /a\n");
  REQUIRE(stage);
  CHECK(stage->from == "build");
  REQUIRE(stage->ref);
  CHECK(stage->origin == SourceOrigin::stage);
  CHECK(stage->ref->stage == 0);

  auto image = resolve_last_copy("FROM scratch\nCOPY --from=alpine:3 /a /a\n");
  REQUIRE(image);
  CHECK(image->origin == SourceOrigin::image);
  CHECK(source_image(*image->ref) == "alpine:3");

  BuildOptions named;
  named.named_contexts = {{"dir", "/some/dir"}, {"img", "docker-image://busybox:1"}, {"lay", "oci-layout:///l:t"}};
  auto dir = resolve_last_copy("FROM scratch\nCOPY --from=dir /a /a\n", named);
  REQUIRE(dir);
  CHECK(dir->origin == SourceOrigin::context);
  REQUIRE(dir->ref);
  CHECK(dir->ref->source == "/some/dir");
  auto img = resolve_last_copy("FROM scratch\nCOPY --from=img /a /a\n", named);
  REQUIRE(img);
  CHECK(img->origin == SourceOrigin::image);
  CHECK(source_image(*img->ref) == "busybox:1");
  auto lay = resolve_last_copy("FROM scratch\nCOPY --from=lay /a /a\n", named);
  REQUIRE(lay);
  CHECK(lay->origin == SourceOrigin::oci_layout);
}
