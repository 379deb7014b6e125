// Behaviours of BuildKit v0.22 (issue 13) that the compat suite cannot show
// on its own: failures (a compat case must build), the contrast between a
// build RUN and `imgbuild run`, and facts checked on one image across
// several steps. The compat cases (testdata/compat: copy-multi-*,
// copy-chmod-created-parents, history-copy-flags, run-id-groups,
// run-etc-files, run-dev-entries, …) compare the same rules with BuildKit.

#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "image_compare.hpp"
#include "support/require.hpp"
#include "util/hash.hpp"

namespace fs = std::filesystem;
using imgbuild::test::read_saved;
using imgbuild::test::run_imgbuild;
using imgbuild::test::RunResult;
using imgbuild::test::Saved;
using nlohmann::json;

using namespace imgbuild::test::build;

namespace {

std::vector<std::string> created_by_after_base(const Saved& s) {
  std::vector<std::string> out;
  const json history = s.config.value("history", json::array());
  for (size_t i = 1; i < history.size(); ++i) {
    out.push_back(history[i].value("created_by", ""));
  }
  return out;
}

}  // namespace

TEST_CASE("build: several sources onto a path without a trailing slash (BuildKit v0.22)",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const std::map<std::string, std::string> files = {{"a.txt", "a\n"}, {"b.txt", "b\n"}, {"dir/in.txt", "in\n"}};
  fs::path out = fx.work.path / "out.tar";
  RunResult r = fx.build("multi",
                         "FROM busybox\n"
                         "RUN mkdir /existing\n"
                         "COPY a.txt b.txt /existing\n"
                         "COPY a.txt b.txt /onto\n"
                         "COPY *.txt /wild\n"
                         "COPY dir a.txt /made\n",
                         files, {"-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles all = merged(read_saved(out, fx.work.path));
  CHECK(all.at("existing/a.txt").content == "a\n");
  CHECK(all.at("existing/b.txt").content == "b\n");
  CHECK(all.at("onto").type == "file");
  CHECK(all.at("onto").content == "b\n");  // the last source wins
  CHECK(all.at("wild").content == "b\n");  // each wildcard match in turn
  CHECK(all.at("made").type == "directory");
  CHECK(all.at("made/in.txt").content == "in\n");
  CHECK(all.at("made/a.txt").content == "a\n");

  // A directory source after a file on the same path fails, naming the
  // path and the instruction; the store is left as it was.
  RunResult before = run_imgbuild(fx.root, {"images", "-q", "--no-trunc"});
  RunResult bad = fx.build("bad", "FROM busybox\nCOPY a.txt dir /mixed\n", files, {"-t", "bad:1"});
  CHECK(bad.status != 0);
  CHECK(bad.err.find("cannot copy to non-directory: /mixed") != std::string::npos);
  CHECK(bad.err.find(">>> COPY a.txt dir /mixed") != std::string::npos);
  CHECK(run_imgbuild(fx.root, {"images", "-q", "--no-trunc"}).out == before.out);
  CHECK(run_imgbuild(fx.root, {"image", "inspect", "bad:1"}).status != 0);
}

TEST_CASE("build: parents COPY creates take an octal --chmod and the --chown owner", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  fs::path out = fx.work.path / "out.tar";
  RunResult r = fx.build("parents",
                         "FROM busybox\n"
                         "COPY --chmod=0750 f /usr/local/bin/f\n"
                         "COPY --chown=app:svc --chmod=1777 f /sticky/x/f\n"
                         "COPY --chmod=u=rwx,go=rx f /symbolic/y/f\n"
                         "ADD --chmod=0700 f /added/z/\n",
                         {{"f", "f\n"}}, {"-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles all = merged(read_saved(out, fx.work.path));
  for (const char* p : {"usr", "usr/local", "usr/local/bin"}) {
    INFO(p);
    CHECK(all.at(p).mode == 0750);
    CHECK(all.at(p).uid == 0);
  }
  CHECK(all.at("usr/local/bin/f").mode == 0750);
  // The 07000 bits reach the file, not the directories made for it.
  CHECK(all.at("sticky").mode == 0777);
  CHECK(all.at("sticky/x").mode == 0777);
  CHECK(all.at("sticky/x").uid == 1000);
  CHECK(all.at("sticky/x").gid == 1001);
  CHECK(all.at("sticky/x/f").mode == 01777);
  // A symbolic --chmod leaves created parents at 0755.
  CHECK(all.at("symbolic/y").mode == 0755);
  CHECK(all.at("symbolic/y/f").mode == 0755);
  CHECK(all.at("added/z").mode == 0700);
  CHECK(all.at("added/z/f").mode == 0700);
}

TEST_CASE("build: COPY/ADD history text keeps --chown, --chmod and heredoc names as BuildKit v0.22",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  fs::path out = fx.work.path / "out.tar";
  RunResult r = fx.build("history",
                         "FROM busybox AS src\n"
                         "COPY a.txt /f\n"
                         "FROM busybox\n"
                         "ARG WHO=app\n"
                         "COPY --chmod=600 --from=src --chown=$WHO:app /f /from.txt\n"
                         "COPY --link --chown=1000 a.txt /link.txt\n"
                         "COPY --parents --chmod=0700 ./d/in.txt /p/\n"
                         "COPY --exclude=*.md d /ex/\n"
                         "ADD --chmod=0751 --chown=svc:svc a.txt /added\n"
                         "COPY --chown=app <<EOT a.txt /h/\n"
                         "hello\n"
                         "EOT\n"
                         "RUN --mount=type=tmpfs,target=/t --network=none echo hi > /hi.txt\n",
                         {{"a.txt", "a\n"}, {"d/in.txt", "in\n"}, {"d/r.md", "md\n"}},
                         {"-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  Saved s = read_saved(out, fx.work.path);
  // --parents, --chown, --chmod in that order whatever the written order;
  // --from, --link, --exclude are not shown; heredocs after the sources.
  CHECK(created_by_after_base(s) ==
        std::vector<std::string>{"ARG WHO=app",
                                 "COPY --chown=app:app --chmod=600 /f /from.txt # buildkit",
                                 "COPY --chown=1000 a.txt /link.txt # buildkit",
                                 "COPY --parents --chmod=0700 ./d/in.txt /p/ # buildkit",
                                 "COPY d /ex/ # buildkit",
                                 "ADD --chown=svc:svc --chmod=0751 a.txt /added # buildkit",
                                 "COPY --chown=app a.txt <<EOT /h/ # buildkit",
                                 "RUN |1 WHO=app /bin/sh -c echo hi > /hi.txt # buildkit"});
}

TEST_CASE("build: a RUN has its primary gid among its groups, no /etc/hostname and no /dev/core, and imgbuild run "
          "keeps docker run's /etc/hostname",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const std::string probe =
      "for f in /etc/hosts /etc/resolv.conf /etc/hostname /dev/core; do "
      "if test -e $f || test -L $f; then echo $f yes; else echo $f no; fi; done";
  for (const char* isolation : {"namespaces", "chroot"}) {
    INFO(isolation);
    fs::path out = fx.work.path / (std::string("out-") + isolation + ".tar");
    RunResult r = fx.build(std::string("env-") + isolation,
                           "FROM busybox\n"
                           "RUN id -G > /root-groups && (" + probe + ") > /seen\n"
                           "USER app\n"
                           "RUN id -G > /tmp/app-groups\n"
                           "USER app:svc\n"
                           "RUN id -G > /tmp/app-svc-groups\n",
                           {}, {"--isolation", isolation, "--no-cache", "-t", "env:1", "-o", "type=docker,dest=" + out.string()});
    INFO(r.err);
    REQUIRE(r.status == 0);
    LayerFiles all = merged(read_saved(out, fx.work.path));
    CHECK(all.at("root-groups").content == "0\n");
    CHECK(all.at("tmp/app-groups").content == "1000 10 29\n");  // id -G: the gid, then the others
    CHECK(all.at("tmp/app-svc-groups").content == "1001\n");
    CHECK(all.at("seen").content == "/etc/hosts yes\n/etc/resolv.conf yes\n/etc/hostname no\n/dev/core no\n");
    CHECK(all.count("etc/hostname") == 0);
  }
  RunResult run = run_imgbuild(fx.root, {"run", "--rm", "env:1", "sh", "-c", "test -e /etc/hostname && echo named"});
  INFO(run.err);
  CHECK(run.status == 0);
  CHECK(run.out == "named\n");
}

TEST_CASE("build: ADD extracts GNU sparse entries, which BuildKit v0.22 refuses (DIFFERENCES.md)",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  fs::path ctx = fx.work.path / "ctx-sparse";
  fs::create_directories(ctx / "s");
  imgbuild::test::write_file(ctx / "Dockerfile", "FROM busybox\nADD gnu-sparse.tar /gnu/\n");
  // A 1 MiB file with two islands of data; GNU tar's old sparse format
  // (typeflag 'S') holds only the islands.
  RunResult made = imgbuild::test::run_sh(
      "cd " + imgbuild::test::sh_quote(ctx.string()) +
      " && truncate -s 1048576 s/sparse.bin && printf middle | dd of=s/sparse.bin bs=1 seek=500000 conv=notrunc"
      " 2>/dev/null && printf end | dd of=s/sparse.bin bs=1 seek=1048573 conv=notrunc 2>/dev/null"
      " && tar --sparse --format=gnu --owner=0 --group=0 --numeric-owner -cf gnu-sparse.tar -C s sparse.bin"
      " && rm -r s && od -An -c -j156 -N1 gnu-sparse.tar");
  INFO(made.err);
  REQUIRE(made.status == 0);
  REQUIRE(made.out.find('S') != std::string::npos);  // the entry really is a GNU sparse one
  fs::path out = fx.work.path / "out.tar";
  RunResult r = run_imgbuild(fx.root, {"build", "--progress", "plain", "-o", "type=docker,dest=" + out.string(),
                                       ctx.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles all = merged(read_saved(out, fx.work.path));
  std::string expected(1048576, '\0');
  expected.replace(500000, 6, "middle");
  expected.replace(1048573, 3, "end");
  CHECK(all.at("gnu/sparse.bin").size == expected.size());
  CHECK(all.at("gnu/sparse.bin").digest == imgbuild::sha256(expected).hex());
}
