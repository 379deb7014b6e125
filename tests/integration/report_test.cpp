// What a build and the image commands tell their user, end to end through
// the real binary: content sizes as Docker counts them (history, images,
// inspect, cache ls), the build's summary line, and the layer report.

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "image_compare.hpp"
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

  // A failed build has one too: its time and the steps it finished.
  fx.put("Dockerfile",
         "FROM busybox\n"
         "COPY f15.txt /f15.txt\n"
         "RUN echo ran > /ran\n"
         "RUN exit 3\n");
  RunResult failed = fx.build({});
  INFO(failed.err);
  REQUIRE(failed.status == 1);
  size_t line = failed.err.find("\nsummary: failed after ");
  REQUIRE(line != std::string::npos);
  CHECK(failed.err.find(", 1 step run, 1 cached, ", line) != std::string::npos);
  CHECK(failed.err.find(" written\n", line) != std::string::npos);
  RunResult failed_raw = run_imgbuild(fx.root, {"build", "--progress", "rawjson", fx.ctx.string()});
  REQUIRE(failed_raw.status == 1);
  bool seen = false;
  for (const auto& l : lines_of(failed_raw.err)) {
    json e = json::parse(l, nullptr, false);
    if (!e.is_discarded() && e.is_object() && e.value("event", "") == "summary") {
      seen = e.value("failed", false) && e["steps_cached"] == 2 && e["steps_run"] == 0;
    }
  }
  CHECK(seen);
}

namespace {

// A build whose layers overwrite, delete, re-mode and duplicate files.
const char* const k_wasteful_dockerfile =
    "FROM busybox AS build\n"
    "RUN yes abc | head -c 6000 > /big && yes xy | head -c 3000 > /mid && echo small > /small "
    "&& mkdir -p /d/e && echo deep > /d/e/f && ln -s /big /link\n"
    "RUN echo again > /small && rm /big && chmod 600 /mid && rm -r /d\n"
    "COPY dup.txt /dup-copy\n"
    "FROM build\n"
    "RUN echo final > /final\n";

// The dup.txt of that build: the same bytes as /big.
std::string dup_content() {
  std::string s;
  while (s.size() < 6000) {
    s += "abc\n";
  }
  return s.substr(0, 6000);
}

}  // namespace

TEST_CASE("report: history --analyze and build --report - give per-layer wasted bytes equal to a brute-force count",
          "[integration][report]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  Fixture fx;
  fx.put("Dockerfile", k_wasteful_dockerfile);
  fx.put("dup.txt", dup_content());
  fs::path md = fx.work.path / "md.json";
  fs::path saved = fx.work.path / "img.tar";
  RunResult b = fx.build({"-t", "waste", "--report", "-", "--metadata-file", md.string(), "-o",
                          "type=docker,dest=" + saved.string()});
  INFO(b.err);
  REQUIRE(b.status == 0);
  json report = json::parse(read_file(md))["imgbuild.report"];
  imgbuild::test::Saved s = imgbuild::test::read_saved(saved, fx.work.path);
  std::vector<int64_t> expected = imgbuild::test::brute_force_wasted(s.layers);
  REQUIRE(report["layers"].size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("layer " << i);
    CHECK(report["layers"][i]["wasted"].get<int64_t>() == expected[i]);
  }
  // By hand: layer 1 stored /big (6000), /mid (3000), /small (6), /d/e/f (5)
  // and /link (4); layer 2 deleted /big, /d and re-stored /mid (metadata
  // only) and /small.
  size_t first = s.layers.size() - 4;
  CHECK(report["layers"][first]["wasted"] == 6000 + 3000 + 6 + 5);
  CHECK(report["wasted"] == 6000 + 3000 + 6 + 5);
  CHECK(report["layers"][first]["size"] == 6000 + 3000 + 6 + 5 + 4);
  bool metadata_only = false;
  for (const auto& w : report["wasted_files"]) {
    if (w["path"] == "/mid") {
      metadata_only = w["reason"] == "metadata only";
    }
  }
  CHECK(metadata_only);
  // /big (deleted) and /dup-copy hold the same 6000 bytes in two layers,
  // the two /mid the same 3000.
  REQUIRE(report["duplicates"].size() == 2);
  CHECK(report["duplicates"][0]["size"] == 6000);
  CHECK(report["duplicate_bytes"] == 6000 + 3000);
  double efficiency = report["efficiency"].get<double>();
  CHECK(efficiency == static_cast<double>(report["visible"].get<int64_t>()) /
                          static_cast<double>(report["total"].get<int64_t>()));
  // Steps: their times, hits and misses; the critical path: build → final.
  CHECK(report["steps"].size() == 4);
  CHECK(report["critical_path"]["stages"].size() == 2);

  // The text form on stdout, and history --analyze of the image: the same
  // numbers.
  CHECK(b.out.find("efficiency") != std::string::npos);
  CHECK(b.out.find("/mid (metadata only in layer") != std::string::npos);
  CHECK(b.out.find("Critical path: build (") != std::string::npos);
  RunResult h = run_imgbuild(fx.root, {"history", "--analyze", "waste"});
  INFO(h.err);
  REQUIRE(h.status == 0);
  size_t cut = b.out.find("\nSTEP ");
  REQUIRE(cut != std::string::npos);
  CHECK(h.out == b.out.substr(0, cut));
}

