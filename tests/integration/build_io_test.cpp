// Build inputs, outputs and run-time services through the real binary: the
// context and Dockerfile from stdin and from elsewhere, build secrets from
// files and the environment (masked in the log), the SSH agent socket, RUN
// networking, SOURCE_DATE_EPOCH, outputs to stdout, the metadata and iid
// files, and how failures are reported (rendering and exit status).

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "build_fixture.hpp"
#include "harness.hpp"
#include "support/require.hpp"
#include "util/hash.hpp"

namespace fs = std::filesystem;
using imgbuild::test::imgbuild_binary;
using imgbuild::test::read_file;
using imgbuild::test::run_imgbuild;
using imgbuild::test::run_sh;
using imgbuild::test::RunResult;
using imgbuild::test::sh_quote;
using imgbuild::test::unpack_saved;
using imgbuild::test::write_file;
using namespace imgbuild::test::build;
using nlohmann::json;

namespace {

bool have_prereqs() { return have_busybox() && ::geteuid() == 0; }

// `imgbuild --root ROOT` as a shell word list, for pipelines.
std::string imgbuild_cmd(const fs::path& root) {
  return sh_quote(imgbuild_binary().string()) + " --root " + sh_quote(root.string());
}

// The output lines of the step whose "#N [...]" title line contains
// `title`, in a plain progress log, without their "#N 0.123 " prefix.
std::vector<std::string> step_output(const std::string& log, const std::string& title) {
  std::vector<std::string> out;
  std::istringstream in(log);
  std::string id;
  for (std::string line; std::getline(in, line);) {
    if (id.empty()) {
      if (line.starts_with("#") && line.find(" [") != std::string::npos && line.find(title) != std::string::npos) {
        id = line.substr(0, line.find(' ') + 1);
      }
      continue;
    }
    if (!line.starts_with(id) || line.size() == id.size() || std::isdigit(static_cast<unsigned char>(line[id.size()])) == 0) {
      continue;
    }
    size_t sp = line.find(' ', id.size());
    out.push_back(sp == std::string::npos ? "" : line.substr(sp + 1));
  }
  return out;
}

// The rest of the first line that starts with `prefix` ("(none)" if none).
std::string line_after(const std::vector<std::string>& lines, const std::string& prefix) {
  for (const auto& l : lines) {
    if (l.starts_with(prefix)) {
      return l.substr(prefix.size());
    }
  }
  return "(none)";
}

// The interface names in /proc/net/dev lines.
std::set<std::string> interfaces(const std::vector<std::string>& net_dev) {
  std::set<std::string> out;
  for (const auto& line : net_dev) {
    size_t colon = line.find(':');
    if (colon == std::string::npos || line.find('|') != std::string::npos || line.starts_with("cache miss")) {
      continue;
    }
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    out.insert(name);
  }
  return out;
}

// The lines of a text.
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

}  // namespace

