#include "image/types.hpp"

#include <stdexcept>
#include <type_traits>

#include <fmt/format.h>

#include "image/json.hpp"
#include "util/hash.hpp"
#include "util/strings.hpp"

namespace imgbuild::image {

using nlohmann::json;

MediaKind media_kind(std::string_view mt) {
  if (mt == media::oci_index || mt == media::docker_manifest_list) {
    return MediaKind::index;
  }
  if (mt == media::oci_manifest || mt == media::docker_manifest) {
    return MediaKind::manifest;
  }
  if (mt == media::oci_config || mt == media::docker_config) {
    return MediaKind::config;
  }
  if (mt == media::oci_layer || mt == media::oci_layer_gzip || mt == media::oci_layer_zstd ||
      mt == media::oci_layer_nondist || mt == media::oci_layer_nondist_gzip ||
      mt == media::oci_layer_nondist_zstd || mt == media::docker_layer || mt == media::docker_layer_gzip ||
      mt == media::docker_layer_foreign_gzip) {
    return MediaKind::layer;
  }
  return MediaKind::unknown;
}

namespace {

// Reads `key` from `rest` into `out` and removes it, so that what stays in
// `rest` is exactly the unknown fields. null counts as absent (Go semantics).
// An integer field must hold a JSON integer, as Go's encoding/json wants:
// converting a fraction or an out-of-range float (1e30) is undefined.
template <class T>
void check_integer(const json& value, const char* key) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (value.is_number_float()) {
      throw std::runtime_error(fmt::format("field \"{}\": {} is not an integer", key, value.dump()));
    }
  }
}

template <class T>
void take(json& rest, const char* key, T& out) {
  auto it = rest.find(key);
  if (it == rest.end()) {
    return;
  }
  if (!it->is_null()) {
    check_integer<T>(*it, key);
    try {
      out = it->get<T>();
    } catch (const json::exception& e) {
      throw std::runtime_error(fmt::format("field \"{}\": {}", key, e.what()));
    }
  }
  rest.erase(it);
}

template <class T>
void take_opt(json& rest, const char* key, std::optional<T>& out) {
  auto it = rest.find(key);
  if (it == rest.end()) {
    return;
  }
  if (!it->is_null()) {
    check_integer<T>(*it, key);
    try {
      out = it->get<T>();
    } catch (const json::exception& e) {
      throw std::runtime_error(fmt::format("field \"{}\": {}", key, e.what()));
    }
  }
  rest.erase(it);
}

// A Go map[string]struct{} ("ExposedPorts", "Volumes"): the keys matter.
void take_key_set(json& rest, const char* key, std::set<std::string>& out) {
  auto it = rest.find(key);
  if (it == rest.end()) {
    return;
  }
  if (it->is_object()) {
    for (auto& [k, v] : it->items()) {
      out.insert(k);
    }
  } else if (!it->is_null()) {
    throw std::runtime_error(fmt::format("field \"{}\": must be an object", key));
  }
  rest.erase(it);
}

json start(const json& extra) {
  return extra.is_object() ? extra : json::object();
}

json rest_of(const json& j, const char* what) {
  if (!j.is_object()) {
    throw std::runtime_error(fmt::format("{} must be a JSON object", what));
  }
  return j;
}

void put_str(json& j, const char* key, const std::string& v) {
  if (!v.empty()) {
    j[key] = v;
  }
}

template <class C>
void put_nonempty(json& j, const char* key, const C& v) {
  if (!v.empty()) {
    j[key] = v;
  }
}

json key_set(const std::set<std::string>& s) {
  json o = json::object();
  for (const auto& k : s) {
    o[k] = json::object();
  }
  return o;
}

}  // namespace

void to_json(json& j, const Platform& v) {
  j = start(v.extra);
  j["architecture"] = v.architecture;
  j["os"] = v.os;
  put_str(j, "os.version", v.os_version);
  put_nonempty(j, "os.features", v.os_features);
  put_str(j, "variant", v.variant);
}

