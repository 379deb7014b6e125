// GCC 12 reports a false maybe-uninitialized for std::optional<std::string>
// members assigned in a default-constructed aggregate (BuildOptions).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <catch2/catch.hpp>

#include <algorithm>

#include "builder/plan.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;

TEST_CASE("plan: only the stages the target needs, in order", "[builder]") {
  const char* df =
      "FROM busybox AS base\nRUN echo base\n"
      "FROM base AS unused\nRUN exit 1\n"
      "FROM scratch AS other\nCOPY x y\n"
      "FROM base\nCOPY --from=other y z\n";
  auto plan = make_plan(df, {});
  REQUIRE(plan);
  REQUIRE(plan->stages.size() == 3);
  CHECK(plan->stages[0].name == "base");
  CHECK(plan->stages[0].base.kind == BaseKind::image);
  CHECK(plan->stages[0].base.name == "busybox");
  CHECK(plan->stages[1].name == "other");
  CHECK(plan->stages[1].base.kind == BaseKind::scratch);
  CHECK(plan->stages[2].display_name == "stage-3");
  CHECK(plan->stages[2].base.kind == BaseKind::stage);
  CHECK(plan->stages[2].base.stage == 0);
  CHECK(plan->stages[2].needs == std::vector<int>{0, 2});
  CHECK(plan->target == 3);
}

TEST_CASE("plan: target selection and unknown targets", "[builder]") {
  const char* df = "FROM busybox AS build\nRUN true\nFROM scratch\n";
  BuildOptions opts;
  opts.target = "build";
  auto plan = make_plan(df, opts);
  REQUIRE(plan);
  CHECK(plan->stages.size() == 1);
  opts.target = "bulid";
  auto bad = make_plan(df, opts);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("did you mean build?") != std::string::npos);
}

TEST_CASE("plan: global ARGs, build args and predefined platform ARGs", "[builder]") {
  const char* df = "ARG BASE=busy\nARG TAG=${BASE}box\nFROM ${TAG}:1\nRUN true\n";
  auto plan = make_plan(df, {});
  REQUIRE(plan);
  CHECK(plan->stages[0].base.name == "busybox:1");
  REQUIRE(plan->global_arg("TAG") != nullptr);
  CHECK(*plan->global_arg("TAG") == "busybox");
  REQUIRE(plan->global_arg("TARGETPLATFORM") != nullptr);
  CHECK(*plan->global_arg("TARGETPLATFORM") == host_platform().str());
  BuildOptions opts;
  opts.build_args = {{"BASE", "alp"}};
  auto plan2 = make_plan(df, opts);
  REQUIRE(plan2);
  CHECK(plan2->stages[0].base.name == "alpbox:1");
}

TEST_CASE("plan: named contexts replace images, platform must parse", "[builder]") {
  const char* df = "FROM base\nCOPY --from=files a b\n";
  BuildOptions opts;
  opts.named_contexts = {{"base", "docker-image://busybox"}, {"files", "/tmp/x"}};
  auto plan = make_plan(df, opts);
  REQUIRE(plan);
  CHECK(plan->stages[0].base.kind == BaseKind::context);
  CHECK(plan->stages[0].base.source == "docker-image://busybox");
  SourceRef ref = plan->resolve_source("files", 0);
  CHECK(ref.kind == BaseKind::context);
  CHECK(ref.source == "/tmp/x");
  CHECK(plan->resolve_source("alpine", 0).kind == BaseKind::image);
  opts.platform = "linux/arm64/v8/extra";
  CHECK_FALSE(make_plan(df, opts));
  opts.platform = "linux/amd64,linux/arm64";  // one plan per platform
  CHECK_FALSE(make_plan(df, opts));
  opts.platform = host_platform().str();
  CHECK(make_plan(df, opts));
}

