// The exported cache's config document (records as JSON, read back with
// every field checked) and the deterministic tars of cache-mount
// directories (sorted paths, owners and modes kept, mtimes zero).

#include "builder/cache_format.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "builder/oci_layout.hpp"
#include "util/fd.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;
using nlohmann::json;

json record_json(const cache::CacheRecord& r) {
  json j = {{"key", r.key},         {"parent_key", r.parent_key}, {"position", r.position},
            {"kind", r.kind},       {"config", r.config},         {"created_by", r.created_by},
            {"inputs", r.inputs}};
  if (r.has_layer()) {
    j["layer"] = {{"mediaType", r.layer.media_type},
                  {"digest", r.layer.blob_digest},
                  {"size", r.layer.blob_size},
                  {"diff_id", r.layer.diff_id},
                  {"diff_size", r.layer.diff_size}};
  }
  return j;
}

std::optional<cache::CacheRecord> record_of(const json& j) {
  if (!j.is_object()) {
    return std::nullopt;
  }
  auto text = [&](const char* name, std::string& out) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) {
      return false;
    }
    out = it->get<std::string>();
    return true;
  };
  cache::CacheRecord r;
  if (!text("key", r.key) || !OciLayoutDir::valid_digest(r.key) || !text("parent_key", r.parent_key) ||
      !text("kind", r.kind) || !text("config", r.config) || !text("created_by", r.created_by) ||
      !text("inputs", r.inputs)) {
    return std::nullopt;
  }
  auto pos = j.find("position");
  if (pos == j.end() || !pos->is_number_integer()) {
    return std::nullopt;
  }
  int64_t p = pos->get<int64_t>();
  if (p < -1 || p > 1'000'000) {
    return std::nullopt;
  }
  r.position = static_cast<int>(p);
  if (auto l = j.find("layer"); l != j.end() && !l->is_null()) {
    if (!l->is_object()) {
      return std::nullopt;
    }
    auto s = [&](const char* name, std::string& out) {
      auto it = l->find(name);
      if (it == l->end() || !it->is_string()) {
        return false;
      }
      out = it->get<std::string>();
      return true;
    };
    auto n = [&](const char* name, int64_t& out) {
      auto it = l->find(name);
      if (it == l->end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
        return false;
      }
      out = it->get<int64_t>();
      return true;
    };
    if (!s("mediaType", r.layer.media_type) || !s("digest", r.layer.blob_digest) ||
        !OciLayoutDir::valid_digest(r.layer.blob_digest) || !s("diff_id", r.layer.diff_id) ||
        !OciLayoutDir::valid_digest(r.layer.diff_id) || !n("size", r.layer.blob_size) ||
        !n("diff_size", r.layer.diff_size)) {
      return std::nullopt;
    }
    // Only layer media types (the built image's manifest repeats it).
    if (!r.layer.media_type.starts_with("application/vnd.oci.image.layer.v1.tar") &&
        !r.layer.media_type.starts_with("application/vnd.docker.image.rootfs.diff.tar")) {
      return std::nullopt;
    }
  }
  return r;
}

bool mount_entries(const fsys::path& dir, uint64_t max, std::vector<std::string>& paths, uint64_t& total) {
  std::error_code ec;
  fsys::recursive_directory_iterator it(dir, fsys::directory_options::none, ec);
  for (; !ec && it != fsys::recursive_directory_iterator(); it.increment(ec)) {
    fsys::path rel = it->path().lexically_relative(dir);  // never through a symlink
    paths.push_back(rel.generic_string());
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) {
      total += it->file_size(ec);
      if (total > max) {
        return false;
      }
    }
  }
  tar::sort_layer_paths(paths);
  return true;
}

Result<tar::WriteSummary> write_mount_tar(const fsys::path& dir, const std::vector<std::string>& paths,
                                          const fsys::path& out) {
  UniqueFd fd(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) {
    return fail(Errc::io, fmt::format("cannot create {}: {}", out.string(), std::strerror(errno)));
  }
  tar::WriterOptions wo;
  wo.compression = tar::Compression::gzip;
  TRY(auto w, tar::Writer::open_fd(fd.get(), wo));
  for (const auto& rel : paths) {
    fsys::path p = dir / rel;
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) {
      continue;  // vanished meanwhile
    }
    tar::Entry e;
    e.path = rel;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    if (S_ISDIR(st.st_mode)) {
      e.type = tar::EntryType::dir;
      TRY_VOID(w->add(e));
    } else if (S_ISLNK(st.st_mode)) {
      e.type = tar::EntryType::symlink;
      std::error_code ec;
      e.link_target = fsys::read_symlink(p, ec).string();
      TRY_VOID(w->add(e));
    } else if (S_ISREG(st.st_mode)) {
      UniqueFd in(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      struct stat fst {};
      if (!in || ::fstat(in.get(), &fst) != 0) {
        continue;
      }
      e.type = tar::EntryType::file;
      e.size = static_cast<uint64_t>(fst.st_size);
      TRY_VOID(w->add_file_from_fd(e, in.get()));
    }
    // Devices, fifos and sockets are not cache content.
  }
  return w->finish();
}

}  // namespace imgbuild::builder