void from_json(const json& j, Platform& v) {
  json r = rest_of(j, "platform");
  take(r, "architecture", v.architecture);
  take(r, "os", v.os);
  take(r, "os.version", v.os_version);
  take(r, "os.features", v.os_features);
  take(r, "variant", v.variant);
  v.extra = std::move(r);
}

void to_json(json& j, const Descriptor& v) {
  j = start(v.extra);
  j["mediaType"] = v.media_type;
  j["digest"] = v.digest;
  j["size"] = v.size;
  put_nonempty(j, "urls", v.urls);
  put_nonempty(j, "annotations", v.annotations);
  if (v.platform) {
    j["platform"] = *v.platform;
  }
  put_str(j, "artifactType", v.artifact_type);
}

void from_json(const json& j, Descriptor& v) {
  json r = rest_of(j, "descriptor");
  take(r, "mediaType", v.media_type);
  take(r, "digest", v.digest);
  take(r, "size", v.size);
  take(r, "urls", v.urls);
  take(r, "annotations", v.annotations);
  take_opt(r, "platform", v.platform);
  take(r, "artifactType", v.artifact_type);
  v.extra = std::move(r);
}

void to_json(json& j, const Manifest& v) {
  j = start(v.extra);
  j["schemaVersion"] = v.schema_version;
  put_str(j, "mediaType", v.media_type);
  put_str(j, "artifactType", v.artifact_type);
  j["config"] = v.config;
  j["layers"] = v.layers;
  if (v.subject) {
    j["subject"] = *v.subject;
  }
  put_nonempty(j, "annotations", v.annotations);
}

void from_json(const json& j, Manifest& v) {
  json r = rest_of(j, "manifest");
  take(r, "schemaVersion", v.schema_version);
  take(r, "mediaType", v.media_type);
  take(r, "artifactType", v.artifact_type);
  take(r, "config", v.config);
  take(r, "layers", v.layers);
  take_opt(r, "subject", v.subject);
  take(r, "annotations", v.annotations);
  v.extra = std::move(r);
}

void to_json(json& j, const Index& v) {
  j = start(v.extra);
  j["schemaVersion"] = v.schema_version;
  put_str(j, "mediaType", v.media_type);
  put_str(j, "artifactType", v.artifact_type);
  j["manifests"] = v.manifests;
  if (v.subject) {
    j["subject"] = *v.subject;
  }
  put_nonempty(j, "annotations", v.annotations);
}

void from_json(const json& j, Index& v) {
  json r = rest_of(j, "index");
  take(r, "schemaVersion", v.schema_version);
  take(r, "mediaType", v.media_type);
  take(r, "artifactType", v.artifact_type);
  take(r, "manifests", v.manifests);
  take_opt(r, "subject", v.subject);
  take(r, "annotations", v.annotations);
  v.extra = std::move(r);
}

void to_json(json& j, const Healthcheck& v) {
  j = start(v.extra);
  put_nonempty(j, "Test", v.test);
  if (v.interval != 0) {
    j["Interval"] = v.interval;
  }
  if (v.timeout != 0) {
    j["Timeout"] = v.timeout;
  }
  if (v.start_period != 0) {
    j["StartPeriod"] = v.start_period;
  }
  if (v.start_interval != 0) {
    j["StartInterval"] = v.start_interval;
  }
  if (v.retries != 0) {
    j["Retries"] = v.retries;
  }
}

void from_json(const json& j, Healthcheck& v) {
  json r = rest_of(j, "Healthcheck");
  take(r, "Test", v.test);
  take(r, "Interval", v.interval);
  take(r, "Timeout", v.timeout);
  take(r, "StartPeriod", v.start_period);
  take(r, "StartInterval", v.start_interval);
  take(r, "Retries", v.retries);
  v.extra = std::move(r);
}

