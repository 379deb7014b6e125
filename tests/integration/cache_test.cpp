// The build cache end to end: the real binary builds real Dockerfiles on a
// busybox base twice (or more) in one store and the metadata file's per-step
// counters (cached yes/no, reason) are checked — counters, never timings.

#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::busybox_rootfs_tar;
using imgbuild::test::import_tar;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::TempDir;
using imgbuild::test::write_file;
using nlohmann::json;

namespace {

struct Step {
  std::string name;
  bool cached = false;
  std::string reason;
};

// A store with a busybox base and one context directory.
struct CacheFixture {
  TempDir work;
  fs::path root;
  fs::path ctx;
  int builds = 0;

  CacheFixture() {
    root = work.path / "store";
    ctx = work.path / "ctx";
    fs::create_directories(ctx);
    import_tar(root, work.path / "busybox.tar", busybox_rootfs_tar(), "busybox");
  }

  void put(const std::string& rel, const std::string& body) {
    fs::create_directories((ctx / rel).parent_path());
    write_file(ctx / rel, body);
  }

  // Builds the context; returns the steps from the metadata file.
  std::vector<Step> build(std::vector<std::string> extra = {}, const std::string& prefix = "",
                          const fs::path& context = {}) {
    RunResult ignored;
    return build_with(ignored, std::move(extra), prefix, context);
  }

  // The same, keeping the command's output in `r`.
  std::vector<Step> build_with(RunResult& r, std::vector<std::string> extra = {}, const std::string& prefix = "",
                               const fs::path& context = {}) {
    fs::path md = work.path / ("md-" + std::to_string(++builds) + ".json");
    std::string cmd = prefix + sh_quote(imgbuild::test::imgbuild_binary().string()) + " --root " +
                      sh_quote(root.string()) + " build --progress plain --metadata-file " + sh_quote(md.string());
    for (const auto& e : extra) {
      cmd += ' ';
      cmd += sh_quote(e);
    }
    cmd += ' ';
    cmd += sh_quote((context.empty() ? ctx : context).string());
    r = run_sh(cmd);
    INFO(r.err);
    REQUIRE(r.status == 0);
    std::vector<Step> out;
    json meta = json::parse(read_file(md));
    for (const auto& s : meta["imgbuild.steps"]) {
      out.push_back({s["name"].get<std::string>(), s["cached"].get<bool>(), s.value("cache_reason", "")});
    }
    return out;
  }
};

size_t cached_count(const std::vector<Step>& steps) {
  size_t n = 0;
  for (const auto& s : steps) {
    n += s.cached ? 1 : 0;
  }
  return n;
}

std::string describe(const std::vector<Step>& steps) {
  std::string out;
  for (const auto& s : steps) {
    out += s.name + (s.cached ? " CACHED" : " MISS: " + s.reason) + "\n";
  }
  return out;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) {
      nl = text.size();
    }
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

bool prerequisites() { return fs::exists("/bin/busybox") && ::geteuid() == 0; }

}  // namespace

TEST_CASE("cache: a rebuild is all cached - touch and mtime and umask keep it cached - one changed byte misses from its COPY",
          "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("Dockerfile",
         "FROM busybox\n"
         "COPY a.txt /a.txt\n"
         "RUN cat /a.txt > /copy\n"
         "COPY src/ /src/\n"
         "RUN ls /src > /list\n");
  fx.put("a.txt", "alpha\n");
  fx.put("src/main.c", "int main(void) { return 0; }\n");
  fx.put("src/util.c", "void util(void) {}\n");

  auto first = fx.build();
  INFO(describe(first));
  REQUIRE(first.size() == 4);
  CHECK(cached_count(first) == 0);
  CHECK(first[0].reason == "first build");

  auto second = fx.build();
  INFO(describe(second));
  CHECK(cached_count(second) == 4);

  // touch: new mtime and ctime, same content.
  REQUIRE(run_sh("touch " + sh_quote((fx.ctx / "src/main.c").string())).status == 0);
  auto touched = fx.build();
  INFO(describe(touched));
  CHECK(cached_count(touched) == 4);

  // An old mtime set explicitly.
  REQUIRE(run_sh("touch -d 2001-02-03T04:05:06 " + sh_quote((fx.ctx / "a.txt").string())).status == 0);
  auto old_mtime = fx.build();
  INFO(describe(old_mtime));
  CHECK(cached_count(old_mtime) == 4);

  // The builder running under another umask.
  auto umasked = fx.build({}, "umask 077; ");
  INFO(describe(umasked));
  CHECK(cached_count(umasked) == 4);

  // One changed byte in src/util.c: the first COPY and RUN stay cached.
  fx.put("src/util.c", "void util(void) {}\r");
  auto changed = fx.build();
  INFO(describe(changed));
  REQUIRE(changed.size() == 4);
  CHECK(changed[0].cached);
  CHECK(changed[1].cached);
  CHECK_FALSE(changed[2].cached);
  CHECK(changed[2].reason == "COPY src/ /src/: src/util.c changed");
  CHECK_FALSE(changed[3].cached);
  CHECK(changed[3].reason == "a previous step changed");

  // The same change again: cached.
  CHECK(cached_count(fx.build()) == 4);
}

