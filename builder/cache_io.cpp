// Build-cache export and import (see builder/cache_io.hpp): the --cache-to /
// --cache-from specs and what a build notes for an export. Import is in
// builder/cache_import.cpp, export in builder/cache_export.cpp, the config
// document and cache-mount tars in builder/cache_format.cpp.

#include "builder/cache_io.hpp"

#include <fmt/format.h>

#include "util/strings.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

namespace {

bool parse_bool(const std::string& v, bool& out) {
  if (v == "true" || v == "1" || v.empty()) {
    out = true;
    return true;
  }
  if (v == "false" || v == "0") {
    out = false;
    return true;
  }
  return false;
}

}  // namespace

Result<CacheSpec> parse_cache_spec(std::string_view text, bool for_export) {
  const char* flag = for_export ? "--cache-to" : "--cache-from";
  CacheSpec spec;
  std::string s(str::trim(text));
  auto bad = [&](const std::string& why) {
    return fail(Errc::invalid_argument, fmt::format("invalid {} {}: {}", flag, str::go_quote(text), why));
  };
  if (s.empty()) {
    return bad("empty value");
  }
  if (s.find('=') == std::string::npos) {
    // buildx: a bare value is a registry reference.
    spec.type = CacheSpec::Type::registry;
    spec.location = s;
    return spec;
  }
  std::string type;
  std::string dest;
  std::string src;
  std::string ref;
  for (const auto& part : str::split(s, ',')) {
    size_t eq = part.find('=');
    std::string k = str::to_lower(str::trim(part.substr(0, eq)));
    std::string v = eq == std::string::npos ? "" : part.substr(eq + 1);
    if (k == "type") {
      type = v;
    } else if (k == "dest") {
      dest = v;
    } else if (k == "src") {
      src = v;
    } else if (k == "ref") {
      ref = v;
    } else if (k == "mode") {
      if (v != "min" && v != "max") {
        return bad("mode must be min or max");
      }
      spec.mode_max = v == "max";
    } else if (k == "mounts") {
      if (!parse_bool(v, spec.mounts)) {
        return bad("mounts must be true or false");
      }
    } else if (k == "mounts-max-size") {
      auto n = str::parse_size(v);
      if (!n) {
        return bad(fmt::format("mounts-max-size {} is not a size (like 512MiB)", str::go_quote(v)));
      }
      spec.mounts_max_size = *n;
    } else if (k == "tag") {
      if (v.empty()) {
        return bad("empty tag");
      }
      spec.tag = v;
    } else if (k == "registry.insecure") {
      if (!parse_bool(v, spec.insecure)) {
        return bad("registry.insecure must be true or false");
      }
    } else if (k == "compression" || k == "compression-level" || k == "force-compression" ||
               k == "ignore-error" || k == "oci-mediatypes" || k == "image-manifest" || k == "digest") {
      // buildx keys with no meaning here: the format is fixed.
    } else {
      static const std::vector<std::string> k_keys = {"type",  "dest", "src",  "ref", "mode", "mounts",
                                                      "mounts-max-size", "tag", "registry.insecure"};
      auto near = str::closest_match(k, k_keys);
      return bad(fmt::format("unknown key {}{}", str::go_quote(k),
                             near ? fmt::format(" (did you mean {}?)", str::go_quote(*near)) : ""));
    }
  }
  if (type == "local") {
    spec.type = CacheSpec::Type::local;
    spec.location = for_export ? dest : src;
    if (spec.location.empty()) {
      return bad(for_export ? "type=local needs dest=DIR" : "type=local needs src=DIR");
    }
  } else if (type == "registry") {
    spec.type = CacheSpec::Type::registry;
    spec.location = ref;
    if (spec.location.empty()) {
      return bad("type=registry needs ref=REGISTRY/REPOSITORY[:TAG]");
    }
  } else if (type.empty()) {
    return bad("missing type= (local or registry)");
  } else {
    return bad(fmt::format("unsupported type {} (local, registry)", str::go_quote(type)));
  }
  return spec;
}

Result<std::unique_ptr<CacheRemote>> open_cache_remote(const CacheSpec& spec) {
  if (spec.type == CacheSpec::Type::local) {
    return make_local_cache(spec.location, spec.tag);
  }
  RegistryCacheOptions o;
  o.insecure = spec.insecure;
  return make_registry_cache(spec.location, o);
}

size_t CacheIo::imported_records() const {
  std::lock_guard lock(m_mu);
  return m_records.size();
}

std::string CacheIo::source_of(const std::string& key) const {
  std::lock_guard lock(m_mu);
  auto it = m_hit_sources.find(key);
  return it == m_hit_sources.end() ? std::string() : it->second;
}

void CacheIo::note_key(const std::string& key) {
  std::lock_guard lock(m_mu);
  m_keys.insert(key);
}

void CacheIo::note_link(const std::string& derived, const std::string& parent) {
  std::lock_guard lock(m_mu);
  m_links[derived] = parent;
}

void CacheIo::note_mount(const std::string& id, const fsys::path& dir) {
  std::lock_guard lock(m_mu);
  m_used_mounts[id] = dir;
}

}  // namespace imgbuild::builder
