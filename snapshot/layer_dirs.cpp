#include "snapshot/layer_dirs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "snapshot/apply.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/io.hpp"
#include "util/fault.hpp"

namespace imgbuild::snapshot {

namespace fsys = std::filesystem;

fsys::path LayerDirs::dir_for(const std::string& diff_id) const {
  size_t colon = diff_id.find(':');
  std::string hex = colon == std::string::npos ? diff_id : diff_id.substr(colon + 1);
  return m_root / hex / "fs";
}

namespace {

// "sha256:<64 hex>" (or the bare hex) → the hex, or "" when malformed (a
// name that is not 64 hex digits never names a path to delete).
std::string layer_hex(const std::string& diff_id) {
  size_t colon = diff_id.find(':');
  std::string hex = colon == std::string::npos ? diff_id : diff_id.substr(colon + 1);
  if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return "";
  }
  return hex;
}

}  // namespace

Result<uint64_t> LayerDirs::remove(const std::string& diff_id) {
  std::string hex = layer_hex(diff_id);
  if (hex.empty()) {
    return fail(Errc::invalid_argument, fmt::format("not a layer diff_id: {}", diff_id));
  }
  fsys::path dir = m_root / hex;
  std::error_code ec;
  std::unique_lock lock(m_mu);
  m_cv.wait(lock, [&] { return m_busy.count(diff_id) == 0; });
  if (!fsys::exists(dir, ec)) {
    return uint64_t{0};
  }
  fsys::path aside = m_root / (".remove-" + io::random_hex());
  fsys::rename(dir, aside, ec);
  lock.unlock();
  if (ec) {
    return fail(Errc::io, fmt::format("cannot remove {}: {}", dir.string(), ec.message()));
  }
  uint64_t bytes = fs::tree_bytes(aside.string());
  fsys::remove_all(aside, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot remove {}: {}", aside.string(), ec.message()));
  }
  return bytes;
}

uint64_t LayerDirs::size_of(const std::string& diff_id) const {
  std::string hex = layer_hex(diff_id);
  return hex.empty() ? 0 : fs::tree_bytes((m_root / hex).string());
}

Result<fsys::path> LayerDirs::ensure(const fsys::path& blob_path, const std::string& blob_digest,
                                     const std::string& diff_id) {
  fsys::path want = dir_for(diff_id);
  std::error_code ec;
  std::unique_lock lock(m_mu);
  m_cv.wait(lock, [&] { return m_busy.count(diff_id) == 0; });
  if (fsys::is_directory(want, ec)) {
    return want;
  }
  m_busy.insert(diff_id);
  lock.unlock();
  auto result = unpack(blob_path, blob_digest, diff_id, want);
  lock.lock();
  m_busy.erase(diff_id);
  m_cv.notify_all();
  return result;
}

Result<fsys::path> LayerDirs::unpack(const fsys::path& blob_path, const std::string& blob_digest,
                                     const std::string& diff_id, const fsys::path& want) {
  std::error_code ec;
  fsys::path tmp = m_root / (".unpack-" + io::random_hex());
  fsys::create_directories(tmp / "fs", ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot create {}: {}", tmp.string(), ec.message()));
  }
  auto cleanup = [&] {
    std::error_code ec2;
    fsys::remove_all(tmp, ec2);
  };
  int fd = ::open(blob_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    cleanup();
    return fail(Errc::not_found, fmt::format("layer blob {} is missing from the store", blob_digest));
  }
  UniqueFd owned(fd);
  ApplyOptions opts;
  opts.mode = ApplyMode::overlay_lower;
  auto applied = apply_layer_fd((tmp / "fs").string(), fd, "layer " + blob_digest, opts);
  if (!applied) {
    cleanup();
    return fail(std::move(applied).error());
  }
  if (!diff_id.empty() && applied->diff_id.str() != diff_id) {
    cleanup();
    return fail(Errc::corrupt, fmt::format("layer {} has diff_id {}, the image config says {}", blob_digest,
                                           applied->diff_id.str(), diff_id));
  }
  fault::point("layer-unpacked");
  fsys::create_directories(want.parent_path().parent_path(), ec);
  if (::rename(tmp.c_str(), want.parent_path().c_str()) != 0) {
    int err = errno;
    cleanup();
    if (fsys::is_directory(want, ec)) {
      return want;
    }
    return fail(Errc::io, fmt::format("cannot move layer directory into place at {}: {}",
                                      want.parent_path().string(), std::strerror(err)));
  }
  return want;
}

}  // namespace imgbuild::snapshot
