// The builder's cache keys: which source changes change a digest, and the
// sentences that explain a miss.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <functional>
#include <set>

#include "builder/cache_steps.hpp"
#include "builder/context.hpp"
#include "support/require.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;
using imgbuild::test::ScratchDir;
using imgbuild::test::write_text;

namespace {

SourceFiles digest_of(const ScratchDir& dir, const std::string& source) {
  auto ctx = BuildContext::from_dir(dir.path().string());
  REQUIRE(ctx);
  SourceTree tree{&ctx->root(), &ctx->ignore()};
  auto selected = select_sources(tree, source);
  REQUIRE(selected);
  cache::StatIndex index;
  auto files = hash_sources(tree, *selected, nullptr, index);
  REQUIRE(files);
  return *files;
}

}  // namespace

TEST_CASE("cache keys: a source file's owner changes its digest", "[builder][integration]") {
  IMGBUILD_REQUIRE_PREREQ(::geteuid() == 0, "needs root to chown");
  ScratchDir dir;
  std::filesystem::create_directories(dir / "src");
  write_text(dir / "src/a.c", "int a;\n");
  SourceFiles base = digest_of(dir, ".");
  REQUIRE(::chown((dir / "src/a.c").c_str(), 1000, 1000) == 0);
  CHECK(digest_of(dir, ".").digest != base.digest);
  REQUIRE(::chown((dir / "src/a.c").c_str(), ::geteuid(), ::getegid()) == 0);
  CHECK(digest_of(dir, ".").digest == base.digest);
}

TEST_CASE("cache keys: source digests ignore times and see content and mode and names and links", "[builder]") {
  ScratchDir dir;
  std::filesystem::create_directories(dir / "src");
  write_text(dir / "src/a.c", "int a;\n");
  write_text(dir / "src/b.c", "int b;\n");
  write_text(dir / "ignored.log", "x\n");
  write_text(dir / ".dockerignore", "*.log\n");
  SourceFiles base = digest_of(dir, ".");
  CHECK(base.files.count("src/a.c") == 1);
  CHECK(base.files.count("ignored.log") == 0);

  // Times only.
  struct timespec times[2] = {{1000, 0}, {2000, 0}};
  REQUIRE(::utimensat(AT_FDCWD, (dir / "src/a.c").c_str(), times, 0) == 0);
  CHECK(digest_of(dir, ".").digest == base.digest);
  // An ignored file.
  write_text(dir / "ignored.log", "changed\n");
  CHECK(digest_of(dir, ".").digest == base.digest);
  // Content.
  write_text(dir / "src/a.c", "int A;\n");
  SourceFiles content = digest_of(dir, ".");
  CHECK(content.digest != base.digest);
  CHECK(content.files.at("src/a.c") != base.files.at("src/a.c"));
  CHECK(content.files.at("src/b.c") == base.files.at("src/b.c"));
  write_text(dir / "src/a.c", "int a;\n");
  CHECK(digest_of(dir, ".").digest == base.digest);
  // Mode.
  ::chmod((dir / "src/a.c").c_str(), 0600);
  CHECK(digest_of(dir, ".").digest != base.digest);
  ::chmod((dir / "src/a.c").c_str(), 0644);
  // Owner: the next test (chown needs root).
  // A rename.
  std::filesystem::rename(dir / "src/b.c", dir / "src/c.c");
  SourceFiles renamed = digest_of(dir, ".");
  CHECK(renamed.digest != base.digest);
  CHECK(renamed.files.count("src/c.c") == 1);
  std::filesystem::rename(dir / "src/c.c", dir / "src/b.c");
  // A symlink target.
  std::filesystem::create_symlink("a.c", dir / "src/link");
  SourceFiles linked = digest_of(dir, ".");
  std::filesystem::remove(dir / "src/link");
  std::filesystem::create_symlink("b.c", dir / "src/link");
  CHECK(digest_of(dir, ".").digest != linked.digest);
  // Selecting only src/ does not see files outside it.
  SourceFiles only_src = digest_of(dir, "src");
  write_text(dir / "other.txt", "new\n");
  CHECK(digest_of(dir, "src").digest == only_src.digest);
}

TEST_CASE("cache keys: a warm stat index still sees an xattr set on an unchanged file", "[builder]") {
  ScratchDir dir;
  write_text(dir / "a.txt", "same\n");
  auto ctx = BuildContext::from_dir(dir.path().string());
  REQUIRE(ctx);
  SourceTree tree{&ctx->root(), &ctx->ignore()};
  auto selected = select_sources(tree, ".");
  REQUIRE(selected);
  cache::StatIndex index;  // one index for every hash: the second is a stat hit
  auto first = hash_sources(tree, *selected, nullptr, index);
  REQUIRE(first);
  auto again = hash_sources(tree, *selected, nullptr, index);
  REQUIRE(again);
  CHECK(again->digest == first->digest);
  CHECK(index.reused() == 1);
  CHECK(index.xattrs_listed() == 1);  // "none" was remembered
  struct timespec pause {0, 20'000'000};
  ::nanosleep(&pause, nullptr);
  int rc = ::setxattr((dir / "a.txt").c_str(), "user.imgbuild-test", "1", 1, 0);
  IMGBUILD_REQUIRE_PREREQ(rc == 0, "user xattrs on the scratch filesystem");
  auto tagged = hash_sources(tree, *selected, nullptr, index);
  REQUIRE(tagged);
  CHECK(tagged->digest != first->digest);
  CHECK(tagged->files.at("a.txt") != first->files.at("a.txt"));
  CHECK(index.hashed() == 2);  // the ctime moved: a new identity, read again
}