void to_json(json& j, const ContainerConfig& v) {
  j = start(v.extra);
  put_str(j, "User", v.user);
  if (!v.exposed_ports.empty()) {
    j["ExposedPorts"] = key_set(v.exposed_ports);
  }
  put_nonempty(j, "Env", v.env);
  if (v.entrypoint) {
    j["Entrypoint"] = *v.entrypoint;
  }
  if (v.cmd) {
    j["Cmd"] = *v.cmd;
  }
  if (!v.volumes.empty()) {
    j["Volumes"] = key_set(v.volumes);
  }
  put_str(j, "WorkingDir", v.working_dir);
  put_nonempty(j, "Labels", v.labels);
  put_str(j, "StopSignal", v.stop_signal);
  if (v.args_escaped) {
    j["ArgsEscaped"] = true;
  }
  if (v.healthcheck) {
    j["Healthcheck"] = *v.healthcheck;
  }
  put_nonempty(j, "OnBuild", v.on_build);
  put_nonempty(j, "Shell", v.shell);
}

void from_json(const json& j, ContainerConfig& v) {
  json r = rest_of(j, "config");
  take(r, "User", v.user);
  take_key_set(r, "ExposedPorts", v.exposed_ports);
  take(r, "Env", v.env);
  take_opt(r, "Entrypoint", v.entrypoint);
  take_opt(r, "Cmd", v.cmd);
  take_key_set(r, "Volumes", v.volumes);
  take(r, "WorkingDir", v.working_dir);
  take(r, "Labels", v.labels);
  take(r, "StopSignal", v.stop_signal);
  take(r, "ArgsEscaped", v.args_escaped);
  take_opt(r, "Healthcheck", v.healthcheck);
  take(r, "OnBuild", v.on_build);
  take(r, "Shell", v.shell);
  v.extra = std::move(r);
}

void to_json(json& j, const HistoryEntry& v) {
  j = start(v.extra);
  put_str(j, "created", v.created);
  put_str(j, "author", v.author);
  put_str(j, "created_by", v.created_by);
  put_str(j, "comment", v.comment);
  if (v.empty_layer) {
    j["empty_layer"] = true;
  }
}

void from_json(const json& j, HistoryEntry& v) {
  json r = rest_of(j, "history entry");
  take(r, "created", v.created);
  take(r, "author", v.author);
  take(r, "created_by", v.created_by);
  take(r, "comment", v.comment);
  take(r, "empty_layer", v.empty_layer);
  v.extra = std::move(r);
}

void to_json(json& j, const RootFS& v) {
  j = start(v.extra);
  j["type"] = v.type;
  j["diff_ids"] = v.diff_ids;
}

void from_json(const json& j, RootFS& v) {
  json r = rest_of(j, "rootfs");
  take(r, "type", v.type);
  take(r, "diff_ids", v.diff_ids);
  v.extra = std::move(r);
}

void to_json(json& j, const ImageConfig& v) {
  j = start(v.extra);
  put_str(j, "created", v.created);
  put_str(j, "author", v.author);
  j["architecture"] = v.architecture;
  j["os"] = v.os;
  put_str(j, "os.version", v.os_version);
  put_nonempty(j, "os.features", v.os_features);
  put_str(j, "variant", v.variant);
  if (v.config) {
    j["config"] = *v.config;
  }
  j["rootfs"] = v.rootfs;
  put_nonempty(j, "history", v.history);
}

void from_json(const json& j, ImageConfig& v) {
  json r = rest_of(j, "image config");
  take(r, "created", v.created);
  take(r, "author", v.author);
  take(r, "architecture", v.architecture);
  take(r, "os", v.os);
  take(r, "os.version", v.os_version);
  take(r, "os.features", v.os_features);
  take(r, "variant", v.variant);
  take_opt(r, "config", v.config);
  take(r, "rootfs", v.rootfs);
  take(r, "history", v.history);
  v.extra = std::move(r);
}

