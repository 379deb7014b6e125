// Lowering tests: one per instruction, one per error message (word for word).
// Nodes are built by hand, as the grammar would produce them.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "parser/lower.hpp"

using namespace imgbuild::parser;

namespace {

Node node(const std::string& keyword, std::vector<std::string> args,
          std::vector<std::string> flags = {}, bool json = false) {
  Node n;
  n.keyword = keyword;
  for (auto& c : n.keyword) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  n.keyword_as_written = keyword;
  n.args = std::move(args);
  n.flags = std::move(flags);
  n.json_form = json;
  n.original = keyword;
  n.start = Position{3, 1};
  n.end_line = 3;
  return n;
}

Instruction lowered(const Node& n) {
  auto r = lower_node(n);
  if (!r) {
    FAIL("unexpected error: " << r.error().message);
  }
  return std::move(*r);
}

std::string error_of(const Node& n) {
  auto r = lower_node(n);
  REQUIRE_FALSE(r.has_value());
  REQUIRE(r.error().location.has_value());
  CHECK(r.error().location->line == 3);
  CHECK(r.error().location->file == "Dockerfile");
  return r.error().message;
}

}  // namespace

TEST_CASE("lower FROM", "[parser][lower]") {
  auto i = lowered(node("FROM", {"alpine:3", "As", "Build"}, {"--platform=linux/arm64"}));
  const auto* f = &i.get<FromInstruction>();
  CHECK(f->image == "alpine:3");
  CHECK(f->stage_name == "build");
  CHECK(f->stage_name_as_written == "Build");
  CHECK(f->as_keyword == "As");
  CHECK(f->platform == std::optional<std::string>("linux/arm64"));
  CHECK(f->header.keyword == "FROM");
  CHECK(f->header.range.start_line == 3);
  REQUIRE(f->header.flags.size() == 1);
  CHECK(f->header.flags[0].name == "platform");
  CHECK(std::string(i.name()) == "FROM");
  auto plain = lowered(node("from", {"scratch"}));
  CHECK(plain.get<FromInstruction>().stage_name.empty());
  CHECK_FALSE(plain.get<FromInstruction>().platform.has_value());
}

TEST_CASE("lower RUN with mounts, network, security, heredocs", "[parser][lower]") {
  Node n = node("RUN", {"<<EOF"}, {"--mount=type=cache,target=/root/.cache,sharing=locked",
                                   "--mount=type=secret,id=tok", "--network=none",
                                   "--security=insecure"});
  n.heredocs.push_back(Heredoc{"EOF", "echo hi\n", 0, true, false});
  auto i = lowered(n);
  const auto* r = &i.get<RunInstruction>();
  CHECK(r->command.args == std::vector<std::string>{"<<EOF"});
  CHECK_FALSE(r->command.json_form);
  REQUIRE(r->heredocs.size() == 1);
  REQUIRE(r->mounts.size() == 2);
  CHECK(r->mounts[0].type == MountType::cache);
  CHECK(r->mounts[0].target == "/root/.cache");
  CHECK(r->mounts[0].sharing == CacheSharing::locked);
  CHECK_FALSE(r->mounts[0].read_only);
  CHECK(r->mounts[1].type == MountType::secret);
  CHECK(r->mounts[1].id == "tok");
  CHECK(r->mounts[1].read_only);
  CHECK(r->network == std::optional<std::string>("none"));
  CHECK(r->security == std::optional<std::string>("insecure"));
  CHECK(r->mount_specs.size() == 2);
  auto exec = lowered(node("RUN", {"echo", "a b"}, {}, true));
  CHECK(exec.get<RunInstruction>().command.json_form);
  CHECK(exec.get<RunInstruction>().command.args == std::vector<std::string>{"echo", "a b"});
}