TEST_CASE("cache: COPY --from is keyed by what it copies - an unchanged artifact of a rebuilt stage stays cached",
          "[integration][cache]") {
  // Issue 16: a comment added to main.c rebuilds the build stage, whose
  // artifact comes out byte for byte the same; BuildKit then shows the
  // COPY --from and every step after it CACHED (its copy key is the
  // checksum of the files copied), and so must imgbuild.
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("Dockerfile",
         "FROM busybox AS build\n"
         "COPY main.c /src/main.c\n"
         "RUN grep -v '^//' /src/main.c > /app.bin\n"
         "FROM busybox\n"
         "COPY --from=build /app.bin /app/app.bin\n"
         "RUN wc -c /app/app.bin > /size\n");
  fx.put("main.c", "int main(void) { return 0; }\n");
  auto find = [](const std::vector<Step>& steps, const std::string& prefix) {
    for (const auto& s : steps) {
      if (s.name.find(prefix) != std::string::npos) {
        return s;
      }
    }
    FAIL("no step " << prefix);
    return Step{};
  };
  auto first = fx.build();
  INFO(describe(first));
  REQUIRE(first.size() == 4);
  CHECK(cached_count(first) == 0);

  fx.put("main.c", "// a comment only\nint main(void) { return 0; }\n");
  auto commented = fx.build();
  INFO(describe(commented));
  CHECK_FALSE(find(commented, "COPY main.c").cached);
  CHECK_FALSE(find(commented, "RUN grep").cached);
  CHECK(find(commented, "COPY --from=build").cached);
  CHECK(find(commented, "RUN wc").cached);

  // The artifact itself changes: the COPY --from and what follows run.
  fx.put("main.c", "int main(void) { return 1; }\n");
  auto changed = fx.build();
  INFO(describe(changed));
  CHECK_FALSE(find(changed, "COPY --from=build").cached);
  CHECK_FALSE(find(changed, "RUN wc").cached);
}