TEST_CASE("build io: context as a tar on stdin, Dockerfile on stdin, named dockerfile, symlink, outside the context",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  // A tar context on stdin, with its own .dockerignore and a subdirectory.
  fs::path ctx = fx.work.path / "tarctx";
  fs::create_directories(ctx / "sub");
  write_file(ctx / "Dockerfile", "FROM busybox\nCOPY . /ctx/\nRUN cat /ctx/sub/s.txt > /ran.txt\n");
  write_file(ctx / ".dockerignore", "*.log\n");
  write_file(ctx / "a.txt", "a\n");
  write_file(ctx / "drop.log", "dropped\n");
  write_file(ctx / "sub" / "s.txt", "from the tar\n");
  fs::path out = fx.work.path / "tarctx.tar";
  RunResult t = run_sh("tar -C " + sh_quote(ctx.string()) + " -cf - . | " + imgbuild_cmd(fx.root) +
                       " build --progress plain -o type=docker,dest=" + sh_quote(out.string()) + " -");
  INFO(t.err);
  REQUIRE(t.status == 0);
  LayerFiles files = merged(read_saved(out, fx.work.path));
  CHECK(files.at("ctx/a.txt").content == "a\n");
  CHECK(files.at("ctx/sub/s.txt").content == "from the tar\n");
  CHECK(files.count("ctx/drop.log") == 0);
  CHECK(files.at("ran.txt").content == "from the tar\n");

  // A tar context with -f naming a Dockerfile inside it.
  write_file(ctx / "other.Dockerfile", "FROM busybox\nCOPY sub/s.txt /other.txt\n");
  fs::path out2 = fx.work.path / "tarctx-f.tar";
  RunResult tf = run_sh("tar -C " + sh_quote(ctx.string()) + " -cf - . | " + imgbuild_cmd(fx.root) +
                        " build --progress plain -f other.Dockerfile -o type=docker,dest=" +
                        sh_quote(out2.string()) + " -");
  INFO(tf.err);
  REQUIRE(tf.status == 0);
  CHECK(merged(read_saved(out2, fx.work.path)).at("other.txt").content == "from the tar\n");

  // The Dockerfile on stdin with a directory context (the build command
  // without the word `build`).
  fs::path dctx = fx.work.path / "dirctx";
  fs::create_directories(dctx);
  write_file(dctx / "in-ctx.txt", "context file\n");
  fs::path out3 = fx.work.path / "stdin-df.tar";
  RunResult s = run_sh("printf 'FROM busybox\\nCOPY in-ctx.txt /copied.txt\\n' | " + imgbuild_cmd(fx.root) +
                       " -f - --progress plain -o type=docker,dest=" + sh_quote(out3.string()) + " " +
                       sh_quote(dctx.string()));
  INFO(s.err);
  REQUIRE(s.status == 0);
  CHECK(merged(read_saved(out3, fx.work.path)).at("copied.txt").content == "context file\n");
  // Both on stdin cannot work.
  RunResult both = run_sh("true | " + imgbuild_cmd(fx.root) + " build -f - -");
  CHECK(both.status == 2);

  // A Dockerfile named `dockerfile`, and a Dockerfile that is a symlink.
  fs::path lower = fx.work.path / "lowerctx";
  fs::create_directories(lower / "real");
  write_file(lower / "dockerfile", "FROM busybox\nRUN echo lower > /lower.txt\n");
  fs::path out4 = fx.work.path / "lower.tar";
  RunResult l = run_imgbuild(fx.root, {"build", "--progress", "plain", "-o", "type=docker,dest=" + out4.string(),
                                       lower.string()});
  INFO(l.err);
  REQUIRE(l.status == 0);
  CHECK(merged(read_saved(out4, fx.work.path)).at("lower.txt").content == "lower\n");
  fs::remove(lower / "dockerfile");
  write_file(lower / "real" / "build.df", "FROM busybox\nRUN echo linked > /linked.txt\n");
  fs::create_symlink("real/build.df", lower / "Dockerfile");
  fs::path out5 = fx.work.path / "linked.tar";
  RunResult sl = run_imgbuild(fx.root, {"build", "--progress", "plain", "-o", "type=docker,dest=" + out5.string(),
                                        lower.string()});
  INFO(sl.err);
  REQUIRE(sl.status == 0);
  CHECK(merged(read_saved(out5, fx.work.path)).at("linked.txt").content == "linked\n");

  // The Dockerfile outside the context: its own <Dockerfile>.dockerignore
  // (next to it) wins over the context's .dockerignore.
  fs::path elsewhere = fx.work.path / "elsewhere";
  fs::path cctx = fx.work.path / "cctx";
  fs::create_directories(elsewhere);
  fs::create_directories(cctx);
  write_file(elsewhere / "app.Dockerfile", "FROM busybox\nCOPY . /app/\n");
  write_file(elsewhere / "app.Dockerfile.dockerignore", "*.md\n");
  write_file(cctx / ".dockerignore", "*.txt\n");
  write_file(cctx / "keep.txt", "kept\n");
  write_file(cctx / "drop.md", "dropped\n");
  fs::path out6 = fx.work.path / "outside.tar";
  RunResult o = run_imgbuild(fx.root, {"build", "--progress", "plain", "-f", (elsewhere / "app.Dockerfile").string(),
                                       "-o", "type=docker,dest=" + out6.string(), cctx.string()});
  INFO(o.err);
  REQUIRE(o.status == 0);
  LayerFiles app = merged(read_saved(out6, fx.work.path));
  CHECK(app.at("app/keep.txt").content == "kept\n");
  CHECK(app.count("app/drop.md") == 0);
  CHECK(app.count("app/app.Dockerfile") == 0);
}