TEST_CASE("lower CMD and ENTRYPOINT", "[parser][lower]") {
  auto c = lowered(node("CMD", {"echo hi"}));
  CHECK(c.get<CmdInstruction>().command.prepend_shell());
  auto e = lowered(node("ENTRYPOINT", {"/bin/app", "-v"}, {}, true));
  CHECK(e.get<EntrypointInstruction>().command.args == std::vector<std::string>{"/bin/app", "-v"});
  auto empty = lowered(node("CMD", {}, {}, true));
  CHECK(empty.get<CmdInstruction>().command.args.empty());
}

TEST_CASE("lower ENV and LABEL keep order and the legacy form", "[parser][lower]") {
  auto e = lowered(node("ENV", {"b", "2", "=", "a", "\"x y\"", "="}));
  const auto* env = &e.get<EnvInstruction>();
  REQUIRE(env->pairs.size() == 2);
  CHECK(env->pairs[0].key == "b");
  CHECK(env->pairs[1].value == "\"x y\"");
  CHECK_FALSE(env->legacy_form);
  auto l = lowered(node("LABEL", {"maintainer", "me <me@x>", ""}));
  CHECK(l.get<LabelInstruction>().legacy_form);
  CHECK(l.get<LabelInstruction>().pairs[0].value == "me <me@x>");
}

TEST_CASE("lower EXPOSE, VOLUME, USER, WORKDIR, MAINTAINER, STOPSIGNAL, SHELL",
          "[parser][lower]") {
  CHECK(lowered(node("EXPOSE", {"80/tcp", "53/UDP", "8000-8010", "$PORT"}))
            .get<ExposeInstruction>().ports.size() == 4);
  auto v = lowered(node("VOLUME", {" /data ", "/logs"}, {}, true));
  CHECK(v.get<VolumeInstruction>().paths == std::vector<std::string>{"/data", "/logs"});
  CHECK(lowered(node("USER", {"app:app"})).get<UserInstruction>().user == "app:app");
  CHECK(lowered(node("WORKDIR", {"/src"})).get<WorkdirInstruction>().path == "/src");
  CHECK(lowered(node("MAINTAINER", {"me"})).get<MaintainerInstruction>().maintainer == "me");
  CHECK(lowered(node("STOPSIGNAL", {"SIGTERM"})).get<StopsignalInstruction>().signal == "SIGTERM");
  CHECK(lowered(node("STOPSIGNAL", {"9"})).get<StopsignalInstruction>().signal == "9");
  CHECK(lowered(node("SHELL", {"/bin/bash", "-c"}, {}, true)).get<ShellInstruction>().shell ==
        std::vector<std::string>{"/bin/bash", "-c"});
}

TEST_CASE("lower ARG keeps order and optional defaults", "[parser][lower]") {
  auto a = lowered(node("ARG", {"b=2", "a", "c="}, {"--ignored"}));
  const auto* arg = &a.get<ArgInstruction>();
  REQUIRE(arg->args.size() == 3);
  CHECK(arg->args[0].name == "b");
  CHECK(arg->args[0].default_value == std::optional<std::string>("2"));
  CHECK_FALSE(arg->args[1].default_value.has_value());
  CHECK(arg->args[2].default_value == std::optional<std::string>(""));
  CHECK(arg->header.flags.empty());
}