TEST_CASE("cache: a first build says so - a miss names the step that differs from the last build of the same Dockerfile",
          "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("a.txt", "alpha\n");
  fx.put("one.Dockerfile",
         "FROM busybox\n"
         "ARG FOO=/x\n"
         "ENV BAR=1\n"
         "WORKDIR /w\n"
         "COPY a.txt .\n"
         "RUN echo one > /one\n");
  // Another Dockerfile on the same base, with other ARG, ENV and WORKDIR
  // lines: its first build is a first build too, not "instruction changed".
  fx.put("two.Dockerfile",
         "FROM busybox\n"
         "ARG FOO=/y\n"
         "ENV BAR=2\n"
         "WORKDIR /v\n"
         "COPY a.txt .\n"
         "RUN echo two > /two\n");
  auto file = [&](const char* name) { return std::vector<std::string>{"-f", (fx.ctx / name).string()}; };
  RunResult r;
  auto one = fx.build_with(r, file("one.Dockerfile"));
  INFO(describe(one) << r.err);
  REQUIRE(one.size() == 3);
  for (const auto& s : one) {
    CHECK(s.reason == "first build");
  }
  CHECK(r.err.find("cache miss") == std::string::npos);
  auto two = fx.build_with(r, file("two.Dockerfile"));
  INFO(describe(two) << r.err);
  REQUIRE(two.size() == 3);
  for (const auto& s : two) {
    CHECK(s.reason == "first build");
  }
  CHECK(r.err.find("cache miss") == std::string::npos);

  // An edit of two.Dockerfile is explained against two's last build.
  fx.put("two.Dockerfile",
         "FROM busybox\n"
         "ARG FOO=/y\n"
         "ENV BAR=3\n"
         "WORKDIR /v\n"
         "COPY a.txt .\n"
         "RUN echo two > /two\n");
  auto edited = fx.build_with(r, file("two.Dockerfile"));
  INFO(describe(edited) << r.err);
  REQUIRE(edited.size() == 3);
  CHECK(edited[0].reason == "ENV BAR=3: instruction changed");
  CHECK(edited[1].reason == "a previous step changed");
  // The note is a progress line of its own (no timestamp), once.
  CHECK(r.err.find("cache miss: ENV BAR=3: instruction changed\n") != std::string::npos);
  CHECK(r.err.find("0.000 cache miss") == std::string::npos);

  // --no-cache says so, for every step, though other builds exist.
  auto no_cache = fx.build_with(r, {"-f", (fx.ctx / "one.Dockerfile").string(), "--no-cache"});
  INFO(describe(no_cache) << r.err);
  REQUIRE(no_cache.size() == 3);
  for (const auto& s : no_cache) {
    CHECK(s.reason == "cache disabled (--no-cache)");
  }
  CHECK(r.err.find("cache miss: cache disabled (--no-cache)") != std::string::npos);
  CHECK(r.err.find("instruction changed") == std::string::npos);
}

TEST_CASE("cache: the miss note is a progress event, never a failed step's output", "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  auto dockerfile = [&](const std::string& word) {
    fx.put("Dockerfile",
           "FROM busybox\n"
           "RUN echo " + word + " > /w\n"
           "RUN echo out-line && exit 3\n");
  };
  dockerfile("first");
  std::string bin = sh_quote(imgbuild::test::imgbuild_binary().string());
  std::string root = sh_quote(fx.root.string());
  RunResult first = run_sh(bin + " --root " + root + " build --progress plain " + sh_quote(fx.ctx.string()));
  REQUIRE(first.status != 0);
  // Again: the failed step is the first miss, its note a line of its own.
  RunResult again = run_sh(bin + " --root " + root + " build --progress plain " + sh_quote(fx.ctx.string()));
  INFO(again.err);
  REQUIRE(again.status != 0);
  CHECK(again.err.find("cache miss: not in the cache\n") != std::string::npos);
  size_t again_block = again.err.find("------\n > [3/3] RUN echo out-line && exit 3:\n");
  REQUIRE(again_block != std::string::npos);
  CHECK(again.err.substr(again_block).find("out-line") != std::string::npos);
  CHECK(again.err.substr(again_block).find("cache miss") == std::string::npos);
  dockerfile("second");
  for (const char* mode : {"plain", "rawjson"}) {
    RunResult r = run_sh(bin + " --root " + root + " build --progress " + mode + " " + sh_quote(fx.ctx.string()));
    INFO(mode << "\n" << r.err);
    REQUIRE(r.status != 0);
    if (std::string(mode) == "plain") {
      CHECK(r.err.find("cache miss: RUN echo second > /w: instruction changed") != std::string::npos);
      // The failed step's block: its own output, no note.
      size_t block = r.err.find("------\n > [3/3] RUN echo out-line && exit 3:\n");
      REQUIRE(block != std::string::npos);
      std::string rest = r.err.substr(block);
      CHECK(rest.find("out-line") != std::string::npos);
      CHECK(rest.find("cache miss") == std::string::npos);
    } else {
      bool note = false;
      for (const auto& line : split_lines(r.err)) {
        json ev = json::parse(line, nullptr, false);
        if (ev.is_discarded() || !ev.is_object()) {
          continue;
        }
        if (ev.value("event", "") == "note") {
          // The plain build ran the changed step: the failing one misses now.
          note = ev.value("text", "") == "cache miss: not in the cache";
        }
        if (ev.value("event", "") == "output") {
          CHECK(ev.value("line", "").find("cache miss") == std::string::npos);
        }
      }
      CHECK(note);
    }
  }
}

