#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>

#include "builder/context.hpp"
#include "support/layer_spec.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild;
using namespace imgbuild::builder;
using imgbuild::test::ScratchDir;
using imgbuild::test::write_text;
namespace sfs = std::filesystem;

namespace {

// A file descriptor reading `data` (a temp file, rewound).
UniqueFd data_fd(const ScratchDir& dir, const std::string& name, const std::string& data) {
  write_text(dir / name, data);
  return UniqueFd(::open((dir / name).c_str(), O_RDONLY | O_CLOEXEC));
}

std::vector<std::string> named(const std::vector<SelectedSource>& v) {
  std::vector<std::string> out;
  for (const auto& s : v) {
    out.push_back(s.named_path);
  }
  return out;
}

std::vector<std::string> walk_rels(const SourceTree& tree, const SelectedSource& s, const IgnoreMatcher* ex = nullptr) {
  std::vector<std::string> out;
  auto r = walk_source(tree, s, ex, [&](const WalkEntry& e) -> Result<void> {
    out.push_back(e.rel);
    return ok();
  });
  REQUIRE(r);
  return out;
}

ContextOptions opts(std::string context, std::string dockerfile = "", int fd = 0, std::string temp = "") {
  ContextOptions o;
  o.context = std::move(context);
  o.dockerfile = std::move(dockerfile);
  o.stdin_fd = fd;
  o.temp_parent = std::move(temp);
  return o;
}

}  // namespace

TEST_CASE("context: directory context reads Dockerfile and .dockerignore", "[builder]") {
  ScratchDir d;
  write_text(d / "Dockerfile", "FROM scratch\n");
  write_text(d / ".dockerignore", "secret\n");
  auto c = BuildContext::open(opts(d.path().string()));
  REQUIRE(c);
  CHECK(c->dockerfile_text() == "FROM scratch\n");
  CHECK(c->ignore_file() == ".dockerignore");
  CHECK(c->ignore().excluded("secret"));
}

TEST_CASE("context: lowercase dockerfile is found", "[builder]") {
  ScratchDir d;
  write_text(d / "dockerfile", "FROM busybox\n");
  auto c = BuildContext::open(opts(d.path().string()));
  REQUIRE(c);
  CHECK(c->dockerfile_name() == "dockerfile");
  CHECK(c->dockerfile_text() == "FROM busybox\n");
}

TEST_CASE("context: <Dockerfile>.dockerignore wins over .dockerignore", "[builder]") {
  ScratchDir d;
  sfs::create_directories(d / "ctx");
  sfs::create_directories(d / "df");
  write_text(d / "ctx/.dockerignore", "a\n");
  write_text(d / "df/app.Dockerfile", "FROM scratch\n");
  write_text(d / "df/app.Dockerfile.dockerignore", "b\n");
  auto c = BuildContext::open(opts((d / "ctx").string(), (d / "df/app.Dockerfile").string()));
  REQUIRE(c);
  CHECK(c->ignore().excluded("b"));
  CHECK_FALSE(c->ignore().excluded("a"));
  // Without the per-Dockerfile file the context's applies.
  sfs::remove(d / "df/app.Dockerfile.dockerignore");
  auto c2 = BuildContext::open(opts((d / "ctx").string(), (d / "df/app.Dockerfile").string()));
  REQUIRE(c2);
  CHECK(c2->ignore().excluded("a"));
}

TEST_CASE("context: Dockerfile from stdin with a directory context", "[builder]") {
  ScratchDir d;
  sfs::create_directories(d / "ctx");
  auto fd = data_fd(d, "in", "FROM scratch\nCOPY x /\n");
  auto c = BuildContext::open(opts((d / "ctx").string(), "-", fd.get()));
  REQUIRE(c);
  CHECK(c->dockerfile_name() == "-");
  CHECK(c->dockerfile_text() == "FROM scratch\nCOPY x /\n");
}

TEST_CASE("context: tar context on stdin is extracted and removed afterwards", "[builder]") {
  using namespace imgbuild::test;
  ScratchDir d;
  std::string tarball = make_layer({file("Dockerfile", "FROM scratch\n"), dir("src"), file("src/a.txt", "A"),
                                    file(".dockerignore", "src/ignored\n"), file("src/ignored", "x")},
                                   tar::Compression::gzip);
  auto fd = data_fd(d, "ctx.tar.gz", tarball);
  std::string extracted;
  {
    auto c = BuildContext::open(opts("-", "", fd.get(), d.path().string()));
    REQUIRE(c);
    extracted = c->dir();
    CHECK(c->dockerfile_text() == "FROM scratch\n");
    CHECK(test::read_text(sfs::path(extracted) / "src/a.txt") == "A");
    CHECK(c->ignore().excluded("src/ignored"));
  }
  CHECK_FALSE(sfs::exists(extracted));
}

