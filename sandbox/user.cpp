#include "sandbox/user.hpp"

#include <charconv>

#include "util/strings.hpp"

namespace imgbuild::sandbox {

namespace {

constexpr uint64_t k_max_id = 2147483647;

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string home;
};

struct GroupEntry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};

std::optional<uint64_t> parse_number(std::string_view s) {
  if (s.empty()) {
    return std::nullopt;
  }
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  for (std::string& line : str::split(text, '\n')) {
    std::string_view t = str::trim(line);
    if (t.empty() || t.front() == '#') {
      continue;
    }
    out.emplace_back(t);
  }
  return out;
}

std::vector<PasswdEntry> parse_passwd(const std::optional<std::string>& text) {
  std::vector<PasswdEntry> out;
  if (!text) {
    return out;
  }
  for (const std::string& line : lines_of(*text)) {
    std::vector<std::string> f = str::split(line, ':');
    if (f.size() < 4) {
      continue;
    }
    auto uid = parse_number(f[2]);
    auto gid = parse_number(f[3]);
    if (!uid || !gid || *uid > k_max_id || *gid > k_max_id) {
      continue;
    }
    PasswdEntry e;
    e.name = f[0];
    e.uid = static_cast<uint32_t>(*uid);
    e.gid = static_cast<uint32_t>(*gid);
    e.home = f.size() > 5 ? f[5] : "";
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<GroupEntry> parse_group(const std::optional<std::string>& text) {
  std::vector<GroupEntry> out;
  if (!text) {
    return out;
  }
  for (const std::string& line : lines_of(*text)) {
    std::vector<std::string> f = str::split(line, ':');
    if (f.size() < 3) {
      continue;
    }
    auto gid = parse_number(f[2]);
    if (!gid || *gid > k_max_id) {
      continue;
    }
    GroupEntry e;
    e.name = f[0];
    e.gid = static_cast<uint32_t>(*gid);
    if (f.size() > 3 && !f[3].empty()) {
      for (const std::string& m : str::split(f[3], ',')) {
        std::string_view t = str::trim(m);
        if (!t.empty()) {
          e.members.emplace_back(t);
        }
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

Result<ExecUser> resolve_user(std::string_view spec, const std::optional<std::string>& passwd,
                              const std::optional<std::string>& group) {
  std::string_view user_part = spec;
  std::optional<std::string_view> group_part;
  if (auto colon = spec.find(':'); colon != std::string_view::npos) {
    user_part = spec.substr(0, colon);
    group_part = spec.substr(colon + 1);
    if (group_part->empty()) {
      group_part.reset();
    }
  }

  ExecUser out;
  std::optional<std::string> matched_name;
  const std::vector<PasswdEntry> users = parse_passwd(passwd);
  const PasswdEntry* found = nullptr;
  for (const PasswdEntry& u : users) {
    bool match = user_part.empty() ? u.uid == 0
                                   : (u.name == user_part || std::to_string(u.uid) == user_part);
    if (match) {
      found = &u;
      break;
    }
  }
  if (found != nullptr) {
    out.uid = found->uid;
    out.gid = found->gid;
    if (!found->home.empty()) {
      out.home = found->home;
    }
    matched_name = found->name;
  } else if (!user_part.empty()) {
    auto n = parse_number(user_part);
    if (!n) {
      return fail(Errc::not_found, "unable to find user " + std::string(user_part) +
                                       ": no matching entries in passwd file");
    }
    if (*n > k_max_id) {
      return fail(Errc::invalid_argument, "uids and gids must be in range 0-2147483647");
    }
    out.uid = static_cast<uint32_t>(*n);
  }

  const std::vector<GroupEntry> groups = parse_group(group);
  if (group_part) {
    const GroupEntry* g = nullptr;
    for (const GroupEntry& e : groups) {
      if (e.name == *group_part || std::to_string(e.gid) == *group_part) {
        g = &e;
        break;
      }
    }
    if (g != nullptr) {
      out.gid = g->gid;
    } else {
      auto n = parse_number(*group_part);
      if (!n) {
        return fail(Errc::not_found, "unable to find group " + std::string(*group_part) +
                                         ": no matching entries in group file");
      }
      if (*n > k_max_id) {
        return fail(Errc::invalid_argument, "uids and gids must be in range 0-2147483647");
      }
      out.gid = static_cast<uint32_t>(*n);
    }
  }
  // BuildKit v0.22 (executor/oci ensureAdditionalGids): the primary gid is
  // always a supplementary group too, first.
  out.groups.push_back(out.gid);
  if (!group_part && matched_name) {
    for (const GroupEntry& e : groups) {
      bool member = false;
      for (const std::string& m : e.members) {
        member = member || m == *matched_name;
      }
      if (!member || e.gid == out.gid) {
        continue;
      }
      bool seen = false;
      for (uint32_t existing : out.groups) {
        seen = seen || existing == e.gid;
      }
      if (!seen) {
        out.groups.push_back(e.gid);
      }
    }
  }
  return out;
}

}  // namespace imgbuild::sandbox
