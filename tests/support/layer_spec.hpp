#pragma once
// Layer tars from a readable spec, generated at test time:
//   make_layer({dir("etc"), file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
//               symlink_to("var/run", "/run"), hardlink_to("bin/b", "/bin/a")})
// Entries are written in the order given (no sorting), so hostile orders and
// names ("../x", ".wh.") can be expressed too.

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "util/tar.hpp"

namespace imgbuild::test {

/// One entry of a test layer: the tar header plus a body for files.
struct LayerEntry {
  tar::Entry entry;
  std::string body;

  /// Sets the owner; returns *this for chaining.
  LayerEntry& owner(uint32_t uid, uint32_t gid) {
    entry.uid = uid;
    entry.gid = gid;
    return *this;
  }
  /// Adds an xattr.
  LayerEntry& xattr(std::string name, std::string value) {
    entry.xattrs.emplace_back(std::move(name), std::move(value));
    return *this;
  }
  /// Sets the mtime.
  LayerEntry& mtime(int64_t sec, uint32_t nsec = 0) {
    entry.mtime_sec = sec;
    entry.mtime_nsec = nsec;
    return *this;
  }
};

inline LayerEntry make_entry(std::string path, tar::EntryType type, uint32_t mode) {
  LayerEntry e;
  e.entry.path = std::move(path);
  e.entry.type = type;
  e.entry.mode = mode;
  e.entry.mtime_sec = 1600000000;
  return e;
}

/// A regular file with a body.
inline LayerEntry file(std::string path, std::string body = {}, uint32_t mode = 0644) {
  LayerEntry e = make_entry(std::move(path), tar::EntryType::file, mode);
  e.entry.size = body.size();
  e.body = std::move(body);
  return e;
}
/// A directory.
inline LayerEntry dir(std::string path, uint32_t mode = 0755) {
  return make_entry(std::move(path), tar::EntryType::dir, mode);
}
/// A symlink.
inline LayerEntry symlink_to(std::string path, std::string target) {
  LayerEntry e = make_entry(std::move(path), tar::EntryType::symlink, 0777);
  e.entry.link_target = std::move(target);
  return e;
}
/// A hardlink (typeflag 1) to target.
inline LayerEntry hardlink_to(std::string path, std::string target) {
  LayerEntry e = make_entry(std::move(path), tar::EntryType::hardlink, 0644);
  e.entry.link_target = std::move(target);
  return e;
}
/// A character device.
inline LayerEntry chardev(std::string path, uint32_t major, uint32_t minor) {
  LayerEntry e = make_entry(std::move(path), tar::EntryType::char_device, 0666);
  e.entry.dev_major = major;
  e.entry.dev_minor = minor;
  return e;
}
/// An OCI whiteout file for `path` (".wh." is prefixed to its last component).
inline LayerEntry whiteout(const std::string& path) {
  auto slash = path.rfind('/');
  std::string p = slash == std::string::npos ? ".wh." + path : path.substr(0, slash + 1) + ".wh." + path.substr(slash + 1);
  return file(p);
}

/// The tar bytes of the entries, in order.
inline std::string make_layer(const std::vector<LayerEntry>& entries,
                              tar::Compression compression = tar::Compression::none) {
  std::string out;
  auto w = tar::Writer::open(
      [&out](const void* d, size_t n) -> Result<void> {
        out.append(static_cast<const char*>(d), n);
        return ok();
      },
      {.compression = compression});
  if (!w) {
    throw std::runtime_error(w.error().to_string());
  }
  for (const auto& e : entries) {
    auto r = (*w)->add(e.entry);
    if (r && !e.body.empty()) {
      r = (*w)->write_data(e.body.data(), e.body.size());
    }
    if (!r) {
      throw std::runtime_error(r.error().to_string());
    }
  }
  auto s = (*w)->finish();
  if (!s) {
    throw std::runtime_error(s.error().to_string());
  }
  return out;
}

/// A tar::ReadFn over an in-memory string (which must outlive the reader).
inline tar::ReadFn string_reader(const std::string& data) {
  auto pos = std::make_shared<size_t>(0);
  return [&data, pos](void* buf, size_t cap) -> Result<size_t> {
    size_t n = std::min(cap, data.size() - *pos);
    std::memcpy(buf, data.data() + *pos, n);
    *pos += n;
    return n;
  };
}

}  // namespace imgbuild::test
