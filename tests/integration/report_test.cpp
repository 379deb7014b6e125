// What a build and the image commands tell their user, end to end through
// the real binary: content sizes as Docker counts them (history, images,
// inspect, cache ls), the build's summary line, and the layer report.

#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "support/require.hpp"

namespace fs = std::filesystem;
using imgbuild::test::busybox_rootfs_tar;
using imgbuild::test::docker_available;
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

bool prerequisites() { return fs::exists("/bin/busybox") && ::geteuid() == 0; }

std::vector<std::string> lines_of(const std::string& text) {
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

// The columns of a table row (separated by runs of 3+ spaces).
std::vector<std::string> columns(const std::string& row) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < row.size()) {
    size_t gap = row.find("   ", i);
    if (gap == std::string::npos) {
      out.push_back(row.substr(i));
      break;
    }
    out.push_back(row.substr(i, gap - i));
    i = row.find_first_not_of(' ', gap);
    if (i == std::string::npos) {
      break;
    }
  }
  return out;
}

// A store with the busybox base and a context directory.
struct Fixture {
  TempDir work;
  fs::path root;
  fs::path ctx;

  Fixture() {
    root = work.path / "store";
    ctx = work.path / "ctx";
    fs::create_directories(ctx);
    import_tar(root, work.path / "busybox.tar", busybox_rootfs_tar(), "busybox");
  }
  void put(const std::string& rel, const std::string& body) {
    fs::create_directories((ctx / rel).parent_path());
    write_file(ctx / rel, body);
  }
  RunResult build(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"build", "--progress", "plain"};
    all.insert(all.end(), args.begin(), args.end());
    all.push_back(ctx.string());
    return run_imgbuild(root, all);
  }
  // CREATED BY → SIZE of `history -H=false --no-trunc`.
  std::map<std::string, std::string> history_sizes(const std::string& image) {
    RunResult h = run_imgbuild(root, {"history", "--human=false", "--no-trunc", image});
    INFO(h.err);
    REQUIRE(h.status == 0);
    std::map<std::string, std::string> out;
    for (const auto& l : lines_of(h.out)) {
      auto c = columns(l);
      if (c.size() >= 4 && c[0] != "IMAGE") {
        out[c[2]] = c[3];
      }
    }
    return out;
  }
  int64_t inspect_size(const std::string& image) {
    RunResult r = run_imgbuild(root, {"inspect", image});
    INFO(r.err);
    REQUIRE(r.status == 0);
    return json::parse(r.out)[0]["Size"].get<int64_t>();
  }
};

}  // namespace