TEST_CASE("plan: --platform sets the target platform ARGs, the build ones stay the host's", "[builder][platform]") {
  const char* df =
      "ARG TARGETARCH\n"
      "FROM --platform=$BUILDPLATFORM busybox AS cross\n"
      "FROM busybox-${TARGETARCH} AS final\n"
      "COPY --from=cross /a /a\n"
      "FROM final\n";
  BuildOptions opts;
  opts.platform = "linux/arm/v6";
  auto plan = make_plan(df, opts);
  REQUIRE(plan);
  auto arg = [&](const char* name) { return plan->global_arg(name) != nullptr ? *plan->global_arg(name) : "<unset>"; };
  Platform host = host_platform();
  CHECK(arg("TARGETPLATFORM") == "linux/arm/v6");
  CHECK(arg("TARGETOS") == "linux");
  CHECK(arg("TARGETARCH") == "arm");
  CHECK(arg("TARGETVARIANT") == "v6");
  CHECK(arg("BUILDPLATFORM") == host.str());
  CHECK(arg("BUILDOS") == host.os);
  CHECK(arg("BUILDARCH") == host.architecture);
  CHECK(arg("BUILDVARIANT") == host.variant);
  CHECK(plan->explicit_platform);
  CHECK(plan->platform.str() == "linux/arm/v6");
  REQUIRE(plan->stages.size() == 3);
  CHECK(plan->stages[0].platform == host);           // FROM --platform=$BUILDPLATFORM
  CHECK(plan->stages[1].base.name == "busybox-arm");  // global TARGETARCH in FROM
  CHECK(plan->stages[1].platform.str() == "linux/arm/v6");
  CHECK(plan->stages[2].platform.str() == "linux/arm/v6");  // FROM final: its parent's
  // COPY --from / mount from= images resolve for the referring stage's platform.
  CHECK(plan->resolve_source("alpine", 0).platform == host);
  CHECK(plan->resolve_source("alpine", 1).platform.str() == "linux/arm/v6");

  // Normalised as BuildKit does: aarch64 and arm64/v8 are linux/arm64, no variant.
  opts.platform = "linux/aarch64";
  plan = make_plan(df, opts);
  REQUIRE(plan);
  CHECK(arg("TARGETPLATFORM") == "linux/arm64");
  CHECK(arg("TARGETVARIANT").empty());
  opts.platform = "linux/arm64/v8";
  plan = make_plan(df, opts);
  REQUIRE(plan);
  CHECK(arg("TARGETPLATFORM") == "linux/arm64");

  // A build arg overrides a predefined one; without --platform the target is the host.
  plan = make_plan(df, BuildOptions{});
  REQUIRE(plan);
  CHECK_FALSE(plan->explicit_platform);
  CHECK(arg("TARGETPLATFORM") == host.str());
  BuildOptions over;
  over.build_args = {{"TARGETARCH", "riscv64"}};
  plan = make_plan(df, over);
  REQUIRE(plan);
  CHECK(arg("TARGETARCH") == "riscv64");
  CHECK(plan->stages[1].base.name == "busybox-riscv64");
}

TEST_CASE("plan: FROM --platform that does not parse names the line", "[builder][platform]") {
  auto plan = make_plan("FROM --platform=linux/a*b busybox\n", {});
  REQUIRE_FALSE(plan);
  CHECK(plan.error().message.find("failed to parse platform \"linux/a*b\" of FROM --platform on line 1") !=
        std::string::npos);
}

TEST_CASE("plan: SOURCE_DATE_EPOCH from build arg or environment", "[builder]") {
  BuildOptions opts;
  opts.source_date_epoch_env.emplace("100");
  auto p = make_plan("FROM scratch\n", opts);
  REQUIRE(p);
  CHECK(p->source_date_epoch == 100);
  opts.build_args = {{"SOURCE_DATE_EPOCH", "200"}};
  p = make_plan("FROM scratch\n", opts);
  REQUIRE(p);
  CHECK(p->source_date_epoch == 200);
  opts.build_args = {{"SOURCE_DATE_EPOCH", "x"}};
  auto bad = make_plan("FROM scratch\n", opts);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "invalid SOURCE_DATE_EPOCH: x");
}