TEST_CASE("report: the HTML page renders in headless Chromium with the report's numbers and no console errors",
          "[integration][report]") {
  IMGBUILD_REQUIRE_PREREQ(prerequisites(), "builds need root and busybox-static");
  IMGBUILD_REQUIRE_PREREQ(imgbuild::test::have_tool("chromium"), "chromium (Debian package chromium) is missing");
  Fixture fx;
  fx.put("Dockerfile", k_wasteful_dockerfile);
  fx.put("dup.txt", dup_content());
  fs::path page = fx.work.path / "report.html";
  fs::path md = fx.work.path / "md.json";
  RunResult b = fx.build({"-t", "waste", "--report", page.string(), "--metadata-file", md.string()});
  INFO(b.err);
  REQUIRE(b.status == 0);
  json report = json::parse(read_file(md))["imgbuild.report"];
  std::string html = read_file(page);
  // One self-contained file: nothing to fetch.
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find(" src=") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);

  std::string chromium = "chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir=" +
                         sh_quote((fx.work.path / "profile").string()) + " --enable-logging=stderr --v=0 ";
  std::string url = sh_quote("file://" + page.string());
  fs::path shot = fx.work.path / "report.png";
  RunResult s = run_sh(chromium + "--window-size=1200,1600 --screenshot=" + sh_quote(shot.string()) + " " + url);
  INFO(s.err);
  REQUIRE(s.status == 0);
  REQUIRE(fs::exists(shot));
  CHECK(fs::file_size(shot) > 10000);
  std::string png = read_file(shot);
  CHECK(png.compare(1, 3, "PNG") == 0);
  RunResult dom = run_sh(chromium + "--dump-dom " + url);
  INFO(dom.err);
  REQUIRE(dom.status == 0);
  // The page's script ran.
  CHECK(dom.out.find("data-ready=\"true\"") != std::string::npos);
  for (const RunResult* r : {&s, &dom}) {
    CHECK(r->err.find("CONSOLE") == std::string::npos);
    CHECK(r->err.find("Uncaught") == std::string::npos);
  }
  // DOM checks: the numbers of the report.
  auto has = [&](const std::string& needle) { return dom.out.find(needle) != std::string::npos; };
  CHECK(has("id=\"wasted\" data-bytes=\"" + std::to_string(report["wasted"].get<int64_t>()) + "\""));
  CHECK(has("id=\"total\" data-bytes=\"" + std::to_string(report["total"].get<int64_t>()) + "\""));
  CHECK(has("id=\"layer-count\">" + std::to_string(report["layers"].size()) + "<"));
  for (const auto& l : report["layers"]) {
    std::string row = "<tr class=\"layer\" data-layer=\"" + std::to_string(l["index"].get<int>()) + "\">";
    size_t at = dom.out.find(row);
    REQUIRE(at != std::string::npos);
    std::string rest = dom.out.substr(at, dom.out.find("</tr>", at) - at);
    CHECK(rest.find("class=\"num wasted\" data-bytes=\"" + std::to_string(l["wasted"].get<int64_t>()) + "\"") !=
          std::string::npos);
    CHECK(rest.find("class=\"num size\" data-bytes=\"" + std::to_string(l["size"].get<int64_t>()) + "\"") !=
          std::string::npos);
  }
  // The treemap's cells add up to what the final filesystem shows.
  int64_t cells = 0;
  for (size_t at = dom.out.find("class=\"cell\""); at != std::string::npos; at = dom.out.find("class=\"cell\"", at + 1)) {
    size_t b0 = dom.out.find("data-bytes=\"", at) + 12;
    cells += std::stoll(dom.out.substr(b0, dom.out.find('"', b0) - b0));
  }
  CHECK(cells == report["visible"].get<int64_t>());
  CHECK(dom.out.find("<tr class=\"step\" data-cached=\"false\">") != std::string::npos);
  if (const char* keep = std::getenv("IMGBUILD_REPORT_SCREENSHOT"); keep != nullptr && *keep != '\0') {
    fs::copy_file(shot, keep, fs::copy_options::overwrite_existing);
  }
}
