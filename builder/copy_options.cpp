// What one COPY/ADD asks for, worked out before anything is written: the
// request from the instruction's expanded words, the kind of each source
// argument, --chmod (octal or symbolic) and --chown (names resolved from the
// destination's /etc/passwd and /etc/group). The rules are in
// builder/copy.hpp.

#include "builder/copy.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "builder/copy_add.hpp"
#include "parser/lower.hpp"
#include "sandbox/user.hpp"

namespace imgbuild::builder {

namespace {

bool parse_octal(std::string_view s, uint32_t& out) {
  if (s.empty() || s.size() > 5) {
    return false;
  }
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '7') {
      return false;
    }
    v = v * 8 + static_cast<uint32_t>(c - '0');
  }
  out = v;
  return v <= 07777;
}


template <class I>
Result<CopyRequest> common_request(const I& in, CopyKind kind, const WordExpander& expand,
                                   const std::string& workdir) {
  CopyRequest r;
  r.kind = kind;
  r.workdir = workdir.empty() ? "/" : workdir;
  for (const auto& s : in.sources) {
    TRY(auto v, expand(s));
    r.sources.push_back(std::move(v));
  }
  r.heredocs = in.inline_sources;
  TRY(r.dest, expand(in.dest));
  if (in.chown) {
    TRY(auto v, expand(*in.chown));
    r.chown = std::move(v);
  }
  if (in.chmod) {
    TRY(auto v, expand(*in.chmod));
    TRY(auto spec, parse_chmod(v));
    (void)spec;
    r.chmod = std::move(v);
  }
  r.excludes = in.excludes;
  r.link_mode = in.link ? LinkMode::linked : LinkMode::merged;
  return r;
}

}  // namespace

Result<CopyRequest> copy_request(const parser::CopyInstruction& instruction, const WordExpander& expand,
                                 const std::string& workdir) {
  TRY(auto r, common_request(instruction, CopyKind::copy, expand, workdir));
  r.parents = instruction.parents;
  return r;
}

Result<CopyRequest> add_request(const parser::AddInstruction& instruction, const WordExpander& expand,
                                const std::string& workdir) {
  TRY(auto r, common_request(instruction, CopyKind::add, expand, workdir));
  if (instruction.checksum) {
    TRY(auto v, expand(*instruction.checksum));
    r.checksum = std::move(v);
  }
  r.unpack = instruction.unpack;
  r.keep_git_dir = instruction.keep_git_dir;
  return r;
}

SourceKind classify_source(std::string_view source) {
  if (source.starts_with("git@") && source.find(':') != std::string_view::npos) {
    return SourceKind::git;
  }
  if (source.starts_with("git://") || source.starts_with("ssh://")) {
    return SourceKind::git;
  }
  if (source.starts_with("http://") || source.starts_with("https://")) {
    std::string p = url_path(source);
    if (p.ends_with(".git")) {
      return SourceKind::git;
    }
    return SourceKind::url;
  }
  return SourceKind::local;
}

Result<ChmodSpec> parse_chmod(std::string_view value) {
  ChmodSpec spec;
  uint32_t v = 0;
  if (parse_octal(value, v)) {
    spec.octal = v;
    return spec;
  }
  // One validator (the parser's) for every --chmod. The value here is
  // already expanded; the parser lets '$' through for exactly this later
  // check, so a '$' left now is simply invalid.
  if (value.find('$') != std::string_view::npos) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid chmod parameter: '{}'. it should be octal string and between 0 and 07777", value));
  }
  TRY_VOID(parser::validate_chmod(value));
  spec.symbolic = std::string(value);
  return spec;
}

uint32_t chmod_apply(const ChmodSpec& spec, uint32_t mode, bool is_dir) {
  if (spec.octal) {
    return *spec.octal;
  }
  uint32_t m = mode & 07777;
  std::string_view s = spec.symbolic;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string_view clause = s.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    pos = comma == std::string_view::npos ? s.size() + 1 : comma + 1;
    uint32_t who = 0;
    size_t i = 0;
    for (; i < clause.size() && std::string_view("ugoa").find(clause[i]) != std::string_view::npos; ++i) {
      switch (clause[i]) {
        case 'u': who |= 04700; break;
        case 'g': who |= 02070; break;
        case 'o': who |= 01007; break;
        default: who |= 07777; break;
      }
    }
    if (who == 0) {
      who = 07777;
    }
    while (i < clause.size()) {
      char op = clause[i++];
      uint32_t bits = 0;
      if (i < clause.size() && std::string_view("ugo").find(clause[i]) != std::string_view::npos) {
        uint32_t src = 0;
        switch (clause[i]) {
          case 'u': src = (m >> 6) & 7; break;
          case 'g': src = (m >> 3) & 7; break;
          default: src = m & 7; break;
        }
        bits = src | (src << 3) | (src << 6);
        ++i;
      } else {
        for (; i < clause.size() && std::string_view("rwxXst").find(clause[i]) != std::string_view::npos; ++i) {
          switch (clause[i]) {
            case 'r': bits |= 0444; break;
            case 'w': bits |= 0222; break;
            case 'x': bits |= 0111; break;
            case 'X':
              if (is_dir || (m & 0111) != 0) {
                bits |= 0111;
              }
              break;
            case 's': bits |= 06000; break;
            default: bits |= 01000; break;
          }
        }
      }
      bits &= who;
      if (op == '+') {
        m |= bits;
      } else if (op == '-') {
        m &= ~bits;
      } else {
        m = (m & ~(who & 0777)) | bits;
        if ((who & 04000) != 0 && (bits & 04000) == 0) {
          m &= ~04000u;
        }
        if ((who & 02000) != 0 && (bits & 02000) == 0) {
          m &= ~02000u;
        }
        if ((who & 01000) != 0 && (bits & 01000) == 0) {
          m &= ~01000u;
        }
      }
    }
  }
  return m & 07777;
}

Result<Owner> resolve_chown(std::string_view spec, const fs::Root& user_db) {
  std::string_view user = spec;
  std::optional<std::string_view> group;
  size_t colon = spec.find(':');
  if (colon != std::string_view::npos) {
    user = spec.substr(0, colon);
    group = spec.substr(colon + 1);
  }
  auto numeric = [](std::string_view s) -> std::optional<uint32_t> {
    if (s.empty() || s.size() > 10) {
      return std::nullopt;
    }
    uint64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') {
        return std::nullopt;
      }
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > 0xFFFFFFFEull) {
      return std::nullopt;
    }
    return static_cast<uint32_t>(v);
  };
  TRY(auto passwd, user_db.read_file("etc/passwd", sandbox::k_max_user_db_file));
  TRY(auto groups, user_db.read_file("etc/group", sandbox::k_max_user_db_file));
  Owner o;
  if (user.empty()) {
    o.uid = 0;
    o.gid = 0;
  } else if (auto n = numeric(user)) {
    o.uid = *n;
    o.gid = *n;
  } else {
    TRY(auto u, sandbox::resolve_user(user, passwd, groups));
    o.uid = u.uid;
    o.gid = u.gid;
  }
  if (group) {
    if (auto n = numeric(*group)) {
      o.gid = *n;
    } else if (group->empty()) {
      return fail(Errc::invalid_argument, fmt::format("invalid --chown value {:?}: empty group", std::string(spec)));
    } else {
      TRY(auto g, sandbox::resolve_user("0:" + std::string(*group), passwd, groups));
      o.gid = g.gid;
    }
  }
  return o;
}

}  // namespace imgbuild::builder
