#pragma once
// Reading images back through the docker-save format or, one platform of
// an image index, an OCI layout tar, and comparing two of them file by file
// and field by field. Used by build_test.cpp and by the
// differential suite (compat_test.cpp, testdata/compat/).
//
// What a comparison leaves out (the rest, history text included, must be
// equal):
// - times that are the builds' own clock (Ignores::build_from/build_to);
// - whiteout modes (set by each engine's tar writer);
// - xattrs (read, not compared);
// - on the oracle's side only, what BuildKit's RUN leaves of its own mount
//   points (DIFFERENCES.md, "RUN mount points leave nothing behind"): the
//   empty /dev, /proc and /sys it makes when the image lacks them, and the
//   empty directories on the way to a RUN --mount target.

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "util/hash.hpp"
#include "util/tar.hpp"

namespace imgbuild::test {

/// One entry of a layer, as compared: everything but xattrs, and the
/// modification time only where it is not the build's own (see Ignores).
struct FileInfo {
  std::string type;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  std::string link;
  std::string digest;   ///< sha256 of a regular file's body
  std::string content;  ///< the body of regular files up to 4 KiB
  std::string xattrs;   ///< "name=value;" sorted
  int64_t mtime = 0;    ///< modification time, seconds since the epoch
  bool operator==(const FileInfo&) const = default;
};

/// A layer's entries by normalised path (no "./", no trailing "/").
using LayerFiles = std::map<std::string, FileInfo>;

/// A body shown inline when it is short printable text, else by size and hash.
inline std::string describe_body(const FileInfo& f) {
  bool printable = f.content.size() == f.size && f.size <= 64;
  for (char c : f.content) {
    printable = printable && ((c >= 0x20 && c < 0x7f) || c == '\n');
  }
  std::string out = " size=" + std::to_string(f.size);
  if (printable) {
    out += " \"";
    for (char c : f.content) {
      out += c == '\n' ? std::string("\\n") : c == '"' ? std::string("\\\"") : std::string(1, c);
    }
    return out + "\"";
  }
  return out + " sha256=" + f.digest.substr(0, 16);
}

/// One line describing an entry: `path type mode uid:gid [-> link] [body]`.
inline std::string fmt_entry(const std::string& path, const FileInfo& f) {
  char mode[16];
  std::snprintf(mode, sizeof mode, "%04o", f.mode);
  std::string out = path + " " + f.type + " " + mode + " " + std::to_string(f.uid) + ":" + std::to_string(f.gid);
  if (!f.link.empty()) {
    out += " -> " + f.link;
  }
  if (f.type == "file") {
    out += describe_body(f);
  }
  if (!f.xattrs.empty()) {
    out += " xattrs=" + f.xattrs;
  }
  return out;
}

/// The entries of one layer tar (any compression libarchive reads).
inline LayerFiles read_layer(const std::filesystem::path& blob) {
  LayerFiles out;
  int fd = ::open(blob.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto reader = tar::Reader::open_fd(fd, blob.string());
  REQUIRE(reader);
  while (true) {
    auto e = (*reader)->next();
    REQUIRE(e);
    if (!*e) {
      break;
    }
    const tar::Entry& entry = **e;
    FileInfo fi;
    fi.type = std::string(tar::entry_type_name(entry.type));
    fi.mode = entry.mode & 07777;
    fi.uid = entry.uid;
    fi.gid = entry.gid;
    fi.link = entry.link_target;
    fi.mtime = entry.mtime_sec;
    std::vector<std::string> xattrs;
    for (const auto& [k, v] : entry.xattrs) {
      bool printable = true;
      std::string hex;
      for (char c : v) {
        printable = printable && c >= 0x20 && c < 0x7f && c != ';';
        char b[3];
        std::snprintf(b, sizeof b, "%02x", static_cast<unsigned char>(c));
        hex += b;
      }
      xattrs.push_back(k + "=" + (printable ? v : "0x" + hex) + ";");
    }
    std::sort(xattrs.begin(), xattrs.end());
    for (const auto& x : xattrs) {
      fi.xattrs += x;
    }
    if (entry.type == tar::EntryType::file) {
      fi.size = entry.size;
      Sha256 hasher;
      std::string buf(64 * 1024, '\0');
      while (true) {
        auto n = (*reader)->read_data(buf.data(), buf.size());
        REQUIRE(n);
        if (*n == 0) {
          break;
        }
        hasher.update(buf.data(), *n);
        if (fi.content.size() < 4096) {
          fi.content.append(buf.data(), std::min<size_t>(*n, 4096 - fi.content.size()));
        }
      }
      fi.digest = hasher.finish().hex();
    }
    std::string path = entry.path;
    while (path.starts_with("./")) {
      path = path.substr(2);
    }
    while (path.starts_with("/")) {
      path = path.substr(1);
    }
    while (path.size() > 1 && path.ends_with("/")) {
      path.pop_back();
    }
    if (path.empty() || path == ".") {
      continue;
    }
    out[path] = fi;
  }
  ::close(fd);
  return out;
}

/// A docker-save archive unpacked: config and layers.
struct Saved {
  std::string config_bytes;
  nlohmann::json config;
  std::vector<LayerFiles> layers;
};

/// Unpacks a docker-save archive (one image) under work and reads it.
inline Saved read_saved(const std::filesystem::path& archive, const std::filesystem::path& work) {
  std::filesystem::path dir = work / ("unpacked-" + archive.filename().string());
  std::filesystem::create_directories(dir);
  RunResult x = run_sh("tar -xf " + sh_quote(archive.string()) + " -C " + sh_quote(dir.string()));
  REQUIRE(x.status == 0);
  nlohmann::json manifest = nlohmann::json::parse(read_file(dir / "manifest.json"));
  REQUIRE(manifest.size() == 1);
  Saved s;
  s.config_bytes = read_file(dir / manifest[0]["Config"].get<std::string>());
  s.config = nlohmann::json::parse(s.config_bytes);
  for (const auto& l : manifest[0]["Layers"]) {
    s.layers.push_back(read_layer(dir / l.get<std::string>()));
  }
  return s;
}

/// True when an OCI platform object matches `wanted` ("os/arch[/variant]",
/// as --platform gives it; a wanted platform without a variant matches any
/// variant, as containerd's matcher does for arm64's "v8").
inline bool oci_platform_matches(const nlohmann::json& platform, const std::string& wanted) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t slash = wanted.find('/', start);
    parts.push_back(wanted.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) {
      break;
    }
    start = slash + 1;
  }
  REQUIRE(parts.size() >= 2);
  return platform.value("os", "") == parts[0] && platform.value("architecture", "") == parts[1] &&
         (parts.size() < 3 || platform.value("variant", "") == parts[2]);
}