TEST_CASE("context: a plain Dockerfile on stdin gives an empty context", "[builder]") {
  ScratchDir d;
  auto fd = data_fd(d, "in", "FROM busybox\nRUN true\n");
  auto c = BuildContext::open(opts("-", "", fd.get(), d.path().string()));
  REQUIRE(c);
  CHECK(c->dockerfile_text() == "FROM busybox\nRUN true\n");
  CHECK(sfs::is_empty(c->dir()));
  auto both = BuildContext::open(opts("-", "-", fd.get()));
  REQUIRE_FALSE(both);
}

TEST_CASE("context: wildcard sources, no match is fine, missing literal is not found", "[builder]") {
  ScratchDir d;
  write_text(d / "a.txt", "a");
  write_text(d / "b.txt", "b");
  write_text(d / ".hidden.txt", "h");
  sfs::create_directories(d / "dir/sub");
  write_text(d / "dir/sub/c.txt", "c");
  auto root = fs::Root::open(d.path().string());
  REQUIRE(root);
  SourceTree tree{&*root, nullptr};

  auto m = select_sources(tree, "*.txt");
  REQUIRE(m);
  CHECK(named(*m) == std::vector<std::string>{".hidden.txt", "a.txt", "b.txt"});
  auto deep = select_sources(tree, "d?r/*/[a-c].txt");
  REQUIRE(deep);
  CHECK(named(*deep) == std::vector<std::string>{"dir/sub/c.txt"});
  auto none = select_sources(tree, "*.nomatch");
  REQUIRE(none);
  CHECK(none->empty());
  auto missing = select_sources(tree, "missing/x");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message == "failed to compute cache key: \"/missing/x\": not found");
}

TEST_CASE("context: ** matches any number of directories only for --parents", "[builder]") {
  ScratchDir d;
  sfs::create_directories(d / "src/app/sub");
  write_text(d / "src/top.md", "t");
  write_text(d / "src/app/sub/readme.md", "r");
  write_text(d / "src/app/x.txt", "x");
  auto root = fs::Root::open(d.path().string());
  REQUIRE(root);
  SourceTree tree{&*root, nullptr};
  auto deep = select_sources(tree, "src/**/*.md", nullptr, true);
  REQUIRE(deep);
  CHECK(named(*deep) == std::vector<std::string>{"src/app/sub/readme.md", "src/top.md"});
  // Without --parents, ** is one component like *.
  auto flat = select_sources(tree, "src/**/*.md");
  REQUIRE(flat);
  CHECK(flat->empty());
}

TEST_CASE("context: .. and leading / never leave the context", "[builder]") {
  ScratchDir d;
  sfs::create_directories(d / "ctx/etc");
  write_text(d / "outside", "secret");
  auto root = fs::Root::open((d / "ctx").string());
  REQUIRE(root);
  SourceTree tree{&*root, nullptr};
  auto up = select_sources(tree, "../../etc/passwd");
  REQUIRE_FALSE(up);
  CHECK(up.error().message == "failed to compute cache key: \"/etc/passwd\": not found");
  CHECK_FALSE(select_sources(tree, "../outside"));
  write_text(d / "ctx/etc/passwd", "inside");
  auto abs = select_sources(tree, "/etc/passwd");
  REQUIRE(abs);
  REQUIRE(abs->size() == 1);
  CHECK((*abs)[0].path == "etc/passwd");
}

