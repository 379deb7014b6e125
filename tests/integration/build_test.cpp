// End-to-end builds: the real imgbuild binary builds Dockerfiles on a
// busybox-static base imported at test time; the result is read back through
// the docker-save output (manifest.json, config, layer tars) and checked file
// by file and field by field. The fidelity case builds the same Dockerfile
// with BuildKit v0.22 (the compat suite's oracle, ../shared/tools/buildkit)
// and compares.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "image_compare.hpp"
#include "support/require.hpp"
#include "util/hash.hpp"
#include "util/tar.hpp"

namespace fs = std::filesystem;
using imgbuild::test::buildkit_available;
using imgbuild::test::buildkit_tools_dir;
using imgbuild::test::read_saved;
using imgbuild::test::Saved;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::TempDir;
using imgbuild::test::write_file;
using nlohmann::json;

using namespace imgbuild::test::build;

TEST_CASE("build: multi-stage, ARG/ENV, WORKDIR/USER owners, RUN writes and deletes", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const char* df =
      "ARG BASE=busybox\n"
      "FROM ${BASE} AS build\n"
      "ARG GREETING=hello\n"
      "ENV APP_HOME=/app\n"
      "WORKDIR $APP_HOME\n"
      "COPY hello.txt ./\n"
      "RUN echo \"$GREETING from $APP_HOME\" > greeting && chmod 0640 greeting && rm /etc/group.bak 2>/dev/null; "
      "rm -f /tmp/gone && mkdir -p /data\n"
      "USER app\n"
      "WORKDIR /home/app/work\n"
      "RUN echo mine > mine.txt\n"
      "FROM build AS unused\n"
      "RUN exit 7\n"
      "FROM scratch\n"
      "COPY --from=build /app/greeting /greeting\n"
      "COPY --from=build --chown=1000:1000 /home/app/work/mine.txt /mine.txt\n"
      "EXPOSE 8080\n"
      "CMD [\"/greeting\"]\n";
  fs::path out = fx.work.path / "out.tar";
  RunResult r = fx.build("multi", df, {{"hello.txt", "hi\n"}},
                         {"-t", "multi:1", "-o", "type=docker,dest=" + out.string(), "--build-arg",
                          "GREETING=howdy", "--iidfile", (fx.work.path / "iid").string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("[build 3/6] COPY hello.txt ./") != std::string::npos);
  CHECK(r.err.find("exit 7") == std::string::npos);  // unused stage never built
  Saved s = read_saved(out, fx.work.path);
  REQUIRE(s.layers.size() == 2);
  CHECK(s.layers[0].at("greeting").content == "howdy from /app\n");
  CHECK(s.layers[0].at("greeting").mode == 0640);
  CHECK(s.layers[0].at("greeting").uid == 0);
  CHECK(s.layers[1].at("mine.txt").uid == 1000);
  CHECK(s.layers[1].at("mine.txt").gid == 1000);
  CHECK(s.layers[1].at("mine.txt").content == "mine\n");
  json cfg = s.config["config"];
  CHECK(cfg["Cmd"] == json::array({"/greeting"}));
  CHECK(cfg["ExposedPorts"] == json::parse(R"({"8080/tcp":{}})"));
  CHECK(cfg["Env"] == json::array({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}));
  CHECK(cfg["WorkingDir"] == "/");
  CHECK(history_created_by(s.config) ==
        std::vector<std::string>{"COPY /app/greeting /greeting # buildkit",
                                 "COPY --chown=1000:1000 /home/app/work/mine.txt /mine.txt # buildkit",
                                 "EXPOSE map[8080/tcp:{}]",
                                 "CMD [\"/greeting\"]"});
  CHECK(read_file(fx.work.path / "iid") == imgbuild::sha256(s.config_bytes).str());
  // The image is in the store under its name.
  RunResult ls = run_imgbuild(fx.root, {"image", "inspect", "multi:1"});
  CHECK(ls.status == 0);

  // The first stage alone: owners of WORKDIR dirs, the RUN layer, history.
  fs::path out2 = fx.work.path / "build.tar";
  RunResult r2 = fx.build("multi", df, {{"hello.txt", "hi\n"}},
                          {"--target", "build", "-o", "type=docker,dest=" + out2.string()});
  INFO(r2.err);
  REQUIRE(r2.status == 0);
  Saved b = read_saved(out2, fx.work.path);
  REQUIRE(b.layers.size() == 6);  // base, WORKDIR, COPY, RUN, WORKDIR, RUN
  CHECK(b.layers[1].at("app").type == "directory");
  CHECK(b.layers[1].at("app").uid == 0);
  CHECK(b.layers[2].at("app/hello.txt").content == "hi\n");
  CHECK(b.layers[3].count("data") == 1);
  CHECK(b.layers[4].at("home/app/work").uid == 1000);
  CHECK(b.layers[5].at("home/app/work/mine.txt").uid == 1000);
  std::vector<std::string> hist = history_created_by(b.config);
  REQUIRE(hist.size() >= 8);
  std::vector<std::string> tail(hist.end() - 8, hist.end());
  CHECK(tail[0] == "ARG GREETING=hello");
  CHECK(tail[1] == "ENV APP_HOME=/app");
  CHECK(tail[2] == "WORKDIR /app");
  CHECK(tail[3] == "COPY hello.txt ./ # buildkit");
  CHECK(tail[4].starts_with("RUN |1 GREETING=hello /bin/sh -c echo"));
  CHECK(tail[5] == "USER app");
  CHECK(b.config["config"]["User"] == "app");
  CHECK(b.config["config"]["WorkingDir"] == "/home/app/work");
}

TEST_CASE("build: ENTRYPOINT/CMD, HEALTHCHECK, ONBUILD, SHELL, LABEL", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const char* df =
      "FROM busybox AS parent\n"
      "ONBUILD RUN echo triggered > /onbuild.txt\n"
      "CMD [\"sh\"]\n"
      "FROM parent\n"
      "SHELL [\"/bin/sh\", \"-ec\"]\n"
      "ENTRYPOINT echo hi\n"
      "HEALTHCHECK --interval=30s --retries=2 CMD true\n"
      "LABEL a=b\n"
      "STOPSIGNAL SIGINT\n";
  fs::path out = fx.work.path / "out.tar";
  RunResult r = fx.build("meta", df, {}, {"-o", "type=docker,dest=" + out.string(), "--label", "x=y"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  Saved s = read_saved(out, fx.work.path);
  json cfg = s.config["config"];
  CHECK(cfg["Entrypoint"] == json::array({"/bin/sh", "-ec", "echo hi"}));
  CHECK_FALSE(cfg.contains("Cmd"));  // reset by ENTRYPOINT
  CHECK(cfg["Healthcheck"] == json::parse(R"({"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":2})"));
  CHECK(cfg["Labels"] == json::parse(R"({"a":"b","x":"y"})"));
  CHECK(cfg["StopSignal"] == "SIGINT");
  CHECK_FALSE(cfg.contains("OnBuild"));
  REQUIRE(s.layers.size() == 2);
  CHECK(s.layers[1].at("onbuild.txt").content == "triggered\n");
  CHECK(r.err.find("ONBUILD RUN echo triggered") != std::string::npos);
}

TEST_CASE("build: base layers stay packed until a step mounts them", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  auto unpacked_layers = [&] {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fx.root / "snapshots", ec)) {
      if (e.path().filename().string().size() == 64 && fs::is_directory(e.path() / "fs")) {
        ++n;
      }
    }
    return n;
  };
  // Metadata only: the export still carries the base layer, never unpacked.
  fs::path out = fx.work.path / "meta.tar";
  RunResult r = fx.build("packed", "FROM busybox\nLABEL only=metadata\n", {},
                         {"-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  Saved s = read_saved(out, fx.work.path);
  REQUIRE(s.layers.size() == 1);
  CHECK(s.layers[0].count("bin/busybox") == 1);
  CHECK(unpacked_layers() == 0);
  // A RUN mounts the base: it is unpacked then (and its own layer committed).
  r = fx.build("unpacked", "FROM busybox\nRUN echo hi > /hi\n", {}, {"-t", "unpacked:1"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(unpacked_layers() == 2);
}

TEST_CASE("build: a failing RUN reports the exit code and leaves the store unchanged", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  RunResult before = run_imgbuild(fx.root, {"images", "-q", "--no-trunc"});
  RunResult r = fx.build("fail", "FROM busybox\nRUN echo before\nRUN echo out; exit 3\n", {}, {"-t", "bad:1"});
  CHECK(r.status == 1);
  CHECK(r.err.find("process \"/bin/sh -c echo out; exit 3\" did not complete successfully: exit code: 3") !=
        std::string::npos);
  CHECK(r.err.find(">>> RUN echo out; exit 3") != std::string::npos);
  CHECK(r.err.find("out") != std::string::npos);
  RunResult after = run_imgbuild(fx.root, {"images", "-q", "--no-trunc"});
  CHECK(before.out == after.out);
  CHECK(run_imgbuild(fx.root, {"image", "inspect", "bad:1"}).status != 0);
  // Nothing stays mounted.
  CHECK(read_file("/proc/self/mountinfo").find(fx.root.string()) == std::string::npos);
}

TEST_CASE("build: same inputs give the same image id with SOURCE_DATE_EPOCH", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  // The last RUN appends to one path of a hardlink pair made in an earlier
  // layer: overlayfs copies up that path alone, and the copy snapshotter must
  // give the same layer. The last COPYs rewrite a.txt unchanged: its layer
  // holds it with both (the copier names what it wrote). --no-cache: each
  // build must run its steps.
  const char* df =
      "FROM busybox\nWORKDIR /w\nCOPY a.txt .\nRUN echo x > b && touch -d @5 b\n"
      "RUN echo h > /h1 && ln /h1 /h2\nRUN echo more >> /h1\nCOPY . .\nCOPY a.txt /w/\n";
  std::vector<std::string> ids;
  for (const char* snap : {"overlay", "copy", "overlay"}) {
    fs::path iid = fx.work.path / (std::string("iid-") + snap);
    RunResult r = fx.build("repro", df, {{"a.txt", "a\n"}},
                           {"--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000", "--snapshotter", snap,
                            "--iidfile", iid.string()});
    INFO(r.err);
    REQUIRE(r.status == 0);
    ids.push_back(read_file(iid));
  }
  CHECK(ids[0].starts_with("sha256:"));
  CHECK(ids[0] == ids[2]);
  CHECK(ids[0] == ids[1]);
}

TEST_CASE("build: outputs local and tar, metadata file, stdin Dockerfile", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  fs::path local = fx.work.path / "rootfs-out";
  fs::path tarball = fx.work.path / "rootfs.tar";
  fs::path md = fx.work.path / "md.json";
  RunResult r = fx.build("outs", "FROM busybox\nRUN echo made > /made && rm /etc/group\n", {},
                         {"-o", "type=local,dest=" + local.string(), "-o", "type=tar,dest=" + tarball.string(),
                          "--metadata-file", md.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(read_file(local / "made") == "made\n");
  CHECK_FALSE(fs::exists(local / "etc/group"));
  CHECK(fs::exists(local / "bin/busybox"));
  RunResult list = run_sh("tar -tf " + sh_quote(tarball.string()));
  CHECK(list.out.find("made") != std::string::npos);
  json meta = json::parse(read_file(md));
  CHECK(meta["containerimage.digest"].get<std::string>().starts_with("sha256:"));
  CHECK(meta["containerimage.config.digest"].get<std::string>().starts_with("sha256:"));

  // Dockerfile from stdin; `imgbuild -f - CONTEXT` is the build command.
  fs::path ctx = fx.work.path / "ctx-stdin";
  fs::create_directories(ctx);
  std::string cmd = "printf 'FROM busybox\\nRUN true\\n' | " + sh_quote(imgbuild::test::imgbuild_binary().string()) +
                    " --root " + sh_quote(fx.root.string()) + " -f - -t fromstdin:1 --progress plain " +
                    sh_quote(ctx.string());
  RunResult s = run_sh(cmd);
  INFO(s.err);
  CHECK(s.status == 0);
  CHECK(run_imgbuild(fx.root, {"image", "inspect", "fromstdin:1"}).status == 0);
  // Unknown base images are named in the error. The name points at a closed
  // loopback port so that the pull attempt never leaves this machine.
  RunResult missing = fx.build("missing", "FROM 127.0.0.1:9/nosuchimage:1\n", {});
  CHECK(missing.status == 1);
  CHECK(missing.err.find("nosuchimage:1") != std::string::npos);
  CHECK(missing.err.find("not found in the local store") != std::string::npos);
}

TEST_CASE("build: same config, history and layer files as BuildKit v0.22", "[integration][build][buildkit]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  IMGBUILD_REQUIRE_PREREQ(buildkit_available(), "BuildKit v0.22 does not start (scripts/services buildkit)");
  Fixture fx;
  const std::string base = "imgbuild-it/build-base";
  REQUIRE(run_imgbuild(fx.root, {"tag", "busybox", base}).status == 0);
  fs::path base_tar = fx.work.path / "base.tar";
  REQUIRE(run_imgbuild(fx.root, {"save", "-o", base_tar.string(), base}).status == 0);

  // Every metadata instruction.
  const char* df =
      "ARG BASE\n"
      "FROM ${BASE} AS parent\n"
      "ONBUILD RUN echo triggered > /onbuild.txt\n"
      "MAINTAINER someone\n"
      "FROM parent AS build\n"
      "ARG GREETING=hello\n"
      "ENV APP_HOME=/app PATH=/usr/bin:/bin\n"
      "LABEL org.example.a=\"x y\" b=$APP_HOME\n"
      "WORKDIR $APP_HOME\n"
      "WORKDIR /etc\n"
      "COPY hello.txt sub/ ./\n"
      "COPY --chown=app:app --chmod=0600 hello.txt /home/app/owned\n"
      "RUN true\n"
      "RUN echo \"$GREETING\" > greeting && rm /bin/true && ln -s greeting /etc/link && ln greeting hard && "
      "mkdir -p /var/empty && chmod 0700 /var/empty\n"
      "USER app\n"
      "WORKDIR /home/app/work\n"
      "RUN echo mine > mine.txt && id > id.txt\n"
      "EXPOSE 80 443/udp 7000-7001\n"
      "VOLUME /data\n"
      "SHELL [\"/bin/sh\", \"-ec\"]\n"
      "ENTRYPOINT echo hi\n"
      "STOPSIGNAL SIGINT\n"
      "HEALTHCHECK --interval=5s --start-period=1s CMD true\n"
      "FROM scratch\n"
      "COPY --from=build /etc/greeting /greeting\n"
      "COPY --from=build /etc/link /out/\n"
      "COPY --from=build /etc/hard /out/\n"
      "CMD [\"/greeting\"]\n";
  fs::path ctx = fx.work.path / "ctx-docker";
  fs::create_directories(ctx / "sub");
  write_file(ctx / "Dockerfile", df);
  write_file(ctx / "hello.txt", "hello\n");
  write_file(ctx / "sub" / "inner.txt", "inner\n");
  for (const std::string target : {"build", ""}) {
    fs::path ours = fx.work.path / ("ours-" + target + ".tar");
    fs::path theirs = fx.work.path / ("theirs-" + target + ".tar");
    std::vector<std::string> args = {"build", "--progress", "plain", "--build-arg", "BASE=" + base, "-o",
                                     "type=docker,dest=" + ours.string()};
    std::string target_flag;
    if (!target.empty()) {
      args.push_back("--target");
      args.push_back(target);
      target_flag = " --target " + target;
    }
    args.push_back(ctx.string());
    RunResult r = run_imgbuild(fx.root, args);
    INFO(r.err);
    REQUIRE(r.status == 0);
    RunResult d = run_sh(sh_quote((buildkit_tools_dir() / "build").string()) +
                         " --no-cache --network none --build-arg BASE=" + base + " --image " +
                         sh_quote(base + "=" + base_tar.string()) + target_flag + " -o " +
                         sh_quote(theirs.string()) + " " + sh_quote(ctx.string()));
    INFO(d.err);
    REQUIRE(d.status == 0);
    Saved a = read_saved(ours, fx.work.path);
    Saved b = read_saved(theirs, fx.work.path);
    std::string diff = imgbuild::test::compare_images(a, b, {});
    INFO(target << ": - imgbuild, + BuildKit v0.22\n" << diff);
    CHECK(diff.empty());
  }
}