TEST_CASE("cache: a fully cached rebuild gives the same image - --no-cache a new one", "[integration][cache]") {
  // BuildKit keeps a cached layer's time in history and dates the image by
  // its last entry, so rebuilding unchanged inputs (no SOURCE_DATE_EPOCH)
  // does not make a new image.
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("Dockerfile",
         "FROM busybox\n"
         "ENV A=1\n"
         "COPY a.txt /a.txt\n"
         "RUN cat /a.txt > /copy\n"
         "LABEL x=y\n");
  fx.put("a.txt", "alpha\n");
  auto image_id = [&](std::vector<std::string> extra) {
    fs::path f = fx.work.path / ("iid-" + std::to_string(fx.builds));
    extra.push_back("--iidfile");
    extra.push_back(f.string());
    fx.build(extra);
    return read_file(f);
  };
  std::string first = image_id({});
  std::string cached = image_id({});
  CHECK(cached == first);
  std::string rebuilt = image_id({"--no-cache"});
  CHECK(rebuilt != first);
  // The newest layers are what a later cached build dates itself by.
  CHECK(image_id({}) == rebuilt);
}

TEST_CASE("cache: an octal COPY --chmod ignores the source modes - a symbolic one or none keeps them in the key",
          "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  // A first ENV of its own gives each file its own chain (a miss is
  // explained against the previous build of the same chain).
  fx.put("octal.Dockerfile",
         "FROM busybox\n"
         "ENV KIND=octal\n"
         "COPY --chmod=0640 a.txt src/ /o/\n"
         "RUN stat -c %a /o/a.txt /o/b.txt > /modes\n");
  fx.put("symbolic.Dockerfile",
         "FROM busybox\n"
         "ENV KIND=symbolic\n"
         "COPY --chmod=u+x a.txt /s/\n");
  fx.put("plain.Dockerfile",
         "FROM busybox\n"
         "ENV KIND=plain\n"
         "COPY a.txt /p/\n");
  fx.put("a.txt", "alpha\n");
  fx.put("src/b.txt", "beta\n");
  REQUIRE(::chmod((fx.ctx / "a.txt").c_str(), 0644) == 0);
  REQUIRE(::chmod((fx.ctx / "src/b.txt").c_str(), 0644) == 0);
  auto file = [&](const char* name) { return std::vector<std::string>{"-f", (fx.ctx / name).string()}; };
  CHECK(cached_count(fx.build(file("octal.Dockerfile"))) == 0);
  CHECK(cached_count(fx.build(file("symbolic.Dockerfile"))) == 0);
  CHECK(cached_count(fx.build(file("plain.Dockerfile"))) == 0);

  // The checkout another umask would give: same content, other modes.
  REQUIRE(::chmod((fx.ctx / "a.txt").c_str(), 0600) == 0);
  REQUIRE(::chmod((fx.ctx / "src/b.txt").c_str(), 0664) == 0);
  auto octal = fx.build(file("octal.Dockerfile"));
  INFO(describe(octal));
  CHECK(cached_count(octal) == 2);
  // u+x keeps the other bits of the source: its mode is an input.
  auto symbolic = fx.build(file("symbolic.Dockerfile"));
  INFO(describe(symbolic));
  REQUIRE(symbolic.size() == 1);
  CHECK_FALSE(symbolic[0].cached);
  CHECK(symbolic[0].reason == "COPY --chmod=u+x a.txt /s/: a.txt changed");
  // Without --chmod the copied file keeps the source mode.
  auto plain = fx.build(file("plain.Dockerfile"));
  INFO(describe(plain));
  REQUIRE(plain.size() == 1);
  CHECK_FALSE(plain[0].cached);
  CHECK(plain[0].reason == "COPY a.txt /p/: a.txt changed");
  // A content change still misses with --chmod.
  fx.put("src/b.txt", "beta 2\n");
  auto content = fx.build(file("octal.Dockerfile"));
  INFO(describe(content));
  REQUIRE(content.size() == 2);
  CHECK_FALSE(content[0].cached);
  CHECK(content[0].reason == "COPY --chmod=0640 a.txt src/ /o/: src/b.txt changed");
}