TEST_CASE("plan: Dockerfile errors are reported, forward refs only when needed", "[builder]") {
  CHECK_FALSE(make_plan("RUN x\n", {}));
  const char* df = "FROM scratch AS a\nCOPY --from=b x y\nFROM scratch AS b\nFROM scratch AS c\n";
  BuildOptions opts;
  opts.target = std::string("c");  // not `= "c"`: GCC 12 -O3 -Wrestrict false positive (bug 105329)
  CHECK(make_plan(df, opts));
  opts.target = std::string("a");
  auto bad = make_plan(df, opts);
  REQUIRE_FALSE(bad);
}

TEST_CASE("plan: stages named by ONBUILD triggers of the base are needed", "[builder]") {
  // A stage base: the parent's ONBUILD lines are known from the Dockerfile.
  const char* df =
      "FROM busybox AS helper\nRUN echo helper\n"
      "FROM scratch AS tool\nCOPY t t\n"
      "FROM busybox AS parent\n"
      "ONBUILD COPY --from=helper /a /a\n"
      "ONBUILD RUN --mount=type=bind,from=tool,target=/t true\n"
      "FROM parent\n";
  auto plan = make_plan(df, {});
  REQUIRE(plan);
  REQUIRE(plan->stages.size() == 4);
  CHECK(plan->stages[3].needs == std::vector<int>{0, 1, 2});

  // The parent itself does not run its own triggers: it needs neither.
  BuildOptions parent_only;
  parent_only.target = "parent";
  auto p2 = make_plan(df, parent_only);
  REQUIRE(p2);
  REQUIRE(p2->stages.size() == 1);
  CHECK(p2->stages[0].needs.empty());

  // An image base: the triggers come from the hook.
  const char* df2 = "FROM busybox AS helper\nRUN echo helper\nFROM scratch AS unused\nFROM onbuild-image\n";
  BuildOptions opts;
  std::vector<std::string> asked;
  opts.base_onbuild = [&asked](const std::string& image) -> std::optional<std::vector<std::string>> {
    asked.push_back(image);
    if (image == "onbuild-image") {
      return std::vector<std::string>{"COPY --from=helper /a /a", "RUN echo plain"};
    }
    return std::nullopt;
  };
  auto p3 = make_plan(df2, opts);
  REQUIRE(p3);
  REQUIRE(p3->stages.size() == 2);
  CHECK(p3->stages[0].name == "helper");
  CHECK(p3->stages[1].needs == std::vector<int>{0});
  CHECK(std::find(asked.begin(), asked.end(), "onbuild-image") != asked.end());

  // A trigger naming a later stage is an error.
  auto p4 = make_plan("FROM onbuild-image AS first\nFROM busybox AS helper\n", [&] {
    BuildOptions o;
    o.target = "first";
    o.base_onbuild = opts.base_onbuild;
    return o;
  }());
  REQUIRE_FALSE(p4);
  CHECK(p4.error().message.find("needs to be defined before current stage") != std::string::npos);
}

TEST_CASE("plan: FROM --platform must name a platform, after global ARG expansion", "[builder]") {
  auto bad = make_plan("FROM scratch\nFROM --platform=bogus scratch AS b\n", {});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == Errc::invalid_argument);
  CHECK(bad.error().message.find("\"bogus\"") != std::string::npos);
  REQUIRE(bad.error().location);
  CHECK(bad.error().location->line == 2);
  // containerd's Parse checks the architecture of one word only:
  // "linux/notanarch" parses (BuildKit fails later, resolving the base).
  auto bad_arg = make_plan("ARG P=linux/not.an/arch/x\nFROM --platform=$P scratch\n", {});
  REQUIRE_FALSE(bad_arg);
  CHECK(bad_arg.error().message.find("\"linux/not.an/arch/x\"") != std::string::npos);
  CHECK(make_plan("ARG P=linux/notanarch\nFROM --platform=$P scratch\n", {}));
  CHECK(make_plan("FROM --platform=$BUILDPLATFORM scratch\n", {}));
  CHECK(make_plan("FROM --platform=linux/arm64/v8 scratch\n", {}));
  CHECK(make_plan("FROM --platform=linux/amd64 scratch\n", {}));
}