/// Unpacks an OCI layout tar (an image index, as `-o type=oci` of a
/// multi-platform build writes it) under work and reads the image of
/// `platform` ("linux/arm64"): index.json, through nested indexes, to the
/// one manifest whose platform (the descriptor's, else its config's)
/// matches, then its config and layers (any compression read_layer reads).
inline Saved read_oci_platform(const std::filesystem::path& archive, const std::string& platform,
                               const std::filesystem::path& work) {
  std::filesystem::path dir = work / ("unpacked-" + archive.filename().string());
  if (!std::filesystem::exists(dir / "index.json")) {
    std::filesystem::create_directories(dir);
    RunResult x = run_sh("tar -xf " + sh_quote(archive.string()) + " -C " + sh_quote(dir.string()));
    INFO(x.err);
    REQUIRE(x.status == 0);
  }
  auto blob = [&](const nlohmann::json& desc) {
    std::string digest = desc.at("digest").get<std::string>();
    REQUIRE(digest.starts_with("sha256:"));
    std::filesystem::path p = dir / "blobs" / "sha256" / digest.substr(7);
    INFO(archive.string() << " lacks the blob " << digest);
    REQUIRE(std::filesystem::is_regular_file(p));
    return p;
  };
  // Every image manifest the layout reaches, with its config.
  std::vector<std::pair<nlohmann::json, nlohmann::json>> matches;
  std::vector<std::string> seen;
  std::vector<nlohmann::json> pending = {nlohmann::json::parse(read_file(dir / "index.json"))};
  while (!pending.empty()) {
    nlohmann::json index = std::move(pending.back());
    pending.pop_back();
    for (const auto& desc : index.value("manifests", nlohmann::json::array())) {
      nlohmann::json doc = nlohmann::json::parse(read_file(blob(desc)));
      std::string media_type = desc.value("mediaType", doc.value("mediaType", ""));
      if (doc.contains("manifests")) {
        pending.push_back(std::move(doc));
        continue;
      }
      if (!doc.contains("config") || !doc.contains("layers")) {
        continue;  // not an image manifest
      }
      nlohmann::json config = nlohmann::json::parse(read_file(blob(doc["config"])));
      nlohmann::json plat = desc.contains("platform")
                                ? desc["platform"]
                                : nlohmann::json{{"os", config.value("os", "")},
                                                 {"architecture", config.value("architecture", "")},
                                                 {"variant", config.value("variant", "")}};
      seen.push_back(plat.dump() + " " + media_type);
      if (oci_platform_matches(plat, platform)) {
        matches.emplace_back(desc, doc);
      }
    }
  }
  INFO(archive.string() << ": the image manifests found: " << nlohmann::json(seen).dump());
  REQUIRE(matches.size() == 1);
  const nlohmann::json& manifest = matches[0].second;
  Saved s;
  s.config_bytes = read_file(blob(manifest["config"]));
  s.config = nlohmann::json::parse(s.config_bytes);
  for (const auto& l : manifest["layers"]) {
    s.layers.push_back(read_layer(blob(l)));
  }
  return s;
}

