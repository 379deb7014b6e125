#include "builder/cache_steps.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "util/fs.hpp"
#include "util/stats.hpp"

namespace imgbuild::builder {

namespace {

stats::Metric g_hash_sources_us("builder.hash_sources_us");

std::string type_name(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    default: return "other";
  }
}

std::string join_rel(const std::string& a, const std::string& b) {
  if (a.empty()) {
    return b;
  }
  if (b.empty()) {
    return a;
  }
  return a + "/" + b;
}

std::string value_text(const nlohmann::json& v) {
  if (v.is_null()) {
    return "(unset)";
  }
  if (v.is_string()) {
    return v.get<std::string>();
  }
  return v.dump();
}

}  // namespace

StepKeyBuilder::StepKeyBuilder(const std::string& parent, std::string_view kind, std::string_view text) {
  m_key.key("parent", parent).str("kind", kind).str("instruction", text);
  m_inputs = {{"kind", std::string(kind)},
              {"instruction", std::string(text)},
              {"fields", nlohmann::json::object()},
              {"env", nlohmann::json::object()},
              {"files", nlohmann::json::object()}};
}

StepKeyBuilder& StepKeyBuilder::field(std::string_view name, std::string_view value) {
  m_key.str(name, value);
  m_inputs["fields"][std::string(name)] = std::string(value);
  return *this;
}

StepKeyBuilder& StepKeyBuilder::list(std::string_view name, const std::vector<std::string>& items) {
  m_key.list(name, items);
  m_inputs["fields"][std::string(name)] = items;
  return *this;
}

StepKeyBuilder& StepKeyBuilder::env(const std::map<std::string, std::string>& vars) {
  m_key.map("env", vars);
  return note_env(vars);
}

StepKeyBuilder& StepKeyBuilder::note_env(const std::map<std::string, std::string>& vars) {
  for (const auto& [k, v] : vars) {
    m_inputs["env"][k] = v;
  }
  return *this;
}

StepKeyBuilder& StepKeyBuilder::files(std::string_view label, const std::string& digest,
                                      const std::map<std::string, std::string>& by_path) {
  m_key.digest(label, digest);
  for (const auto& [p, d] : by_path) {
    m_inputs["files"][p] = d;
  }
  return *this;
}

StepKeyBuilder& StepKeyBuilder::base(std::string_view digest) {
  m_key.digest("base", digest);
  m_inputs["base"] = std::string(digest);
  return *this;
}

StepKey StepKeyBuilder::finish() {
  StepKey out;
  out.transcript = m_key.transcript();
  out.key = m_key.finish();
  out.inputs = std::move(m_inputs);
  return out;
}

Result<SourceFiles> hash_sources(const SourceTree& tree, const std::vector<SelectedSource>& sources,
                                 const IgnoreMatcher* excludes, cache::StatIndex& index, const HashOptions& options) {
  stats::ScopedTimer timer(g_hash_sources_us);
  SourceFiles out;
  cache::KeyBuilder total;
  total.str("what", "sources");
  for (const auto& s : sources) {
    total.str("source", s.named_path);
    TRY_VOID(walk_source(tree, s, excludes, [&](const WalkEntry& e) -> Result<void> {
      // One entry's digest; its transcript is never shown, so not kept.
      cache::KeyBuilder entry(cache::KeyBuilder::Transcript::skipped);
      entry.str("type", type_name(e.st.st_mode));
      if (options.modes) {
        entry.integer("mode", static_cast<int64_t>(e.st.st_mode & 07777));
      }
      entry.integer("uid", static_cast<int64_t>(e.st.st_uid));
      entry.integer("gid", static_cast<int64_t>(e.st.st_gid));
      std::string display = "/" + e.path;
      if (S_ISREG(e.st.st_mode)) {
        // The index answers the content and, when it saw none, the xattrs.
        TRY(cache::FileFacts f, index.facts(e.dirfd, e.name, e.st, display));
        entry.digest("content", f.digest);
        if (f.xattrs_read) {
          entry.map("xattrs", std::map<std::string, std::string>(f.xattrs.begin(), f.xattrs.end()));
        }
      } else if (S_ISLNK(e.st.st_mode)) {
        char buf[4096];
        ssize_t n = ::readlinkat(e.dirfd, e.name.c_str(), buf, sizeof buf);
        if (n < 0) {
          return fail(Errc::io, fmt::format("{}: readlink: {}", display, std::strerror(errno)));
        }
        entry.str("link", std::string_view(buf, static_cast<size_t>(n)));
      } else if (S_ISCHR(e.st.st_mode) || S_ISBLK(e.st.st_mode)) {
        entry.str("rdev", fmt::format("{}:{}", major(e.st.st_rdev), minor(e.st.st_rdev)));
      }
      if (!S_ISLNK(e.st.st_mode) && !S_ISREG(e.st.st_mode)) {
        auto xs = fs::xattrs_at(e.dirfd, e.name);
        if (xs) {
          std::map<std::string, std::string> m;
          for (const auto& [k, v] : *xs) {
            m[k] = v;
          }
          entry.map("xattrs", m);
        }
      }
      std::string d = entry.finish();
      std::string shown = e.rel.empty() ? (s.path.empty() ? "." : s.path) : join_rel(s.path, e.rel);
      total.str("path", e.rel).digest("entry", d);
      out.files[shown] = d;
      return ok();
    }));
  }
  out.digest = total.finish();
  return out;
}