TEST_CASE("context: symlinks resolve inside the context - symlinked dirs are followed", "[builder]") {
  ScratchDir d;
  sfs::create_directories(d / "ctx/real");
  write_text(d / "ctx/real/f", "F");
  sfs::create_symlink("/etc/passwd", d / "ctx/evil");
  sfs::create_symlink("../../../../etc", d / "ctx/evil2");
  sfs::create_symlink("real", d / "ctx/linkdir");
  sfs::create_symlink("/real/f", d / "ctx/abslink");
  auto root = fs::Root::open((d / "ctx").string());
  REQUIRE(root);
  SourceTree tree{&*root, nullptr};
  auto evil = select_sources(tree, "evil");
  REQUIRE_FALSE(evil);  // /etc/passwd of the context, which does not exist
  CHECK(evil.error().message.find("not found") != std::string::npos);
  CHECK_FALSE(select_sources(tree, "evil2/passwd"));
  auto through = select_sources(tree, "linkdir/f");
  REQUIRE(through);
  REQUIRE(through->size() == 1);
  CHECK((*through)[0].path == "real/f");
  CHECK((*through)[0].named_path == "linkdir/f");
  auto abs = select_sources(tree, "abslink");
  REQUIRE(abs);
  CHECK((*abs)[0].path == "real/f");
  CHECK(S_ISREG((*abs)[0].st.st_mode));
  // A symlink chain that loops is an error, not a hang.
  sfs::create_symlink("loop2", d / "ctx/loop1");
  sfs::create_symlink("loop1", d / "ctx/loop2");
  CHECK_FALSE(select_sources(tree, "loop1"));
}

TEST_CASE("context: ignored files are never selected or walked", "[builder]") {
  ScratchDir d;
  sfs::create_directories(d / "build/keep");
  sfs::create_directories(d / "node_modules/x");
  write_text(d / "build/out", "o");
  write_text(d / "build/keep/k", "k");
  write_text(d / "node_modules/x/y", "y");
  write_text(d / "secret.key", "s");
  write_text(d / "main.c", "m");
  sfs::create_symlink("secret.key", d / "link-to-secret");
  auto ignore = IgnoreMatcher::parse("build\n!build/keep\nnode_modules\n*.key\n", ".dockerignore");
  REQUIRE(ignore);
  auto root = fs::Root::open(d.path().string());
  REQUIRE(root);
  SourceTree tree{&*root, &*ignore};

  CHECK_FALSE(select_sources(tree, "secret.key"));
  CHECK_FALSE(select_sources(tree, "node_modules"));
  CHECK_FALSE(select_sources(tree, "link-to-secret"));  // resolves to an ignored file
  auto star = select_sources(tree, "*");
  REQUIRE(star);
  CHECK(named(*star) == std::vector<std::string>{"build", "main.c"});

  auto all = select_sources(tree, ".");
  REQUIRE(all);
  auto rels = walk_rels(tree, (*all)[0]);
  CHECK(rels == std::vector<std::string>{"", "build", "build/keep", "build/keep/k", "link-to-secret", "main.c"});

  auto ex = IgnoreMatcher::from_patterns({"*.c"});
  REQUIRE(ex);
  auto rels2 = walk_rels(tree, (*all)[0], &*ex);
  CHECK(rels2 == std::vector<std::string>{"", "build", "build/keep", "build/keep/k", "link-to-secret"});
}

TEST_CASE("context: a stdin tar with ../ entries is refused and writes nothing outside", "[builder]") {
  using namespace imgbuild::test;
  ScratchDir d;
  std::string tarball = make_layer({file("Dockerfile", "FROM scratch\n"), file("../escaped", "x")});
  auto fd = data_fd(d, "ctx.tar", tarball);
  auto c = BuildContext::open(opts("-", "", fd.get(), d.path().string()));
  CHECK_FALSE(c);
  CHECK_FALSE(sfs::exists(d / "escaped"));
  CHECK_FALSE(sfs::exists(d.path().parent_path() / "escaped"));
}

TEST_CASE("context: a stage rootfs with a symlink to / stays inside that rootfs", "[builder]") {
  ScratchDir d;
  sfs::create_directories(d / "stage/etc");
  write_text(d / "stage/etc/passwd", "stage-passwd");
  sfs::create_symlink("/", d / "stage/link");
  sfs::create_symlink("../../../../..", d / "stage/up");
  auto root = fs::Root::open((d / "stage").string());
  REQUIRE(root);
  SourceTree tree{&*root, nullptr};
  auto a = select_sources(tree, "/link/etc/passwd");
  REQUIRE(a);
  CHECK((*a)[0].path == "etc/passwd");
  auto b = select_sources(tree, "up/etc/passwd");
  REQUIRE(b);
  CHECK((*b)[0].path == "etc/passwd");
  auto star = select_sources(tree, "link/etc/pass*");
  REQUIRE(star);
  REQUIRE(star->size() == 1);
  CHECK((*star)[0].path == "etc/passwd");
}