TEST_CASE("cache: a file renamed under a wildcard misses - an ignored file never does", "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("Dockerfile",
         "FROM busybox\n"
         "COPY . /ctx/\n"
         "COPY *.txt /txt/\n"
         "RUN ls /txt > /list\n");
  fx.put(".dockerignore", "*.log\nbuild/\n");
  fx.put("one.txt", "1\n");
  fx.put("debug.log", "first\n");
  fx.put("build/out.o", "obj\n");
  auto first = fx.build();
  REQUIRE(cached_count(first) == 0);

  // Ignored files change, appear, disappear: never a miss.
  fx.put("debug.log", "second run\n");
  fx.put("build/new.o", "more\n");
  fx.put("other.log", "x\n");
  auto ignored = fx.build();
  INFO(describe(ignored));
  CHECK(cached_count(ignored) == 3);

  // one.txt renamed to two.txt: the wildcard now selects another name.
  fs::rename(fx.ctx / "one.txt", fx.ctx / "two.txt");
  auto renamed = fx.build();
  INFO(describe(renamed));
  REQUIRE(renamed.size() == 3);
  CHECK_FALSE(renamed[0].cached);
  CHECK(renamed[0].reason.find("one.txt") != std::string::npos);
  CHECK_FALSE(renamed[1].cached);
  CHECK_FALSE(renamed[2].cached);
}

TEST_CASE("cache: a changed ARG misses only from its first use - proxy args never miss", "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("Dockerfile",
         "FROM busybox\n"
         "COPY a.txt /a\n"
         "RUN echo one > /one\n"
         "ARG VERSION=1.0\n"
         "COPY a.txt /b\n"
         "RUN echo $VERSION > /v\n"
         "RUN echo after > /after\n");
  fx.put("a.txt", "a\n");
  auto first = fx.build({"--build-arg", "VERSION=1.2"});
  REQUIRE(first.size() == 5);
  auto proxy = fx.build({"--build-arg", "VERSION=1.2", "--build-arg", "HTTP_PROXY=http://127.0.0.1:9",
                         "--build-arg", "no_proxy=example.com"});
  INFO(describe(proxy));
  CHECK(cached_count(proxy) == 5);

  auto changed = fx.build({"--build-arg", "VERSION=1.3"});
  INFO(describe(changed));
  REQUIRE(changed.size() == 5);
  CHECK(changed[0].cached);
  CHECK(changed[1].cached);
  CHECK(changed[2].cached);  // COPY does not use VERSION
  CHECK_FALSE(changed[3].cached);
  CHECK(changed[3].reason == "ARG VERSION changed: 1.2 → 1.3");
  CHECK_FALSE(changed[4].cached);

  // The default value (no --build-arg) is another value again.
  auto defaulted = fx.build();
  INFO(describe(defaulted));
  CHECK(defaulted[3].reason == "ARG VERSION changed: 1.3 → 1.0");
}

TEST_CASE("cache: config instructions are part of the chain - --no-cache and --no-cache-filter", "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  auto dockerfile = [&](const std::string& health) {
    fx.put("Dockerfile",
           "FROM busybox AS base\n"
           "RUN echo base > /base\n"
           "FROM base AS final\n"
           "HEALTHCHECK CMD " + health + "\n"
           "RUN echo final > /final\n");
  };
  dockerfile("true");
  auto first = fx.build();
  REQUIRE(first.size() == 2);
  CHECK(cached_count(fx.build()) == 2);

  // CVE-2024-24557: a changed HEALTHCHECK must not reuse what came after it.
  dockerfile("false");
  auto health = fx.build();
  INFO(describe(health));
  CHECK(health[0].cached);
  CHECK_FALSE(health[1].cached);
  CHECK(health[1].reason.find("HEALTHCHECK") != std::string::npos);

  auto no_cache = fx.build({"--no-cache"});
  INFO(describe(no_cache));
  CHECK(cached_count(no_cache) == 0);
  CHECK(no_cache[0].reason == "cache disabled (--no-cache)");

  auto filtered = fx.build({"--no-cache-filter", "final"});
  INFO(describe(filtered));
  CHECK(filtered[0].cached);
  CHECK_FALSE(filtered[1].cached);
  CHECK(cached_count(fx.build()) == 2);
}