std::string scratch_base_key(const Platform& platform) {
  cache::KeyBuilder b;
  b.str("base", "scratch").str("platform", platform.str());
  return b.finish();
}

std::string from_parent_key(std::string_view reference, const Platform& platform) {
  cache::KeyBuilder b;
  b.str("base", "image").str("reference", reference).str("platform", platform.str());
  return b.finish();
}

std::string stage_base_key(const std::string& parent) {
  cache::KeyBuilder b;
  b.str("base", "stage").key("stage", parent);
  return b.finish();
}

std::set<std::string> referenced_vars(std::string_view text) {
  std::set<std::string> out;
  auto is_start = [](char c) { return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  auto is_part = [&](char c) { return is_start(c) || (c >= '0' && c <= '9'); };
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] != '$') {
      continue;
    }
    size_t j = i + 1;
    if (text[j] == '{') {
      ++j;
    }
    size_t start = j;
    if (j < text.size() && is_start(text[j])) {
      while (j < text.size() && is_part(text[j])) {
        ++j;
      }
      out.insert(std::string(text.substr(start, j - start)));
    }
  }
  return out;
}

std::string explain_miss(const nlohmann::json& previous, const nlohmann::json& current,
                         const std::set<std::string>& args) {
  auto get = [](const nlohmann::json& j, const char* k) {
    return j.contains(k) ? j.at(k) : nlohmann::json();
  };
  if (get(previous, "base") != get(current, "base")) {
    return "base image changed";
  }
  std::string text = get(current, "instruction").is_string() ? current.at("instruction").get<std::string>() : "";
  if (get(previous, "instruction") != get(current, "instruction")) {
    return fmt::format("{}: instruction changed", text);
  }
  nlohmann::json pe = get(previous, "env");
  nlohmann::json ce = get(current, "env");
  std::set<std::string> names;
  for (const auto* e : {&pe, &ce}) {
    if (e->is_object()) {
      for (const auto& [k, v] : e->items()) {
        names.insert(k);
      }
    }
  }
  for (const auto& n : names) {
    nlohmann::json a = pe.is_object() && pe.contains(n) ? pe.at(n) : nlohmann::json();
    nlohmann::json b = ce.is_object() && ce.contains(n) ? ce.at(n) : nlohmann::json();
    if (a != b) {
      return fmt::format("{} {} changed: {} → {}", args.count(n) != 0 ? "ARG" : "ENV", n, value_text(a),
                         value_text(b));
    }
  }
  nlohmann::json pf = get(previous, "files");
  nlohmann::json cf = get(current, "files");
  if (pf.is_object() && cf.is_object()) {
    auto pi = pf.items().begin();
    auto ci = cf.items().begin();
    // Both are sorted by path (nlohmann's object is a std::map).
    while (pi != pf.items().end() || ci != cf.items().end()) {
      if (ci == cf.items().end() || (pi != pf.items().end() && pi.key() < ci.key())) {
        return fmt::format("{}: {} removed", text, pi.key());
      }
      if (pi == pf.items().end() || ci.key() < pi.key()) {
        return fmt::format("{}: {} added", text, ci.key());
      }
      if (pi.value() != ci.value()) {
        return fmt::format("{}: {} changed", text, ci.key());
      }
      ++pi;
      ++ci;
    }
  }
  nlohmann::json pd = get(previous, "fields");
  nlohmann::json cd = get(current, "fields");
  if (pd.is_object() && cd.is_object()) {
    std::set<std::string> fields;
    for (const auto* f : {&pd, &cd}) {
      for (const auto& [k, v] : f->items()) {
        fields.insert(k);
      }
    }
    for (const auto& f : fields) {
      if (pd.value(f, nlohmann::json()) != cd.value(f, nlohmann::json())) {
        return fmt::format("{}: {} changed", text, f);
      }
    }
  }
  return fmt::format("{}: inputs changed", text);
}

}  // namespace imgbuild::builder
