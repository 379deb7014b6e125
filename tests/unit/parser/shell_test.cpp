// Unit tests for shell-word expansion: each form, each option, each error
// message word for word.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "parser/shell.hpp"

using imgbuild::parser::Expansion;
using imgbuild::parser::Lexer;
using imgbuild::parser::LexerOptions;
using imgbuild::parser::ShellEnv;

namespace {

const ShellEnv& test_env() {
  static const ShellEnv env({"A=alpha", "EMPTY=", "P=/usr/local/bin/tool.tar.gz",
                             "S=a  b c", "ML=one\ntwo"});
  return env;
}

std::string word(const std::string& in, const ShellEnv& env = test_env()) {
  auto r = Lexer('\\').process_word(in, env);
  REQUIRE(r.has_value());
  return *r;
}

std::string error_of(const std::string& in, const Lexer& lexer = Lexer('\\')) {
  auto r = lexer.process_word(in, test_env());
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}

}  // namespace

TEST_CASE("ShellEnv: later entries win, order of first definition kept", "[parser][shell]") {
  ShellEnv env({"A=1", "B=2", "A=3", "C"});
  REQUIRE(env.get("A") != nullptr);
  CHECK(*env.get("A") == "3");
  CHECK(*env.get("C") == "");
  CHECK(env.get("D") == nullptr);
  CHECK(env.keys() == std::vector<std::string>{"A", "B", "C"});
  env.unset("B");
  CHECK(env.entries() == std::vector<std::string>{"A=3", "C="});
}

TEST_CASE("plain and braced references", "[parser][shell]") {
  CHECK(word("$A") == "alpha");
  CHECK(word("${A}x") == "alphax");
  CHECK(word("$Ax") == "");
  CHECK(word("x$") == "x$");
  CHECK(word("$1$@$#$?$$$!$0$-$*") == "");
  CHECK(word("\\$A") == "$A");
  CHECK(word("'$A'") == "$A");
  CHECK(word("\"$A\"") == "alpha");
}

TEST_CASE("default, alternative and required modifiers", "[parser][shell]") {
  CHECK(word("${NOPE:-d}") == "d");
  CHECK(word("${EMPTY:-d}") == "d");
  CHECK(word("${EMPTY-d}") == "");
  CHECK(word("${NOPE-d}") == "d");
  CHECK(word("${A:-d}") == "alpha");
  CHECK(word("${A:+w}") == "w");
  CHECK(word("${EMPTY:+w}") == "");
  CHECK(word("${EMPTY+w}") == "w");
  CHECK(word("${NOPE+w}") == "");
  CHECK(word("${A:?m}") == "alpha");
  CHECK(word("${EMPTY?m}") == "");
  CHECK(word("${NOPE:-\"quoted\"}") == "quoted");
  CHECK(word("${NOPE:-${A}}") == "alpha");
}

TEST_CASE("prefix and suffix removal", "[parser][shell]") {
  CHECK(word("${P#*/}") == "usr/local/bin/tool.tar.gz");
  CHECK(word("${P##*/}") == "tool.tar.gz");
  CHECK(word("${P%.*}") == "/usr/local/bin/tool.tar");
  CHECK(word("${P%%.*}") == "/usr/local/bin/tool");
  CHECK(word("${P#/usr}") == "/local/bin/tool.tar.gz");
  CHECK(word("${P#nomatch}") == "/usr/local/bin/tool.tar.gz");
  CHECK(word("${P%t??l.tar.gz}") == "/usr/local/bin/");
  CHECK(word("${NOPE#x}") == "");
  ShellEnv star({"V=a*b*c", "B=a\\b"});
  CHECK(word("${V#*\\*}", star) == "b*c");
  CHECK(word("${V%\\**}", star) == "a*b");
  CHECK(word("${B#a\\\\}", star) == "b");
  // Like Go's regexp `.`, wildcards do not cross a newline.
  CHECK(word("${ML#*}") == "one\ntwo");
  CHECK(word("${ML##*}") == "\ntwo");
}

TEST_CASE("pattern replacement", "[parser][shell]") {
  ShellEnv env({"V=aXbXc", "U=hello world"});
  CHECK(word("${V/X/-}", env) == "a-bXc");
  CHECK(word("${V//X/-}", env) == "a-b-c");
  CHECK(word("${V/X*/-}", env) == "a-");
  CHECK(word("${V/?/_}", env) == "_XbXc");
  CHECK(word("${V/nope/_}", env) == "aXbXc");
  CHECK(word("${U// /_}", env) == "hello_world");
  CHECK(word("${U/\\//x}", env) == "hello world");
  CHECK(word("${U//o/}", env) == "hell wrld");
  ShellEnv slash({"V=a/b/c"});
  CHECK(word("${V//\\//:}", slash) == "a:b:c");
}

TEST_CASE("quoting and escapes", "[parser][shell]") {
  CHECK(word("'a b'") == "a b");
  CHECK(word("\"a\\\"b\"") == "a\"b");
  CHECK(word("\"a\\xb\"") == "a\\xb");
  CHECK(word("a\\ b") == "a b");
  CHECK(word("a\\") == "a");
  Lexer backtick('`');
  CHECK(*backtick.process_word("a`$A\\b", test_env()) == "a$A\\b");
  CHECK(*backtick.process_word("\"`\"\"", test_env()) == "\"");
}

TEST_CASE("process_words splits after expansion", "[parser][shell]") {
  Lexer lexer('\\');
  CHECK(*lexer.process_words("x${S}y", test_env()) == std::vector<std::string>{"xa", "b", "cy"});
  CHECK(*lexer.process_words("\"${S}\" ''", test_env()) == std::vector<std::string>{"a  b c"});
  CHECK(*lexer.process_words("pre${NOPE:-a b}", test_env()) ==
        std::vector<std::string>{"prea", "b"});
  CHECK(lexer.process_words("", test_env())->empty());
}