/// Bytes each layer stores that the final filesystem does not show, counted
/// the slow way, independently of image/analyze: an entry's content bytes (a
/// file's size, a symlink's target length; hardlinks 0) are wasted when a
/// later layer has an entry at its path or below it, a non-directory at one
/// of its ancestors, a whiteout of its path or of an ancestor, or an opaque
/// marker in an ancestor directory.
inline std::vector<int64_t> brute_force_wasted(const std::vector<LayerFiles>& layers) {
  std::vector<int64_t> out(layers.size(), 0);
  auto shadowed = [](const LayerFiles& later, const std::string& p) {
    if (later.count(p) != 0) {
      return true;
    }
    auto below = later.lower_bound(p + "/");
    if (below != later.end() && below->first.compare(0, p.size() + 1, p + "/") == 0) {
      return true;
    }
    // p itself and each ancestor: whiteout; ancestors: non-directory, opaque.
    std::string at = p;
    while (true) {
      size_t slash = at.rfind('/');
      std::string dir = slash == std::string::npos ? "" : at.substr(0, slash);
      std::string name = slash == std::string::npos ? at : at.substr(slash + 1);
      if (later.count((dir.empty() ? "" : dir + "/") + ".wh." + name) != 0) {
        return true;
      }
      if (later.count((dir.empty() ? "" : dir + "/") + ".wh..wh..opq") != 0) {
        return true;
      }
      if (dir.empty()) {
        return false;
      }
      auto a = later.find(dir);
      if (a != later.end() && a->second.type != "directory") {
        return true;
      }
      at = dir;
    }
  };
  for (size_t i = 0; i < layers.size(); ++i) {
    for (const auto& [path, f] : layers[i]) {
      int64_t bytes = f.type == "file" ? static_cast<int64_t>(f.size)
                      : f.type == "symlink" ? static_cast<int64_t>(f.link.size()) : 0;
      size_t slash = path.rfind('/');
      if (bytes == 0 || path.compare(slash == std::string::npos ? 0 : slash + 1, 4, ".wh.") == 0) {
        continue;
      }
      for (size_t j = i + 1; j < layers.size(); ++j) {
        if (shadowed(layers[j], path)) {
          out[i] += bytes;
          break;
        }
      }
    }
  }
  return out;
}

/// The config fields the differential comparisons check.
inline const std::vector<std::string>& compared_config_fields() {
  static const std::vector<std::string> k_fields = {
      "Env",         "Cmd",        "Entrypoint", "WorkingDir", "User",        "ExposedPorts", "Volumes",
      "Labels",      "StopSignal", "Healthcheck", "Shell",     "OnBuild",     "ArgsEscaped"};
  return k_fields;
}

/// A config field with the empty forms (null, "", [], {}, false) made null.
inline nlohmann::json config_field(const nlohmann::json& image_config, const std::string& field) {
  if (!image_config.contains("config") || !image_config["config"].is_object()) {
    return nullptr;
  }
  nlohmann::json v = image_config["config"].value(field, nlohmann::json());
  if ((v.is_array() || v.is_object() || v.is_string()) && v.empty()) {
    return nullptr;
  }
  if (v == nlohmann::json(false)) {
    return nullptr;
  }
  return v;
}

/// What a comparison leaves out (see the file comment).
struct Ignores {
  /// RUN --mount targets (absolute or relative to /, without leading "/").
  std::set<std::string> mount_targets;
  /// Modification times from `build_from` to `build_to` (seconds since the
  /// epoch) are the builds' own clock and not compared; others (from the
  /// base image, an archive, a pinned epoch) are shown as " mtime=N". Both
  /// 0: no times are compared.
  int64_t build_from = 0;
  int64_t build_to = 0;
};

/// True for what BuildKit's RUN leaves of its mount points and imgbuild does
/// not (see the file comment): an empty file or directory at a mount target,
/// a directory on the way to one, the mount-point directories /dev, /proc,
/// /sys — each only when everything below it in this layer is such a stub
/// too.
inline bool ignorable_stub(const std::string& path, const FileInfo& f, const LayerFiles& files,
                           const Ignores& ignores) {
  bool empty_node = f.type == "directory" || (f.type == "file" && f.size == 0);
  if (!empty_node) {
    return false;
  }
  bool mount_point = path == "dev" || path == "proc" || path == "sys";
  bool on_target_path = false;
  for (const auto& t : ignores.mount_targets) {
    on_target_path = on_target_path || t == path || (f.type == "directory" && t.starts_with(path + "/"));
  }
  if (!mount_point && !on_target_path) {
    return false;
  }
  if (mount_point && f.type != "directory") {
    return false;
  }
  if (f.type == "directory") {
    for (auto it = files.upper_bound(path); it != files.end() && it->first.starts_with(path); ++it) {
      bool below = it->first.size() > path.size() && it->first[path.size()] == '/';
      if (below && !ignorable_stub(it->first, it->second, files, ignores)) {
        return false;  // something real below it in this layer
      }
    }
  }
  return true;
}