TEST_CASE("cache: ls keeps one line per record on a heredoc CREATED BY", "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("Dockerfile",
         "FROM busybox\n"
         "RUN <<EOF\n"
         "echo one > /one\n"
         "echo two > /two\n"
         "EOF\n"
         "COPY <<EOF /greeting\n"
         "hello\n"
         "EOF\n");
  REQUIRE(fx.build().size() == 2);
  RunResult ls = run_imgbuild(fx.root, {"cache", "ls"});
  INFO(ls.out);
  REQUIRE(ls.status == 0);
  std::vector<std::string> lines = split_lines(ls.out);
  // The header, FROM, RUN and COPY: one line each, every one a full row.
  REQUIRE(lines.size() == 4);
  CHECK(lines[0].starts_with("KEY "));
  size_t size_col = lines[0].find("SIZE");
  for (size_t i = 1; i < lines.size(); ++i) {
    CHECK(lines[i].size() > size_col);
    CHECK(lines[i].find("ago") != std::string::npos);
  }
  CHECK(ls.out.find("\\n") != std::string::npos);  // the heredoc's line breaks, shown as \n
}

TEST_CASE("cache: ls and du and prune - prune keeps what images use", "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("Dockerfile",
         "FROM busybox\n"
         "RUN --mount=type=cache,target=/cache echo x > /cache/f && echo built > /built\n"
         "RUN echo second > /second\n");
  auto first = fx.build({"-t", "imgbuild-test-cache-prune:1"});
  REQUIRE(first.size() == 2);
  RunResult ls = run_imgbuild(fx.root, {"cache", "ls"});
  REQUIRE(ls.status == 0);
  CHECK(ls.out.find("RUN") != std::string::npos);
  CHECK(ls.out.find("FROM") != std::string::npos);
  RunResult du = run_imgbuild(fx.root, {"cache", "du"});
  REQUIRE(du.status == 0);
  CHECK(du.out.find("records") != std::string::npos);
  CHECK(fs::exists(fx.root / "cache-mounts"));

  // --no-cache leaves the cache mount alone.
  fx.build({"--no-cache"});
  CHECK_FALSE(fs::is_empty(fx.root / "cache-mounts"));

  RunResult bad = run_imgbuild(fx.root, {"cache", "prune", "--filter", "until=soon"});
  CHECK(bad.status == 2);
  RunResult recent = run_imgbuild(fx.root, {"cache", "prune", "--filter", "until=24h"});
  REQUIRE(recent.status == 0);
  CHECK(recent.out.find("Removed 0 cache records") != std::string::npos);

  RunResult all = run_imgbuild(fx.root, {"cache", "prune", "--all"});
  INFO(all.err);
  REQUIRE(all.status == 0);
  CHECK_FALSE(fs::exists(fx.root / "cache-mounts"));
  RunResult after = run_imgbuild(fx.root, {"cache", "ls"});
  CHECK(after.out.find("RUN") == std::string::npos);
  // The image and its layers survive; the image still exports.
  fs::path out = fx.work.path / "saved.tar";
  RunResult save = run_imgbuild(fx.root, {"save", "-o", out.string(), "imgbuild-test-cache-prune:1"});
  INFO(save.err);
  CHECK(save.status == 0);
  // With no records left, a rebuild executes every step again.
  auto rebuilt = fx.build();
  CHECK(cached_count(rebuilt) == 0);
}

