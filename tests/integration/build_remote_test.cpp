// Remote ADD sources through the real binary, with no internet: files over
// HTTPS from a python3 server on loopback whose certificate is signed by a
// CA made at test time (trusted through SSL_CERT_FILE, as Go programs such as
// BuildKit read it), --checksum and its errors, an unreachable host; and git
// repositories served over HTTP (ref, subdir, --keep-git-dir, commit
// checksum).

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "support/http_server.hpp"
#include "support/require.hpp"
#include "util/hash.hpp"

namespace fs = std::filesystem;
using imgbuild::test::have_tool;
using imgbuild::test::HttpServer;
using imgbuild::test::read_file;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::unpack_saved;
using imgbuild::test::write_file;
using namespace imgbuild::test::build;
using nlohmann::json;

namespace {

// A CA and a server certificate for 127.0.0.1 signed by it, made by openssl.
struct TestCa {
  fs::path ca_cert;
  fs::path server_cert;
  fs::path server_key;
  explicit TestCa(const fs::path& dir) {
    fs::create_directories(dir);
    ca_cert = dir / "ca.crt";
    server_cert = dir / "server.crt";
    server_key = dir / "server.key";
    std::string d = sh_quote(dir.string());
    RunResult r = run_sh(
        "set -e; cd " + d +
        "; openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=imgbuild-test-ca"
        "; openssl req -new -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1"
        "; printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf"
        "; openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2"
        " -extfile ext.cnf");
    INFO(r.err);
    REQUIRE(r.status == 0);
  }
};

bool have_prereqs() { return have_busybox() && ::geteuid() == 0; }

}  // namespace

TEST_CASE("build remote: ADD from an https URL with --checksum, --unpack, mismatch, unknown CA, unreachable",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(have_tool("openssl") && have_tool("python3"), "openssl and python3 serve the https files");
  Fixture fx;
  TestCa ca(fx.work.path / "ca");
  fs::path www = fx.work.path / "www";
  fs::create_directories(www / "arch");
  write_file(www / "data.txt", "served over https\n");
  REQUIRE(run_sh("touch -d @1500000000 " + sh_quote((www / "data.txt").string())).status == 0);
  write_file(www / "arch" / "inner.txt", "inside the archive\n");
  REQUIRE(run_sh("tar -czf " + sh_quote((www / "arch.tar.gz").string()) + " -C " + sh_quote((www / "arch").string()) +
                 " inner.txt")
              .status == 0);
  HttpServer server(www, ca.server_cert, ca.server_key);
  REQUIRE(server.ok());
  std::string sum = imgbuild::sha256("served over https\n").str();

  std::string df = "FROM busybox\n"
                   "ARG SUM=" + sum + "\n"
                   "ADD --checksum=$SUM " + server.url("/data.txt") + " /dl/\n"
                   "ADD " + server.url("/arch.tar.gz") + " /raw/\n"
                   "ADD --unpack=true " + server.url("/arch.tar.gz") + " /unpacked/\n";
  fs::path out = fx.work.path / "https.tar";
  {
    ScopedEnv trust("SSL_CERT_FILE", ca.ca_cert.string());
    RunResult r = fx.build("https", df, {}, {"-o", "type=docker,dest=" + out.string()});
    INFO(r.err);
    REQUIRE(r.status == 0);
  }
  Saved s = read_saved(out, fx.work.path);
  REQUIRE(s.layers.size() == 4);
  // A URL file: mode 0600, named after the URL path, mtime from Last-Modified.
  const FileInfo& dl = s.layers[1].at("dl/data.txt");
  CHECK(dl.content == "served over https\n");
  CHECK(dl.mode == 0600);
  CHECK(dl.uid == 0);
  imgbuild::test::SavedArchive raw = unpack_saved(out, fx.work.path / "https-raw");
  CHECK(layer_mtimes(raw.layers[1]).at("dl/data.txt") == 1500000000);
  // A URL archive is not extracted unless --unpack=true.
  CHECK(s.layers[2].at("raw/arch.tar.gz").type == "file");
  CHECK(s.layers[2].at("raw/arch.tar.gz").mode == 0600);
  CHECK(s.layers[2].count("raw/inner.txt") == 0);
  CHECK(s.layers[3].at("unpacked/inner.txt").content == "inside the archive\n");
  // History texts leave the flags out, as BuildKit writes them.
  CHECK(history_created_by(s.config).back() == "ADD " + server.url("/arch.tar.gz") + " /unpacked/ # buildkit");

  // A wrong checksum fails the step and names both digests.
  std::string wrong = imgbuild::sha256("something else").str();
  {
    ScopedEnv trust("SSL_CERT_FILE", ca.ca_cert.string());
    RunResult bad = fx.build("https-bad", "FROM busybox\nADD --checksum=" + wrong + " " + server.url("/data.txt") +
                                              " /dl/\n", {});
    CHECK(bad.status == 1);
    CHECK(bad.err.find("digest mismatch") != std::string::npos);
    CHECK(bad.err.find(wrong) != std::string::npos);
    CHECK(bad.err.find(sum) != std::string::npos);
    CHECK(bad.err.find("Dockerfile:2") != std::string::npos);
  }

  // Without the test CA the server is not trusted.
  {
    ScopedEnv system_cas("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt");
    RunResult untrusted = fx.build("https-untrusted", "FROM busybox\nADD " + server.url("/data.txt") + " /dl/\n", {});
    CHECK(untrusted.status == 1);
    CHECK(untrusted.err.find("failed to load " + server.url("/data.txt")) != std::string::npos);
  }

  // Nothing listening: a clear network error naming the URL.
  std::string closed = "https://127.0.0.1:" + std::to_string(imgbuild::test::free_loopback_port()) + "/data.txt";
  RunResult down = fx.build("https-down", "FROM busybox\nADD " + closed + " /dl/\n", {});
  CHECK(down.status == 1);
  CHECK(down.err.find("failed to load " + closed) != std::string::npos);
  CHECK(down.err.find("is the network reachable?") != std::string::npos);

  // --checksum needs a remote source.
  RunResult local = fx.build("https-local", "FROM busybox\nADD --checksum=" + sum + " data.txt /\n",
                             {{"data.txt", "served over https\n"}});
  CHECK(local.status == 1);
  CHECK(local.err.find("checksum requires HTTP(S) or Git sources") != std::string::npos);
}