TEST_CASE("options: keep quotes, keep escapes, no quote processing, keep unset",
          "[parser][shell]") {
  LexerOptions o;
  o.keep_quotes = true;
  CHECK(*Lexer(o).process_word("'a' \"$A\"", test_env()) == "'a' \"alpha\"");
  LexerOptions e;
  e.keep_escapes = true;
  CHECK(*Lexer(e).process_word("a\\ b", test_env()) == "a\\ b");
  LexerOptions q;
  q.process_quotes = false;
  CHECK(*Lexer(q).process_word("'$A' \"x", test_env()) == "'alpha' \"x");
  LexerOptions u;
  u.keep_unset = true;
  Lexer keep(u);
  CHECK(*keep.process_word("$NOPE ${NOPE} ${NOPE:-d} ${NOPE/a/b} $A", test_env()) ==
        "$NOPE ${NOPE} ${NOPE:-d} ${NOPE/a/b} alpha");
}

TEST_CASE("expand reports used and unset names", "[parser][shell]") {
  auto r = Lexer('\\').expand("$A ${NOPE:-$EMPTY} ${Z+x} '$Q' $A", test_env());
  REQUIRE(r.has_value());
  CHECK(r->used == std::vector<std::string>{"A", "EMPTY"});
  CHECK(r->unset == std::vector<std::string>{"NOPE", "Z"});
  CHECK(r->word == "alpha   $Q alpha");
  CHECK(r->words == std::vector<std::string>{"alpha", "$Q", "alpha"});
}

TEST_CASE("error messages, word for word", "[parser][shell]") {
  CHECK(error_of("${}") == "failed to process \"${}\": syntax error: bad substitution");
  CHECK(error_of("${:}") == "failed to process \"${:}\": syntax error: bad substitution");
  CHECK(error_of("${{a}") == "failed to process \"${{a}\": syntax error: bad substitution");
  CHECK(error_of("${") == "failed to process \"${\": syntax error: missing '}'");
  CHECK(error_of("${A") == "failed to process \"${A\": syntax error: missing '}'");
  CHECK(error_of("${A:-x") == "failed to process \"${A:-x\": syntax error: missing '}'");
  CHECK(error_of("${A=x}") == "failed to process \"${A=x}\": unsupported modifier (=) in substitution");
  CHECK(error_of("${A:=x}") ==
        "failed to process \"${A:=x}\": unsupported modifier (:=) in substitution");
  CHECK(error_of("${A.}") == "failed to process \"${A.}\": unsupported modifier (.) in substitution");
  CHECK(error_of("${A:#x}") ==
        "failed to process \"${A:#x}\": unsupported modifier (:#) in substitution");
  CHECK(error_of("${NOPE?}") == "failed to process \"${NOPE?}\": NOPE: is not allowed to be unset");
  CHECK(error_of("${NOPE:?}") == "failed to process \"${NOPE:?}\": NOPE: is not allowed to be unset");
  CHECK(error_of("${EMPTY:?}") ==
        "failed to process \"${EMPTY:?}\": EMPTY: is not allowed to be empty");
  CHECK(error_of("${NOPE?set it}") == "failed to process \"${NOPE?set it}\": NOPE: set it");
  CHECK(error_of("${EMPTY:?need $A}") ==
        "failed to process \"${EMPTY:?need $A}\": EMPTY: need alpha");
  CHECK(error_of("${A/x") == "failed to process \"${A/x\": syntax error: missing '/' in ${}");
  CHECK(error_of("${A/x/y") == "failed to process \"${A/x/y\": syntax error: missing '}'");
  CHECK(error_of("'abc") ==
        "failed to process \"'abc\": unexpected end of statement while looking for matching single-quote");
  CHECK(error_of("\"abc") ==
        "failed to process \"\\\"abc\": unexpected end of statement while looking for matching double-quote");
  CHECK(error_of("${A#\\x}") ==
        "failed to process \"${A#\\\\x}\": invalid pattern (\\x) in substitution: invalid escape '\\x'");
}

TEST_CASE("hostile input: deep nesting is an error, not a crash", "[parser][shell]") {
  std::string deep;
  for (int i = 0; i < 100000; ++i) {
    deep += "${a:-";
  }
  auto r = Lexer('\\').process_word(deep, test_env());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("nested more than") != std::string::npos);
  std::string invalid = "a\xff\xfe" "b";
  CHECK(word(invalid) == "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
}

TEST_CASE("hostile input: an expansion past k_max_expanded_size is an error naming the limit", "[parser][shell]") {
  using imgbuild::parser::k_max_expanded_size;
  const std::string limit = std::to_string(k_max_expanded_size);
  // A value just under the limit, doubled: each form that concatenates.
  ShellEnv env({"BIG=" + std::string(k_max_expanded_size / 2 + 1, 'x'), "SMALL=ab"});
  Lexer lexer('\\');
  for (const std::string& w : {std::string("${BIG}${BIG}"), std::string("$BIG$BIG"), std::string("\"$BIG$BIG\""),
                               std::string("${UNSET:-$BIG}${BIG}"), std::string("${BIG//x/xx}")}) {
    INFO(w);
    auto r = lexer.process_word(w, env);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == imgbuild::Errc::limit);
    CHECK(r.error().message.find("larger than the limit of " + limit + " bytes") != std::string::npos);
  }
  // At the limit exactly is fine.
  ShellEnv exact({"HALF=" + std::string(k_max_expanded_size / 2, 'y')});
  auto ok = lexer.process_word("${HALF}${HALF}", exact);
  REQUIRE(ok.has_value());
  CHECK(ok->size() == k_max_expanded_size);
}