TEST_CASE("build io: secrets from a file and the environment - masked in the log, never in the image",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  fs::path secret_file = fx.work.path / "token.txt";
  write_file(secret_file, "file-secret-4711\n");
  ScopedEnv env("IMGBUILD_TEST_FEATURES_SECRET", "env-secret-0815");
  const char* df =
      "FROM busybox\n"
      "RUN --mount=type=secret,id=fromenv,env=TOKEN echo \"token=$TOKEN\" && echo \"$TOKEN\" | wc -c > /len.txt\n"
      "RUN --mount=type=secret,id=fromfile cat /run/secrets/fromfile && "
      "stat -c 'mode=%a' /run/secrets/fromfile > /mode.txt\n"
      "RUN --mount=type=secret,id=fromfile,target=/etc/tok,uid=1000,mode=0440 stat -c '%a %u' /etc/tok\n"
      "RUN --mount=type=secret,id=fromenv,env=TOKEN,target=/both sh -c 'test \"$(cat /both)\" = \"$TOKEN\"' && "
      "echo both-ok\n";
  fs::path out = fx.work.path / "secrets.tar";
  fs::path md = fx.work.path / "md.json";
  RunResult r = fx.build("secrets", df, {},
                         {"--secret", "id=fromenv,env=IMGBUILD_TEST_FEATURES_SECRET", "--secret",
                          "id=fromfile,src=" + secret_file.string(), "-o", "type=docker,dest=" + out.string(),
                          "--metadata-file", md.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  // The values reached the steps but every printed copy is masked.
  CHECK(line_after(step_output(r.err, "2/5]"), "token=") == "****");
  CHECK(r.err.find("env-secret-0815") == std::string::npos);
  CHECK(r.err.find("file-secret-4711") == std::string::npos);
  CHECK(step_output(r.err, "3/5]").back() == "****");  // the file's value, printed by cat
  CHECK(step_output(r.err, "4/5]").back() == "440 1000");
  CHECK(step_output(r.err, "5/5]").back() == "both-ok");
  Saved s = read_saved(out, fx.work.path);
  LayerFiles files = merged(s);
  CHECK(files.at("len.txt").content == "16\n");
  CHECK(files.at("mode.txt").content == "mode=400\n");
  // No stub and no value in a layer, the history or the config.
  for (const auto& layer : s.layers) {
    CHECK(layer.count("run/secrets/fromfile") == 0);
    CHECK(layer.count("etc/tok") == 0);
    CHECK(layer.count("both") == 0);
    for (const auto& [path, f] : layer) {
      CHECK(f.content.find("secret-") == std::string::npos);
    }
  }
  CHECK(s.config_bytes.find("secret-") == std::string::npos);
  CHECK(read_file(md).find("secret-") == std::string::npos);

  // A required secret that was not given; an optional one is just absent.
  RunResult missing = fx.build("secrets-missing", "FROM busybox\nRUN --mount=type=secret,id=absent,required cat "
                                                  "/run/secrets/absent\n", {});
  CHECK(missing.status == 1);
  CHECK(missing.err.find("secret absent: not found") != std::string::npos);
  RunResult optional = fx.build("secrets-optional", "FROM busybox\nRUN --mount=type=secret,id=absent "
                                                    "test ! -e /run/secrets/absent && echo optional-ok\n", {});
  INFO(optional.err);
  CHECK(optional.status == 0);
  CHECK(step_output(optional.err, "2/2]").back() == "optional-ok");
}

TEST_CASE("build io: --ssh default forwards the agent socket, RUN --network none and host", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  // An agent socket (nothing needs to answer: the step checks what it sees).
  fs::path sock = fx.work.path / "agent.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  REQUIRE(::chmod(sock.c_str(), 0755) == 0);
  ScopedEnv agent("SSH_AUTH_SOCK", sock.string());
  const char* df =
      "FROM busybox\n"
      "RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"agent=$SSH_AUTH_SOCK\" && "
      "stat -c 'mode=%a %u:%g' \"$SSH_AUTH_SOCK\"\n"
      "RUN --mount=type=ssh,target=/tmp/agent.sock,uid=1000,gid=29,mode=0660 test -S /tmp/agent.sock && "
      "echo \"agent2=$SSH_AUTH_SOCK\" && stat -c 'mode=%a %u:%g' /tmp/agent.sock\n"
      "RUN echo \"noagent=${SSH_AUTH_SOCK:-unset}\"\n"
      "RUN --network=none cat /proc/net/dev\n";
  RunResult r = fx.build("ssh", df, {}, {"--ssh", "default"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  // The step's own socket: root's 0600 by default, else the mount's owner
  // and mode (the client's socket is 0755 here).
  CHECK(line_after(step_output(r.err, "2/5]"), "agent=") == "/run/buildkit/ssh_agent.0");
  CHECK(line_after(step_output(r.err, "2/5]"), "mode=") == "600 0:0");
  CHECK(line_after(step_output(r.err, "3/5]"), "agent2=") == "/tmp/agent.sock");
  CHECK(line_after(step_output(r.err, "3/5]"), "mode=") == "660 1000:29");
  CHECK(line_after(step_output(r.err, "4/5]"), "noagent=") == "unset");
  // --network=none: the loopback interface only.
  CHECK(interfaces(step_output(r.err, "5/5]")) == std::set<std::string>{"lo"});
  ::close(fd);

  // Without --ssh a required ssh mount fails before the command runs.
  RunResult no_ssh = fx.build("ssh-missing", "FROM busybox\nRUN --mount=type=ssh,required=true echo ran-anyway\n", {});
  CHECK(no_ssh.status == 1);
  std::vector<std::string> no_ssh_out = step_output(no_ssh.err, "2/2]");
  CHECK(std::find(no_ssh_out.begin(), no_ssh_out.end(), "ran-anyway") == no_ssh_out.end());
  CHECK(no_ssh.err.find("--ssh default") != std::string::npos);

  // --network host: the host's interfaces.
  RunResult host = fx.build("net-host", "FROM busybox\nRUN cat /proc/net/dev\n", {},
                            {"--network", "host"});
  INFO(host.err);
  REQUIRE(host.status == 0);
  std::set<std::string> host_ifs = interfaces(lines_of(read_file("/proc/net/dev")));
  CHECK(host_ifs.size() > 1);
  CHECK(interfaces(step_output(host.err, "2/2]")) == host_ifs);
  // --network none for the whole build.
  RunResult all_none = fx.build("net-none", "FROM busybox\nRUN cat /proc/net/dev\n", {},
                                {"--network", "none"});
  INFO(all_none.err);
  REQUIRE(all_none.status == 0);
  CHECK(interfaces(step_output(all_none.err, "2/2]")) == std::set<std::string>{"lo"});
}

TEST_CASE("build io: SOURCE_DATE_EPOCH sets created times and clamps new layers only", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  const char* df =
      "FROM busybox\n"
      "COPY a.txt /a.txt\n"
      "RUN touch -d @5 /old && touch -d @2000000000 /future && echo now > /now\n"
      "ENV X=1\n";
  fs::path out = fx.work.path / "sde.tar";
  RunResult r = fx.build("sde", df, {{"a.txt", "a\n"}},
                         {"--build-arg", "SOURCE_DATE_EPOCH=1000000", "-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  imgbuild::test::SavedArchive a = unpack_saved(out, fx.work.path / "sde");
  REQUIRE(a.layers.size() == 3);
  auto copy = layer_mtimes(a.layers[1]);
  auto run = layer_mtimes(a.layers[2]);
  CHECK(copy.at("a.txt") == 1000000);   // the context file is newer: clamped
  CHECK(run.at("old") == 5);            // older times are kept
  CHECK(run.at("future") == 1000000);   // newer ones clamped
  CHECK(run.at("now") == 1000000);
  // The base layer is never rewritten: the imported file times stay.
  auto base = layer_mtimes(a.layers[0]);
  CHECK(base.at("etc/passwd") != 1000000);
  CHECK(a.config["created"] == "1970-01-12T13:46:40Z");
  for (size_t i = 1; i < a.config["history"].size(); ++i) {
    CHECK(a.config["history"][i]["created"] == "1970-01-12T13:46:40Z");
  }

  // The environment variable works the same; the build arg wins over it.
  fs::path iid_env = fx.work.path / "iid-env";
  fs::path iid_arg = fx.work.path / "iid-arg";
  {
    ScopedEnv sde("SOURCE_DATE_EPOCH", "1000000");
    RunResult e = fx.build("sde", df, {{"a.txt", "a\n"}}, {"--no-cache", "--iidfile", iid_env.string()});
    INFO(e.err);
    REQUIRE(e.status == 0);
    RunResult w = fx.build("sde", df, {{"a.txt", "a\n"}},
                           {"--build-arg", "SOURCE_DATE_EPOCH=1000000", "--iidfile", iid_arg.string()});
    INFO(w.err);
    REQUIRE(w.status == 0);
  }
  CHECK(read_file(iid_env) == imgbuild::sha256(a.config_bytes).str());
  CHECK(read_file(iid_arg) == read_file(iid_env));

  RunResult bad = fx.build("sde-bad", "FROM busybox\n", {}, {"--build-arg", "SOURCE_DATE_EPOCH=soon"});
  CHECK(bad.status == 1);
  CHECK(bad.err.find("invalid SOURCE_DATE_EPOCH: soon") != std::string::npos);
}

TEST_CASE("build io: outputs to stdout and short forms, the metadata file and --iidfile", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  fs::path ctx = fx.work.path / "ctx";
  fs::create_directories(ctx);
  write_file(ctx / "Dockerfile", "FROM busybox\nCOPY a.txt /a.txt\nRUN echo made > /made\nLABEL k=v\n");
  write_file(ctx / "a.txt", "a\n");
  std::string build = imgbuild_cmd(fx.root) + " build --progress plain ";

  // type=docker to stdout: a loadable archive.
  fs::path docker_out = fx.work.path / "stdout-docker.tar";
  RunResult d = run_sh(build + "-o type=docker,dest=- " + sh_quote(ctx.string()) + " > " +
                       sh_quote(docker_out.string()));
  INFO(d.err);
  REQUIRE(d.status == 0);
  Saved s = read_saved(docker_out, fx.work.path);
  CHECK(merged(s).at("made").content == "made\n");
  CHECK(s.config["config"]["Labels"] == json::parse(R"({"k":"v"})"));

  // `-o -`: the rootfs as a tar on stdout; `-o DIR`: the rootfs as files;
  // `-o FILE.tar`: the docker archive.
  fs::path rootfs_tar = fx.work.path / "rootfs.tar";
  fs::path dir = fx.work.path / "rootfs-dir";
  fs::path short_tar = fx.work.path / "short.tar";
  RunResult t = run_sh(build + "-o - -o " + sh_quote(dir.string()) + " -o " + sh_quote(short_tar.string()) + " " +
                       sh_quote(ctx.string()) + " > " + sh_quote(rootfs_tar.string()));
  INFO(t.err);
  REQUIRE(t.status == 0);
  RunResult list = run_sh("tar -tf " + sh_quote(rootfs_tar.string()));
  CHECK(list.out.find("made\n") != std::string::npos);
  CHECK(list.out.find("bin/busybox\n") != std::string::npos);
  CHECK(list.out.find("manifest.json") == std::string::npos);
  CHECK(read_file(dir / "made") == "made\n");
  CHECK(read_file(dir / "a.txt") == "a\n");
  Saved short_saved = read_saved(short_tar, fx.work.path);
  CHECK(short_saved.config["config"] == s.config["config"]);
  CHECK(history_created_by(short_saved.config) == history_created_by(s.config));

  // --progress quiet prints nothing; rawjson prints only JSON lines.
  RunResult quiet = run_imgbuild(fx.root, {"build", "--progress", "quiet", ctx.string()});
  CHECK(quiet.status == 0);
  CHECK(quiet.err.empty());
  CHECK(quiet.out.empty());
  RunResult raw = run_imgbuild(fx.root, {"build", "--progress", "rawjson", "--no-cache", ctx.string()});
  CHECK(raw.status == 0);
  std::vector<std::string> raw_lines = lines_of(raw.err);
  CHECK(raw_lines.size() > 3);
  for (const auto& line : raw_lines) {
    INFO(line);
    CHECK_FALSE(json::parse(line, nullptr, false).is_discarded());
  }

  // The metadata file and the iid file.
  fs::path md = fx.work.path / "md.json";
  fs::path iid = fx.work.path / "iid";
  fs::path saved = fx.work.path / "md-image.tar";
  RunResult m = run_imgbuild(fx.root, {"build", "--progress", "plain", "-t", "imgbuild-test-features-md:1",
                                       "--metadata-file", md.string(), "--iidfile", iid.string(), ctx.string()});
  INFO(m.err);
  REQUIRE(m.status == 0);
  REQUIRE(run_imgbuild(fx.root, {"save", "-o", saved.string(), "imgbuild-test-features-md:1"}).status == 0);
  imgbuild::test::SavedArchive a = unpack_saved(saved, fx.work.path / "md-image");
  json meta = json::parse(read_file(md));
  std::string config_digest = imgbuild::sha256(a.config_bytes).str();
  CHECK(read_file(iid) == config_digest);
  CHECK(meta["containerimage.config.digest"] == config_digest);
  CHECK(meta["containerimage.digest"].get<std::string>().starts_with("sha256:"));
  CHECK(meta["containerimage.descriptor"]["digest"] == meta["containerimage.digest"]);
  CHECK(meta["image.name"] == "docker.io/library/imgbuild-test-features-md:1");
  REQUIRE(meta["imgbuild.layers"].size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(meta["imgbuild.layers"][i]["diff_id"] == a.config["rootfs"]["diff_ids"][i]);
    CHECK(meta["imgbuild.layers"][i]["size"].get<uint64_t>() > 0);
  }
  const json& steps = meta["imgbuild.steps"];
  // Metadata instructions are not steps (BuildKit numbers only FROM and the
  // filesystem-changing ones).
  REQUIRE(steps.size() == 2);
  CHECK(steps[0]["name"] == "[2/3] COPY a.txt /a.txt");
  CHECK(steps[0]["line"] == 2);
  CHECK(steps[0]["layer"] == meta["imgbuild.layers"][1]["digest"]);
  CHECK(steps[1]["name"] == "[3/3] RUN echo made > /made");
  CHECK(steps[1]["line"] == 3);
  CHECK(steps[1]["layer"] == meta["imgbuild.layers"][2]["digest"]);
  for (const auto& st : steps) {
    CHECK(st["cached"].get<bool>());  // the same steps ran in the builds above
    CHECK(st["duration"].get<double>() >= 0);
  }
}

TEST_CASE("build io: failures - the failing line, the exit code, exit status 1 or 2", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  fs::path md = fx.work.path / "md.json";
  const char* df =
      "FROM busybox\n"
      "RUN echo one\n"
      "RUN echo first-line && echo last-words >&2 && exit 5\n"
      "RUN echo never\n";
  RunResult r = fx.build("fail", df, {}, {"--metadata-file", md.string()});
  CHECK(r.status == 1);
  CHECK(r.err.find("Dockerfile:3\n--------------------\n") != std::string::npos);
  CHECK(r.err.find("   2 |     RUN echo one\n") != std::string::npos);
  CHECK(r.err.find("   3 | >>> RUN echo first-line && echo last-words >&2 && exit 5\n") != std::string::npos);
  CHECK(r.err.find("   4 |     RUN echo never\n") != std::string::npos);
  std::vector<std::string> failed = step_output(r.err, "3/4]");
  CHECK(std::find(failed.begin(), failed.end(), "first-line") != failed.end());
  CHECK(std::find(failed.begin(), failed.end(), "last-words") != failed.end());
  CHECK(r.err.find("imgbuild: error: failed to solve: process \"/bin/sh -c echo first-line && echo last-words >&2 && "
                   "exit 5\" did not complete successfully: exit code: 5") != std::string::npos);
  CHECK(r.err.find("[4/4]") == std::string::npos);
  // The metadata file records the failure and its exit code.
  REQUIRE(fs::exists(md));
  json meta = json::parse(read_file(md));
  CHECK(meta["imgbuild.error"]["exit_code"] == 5);
  CHECK(meta["imgbuild.error"]["line"] == 3);
  CHECK(meta["imgbuild.error"]["message"].get<std::string>().find("exit code: 5") != std::string::npos);

  // Dockerfile errors are build failures (1), named by line.
  RunResult flag = fx.build("badflag", "FROM busybox\nCOPY --chmodd=0644 a /a\n", {{"a", "a"}});
  CHECK(flag.status == 1);
  CHECK(flag.err.find("unknown flag: --chmodd") != std::string::npos);
  CHECK(flag.err.find("did you mean chmod?") != std::string::npos);
  RunResult chmod = fx.build("badchmod", "FROM busybox\nCOPY --chmod=64a a /a\n", {{"a", "a"}});
  CHECK(chmod.status == 1);
  CHECK(chmod.err.find("invalid chmod parameter: '64a'") != std::string::npos);
  RunResult root_mount = fx.build("rootmount", "FROM busybox\nRUN --mount=type=tmpfs,target=/ true\n", {});
  CHECK(root_mount.status == 1);
  CHECK(root_mount.err.find("over the root directory") != std::string::npos);
  // Substitution errors, word for word as BuildKit's lexer words them.
  RunResult modifier = fx.build("modifier", "FROM busybox\nENV A=${B:=x}\n", {});
  CHECK(modifier.status == 1);
  CHECK(modifier.err.find("failed to process \"${B:=x}\": unsupported modifier (:=) in substitution") !=
        std::string::npos);
  RunResult unterminated = fx.build("unterminated", "FROM busybox\nLABEL a=${B\n", {});
  CHECK(unterminated.status == 1);
  CHECK(unterminated.err.find("failed to process \"${B\": syntax error: missing '}'") != std::string::npos);
  RunResult target = fx.build("target", "FROM busybox AS build\nFROM busybox\n", {}, {"--target", "bulid"});
  CHECK(target.status == 1);
  CHECK(target.err.find("target stage \"bulid\" could not be found (did you mean build?)") != std::string::npos);
  RunResult later =
      fx.build("later", "FROM busybox AS first\nCOPY --from=next /x /x\nFROM busybox AS next\n", {}, {"--target", "first"});
  CHECK(later.status == 1);
  CHECK(later.err.find("needs to be defined before current stage") != std::string::npos);
  RunResult nostage = fx.build("nostage", "ARG X=1\n", {});
  CHECK(nostage.status == 1);
  CHECK(nostage.err.find("dockerfile contains no stages to build") != std::string::npos);
  RunResult empty = fx.build("empty", "# only a comment\n", {});
  CHECK(empty.status == 1);
  CHECK(empty.err.find("file with no instructions") != std::string::npos);
  RunResult blank = fx.build("blank", "ARG IMG\nFROM $IMG\n", {});
  CHECK(blank.status == 1);
  CHECK(blank.err.find("base name ($IMG) should not be blank") != std::string::npos);

  // Usage errors are 2 (the context is a valid one: only the option is wrong).
  fs::path ok_ctx = fx.work.path / "ctx-usage";
  fs::create_directories(ok_ctx);
  write_file(ok_ctx / "Dockerfile", "FROM busybox\n");
  CHECK(run_imgbuild(fx.root, {"build", "--no-such-option", ok_ctx.string()}).status == 2);
  CHECK(run_imgbuild(fx.root, {"build", "--progress", "loud", ok_ctx.string()}).status == 2);
  RunResult secret = run_imgbuild(fx.root, {"build", "--secret", "id=x", ok_ctx.string()});
  CHECK(secret.status == 2);
  CHECK(secret.err.find("invalid --secret id=x") != std::string::npos);
  RunResult output = run_imgbuild(fx.root, {"build", "-o", "type=nonsense,dest=x", ok_ctx.string()});
  CHECK(output.status == 2);
  CHECK(output.err.find("unsupported type \"nonsense\"") != std::string::npos);
}

TEST_CASE("build io: parser directives - syntax is only a pin, escape, directives end at the first comment",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  // `# syntax=` names a frontend image that is never pulled (no network
  // here, no such image in the store): the build runs with the built-in one.
  const char* df =
      "# syntax=docker/dockerfile:1.7\n"
      "# escape=`\n"
      "# a comment ends the directives\n"
      "# check=error=true\n"
      "FROM busybox as base\n"
      "RUN echo one `\n"
      "    two > /joined.txt\n";
  fs::path out = fx.work.path / "directives.tar";
  RunResult r = fx.build("directives", df, {}, {"-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);  // check=error=true came after the comment: not a directive
  CHECK(r.err.find("FromAsCasing") != std::string::npos);
  CHECK(merged(read_saved(out, fx.work.path)).at("joined.txt").content == "one two\n");
  // A directive given twice is an error.
  RunResult twice = fx.build("directives-twice", "# escape=`\n# escape=\\\nFROM busybox\n", {});
  CHECK(twice.status == 1);
}

TEST_CASE("build io: independent stages run in parallel", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  // Each stage leaves a mark in a shared cache mount and waits (up to a
  // minute) for the other's: only stages that run at the same time both
  // see the other's mark. No timing is measured.
  const char* df =
      "FROM busybox AS a\n"
      "RUN --mount=type=cache,id=imgbuild-test-features-par,target=/c,sharing=shared touch /c/a && "
      "i=0; while [ ! -e /c/b ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; test -e /c/b && echo a-saw-b > "
      "/a.txt\n"
      "FROM busybox AS b\n"
      "RUN --mount=type=cache,id=imgbuild-test-features-par,target=/c,sharing=shared touch /c/b && "
      "i=0; while [ ! -e /c/a ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; test -e /c/a && echo b-saw-a > "
      "/b.txt\n"
      "FROM scratch\n"
      "COPY --from=a /a.txt /\n"
      "COPY --from=b /b.txt /\n";
  fs::path out = fx.work.path / "parallel.tar";
  RunResult r = fx.build("parallel", df, {}, {"--jobs", "2", "-o", "type=docker,dest=" + out.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  LayerFiles files = merged(read_saved(out, fx.work.path));
  CHECK(files.at("a.txt").content == "a-saw-b\n");
  CHECK(files.at("b.txt").content == "b-saw-a\n");
}

TEST_CASE("build io: FROM a name that is also an image ID prefix is that name", "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  RunResult id = run_imgbuild(fx.root, {"images", "-q", "--no-trunc", "busybox"});
  REQUIRE(id.status == 0);
  REQUIRE(id.out.starts_with("sha256:"));
  std::string prefix = id.out.substr(7, 4);
  // The image commands take an ID prefix...
  CHECK(run_imgbuild(fx.root, {"image", "inspect", prefix}).status == 0);
  // ...FROM does not (BuildKit reads it as docker.io/library/<prefix>). The
  // pull goes to a proxy that is not there, so it fails here and at once.
  ScopedEnv proxy("HTTPS_PROXY", "http://127.0.0.1:9");
  ScopedEnv proxy_lower("https_proxy", "http://127.0.0.1:9");
  RunResult r = fx.build("idprefix", "FROM " + prefix + "\nRUN echo ran-on-the-wrong-image\n", {});
  INFO(r.err);
  CHECK(r.status == 1);
  CHECK(r.err.find("base image \"" + prefix + "\" not found in the local store") != std::string::npos);
  CHECK(step_output(r.err, "2/2]").empty());
}

TEST_CASE("build io: step names as BuildKit's - no stage name for one stage, padded index, unset variables kept",
          "[integration][build]") {
  IMGBUILD_REQUIRE_PREREQ(have_prereqs(), "builds need root and busybox-static (/bin/busybox)");
  Fixture fx;
  std::string many = "FROM busybox AS base\nARG A=aval\n";
  for (int i = 1; i <= 10; ++i) {
    many += "RUN echo " + std::to_string(i) + "\n";
  }
  many += "FROM base\nRUN echo \"a=$A\" p=$HTTP_PROXY u=${UNSET:-dflt} '$A'\n";
  RunResult r = fx.build("names", many, {}, {"--build-arg", "HTTP_PROXY=http://127.0.0.1:9"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("#1 [base  1/11] FROM docker.io/library/busybox:latest\n") != std::string::npos);
  CHECK(r.err.find(" [base  2/11] RUN echo 1\n") != std::string::npos);
  CHECK(r.err.find(" [base 11/11] RUN echo 10\n") != std::string::npos);
  // Expanded with the stage's variables; what is not one (an undeclared
  // proxy arg, an unset name) stays as written, quotes too.
  CHECK(r.err.find(" [stage-1 1/1] RUN echo \"a=aval\" p=$HTTP_PROXY u=${UNSET:-dflt} '$A'\n") != std::string::npos);

  RunResult one = fx.build("names-one", "FROM busybox\nRUN echo only\n", {});
  INFO(one.err);
  REQUIRE(one.status == 0);
  CHECK(one.err.find("#1 [1/2] FROM docker.io/library/busybox:latest\n") != std::string::npos);
  CHECK(one.err.find(" [2/2] RUN echo only\n") != std::string::npos);
}
