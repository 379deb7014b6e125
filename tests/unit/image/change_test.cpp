#include <catch2/catch.hpp>

#include "image/change.hpp"

using namespace imgbuild::image;

TEST_CASE("change instructions apply to the config", "[image]") {
  ContainerConfig c;
  REQUIRE(apply_change(c, R"(CMD ["/bin/sh", "-c", "echo hi"])"));
  CHECK(*c.cmd == std::vector<std::string>{"/bin/sh", "-c", "echo hi"});
  REQUIRE(apply_change(c, "ENTRYPOINT top -b"));
  CHECK(*c.entrypoint == std::vector<std::string>{"/bin/sh", "-c", "top -b"});
  REQUIRE(apply_change(c, R"(ENV A=1 B="two words")"));
  REQUIRE(apply_change(c, "ENV A 3"));
  CHECK(c.env == std::vector<std::string>{"B=two words", "A=3"});
  REQUIRE(apply_change(c, "EXPOSE 80 53/UDP"));
  CHECK(c.exposed_ports == std::set<std::string>{"80/tcp", "53/udp"});
  REQUIRE(apply_change(c, "LABEL a=b c=d"));
  CHECK(c.labels.at("c") == "d");
  REQUIRE(apply_change(c, "user 1000:1000"));
  CHECK(c.user == "1000:1000");
  REQUIRE(apply_change(c, R"(VOLUME ["/data", "/logs"])"));
  REQUIRE(apply_change(c, "VOLUME /cache"));
  CHECK(c.volumes.size() == 3);
  REQUIRE(apply_change(c, "WORKDIR /app"));
  REQUIRE(apply_change(c, "WORKDIR sub"));
  CHECK(c.working_dir == "/app/sub");
  REQUIRE(apply_change(c, "STOPSIGNAL SIGKILL"));
  CHECK(c.stop_signal == "SIGKILL");
  REQUIRE(apply_change(c, "ONBUILD RUN echo"));
  CHECK(c.on_build == std::vector<std::string>{"RUN echo"});
}

TEST_CASE("change refuses other instructions and bad arguments", "[image]") {
  ContainerConfig c;
  auto run = apply_change(c, "RUN echo");
  REQUIRE_FALSE(run);
  CHECK(run.error().message.find("RUN is not supported") != std::string::npos);
  CHECK_FALSE(apply_change(c, "CMD"));
  CHECK_FALSE(apply_change(c, "EXPOSE http"));
  CHECK_FALSE(apply_change(c, "ENV =x"));
  CHECK_FALSE(apply_change(c, R"(ENV A="unterminated)"));
}