TEST_CASE("build remote: ADD from a git repository - ref, subdir, --keep-git-dir, commit checksum",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  IMGBUILD_REQUIRE_PREREQ(have_tool("git") && have_tool("python3"), "git and python3 serve the repository");
  Fixture fx;
  fs::path work = fx.work.path / "repo";
  fs::path www = fx.work.path / "www";
  fs::create_directories(work);
  fs::create_directories(www);
  std::string w = sh_quote(work.string());
  RunResult made = run_sh(
      "set -e; cd " + w +
      "; git init -q -b main .; git config user.email t@example.com; git config user.name t"
      "; mkdir sub; echo one > sub/f; echo top > top; printf '#!/bin/sh\\n' > run.sh; chmod 0755 run.sh"
      "; git add .; git commit -qm one; git tag v1"
      "; echo two > sub/f; git commit -qam two; git checkout -q -b feature; echo feat > feat.txt; git add feat.txt"
      "; git commit -qm feat; git checkout -q main"
      "; git clone -q --bare . " + sh_quote((www / "repo.git").string()) +
      "; cd " + sh_quote((www / "repo.git").string()) + "; git update-server-info");
  INFO(made.err);
  REQUIRE(made.status == 0);
  std::string v1 = run_sh("git -C " + w + " rev-parse v1").out;
  while (!v1.empty() && v1.back() == '\n') {
    v1.pop_back();
  }
  REQUIRE(v1.size() == 40);
  HttpServer server(www);
  REQUIRE(server.ok());
  std::string repo = server.url("/repo.git");

  std::string df = "FROM busybox\n"
                   "ADD " + repo + " /head/\n"
                   "ADD " + repo + "#v1:sub /tag-sub/\n"
                   "ADD --keep-git-dir=true " + repo + "?branch=feature /keep/\n"
                   "ADD --checksum=" + v1 + " " + repo + "#v1 /pinned/\n"
                   "RUN git_head=$(cat /keep/.git/HEAD) && echo \"$git_head\" > /keep-head.txt\n"
                   "ADD " + repo + "?tag=v1&subdir=sub&checksum=" + v1 + " /query/\n";
  fs::path out = fx.work.path / "git.tar";
  RunResult r = fx.build("git", df, {}, {"-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  Saved s = read_saved(out, fx.work.path);
  REQUIRE(s.layers.size() == 7);
  // The default branch's head, without .git.
  CHECK(s.layers[1].at("head/sub/f").content == "two\n");
  CHECK(s.layers[1].at("head/top").content == "top\n");
  CHECK(s.layers[1].at("head/run.sh").mode == 0755);
  CHECK(s.layers[1].count("head/feat.txt") == 0);
  CHECK(s.layers[1].count("head/.git") == 0);
  // #ref:subdir: the tag's tree, only the subdir.
  CHECK(s.layers[2].at("tag-sub/f").content == "one\n");
  CHECK(s.layers[2].count("tag-sub/top") == 0);
  // ?branch= with --keep-git-dir: the branch and its .git.
  CHECK(s.layers[3].at("keep/feat.txt").content == "feat\n");
  CHECK(s.layers[3].count("keep/.git") == 1);
  // --checksum is the commit the ref must resolve to.
  CHECK(s.layers[4].at("pinned/sub/f").content == "one\n");
  CHECK(s.layers[5].count("keep-head.txt") == 1);
  // The same through query keys: tag, subdir, checksum.
  CHECK(s.layers[6].at("query/f").content == "one\n");
  CHECK(s.layers[6].count("query/top") == 0);

  // A ref that resolves to another commit fails.
  std::string other(40, 'a');
  RunResult bad = fx.build("git-bad", "FROM busybox\nADD --checksum=" + other + " " + repo + "#v1 /pinned/\n", {});
  CHECK(bad.status == 1);
  CHECK(bad.err.find(other) != std::string::npos);
  // A missing ref is named.
  RunResult noref = fx.build("git-noref", "FROM busybox\nADD " + repo + "#nosuchref /x/\n", {});
  CHECK(noref.status == 1);
  CHECK(noref.err.find("nosuchref") != std::string::npos);
  // COPY takes no remote sources.
  RunResult copy = fx.build("git-copy", "FROM busybox\nCOPY " + repo + " /x/\n", {});
  CHECK(copy.status == 1);
  CHECK(copy.err.find("source can't be a URL for COPY") != std::string::npos);
}