TEST_CASE("cache keys: without modes (an octal --chmod) a mode change keeps the digest, content still counts",
          "[builder]") {
  ScratchDir dir;
  write_text(dir / "a.txt", "a\n");
  auto hash = [&](bool modes) {
    auto ctx = BuildContext::from_dir(dir.path().string());
    REQUIRE(ctx);
    SourceTree tree{&ctx->root(), &ctx->ignore()};
    auto selected = select_sources(tree, ".");
    REQUIRE(selected);
    cache::StatIndex index;
    HashOptions options;
    options.modes = modes;
    auto files = hash_sources(tree, *selected, nullptr, index, options);
    REQUIRE(files);
    return files->digest;
  };
  REQUIRE(::chmod((dir / "a.txt").c_str(), 0644) == 0);
  std::string with = hash(true);
  std::string without = hash(false);
  CHECK(with != without);
  REQUIRE(::chmod((dir / "a.txt").c_str(), 0600) == 0);
  CHECK(hash(true) != with);
  CHECK(hash(false) == without);
  write_text(dir / "a.txt", "b\n");
  CHECK(hash(false) != without);
}

TEST_CASE("cache keys: step key builder fields and summaries", "[builder]") {
  auto make = [](const std::string& parent, const std::string& value) {
    StepKeyBuilder b(parent, "COPY", "COPY . /src");
    b.field("dest", value).note_env({{"UNUSED", value}});
    return b.finish();
  };
  StepKey a = make("sha256:p", "/src");
  CHECK(a.key == make("sha256:p", "/src").key);
  CHECK(a.key != make("sha256:q", "/src").key);
  CHECK(a.key != make("sha256:p", "/dst").key);
  CHECK(a.inputs["fields"]["dest"] == "/src");
  CHECK(a.inputs["env"]["UNUSED"] == "/src");
  // note_env values are shown, not keyed.
  StepKeyBuilder b("sha256:p", "COPY", "COPY . /src");
  b.field("dest", "/src").note_env({{"UNUSED", "other"}});
  CHECK(b.finish().key == a.key);
  CHECK(a.transcript.find("dest: /src") != std::string::npos);
}

TEST_CASE("cache keys: a miss names its first differing input", "[builder]") {
  nlohmann::json before = {{"instruction", "COPY . /src"},
                           {"base", "sha256:1"},
                           {"env", {{"VERSION", "1.2"}, {"PATH", "/bin"}}},
                           {"files", {{"src/a.c", "sha256:a"}, {"src/b.c", "sha256:b"}}},
                           {"fields", {{"dest", "/src"}}}};
  auto with = [&](const std::function<void(nlohmann::json&)>& change) {
    nlohmann::json j = before;
    change(j);
    return explain_miss(before, j, {"VERSION"});
  };
  CHECK(with([](nlohmann::json& j) { j["base"] = "sha256:2"; }) == "base image changed");
  CHECK(with([](nlohmann::json& j) { j["instruction"] = "COPY . /app"; }) == "COPY . /app: instruction changed");
  CHECK(with([](nlohmann::json& j) { j["env"]["VERSION"] = "1.3"; }) == "ARG VERSION changed: 1.2 → 1.3");
  CHECK(with([](nlohmann::json& j) { j["env"]["PATH"] = "/usr/bin"; }) == "ENV PATH changed: /bin → /usr/bin");
  CHECK(with([](nlohmann::json& j) { j["env"].erase("VERSION"); }) == "ARG VERSION changed: 1.2 → (unset)");
  CHECK(with([](nlohmann::json& j) { j["files"]["src/b.c"] = "sha256:x"; }) == "COPY . /src: src/b.c changed");
  CHECK(with([](nlohmann::json& j) { j["files"]["src/0.c"] = "sha256:x"; }) == "COPY . /src: src/0.c added");
  CHECK(with([](nlohmann::json& j) { j["files"].erase("src/a.c"); }) == "COPY . /src: src/a.c removed");
  CHECK(with([](nlohmann::json& j) { j["fields"]["dest"] = "/x"; }) == "COPY . /src: dest changed");
  CHECK(with([](nlohmann::json&) {}) == "COPY . /src: inputs changed");
}

TEST_CASE("cache keys: referenced variables", "[builder]") {
  CHECK(referenced_vars("COPY $A ${B} ${C:-x} $$ $1 /d$E_F") == std::set<std::string>{"A", "B", "C", "E_F"});
  CHECK(referenced_vars("RUN echo hi").empty());
}