TEST_CASE("cache: prune removes the unpacked directories of the layers it removes - du counts them",
          "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  // The first stage's RUN layer is in no image: cache only from the start.
  fx.put("Dockerfile",
         "FROM busybox AS tmp\n"
         "RUN echo one > /one\n"
         "FROM busybox\n"
         "COPY --from=tmp /one /one\n"
         "RUN cat /one > /two\n");
  auto first = fx.build({"-t", "imgbuild-test-cache-unpacked:1"});
  REQUIRE(first.size() == 3);
  auto unpacked = [&] {
    std::set<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fx.root / "snapshots", ec)) {
      std::string name = e.path().filename().string();
      if (name.size() == 64 && e.is_directory()) {
        out.insert("sha256:" + name);
      }
    }
    return out;
  };
  // The diff_ids images still use (busybox's one layer).
  RunResult inspect = run_imgbuild(fx.root, {"inspect", "busybox"});
  REQUIRE(inspect.status == 0);
  json inspected = json::parse(inspect.out);
  std::set<std::string> base_layers;
  for (const auto& d : inspected[0]["RootFS"]["Layers"]) {
    base_layers.insert(d.get<std::string>());
  }
  REQUIRE(base_layers.size() == 1);
  std::set<std::string> before = unpacked();
  CHECK(before.size() >= 3);  // busybox, the first stage's RUN, the COPY (the last RUN needs no mount)
  RunResult rmi = run_imgbuild(fx.root, {"rmi", "imgbuild-test-cache-unpacked:1"});
  INFO(rmi.err);
  REQUIRE(rmi.status == 0);

  RunResult du = run_imgbuild(fx.root, {"cache", "du"});
  REQUIRE(du.status == 0);
  INFO(du.out);
  CHECK(du.out.find("unpacked layers (cache only)") != std::string::npos);
  CHECK(du.out.find("unpacked layers (cache only)   0") == std::string::npos);

  RunResult prune = run_imgbuild(fx.root, {"cache", "prune"});
  INFO(prune.err);
  REQUIRE(prune.status == 0);
  // Only layers an image uses stay unpacked: no orphan directory.
  std::set<std::string> after = unpacked();
  CHECK(after == base_layers);
  // Nothing half-removed is left beside them.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fx.root / "snapshots", ec)) {
    CHECK(e.path().filename().string().rfind(".remove-", 0) != 0);
  }
  RunResult du_after = run_imgbuild(fx.root, {"cache", "du"});
  REQUIRE(du_after.status == 0);
  CHECK(du_after.out.find("unpacked layers (cache only)   0") != std::string::npos);
  // The next build unpacks what it needs again.
  auto rebuilt = fx.build();
  CHECK(cached_count(rebuilt) == 0);
}

TEST_CASE("cache: a chain cached to its end unpacks no layer - the next RUN unpacks what it mounts",
          "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("Dockerfile",
         "FROM busybox\n"
         "RUN echo one > /one\n"
         "COPY a.txt /a.txt\n");
  fx.put("a.txt", "alpha\n");
  REQUIRE(cached_count(fx.build()) == 0);
  auto unpacked = [&] {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fx.root / "snapshots", ec)) {
      n += e.path().filename().string().size() == 64 ? 1 : 0;
    }
    return n;
  };
  // Every unpacked layer goes (as after a cache import into a fresh store).
  for (const auto& e : fs::directory_iterator(fx.root / "snapshots")) {
    if (e.path().filename().string().size() == 64) {
      fs::remove_all(e.path());
    }
  }
  REQUIRE(unpacked() == 0);
  auto cached = fx.build();
  INFO(describe(cached));
  CHECK(cached_count(cached) == 2);
  CHECK(unpacked() == 0);
  // A RUN after the cached steps mounts (and so unpacks) the whole chain.
  fx.put("Dockerfile",
         "FROM busybox\n"
         "RUN echo one > /one\n"
         "COPY a.txt /a.txt\n"
         "RUN cat /one /a.txt > /both && test \"$(cat /both)\" = \"$(printf 'one\\nalpha')\"\n");
  auto more = fx.build();
  INFO(describe(more));
  REQUIRE(more.size() == 3);
  CHECK(more[0].cached);
  CHECK(more[1].cached);
  CHECK_FALSE(more[2].cached);
  CHECK(unpacked() >= 3);
}

TEST_CASE("cache: two concurrent builds on one store both succeed", "[integration][cache]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  CacheFixture fx;
  fx.put("Dockerfile",
         "FROM busybox\n"
         "COPY a.txt /a\n"
         "RUN cat /a > /b\n"
         "COPY b.txt /c\n");
  fx.put("a.txt", "shared\n");
  fx.put("b.txt", "one\n");
  fs::path other = fx.work.path / "ctx2";
  fs::create_directories(other);
  fs::copy(fx.ctx, other, fs::copy_options::recursive);
  write_file(other / "b.txt", "two\n");

  std::vector<Step> a;
  std::vector<Step> b;
  std::thread ta([&] { a = fx.build({}, "", fx.ctx); });
  std::thread tb([&] { b = fx.build({}, "", other); });
  ta.join();
  tb.join();
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  // Both rebuild fully cached afterwards: every record was written.
  CHECK(cached_count(fx.build({}, "", fx.ctx)) == 3);
  CHECK(cached_count(fx.build({}, "", other)) == 3);
}