TEST_CASE("sizes: history, images and inspect show content sizes as Docker counts them", "[integration][report]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  Fixture fx;
  fx.put("f15.txt", "fifteen bytes!\n");
  fx.put("Dockerfile",
         "FROM busybox\n"
         "COPY f15.txt /f15.txt\n"
         "WORKDIR /etc\n"
         "RUN printf 1234567 > /seven && ln -s /seven /lnk && ln /seven /hard\n");
  RunResult b = fx.build({"-t", "sizes"});
  INFO(b.err);
  REQUIRE(b.status == 0);
  auto sizes = fx.history_sizes("sizes");
  CHECK(sizes["COPY f15.txt /f15.txt # buildkit"] == "15");
  CHECK(sizes["WORKDIR /etc"] == "0");
  // 7 bytes of /seven once (/hard is the same inode), 6 of the link's target.
  CHECK(sizes["RUN /bin/sh -c printf 1234567 > /seven && ln -s /seven /lnk && ln /seven /hard # buildkit"] == "13");
  int64_t base = fx.inspect_size("busybox");
  CHECK(fx.inspect_size("sizes") == base + 28);

  // The human form in history and images.
  RunResult h = run_imgbuild(fx.root, {"history", "sizes"});
  CHECK(h.out.find("   15B   ") != std::string::npos);
  RunResult images = run_imgbuild(fx.root, {"images", "--format", "json"});
  REQUIRE(images.status == 0);
  bool seen = false;
  for (const auto& l : lines_of(images.out)) {
    json j = json::parse(l);
    if (j["Repository"] == "sizes") {
      seen = true;
      CHECK(j["Size"].get<std::string>().ends_with("MB"));  // busybox-static: about 2MB
    }
  }
  CHECK(seen);

  // cache ls: the COPY's record holds 15 bytes of content.
  RunResult ls = run_imgbuild(fx.root, {"cache", "ls"});
  INFO(ls.out);
  bool copy_row = false;
  for (const auto& l : lines_of(ls.out)) {
    auto c = columns(l);
    if (c.size() == 5 && c[1] == "COPY") {
      copy_row = true;
      CHECK(c[2] == "15B");
    }
  }
  CHECK(copy_row);

  // A store written before content sizes were recorded (schema 4: NULL):
  // the sizes are computed from the blobs, then recorded.
  std::string db = sh_quote((fx.root / "meta.db").string());
  REQUIRE(run_sh("sqlite3 " + db + " 'UPDATE layers SET content_size = NULL; UPDATE cache_records SET "
                 "content_size = NULL'").status == 0);
  auto again = fx.history_sizes("sizes");
  CHECK(again == sizes);
  CHECK(fx.inspect_size("sizes") == base + 28);
  RunResult nulls = run_sh("sqlite3 " + db + " 'SELECT COUNT(*) FROM layers WHERE content_size IS NULL'");
  CHECK(nulls.out == "0\n");
}

TEST_CASE("sizes: a built image loaded into dockerd has the same Size and history sizes", "[integration][report]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  IMGBUILD_REQUIRE_PREREQ(docker_available(), "no Docker engine (docker.io) could be reached or started");
  Fixture fx;
  fx.put("f15.txt", "fifteen bytes!\n");
  fx.put("Dockerfile",
         "FROM busybox\n"
         "COPY f15.txt /f15.txt\n"
         "WORKDIR /etc\n"
         "RUN mkdir -p /d/e && printf 1234567 > /d/e/seven && ln -s /d/e/seven /lnk && ln /d/e/seven /hard "
         "&& rm /bin/ls\n");
  std::string name = "imgbuild-it/sizes:" + std::to_string(::getpid());
  RunResult b = fx.build({"-t", name});
  INFO(b.err);
  REQUIRE(b.status == 0);
  fs::path archive = fx.work.path / "img.tar";
  REQUIRE(run_imgbuild(fx.root, {"save", "-o", archive.string(), name}).status == 0);
  RunResult load = run_sh("/usr/bin/docker load -i " + sh_quote(archive.string()));
  INFO(load.err);
  REQUIRE(load.status == 0);
  RunResult di = run_sh("/usr/bin/docker image inspect " + name);
  REQUIRE(di.status == 0);
  CHECK(fx.inspect_size(name) == json::parse(di.out)[0]["Size"].get<int64_t>());
  RunResult dh = run_sh("/usr/bin/docker history --format '{{.Size}}' " + name);
  std::vector<std::string> ours_sizes;
  RunResult table = run_imgbuild(fx.root, {"history", name});
  for (const auto& l : lines_of(table.out)) {
    auto c = columns(l);
    if (c.size() >= 4 && c[0] != "IMAGE") {
      ours_sizes.push_back(c[3]);
    }
  }
  CHECK(ours_sizes == lines_of(dh.out));
  run_sh("/usr/bin/docker rmi " + name);
}

