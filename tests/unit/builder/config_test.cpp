#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "builder/config.hpp"
#include "builder/plan.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;
using nlohmann::json;

namespace {

// Runs the metadata instructions of the last stage over a base config.
StageState run_metadata(const std::string& dockerfile, const std::optional<image::ImageConfig>& base,
                        const BuildOptions& opts = {}) {
  auto plan = make_plan(dockerfile, opts);
  REQUIRE(plan);
  StageState st = start_stage(base, plan->platform, "2024-01-01T00:00:00Z");
  ArgInputs inputs{&plan->build_args, &plan->global_args};
  for (const auto& step : plan->stages.back().steps) {
    if (auto* run = step.as<parser::RunInstruction>()) {
      std::vector<std::string> argv = with_shell(st, run->command);
      add_history(st, run_history_text(st, argv), true, true);
      continue;
    }
    REQUIRE(is_metadata(step));
    auto eff = apply_metadata(st, step, inputs, plan->escape);
    REQUIRE(eff);
    if (eff->mkdir) {
      add_history(st, "WORKDIR " + *eff->mkdir, false, false);
    }
  }
  return st;
}

std::vector<std::string> created_by(const StageState& st) {
  std::vector<std::string> out;
  for (const auto& h : st.image.history) {
    out.push_back(h.created_by);
  }
  return out;
}

}  // namespace

TEST_CASE("config: scratch base gets PATH and WorkingDir /", "[builder]") {
  StageState st = run_metadata("FROM scratch\n", std::nullopt);
  json j = *st.image.config;
  CHECK(j == json::parse(R"({"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"})"));
}

TEST_CASE("config: metadata instructions and their history texts", "[builder]") {
  const char* df =
      "FROM scratch\n"
      "ENV A=1 B=\"two words\"\n"
      "ENV C=$A-${B}\n"
      "LABEL org.x=\"y z\" k=$A\n"
      "EXPOSE 80 443/TCP 7000-7001/udp\n"
      "VOLUME [\"/data\", \"/logs\"]\n"
      "WORKDIR /app\n"
      "WORKDIR sub/../src\n"
      "USER app:app\n"
      "STOPSIGNAL SIGTERM\n"
      "SHELL [\"/bin/bash\", \"-c\"]\n"
      "CMD echo hi\n"
      "HEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD curl -f http://localhost/\n"
      "MAINTAINER someone\n"
      "ONBUILD RUN echo triggered\n";
  StageState st = run_metadata(df, std::nullopt);
  json cfg = *st.image.config;
  json want = json::parse(R"({
    "User":"app:app",
    "ExposedPorts":{"443/tcp":{},"7000/udp":{},"7001/udp":{},"80/tcp":{}},
    "Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","A=1","B=two words","C=1-two words"],
    "Cmd":["/bin/bash","-c","echo hi"],
    "Volumes":{"/data":{},"/logs":{}},
    "WorkingDir":"/app/src",
    "Labels":{"k":"1","org.x":"y z"},
    "StopSignal":"SIGTERM",
    "ArgsEscaped":true,
    "Healthcheck":{"Test":["CMD-SHELL","curl -f http://localhost/"],"Interval":300000000000,"Timeout":3000000000,"Retries":3},
    "OnBuild":["RUN echo triggered"],
    "Shell":["/bin/bash","-c"]})");
  CHECK(cfg == want);
  CHECK(st.image.author == "someone");
  std::vector<std::string> want_history = {
      "ENV A=1 B=two words",
      "ENV C=1-two words",
      "LABEL org.x=y z k=1",
      "EXPOSE map[443/tcp:{} 7000/udp:{} 7001/udp:{} 80/tcp:{}]",
      "VOLUME [/data /logs]",
      "WORKDIR /app",
      "WORKDIR /app/src",
      "USER app:app",
      "STOPSIGNAL SIGTERM",
      "SHELL [/bin/bash -c]",
      "CMD [\"/bin/bash\" \"-c\" \"echo hi\"]",
      "HEALTHCHECK &{[\"CMD-SHELL\" \"curl -f http://localhost/\"] \"5m0s\" \"3s\" \"0s\" \"0s\" '\\x03'}",
      "MAINTAINER someone",
  };
  CHECK(created_by(st) == want_history);
  for (const auto& h : st.image.history) {
    CHECK(h.empty_layer);
    CHECK(h.comment == "buildkit.dockerfile.v0");
    CHECK(h.created == "2024-01-01T00:00:00Z");
  }
}

TEST_CASE("config: ENTRYPOINT resets an inherited CMD unless the stage set one", "[builder]") {
  image::ImageConfig base;
  base.architecture = "amd64";
  base.os = "linux";
  base.config = image::ContainerConfig{};
  base.config->cmd = std::vector<std::string>{"sh"};
  base.config->env = {"PATH=/bin", "X=1"};
  StageState st = run_metadata("FROM x\nENTRYPOINT [\"/bin/echo\"]\n", base);
  CHECK_FALSE(st.image.config->cmd.has_value());
  CHECK(st.image.config->env == std::vector<std::string>{"PATH=/bin", "X=1"});
  StageState st2 = run_metadata("FROM x\nCMD [\"a\"]\nENTRYPOINT [\"/bin/echo\"]\n", base);
  REQUIRE(st2.image.config->cmd.has_value());
  CHECK(*st2.image.config->cmd == std::vector<std::string>{"a"});
  CHECK(created_by(st2).back() == "ENTRYPOINT [\"/bin/echo\"]");
  StageState st3 = run_metadata("FROM x\nENTRYPOINT []random string\n", base);
  CHECK(*st3.image.config->entrypoint == std::vector<std::string>{"/bin/sh", "-c", "[]random string"});
}