/// The description lines of a layer, with known engine differences removed
/// (mount-point stubs only when `dockerd_side`, the oracle's; whiteout modes
/// always).
inline std::vector<std::string> describe_layer(const LayerFiles& files, const Ignores& ignores, bool dockerd_side,
                                               const LayerFiles* other) {
  std::vector<std::string> out;
  for (const auto& [p, f] : files) {
    bool only_here = other == nullptr || other->count(p) == 0;
    if (only_here && ignorable_stub(p, f, files, ignores) && (dockerd_side || p == "dev" || p == "proc" ||
                                                              p == "sys")) {
      continue;
    }
    FileInfo shown = f;
    shown.xattrs.clear();  // not compared (see the file comment)
    std::string name = p.substr(p.rfind('/') == std::string::npos ? 0 : p.rfind('/') + 1);
    bool whiteout = name.starts_with(".wh.");
    if (whiteout) {
      shown.mode = 0;
    }
    std::string line = fmt_entry(p, shown);
    bool times_compared = ignores.build_from != 0 || ignores.build_to != 0;
    if (times_compared && !whiteout && (f.mtime < ignores.build_from || f.mtime > ignores.build_to)) {
      line += " mtime=" + std::to_string(f.mtime);
    }
    out.push_back(line);
  }
  return out;
}

/// "- line" for lines only in `ours`, "+ line" for lines only in `theirs`.
inline std::string diff_lines(const std::vector<std::string>& ours, const std::vector<std::string>& theirs) {
  std::set<std::string> a(ours.begin(), ours.end());
  std::set<std::string> b(theirs.begin(), theirs.end());
  std::string out;
  for (const auto& l : a) {
    if (b.count(l) == 0) {
      out += "  - " + l + "\n";
    }
  }
  for (const auto& l : b) {
    if (a.count(l) == 0) {
      out += "  + " + l + "\n";
    }
  }
  return out;
}

/// Every difference between imgbuild's image (`ours`) and the oracle's
/// (`theirs`): config fields, history created_by/empty_layer, layer entries.
/// Empty when they match. Lines: "- imgbuild only", "+ oracle only".
inline std::string compare_images(const Saved& ours, const Saved& theirs, const Ignores& ignores) {
  std::string out;
  for (const auto& field : compared_config_fields()) {
    nlohmann::json va = config_field(ours.config, field);
    nlohmann::json vb = config_field(theirs.config, field);
    if (va != vb) {
      out += "config " + field + ":\n  - " + va.dump() + "\n  + " + vb.dump() + "\n";
    }
  }
  if (ours.config.value("author", "") != theirs.config.value("author", "")) {
    out += "author:\n  - " + ours.config.value("author", "") + "\n  + " + theirs.config.value("author", "") + "\n";
  }
  auto history = [](const Saved& s) {
    std::vector<std::string> h;
    const nlohmann::json entries = s.config.value("history", nlohmann::json::array());
    for (const auto& e : entries) {
      h.push_back(e.value("created_by", "") +
                  (e.value("empty_layer", false) ? "  (empty_layer)" : ""));
    }
    return h;
  };
  std::vector<std::string> ha = history(ours);
  std::vector<std::string> hb = history(theirs);
  for (size_t i = 0; i < std::max(ha.size(), hb.size()); ++i) {
    std::string a = i < ha.size() ? ha[i] : "(none)";
    std::string b = i < hb.size() ? hb[i] : "(none)";
    if (a != b) {
      out += "history[" + std::to_string(i) + "]:\n  - " + a + "\n  + " + b + "\n";
    }
  }
  if (ours.layers.size() != theirs.layers.size()) {
    out += "layer count: - " + std::to_string(ours.layers.size()) + " + " + std::to_string(theirs.layers.size()) +
           "\n";
  }
  for (size_t i = 0; i < std::min(ours.layers.size(), theirs.layers.size()); ++i) {
    std::string d = diff_lines(describe_layer(ours.layers[i], ignores, false, &theirs.layers[i]),
                               describe_layer(theirs.layers[i], ignores, true, &ours.layers[i]));
    if (!d.empty()) {
      out += "layer " + std::to_string(i) + ":\n" + d;
    }
  }
  return out;
}

}  // namespace imgbuild::test
