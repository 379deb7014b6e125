// The .dockerignore-filtered context where it is seen as a directory: RUN
// --mount=type=bind from the build context and from a named context dir,
// and a named context dir as a FROM base (its own .dockerignore applies, as
// BuildKit loads named local contexts) with its history entry.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::RunResult;
using imgbuild::test::write_file;
using namespace imgbuild::test::build;

namespace {

// Whether the plain-progress step whose header contains `header` was cached.
bool step_cached(const std::string& log, const std::string& header) {
  size_t at = log.find(header);
  REQUIRE(at != std::string::npos);
  size_t hash = log.rfind('#', at);
  REQUIRE(hash != std::string::npos);
  std::string id = log.substr(hash, log.find(' ', hash) - hash);
  return log.find("\n" + id + " CACHED\n") != std::string::npos;
}

}  // namespace

TEST_CASE("build context filter: a bind mount of the context shows what .dockerignore leaves",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  const std::string df =
      "FROM busybox\n"
      "RUN --mount=type=bind,target=/ctx cd /ctx && find . | sort > /seen && stat -c %a sub > /sub-mode\n"
      "RUN --mount=type=bind,source=sub,target=/s,rw ls /s > /sub-seen && touch /s/written\n";
  std::map<std::string, std::string> files = {
      {".dockerignore", "secret.txt\nlogs\n!logs/keep.txt\nsub/*.tmp\n"},
      {"secret.txt", "one\n"},
      {"logs/a.log", "log\n"},
      {"logs/keep.txt", "kept\n"},
      {"sub/x.tmp", "tmp\n"},
      {"sub/y.txt", "y\n"},
  };
  fs::path out = fx.work.path / "filtered.tar";
  // The fixture writes the context, then sub gets an unusual mode, which
  // the mount must still show although the filter holds a copy of sub.
  RunResult prep = fx.build("bind", "FROM busybox\n", files);
  REQUIRE(prep.status == 0);
  REQUIRE(::chmod((fx.work.path / "ctx-bind" / "sub").c_str(), 0751) == 0);
  RunResult r = fx.build("bind", df, {}, {"-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles got = merged(read_saved(out, fx.work.path));
  const std::string& seen = got.at("seen").content;
  INFO(seen);
  CHECK(seen.find("./sub/y.txt\n") != std::string::npos);
  CHECK(seen.find("./logs/keep.txt\n") != std::string::npos);
  CHECK(seen.find("./Dockerfile\n") != std::string::npos);
  CHECK(seen.find("secret.txt") == std::string::npos);
  CHECK(seen.find("a.log") == std::string::npos);
  CHECK(seen.find("x.tmp") == std::string::npos);
  CHECK(got.at("sub-mode").content == "751\n");
  CHECK(got.at("sub-seen").content == "y.txt\n");
  CHECK(got.count("s/written") == 0);
  CHECK_FALSE(fs::exists(fx.work.path / "ctx-bind" / "sub" / "written"));  // rw writes are discarded

  // Changing an ignored file leaves both steps cached.
  write_file(fx.work.path / "ctx-bind" / "secret.txt", "two\n");
  write_file(fx.work.path / "ctx-bind" / "sub" / "x.tmp", "changed\n");
  RunResult again = fx.build("bind", df, {});
  INFO(again.err);
  REQUIRE(again.status == 0);
  CHECK(step_cached(again.err, "RUN --mount=type=bind,target=/ctx"));
  CHECK(step_cached(again.err, "RUN --mount=type=bind,source=sub"));

  // A mount source that .dockerignore hides is not found.
  RunResult hidden = fx.build("bind", "FROM busybox\nRUN --mount=type=bind,source=logs/a.log,target=/a cat /a\n", {});
  CHECK(hidden.status == 1);
  CHECK(hidden.err.find("\"/logs/a.log\": not found") != std::string::npos);
}

TEST_CASE("build context filter: a named context dir applies its own .dockerignore", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  Fixture fx;
  fs::path extra = fx.work.path / "extra";
  fs::create_directories(extra / "d");
  write_file(extra / ".dockerignore", "ignored.txt\nd/*.o\n");
  write_file(extra / "ignored.txt", "no\n");
  write_file(extra / "keep.txt", "yes\n");
  write_file(extra / "d" / "a.o", "obj\n");
  write_file(extra / "d" / "a.c", "src\n");
  const char* df =
      "FROM extra AS fromdir\n"
      "FROM busybox\n"
      "COPY --from=extra / /copied/\n"
      "RUN --mount=type=bind,from=extra,target=/m cd /m && find . | sort > /mounted\n";
  fs::path out = fx.work.path / "named.tar";
  RunResult r = fx.build("named", df, {}, {"--build-context", "extra=" + extra.string(), "-o",
                                           "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  Saved image = read_saved(out, fx.work.path);
  LayerFiles files = merged(image);
  // COPY --from a named context reads in history as from a stage: no --from.
  std::vector<std::string> history = history_created_by(image.config);
  CHECK(std::find(history.begin(), history.end(), "COPY / /copied/ # buildkit") != history.end());
  CHECK(files.at("copied/keep.txt").content == "yes\n");
  CHECK(files.at("copied/d/a.c").content == "src\n");
  CHECK(files.count("copied/ignored.txt") == 0);
  CHECK(files.count("copied/d/a.o") == 0);
  const std::string& mounted = files.at("mounted").content;
  INFO(mounted);
  CHECK(mounted.find("./keep.txt\n") != std::string::npos);
  CHECK(mounted.find("./d/a.c\n") != std::string::npos);
  CHECK(mounted.find("ignored.txt") == std::string::npos);
  CHECK(mounted.find("a.o") == std::string::npos);

  // As a base: one layer without the ignored files, and a history entry
  // that says where the layer came from.
  fs::path base = fx.work.path / "base.tar";
  RunResult b = fx.build("named", df, {}, {"--build-context", "extra=" + extra.string(), "--target", "fromdir",
                                           "-o", "type=docker,dest=" + base.string()});
  INFO(b.err);
  REQUIRE(b.status == 0);
  Saved s = read_saved(base, fx.work.path);
  REQUIRE(s.layers.size() == 1);
  CHECK(s.layers[0].count("keep.txt") == 1);
  CHECK(s.layers[0].count("d/a.c") == 1);
  CHECK(s.layers[0].count("ignored.txt") == 0);
  CHECK(s.layers[0].count("d/a.o") == 0);
  REQUIRE(s.config["history"].size() == 1);
  CHECK(s.config["history"][0].value("created_by", "") == "local source for extra");
  CHECK(s.config["history"][0].value("comment", "") == "buildkit.exporter.image.v0");
  CHECK_FALSE(s.config["history"][0].value("empty_layer", false));
}

TEST_CASE("build context filter: a store inside the context, ignored", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_busybox(), "busybox-static is not installed (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "builds need root (namespaces, overlayfs)");
  // The layout CI jobs use: `imgbuild --root .store build .` with .store in
  // .dockerignore. The store cannot lie above the context in an overlay.
  imgbuild::test::TempDir work;
  fs::path ctx = work.path / "ctx";
  fs::path store = ctx / ".store";
  fs::create_directories(ctx / "sub");
  write_file(ctx / ".dockerignore", ".store\nsecret\n");
  write_file(ctx / "secret", "no\n");
  write_file(ctx / "sub" / "f", "f\n");
  write_file(ctx / "Dockerfile",
             "FROM busybox\n"
             "RUN --mount=type=bind,target=/c cd /c && find . | sort > /seen\n"
             "RUN --mount=type=bind,source=sub,target=/s,rw cat /s/f > /f && touch /s/new\n");
  fs::path tarball = work.path / "busybox.tar";
  write_file(tarball, imgbuild::test::busybox_rootfs_tar());
  RunResult imp = imgbuild::test::run_imgbuild(store, {"import", tarball.string(), "busybox"});
  REQUIRE(imp.status == 0);
  fs::path out = work.path / "out.tar";
  RunResult r = imgbuild::test::run_imgbuild(
      store, {"build", "--progress", "plain", "-o", "type=docker,dest=" + out.string(), ctx.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles files = merged(read_saved(out, work.path));
  const std::string& seen = files.at("seen").content;
  INFO(seen);
  CHECK(seen.find("./sub/f\n") != std::string::npos);
  CHECK(seen.find(".store") == std::string::npos);
  CHECK(seen.find("secret") == std::string::npos);
  CHECK(files.at("f").content == "f\n");
  CHECK_FALSE(fs::exists(ctx / "sub" / "new"));
}