TEST_CASE("config: HEALTHCHECK NONE is only Test NONE", "[builder]") {
  StageState st = run_metadata("FROM scratch\nHEALTHCHECK NONE\n", std::nullopt);
  CHECK(json(*st.image.config->healthcheck) == json::parse(R"({"Test":["NONE"]})"));
}

TEST_CASE("config: ARG scoping, RUN history and environment", "[builder]") {
  const char* df =
      "ARG G=global\n"
      "ARG UNUSED=u\n"
      "FROM scratch\n"
      "ARG G\n"
      "ARG foo=bar\n"
      "ARG empty=\n"
      "RUN ls /etc/\n"
      "ENV foo=fromenv\n"
      "ARG bar=123\n"
      "RUN echo $foo\n"
      "ENV X=env\n"
      "ARG X=arg\n";
  BuildOptions opts;
  opts.build_args = {{"bar", "456"}, {"HTTP_PROXY", "http://proxy:3128"}};
  StageState st = run_metadata(df, std::nullopt, opts);
  std::vector<std::string> hist = created_by(st);
  REQUIRE(hist.size() == 9);
  CHECK(hist[0] == "ARG G=global");
  CHECK(hist[1] == "ARG foo=bar");
  CHECK(hist[2] == "ARG empty=");
  CHECK(hist[3] == "RUN |3 G=global foo=bar empty= /bin/sh -c ls /etc/ # buildkit");
  CHECK(hist[5] == "ARG bar=456");
  CHECK(hist[6] == "RUN |4 G=global foo=fromenv empty= bar=456 /bin/sh -c echo $foo # buildkit");
  CHECK_FALSE(st.image.history[3].empty_layer);
  // Config Env keeps ENV values; ARGs stay out of it.
  CHECK(st.image.config->env ==
        std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                 "foo=fromenv", "X=env"});
  // The build env: a later ARG wins over ENV; proxies reach RUN only.
  REQUIRE(st.env.get("X") != nullptr);
  CHECK(*st.env.get("X") == "arg");
  CHECK(st.env.get("UNUSED") == nullptr);
  std::vector<std::string> env = run_environment(st, {{"HTTP_PROXY", "http://proxy:3128"}, {"bar", "456"}});
  CHECK(std::find(env.begin(), env.end(), "HTTP_PROXY=http://proxy:3128") != env.end());
  CHECK(std::find(env.begin(), env.end(), "G=global") != env.end());
}

TEST_CASE("config: helpers format like Go", "[builder]") {
  CHECK(go_duration(0) == "0s");
  CHECK(go_duration(90'000'000'000) == "1m30s");
  CHECK(go_duration(3'600'000'000'000) == "1h0m0s");
  CHECK(go_duration(1'500'000'000) == "1.5s");
  CHECK(go_duration(500'000'000) == "500ms");
  CHECK(format_rfc3339(0) == "1970-01-01T00:00:00Z");
  CHECK(format_rfc3339(1700000000, 120000000) == "2023-11-14T22:13:20.12Z");
  CHECK(go_quote_list({"a", "b c"}) == "[\"a\" \"b c\"]");
}

TEST_CASE("fill_history_created: undated metadata entries take the time of the layers around them", "[builder]") {
  auto entry = [](std::string created, std::string by) {
    image::HistoryEntry h;
    h.created = std::move(created);
    h.created_by = std::move(by);
    return h;
  };
  SECTION("before the first new layer: that layer's time; after a layer: the layer before") {
    std::vector<image::HistoryEntry> h = {entry("2020-01-01T00:00:00Z", "base"), entry("", "ENV"),
                                          entry("2026-01-01T00:00:00Z", "COPY"), entry("", "LABEL"),
                                          entry("2026-01-02T00:00:00Z", "RUN"), entry("", "CMD")};
    CHECK(fill_history_created(h) == "2026-01-02T00:00:00Z");
    CHECK(h[0].created == "2020-01-01T00:00:00Z");
    CHECK(h[1].created == "2026-01-01T00:00:00Z");
    CHECK(h[3].created == "2026-01-01T00:00:00Z");
    CHECK(h[5].created == "2026-01-02T00:00:00Z");
  }
  SECTION("no new layer: the last dated entry (the base's)") {
    std::vector<image::HistoryEntry> h = {entry("2020-01-01T00:00:00Z", "base"), entry("", "LABEL")};
    CHECK(fill_history_created(h) == "2020-01-01T00:00:00Z");
    CHECK(h[1].created == "2020-01-01T00:00:00Z");
  }
  SECTION("nothing dated: nothing to fill") {
    std::vector<image::HistoryEntry> h = {entry("", "LABEL")};
    CHECK(fill_history_created(h).empty());
    std::vector<image::HistoryEntry> none;
    CHECK(fill_history_created(none).empty());
  }
}