TEST_CASE("scripts: demo builds only the imgbuild binary - scripts/test builds everything", "[integration][scripts]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "the demo imports as root from busybox-static");
  TempDir work;
  // A cmake on PATH that logs how it is called and, for a build, puts this
  // checkout's imgbuild binary where the build would have.
  fs::path bin = work.path / "bin";
  fs::create_directories(bin);
  fs::path log = work.path / "cmake.log";
  write_file(bin / "cmake",
             "#!/bin/sh\n"
             "echo \"$*\" >> " + sh_quote(log.string()) + "\n"
             "if [ \"$1\" = -S ]; then mkdir -p \"$4\" && touch \"$4/build.ninja\"; fi\n"
             "if [ \"$1\" = --build ]; then cp " + sh_quote(imgbuild::test::imgbuild_binary().string()) +
             " \"$2/imgbuild\"; fi\n");
  fs::permissions(bin / "cmake", fs::perms::owner_all);
  fs::path build_dir = work.path / "build";
  std::string env = "PATH=" + sh_quote(bin.string()) + ":$PATH BUILD_DIR=" + sh_quote(build_dir.string()) + " ";
  std::string scripts = (imgbuild::test::source_dir() / "scripts").string();
  RunResult demo = run_sh(env + sh_quote(scripts + "/demo"));
  INFO(demo.out << demo.err);
  REQUIRE(demo.status == 0);
  CHECK(fs::exists(build_dir / "hello.tar"));
  std::vector<std::string> calls = lines_of(read_file(log));
  std::vector<std::string> builds;
  for (const auto& c : calls) {
    if (c.starts_with("--build")) {
      builds.push_back(c);
    }
  }
  REQUIRE(builds.size() == 1);
  CHECK(builds[0].ends_with(" --target imgbuild"));

  fs::remove(log);
  RunResult test_build = run_sh(env + sh_quote(scripts + "/build") + " --test");
  INFO(test_build.err);
  REQUIRE(test_build.status == 0);
  std::string all = read_file(log);
  CHECK(all.find("--build") != std::string::npos);
  CHECK(all.find("--target") == std::string::npos);
}

TEST_CASE("summary: every build ends with its time, steps run and cached, bytes written and image size",
          "[integration][report]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  Fixture fx;
  fx.put("f15.txt", "fifteen bytes!\n");
  fx.put("Dockerfile",
         "FROM busybox\n"
         "COPY f15.txt /f15.txt\n"
         "ENV A=1\n"
         "RUN printf 1234567 > /seven\n");
  fs::path md = fx.work.path / "md.json";
  RunResult first = fx.build({"-t", "sum", "--metadata-file", md.string()});
  INFO(first.err);
  REQUIRE(first.status == 0);
  std::vector<std::string> lines = lines_of(first.err);
  REQUIRE_FALSE(lines.empty());
  const std::string& last = lines.back();
  CHECK(last.starts_with("summary: "));
  CHECK(last.find(", 2 steps run, 0 cached, ") != std::string::npos);
  json s = json::parse(read_file(md))["imgbuild.summary"];
  CHECK(s["steps_run"] == 2);
  CHECK(s["steps_cached"] == 0);
  CHECK(s["bytes_written"].get<int64_t>() > 22);  // two layer tars: headers and the 22 bytes of content
  CHECK(s["image_size"].get<int64_t>() == fx.inspect_size("sum"));

  RunResult second = fx.build({"-t", "sum", "--metadata-file", md.string()});
  REQUIRE(second.status == 0);
  CHECK(lines_of(second.err).back().find(", 0 steps run, 2 cached, 0B written, image ") != std::string::npos);
  json s2 = json::parse(read_file(md))["imgbuild.summary"];
  CHECK(s2["bytes_written"] == 0);
  CHECK(s2["image_size"] == s["image_size"]);

  // rawjson: the summary is the last event.
  RunResult raw = run_imgbuild(fx.root, {"build", "--progress", "rawjson", fx.ctx.string()});
  REQUIRE(raw.status == 0);
  json ev = json::parse(lines_of(raw.err).back());
  CHECK(ev["event"] == "summary");
  CHECK(ev["steps_cached"] == 2);
}