bool is_valid_digest(std::string_view d) {
  constexpr std::string_view k_prefix = "sha256:";
  if (d.size() != k_prefix.size() + 64 || d.substr(0, k_prefix.size()) != k_prefix) {
    return false;
  }
  for (char c : d.substr(k_prefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

namespace {

template <class T>
Result<T> parse_doc(std::string_view bytes, std::string_view what) {
  TRY(json doc, parse_json(bytes, what));
  try {
    return doc.get<T>();
  } catch (const std::exception& e) {
    return fail(Errc::corrupt, fmt::format("{}: {}", what, e.what()));
  }
}

Result<void> check_descriptor(const Descriptor& d, std::string_view what, std::string_view role) {
  if (!is_valid_digest(d.digest)) {
    if (d.digest.find(':') != std::string::npos && d.digest.rfind("sha256:", 0) != 0) {
      return fail(Errc::unsupported, fmt::format("{}: {} digest {} uses an unsupported algorithm", what, role,
                                                 str::go_quote(d.digest)));
    }
    return fail(Errc::corrupt, fmt::format("{}: {} has an invalid digest {}", what, role, str::go_quote(d.digest)));
  }
  if (d.size < 0) {
    return fail(Errc::corrupt, fmt::format("{}: {} has a negative size", what, role));
  }
  return ok();
}

}  // namespace


Result<Manifest> parse_manifest(std::string_view bytes, std::string_view what) {
  TRY(Manifest m, parse_doc<Manifest>(bytes, what));
  if (m.schema_version != 2) {
    return fail(Errc::unsupported, fmt::format("{}: manifest schemaVersion {} is not supported", what,
                                               m.schema_version));
  }
  TRY_VOID(check_descriptor(m.config, what, "config"));
  for (size_t i = 0; i < m.layers.size(); ++i) {
    TRY_VOID(check_descriptor(m.layers[i], what, fmt::format("layer {}", i)));
  }
  return m;
}

Result<Index> parse_index(std::string_view bytes, std::string_view what) {
  TRY(Index idx, parse_doc<Index>(bytes, what));
  if (idx.schema_version != 2) {
    return fail(Errc::unsupported, fmt::format("{}: index schemaVersion {} is not supported", what,
                                               idx.schema_version));
  }
  for (size_t i = 0; i < idx.manifests.size(); ++i) {
    TRY_VOID(check_descriptor(idx.manifests[i], what, fmt::format("manifest {}", i)));
  }
  return idx;
}

Result<ImageConfig> parse_config(std::string_view bytes, std::string_view what) {
  TRY(ImageConfig c, parse_doc<ImageConfig>(bytes, what));
  if (c.rootfs.type != "layers") {
    return fail(Errc::corrupt, fmt::format("{}: rootfs.type is \"{}\", expected \"layers\"", what, c.rootfs.type));
  }
  for (size_t i = 0; i < c.rootfs.diff_ids.size(); ++i) {
    if (!is_valid_digest(c.rootfs.diff_ids[i])) {
      return fail(Errc::corrupt, fmt::format("{}: rootfs.diff_ids[{}] is not a sha256 digest", what, i));
    }
  }
  return c;
}

std::string serialize(const Manifest& v) { return canonical_json(json(v)); }
std::string serialize(const Index& v) { return canonical_json(json(v)); }
std::string serialize(const ImageConfig& v) { return canonical_json(json(v)); }

std::string chain_id(const std::vector<std::string>& diff_ids, size_t n) {
  if (n == 0 || diff_ids.empty()) {
    return {};
  }
  std::string chain = diff_ids[0];
  for (size_t i = 1; i < n && i < diff_ids.size(); ++i) {
    chain = sha256(chain + " " + diff_ids[i]).str();
  }
  return chain;
}

}  // namespace imgbuild::image