TEST_CASE("lower ONBUILD keeps the raw trigger and lowers it", "[parser][lower]") {
  Node n = node("ONBUILD", {});
  n.original = "ONBUILD  RUN echo hi";
  n.children.push_back(node("RUN", {"echo hi"}));
  auto i = lowered(n);
  const auto* o = &i.get<OnbuildInstruction>();
  CHECK(o->trigger == "RUN echo hi");
  REQUIRE(o->lowered.size() == 1);
  CHECK(o->lowered[0].as<RunInstruction>() != nullptr);
  Node bad = node("ONBUILD", {});
  bad.original = "onbuild COPY x";
  bad.children.push_back(node("COPY", {"x"}));
  auto b = lowered(bad);
  CHECK(b.get<OnbuildInstruction>().lowered.empty());
  CHECK(b.get<OnbuildInstruction>().trigger_error ==
        std::optional<std::string>(
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined"));
}

TEST_CASE("lower HEALTHCHECK", "[parser][lower]") {
  auto h = lowered(node("HEALTHCHECK", {"CMD", "curl -f http://localhost/"},
                        {"--interval=30s", "--timeout=1m30s", "--start-period=5s",
                         "--start-interval=500ms", "--retries=3"}));
  const auto* hc = &h.get<HealthcheckInstruction>();
  CHECK(hc->test == std::vector<std::string>{"CMD-SHELL", "curl -f http://localhost/"});
  CHECK(hc->interval_ns == std::optional<int64_t>(30000000000));
  CHECK(hc->timeout_ns == std::optional<int64_t>(90000000000));
  CHECK(hc->start_interval_ns == std::optional<int64_t>(500000000));
  CHECK(hc->retries == std::optional<int>(3));
  auto j = lowered(node("HEALTHCHECK", {"cmd", "true"}, {}, true));
  CHECK(j.get<HealthcheckInstruction>().test == std::vector<std::string>{"CMD", "true"});
  auto none = lowered(node("HEALTHCHECK", {"NONE"}, {"--whatever"}));
  CHECK(none.get<HealthcheckInstruction>().none);
  CHECK(none.get<HealthcheckInstruction>().test == std::vector<std::string>{"NONE"});
}

TEST_CASE("lower COPY and ADD with every flag", "[parser][lower]") {
  Node c = node("COPY", {"a", "<<EOF", "/dst/"},
                {"--from=build", "--chown=1:1", "--chmod=0755", "--link", "--parents=true",
                 "--exclude=*.md", "--exclude=x"});
  c.heredocs.push_back(Heredoc{"EOF", "\thello\n", 0, true, true});
  auto i = lowered(c);
  const auto* copy = &i.get<CopyInstruction>();
  CHECK(copy->sources == std::vector<std::string>{"a"});
  REQUIRE(copy->inline_sources.size() == 1);
  CHECK(heredoc_body(copy->inline_sources[0]) == "hello\n");
  CHECK(copy->dest == "/dst/");
  CHECK(copy->from == std::optional<std::string>("build"));
  CHECK(copy->chown == std::optional<std::string>("1:1"));
  CHECK(copy->chmod == std::optional<std::string>("0755"));
  CHECK(copy->link);
  CHECK(copy->parents);
  CHECK(copy->excludes == std::vector<std::string>{"*.md", "x"});
  REQUIRE(copy->header.flags.size() == 7);
  CHECK(copy->header.flags[4].position == 4);

  auto a = lowered(node("ADD", {"https://x/y.tgz", "/y"},
                        {"--checksum=sha256:abc", "--keep-git-dir", "--unpack=false",
                         "--chmod=u=rwX,go=rX", "--link=false"}));
  const auto* add = &a.get<AddInstruction>();
  CHECK(add->checksum == std::optional<std::string>("sha256:abc"));
  CHECK(add->keep_git_dir);
  CHECK(add->unpack == std::optional<bool>(false));
  CHECK_FALSE(add->link);
  auto json = lowered(node("COPY", {"<<EOF", "/x"}, {}, true));
  CHECK(json.get<CopyInstruction>().sources == std::vector<std::string>{"<<EOF"});
}

TEST_CASE("lower collects all errors with locations", "[parser][lower]") {
  Ast ast;
  ast.children.push_back(node("FROM", {"a"}));
  ast.children.push_back(node("FORM", {""}));
  ast.children.back().start.line = 4;
  ast.children.push_back(node("RUN", {"x"}, {"--networkk=none"}));
  ast.children.back().start.line = 5;
  auto out = lower(ast, "df");
  CHECK(out.instructions.size() == 1);
  REQUIRE(out.errors.size() == 2);
  CHECK(out.errors[0].message == "unknown instruction: FORM (did you mean FROM?)");
  CHECK(out.errors[0].location->line == 4);
  CHECK(out.errors[0].location->file == "df");
  CHECK(out.errors[1].message == "unknown flag: --networkk (did you mean network?)");
  CHECK(out.errors[1].location->line == 5);
}

TEST_CASE("flag errors, word for word", "[parser][lower]") {
  CHECK(error_of(node("COPY", {"a", "b"}, {"--from=a", "--from=b"})) ==
        "duplicate flag specified: --from");
  CHECK(error_of(node("COPY", {"a", "b"}, {"--link="})) == "missing a value on flag: --link");
  CHECK(error_of(node("COPY", {"a", "b"}, {"--from"})) == "missing a value on flag: --from");
  CHECK(error_of(node("COPY", {"a", "b"}, {"--link=maybe"})) ==
        "expecting boolean value for flag --link, not: maybe");
  CHECK(error_of(node("COPY", {"a", "b"}, {"--chmd=644"})) ==
        "unknown flag: --chmd (did you mean chmod?)");
  CHECK(error_of(node("WORKDIR", {"/x"}, {"--boo"})) == "unknown flag: --boo");
  CHECK(error_of(node("RUN", {"x"}, {"--mount"})) == "missing a value on flag: --mount");
  CHECK(lower_node(node("COPY", {"a", "b"}, {"--exclude=a", "--exclude=b", "--link=TRUE"})).has_value());
}

TEST_CASE("argument errors, word for word", "[parser][lower]") {
  CHECK(error_of(node("FROM", {"a", "b"})) == "FROM requires either one or three arguments");
  CHECK(error_of(node("FROM", {})) == "FROM requires either one or three arguments");
  CHECK(error_of(node("FROM", {"a", "AS", "1abc"})) ==
        "invalid name for build stage: \"1abc\", name can't start with a number or contain symbols");
  CHECK(error_of(node("COPY", {"a"})) ==
        "COPY requires at least two arguments, but only one was provided. Destination could not be determined");
  CHECK(error_of(node("ADD", {})) ==
        "ADD requires at least two arguments, but only one was provided. Destination could not be determined");
  CHECK(error_of(node("COPY", {"a", "<<EOF"})) == "COPY cannot accept a heredoc as a destination");
  CHECK(error_of(node("SHELL", {"/bin/sh -c"})) == "SHELL requires the arguments to be in JSON form");
  CHECK(error_of(node("SHELL", {}, {}, true)) == "SHELL requires at least one argument");
  CHECK(error_of(node("ENV", {})) == "ENV requires at least one argument");
  CHECK(error_of(node("LABEL", {"", "v", "="})) == "LABEL names can not be blank");
  CHECK(error_of(node("ARG", {})) == "ARG requires at least one argument");
  CHECK(error_of(node("ARG", {"=x"})) == "ARG names can not be blank");
  CHECK(error_of(node("USER", {})) == "USER requires exactly one argument");
  CHECK(error_of(node("WORKDIR", {})) == "WORKDIR requires exactly one argument");
  CHECK(error_of(node("MAINTAINER", {})) == "MAINTAINER requires exactly one argument");
  CHECK(error_of(node("STOPSIGNAL", {})) == "STOPSIGNAL requires exactly one argument");
  CHECK(error_of(node("STOPSIGNAL", {"SIGFOO"})) == "invalid signal: SIGFOO");
  CHECK(error_of(node("EXPOSE", {})) == "EXPOSE requires at least one argument");
  CHECK(error_of(node("EXPOSE", {"80/tpc"})) == "invalid proto: tpc");
  CHECK(error_of(node("EXPOSE", {"abc"})) == "invalid containerPort: abc");
  CHECK(error_of(node("VOLUME", {})) == "VOLUME requires at least one argument");
  CHECK(error_of(node("VOLUME", {"  "}, {}, true)) == "VOLUME specified can not be an empty string");
  CHECK(error_of(node("HEALTHCHECK", {})) == "HEALTHCHECK requires at least one argument");
  CHECK(error_of(node("HEALTHCHECK", {"NONE", "x"})) == "HEALTHCHECK NONE takes no arguments");
  CHECK(error_of(node("HEALTHCHECK", {"CONNECT", "x"})) ==
        "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)");
  CHECK(error_of(node("HEALTHCHECK", {"CMD"})) == "Missing command after HEALTHCHECK CMD");
  CHECK(error_of(node("HEALTHCHECK", {"CMD", "x"}, {"--interval=10us"})) ==
        "Interval \"interval\" cannot be less than 1ms");
  CHECK(error_of(node("HEALTHCHECK", {"CMD", "x"}, {"--timeout=5"})) ==
        "time: missing unit in duration \"5\"");
  CHECK(error_of(node("HEALTHCHECK", {"CMD", "x"}, {"--timeout=5d"})) ==
        "time: unknown unit \"d\" in duration \"5d\"");
  CHECK(error_of(node("HEALTHCHECK", {"CMD", "x"}, {"--timeout=x"})) ==
        "time: invalid duration \"x\"");
  CHECK(error_of(node("HEALTHCHECK", {"CMD", "x"}, {"--retries=-1"})) ==
        "--retries cannot be negative (-1)");
  CHECK(error_of(node("HEALTHCHECK", {"CMD", "x"}, {"--retries=x"})) ==
        "strconv.ParseInt: parsing \"x\": invalid syntax");
  CHECK(error_of(node("RUN", {"x"}, {"--network=bridge"})) == "invalid network mode \"bridge\"");
  CHECK(error_of(node("RUN", {"x"}, {"--security=weird"})) == "security \"weird\" is not valid");
  CHECK(error_of(node("COPY", {"a", "b"}, {"--chmod=64a"})) ==
        "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777");
  CHECK(error_of(node("COPY", {"a", "b"}, {"--chmod=10000"})) ==
        "invalid chmod parameter: '10000'. it should be octal string and between 0 and 07777");
  CHECK(lower_node(node("COPY", {"a", "b"}, {"--chmod=$MODE"})).has_value());
  CHECK(error_of(node("FORM", {""})) == "unknown instruction: FORM (did you mean FROM?)");
  CHECK(error_of(node("xyzzy", {""})) == "unknown instruction: xyzzy");
}

TEST_CASE("ONBUILD errors, word for word", "[parser][lower]") {
  Node empty = node("ONBUILD", {});
  CHECK(error_of(empty) == "ONBUILD requires at least one argument");
  for (const char* k : {"ONBUILD", "onbuild"}) {
    Node n = node("ONBUILD", {});
    n.children.push_back(node(k, {}));
    CHECK(error_of(n) == "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  }
  Node f = node("ONBUILD", {});
  f.children.push_back(node("from", {"x"}));
  CHECK(error_of(f) == "FROM isn't allowed as an ONBUILD trigger");
  Node m = node("ONBUILD", {});
  m.children.push_back(node("Maintainer", {"x"}));
  CHECK(error_of(m) == "MAINTAINER isn't allowed as an ONBUILD trigger");
}

TEST_CASE("parse_mount: defaults and options", "[parser][lower][mount]") {
  auto b = parse_mount("target=/src");
  REQUIRE(b.has_value());
  CHECK(b->type == MountType::bind);
  CHECK(b->read_only);
  auto rw = parse_mount("type=bind,source=.,target=/src,rw");
  CHECK_FALSE(rw->read_only);
  auto c = parse_mount("TYPE=cache,Target=/c,id=x,mode=0700,uid=1000,gid=1000,from=base,ro=true");
  REQUIRE(c.has_value());
  CHECK(c->type == MountType::cache);
  CHECK(c->mode == std::optional<uint32_t>(0700));
  CHECK(c->uid == std::optional<uint32_t>(1000));
  CHECK(c->from == "base");
  CHECK(c->read_only);
  auto t = parse_mount("type=tmpfs,target=/t,size=128m");
  CHECK(t->size_limit == std::optional<int64_t>(128LL * 1024 * 1024));
  CHECK_FALSE(t->read_only);
  auto s = parse_mount("type=secret,id=aws,required,env=AWS_KEY");
  CHECK(s->required);
  CHECK(s->env == std::optional<std::string>("AWS_KEY"));
  auto ssh = parse_mount("type=ssh,required=true");
  CHECK(ssh->type == MountType::ssh);
  auto quoted = parse_mount("type=bind,\"target=/a,b\"");
  CHECK(quoted->target == "/a,b");
  auto deferred = parse_mount("type=cache,target=$DIR,mode=$MODE");
  REQUIRE(deferred.has_value());
  CHECK(deferred->target == "$DIR");
  CHECK_FALSE(deferred->mode.has_value());
  auto expanded = parse_mount("type=cache,target=$DIR", [](const std::string& v) {
    return imgbuild::Result<std::string>(v == "$DIR" ? std::string("/d") : v);
  });
  CHECK(expanded->target == "/d");
}

TEST_CASE("parse_mount errors, word for word", "[parser][lower][mount]") {
  auto msg = [](const char* spec) {
    auto r = parse_mount(spec);
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  CHECK(msg("type=foo") == "unsupported mount type \"foo\"");
  CHECK(msg("type=cahce") == "unsupported mount type \"cahce\" (did you mean cache?)");
  CHECK(msg("from=$X") == "'from' doesn't support variable expansion, define alias stage instead");
  CHECK(msg("target=/a,ro=maybe") == "invalid value for ro: maybe");
  CHECK(msg("required") == "unexpected key 'required' for mount type 'bind'");
  CHECK(msg("type=cache,size=1m") == "unexpected key 'size' for mount type 'cache'");
  CHECK(msg("type=tmpfs,size=lots") == "invalid value for size: lots");
  CHECK(msg("type=cache,sharing=everyone") == "unsupported sharing value \"everyone\"");
  CHECK(msg("type=bind,sharing=locked") == "invalid cache sharing set for bind mount");
  CHECK(msg("type=cache,mode=0999") == "invalid value 0999 for mode");
  CHECK(msg("type=cache,uid=x") == "invalid value x for uid");
  CHECK(msg("type=cache,gid=-1") == "invalid value -1 for gid");
  CHECK(msg("type=bind,mode=0644") == "mode not allowed for \"bind\" type mounts");
  CHECK(msg("type=tmpfs,uid=0") == "uid not allowed for \"tmpfs\" type mounts");
  CHECK(msg("type=secret,from=x") == "secret mount should not have a from");
  CHECK(msg("type=secret") == "invalid secret mount. one of source, target required");
  CHECK(msg("type=secret,source=a,id=b") == "both source and id can't be set");
  CHECK(msg("type=bind,targt=/x") == "unexpected key 'targt' in 'targt=/x' (did you mean target?)");
  CHECK(msg("type=bind,bogus") == "invalid field 'bogus' must be a key=value pair");
  CHECK(msg("") == "failed to parse csv mounts: EOF");
  CHECK(msg("target=/a\"b") ==
        "failed to parse csv mounts: parse error on line 1, column 10: bare \" in non-quoted-field");
}

TEST_CASE("validate helpers", "[parser][lower]") {
  CHECK(validate_chmod("755").has_value());
  CHECK(validate_chmod("go-w,a+rX").has_value());
  CHECK_FALSE(validate_chmod("u=rwq").has_value());
  CHECK(*parse_go_duration("1h2m3.5s") == 3723500000000LL);
  CHECK(*parse_go_duration("0") == 0);
  CHECK(*parse_go_duration("-1.5ms") == -1500000);
  CHECK(validate_signal("SIGRTMIN+3").has_value());
  CHECK(validate_signal("kill").has_value());
  CHECK_FALSE(validate_signal("0").has_value());
  CHECK(validate_port_spec("127.0.0.1:8080:80/udp").has_value());
  CHECK_FALSE(validate_port_spec("90-80").has_value());
  CHECK_FALSE(validate_port_spec("70000").has_value());
}
