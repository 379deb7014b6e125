#pragma once
// Unpacked layers shared by every image that uses them: one layer directory
// (overlay-lower form) per diff_id, at <root>/<diff_id hex>/fs. Used by the
// builder for base layers and new layers, and by `imgbuild run`/`commit`.
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>

#include "util/io.hpp"
#include "util/result.hpp"

namespace imgbuild::snapshot {

/// The layer directories under one root (normally <store>/snapshots).
/// Thread-safe: concurrent ensure() calls for one diff_id unpack it once.
class LayerDirs {
public:
  /// Layer directories live under root.
  explicit LayerDirs(std::filesystem::path root) : m_root(std::move(root)) {}

  /// Where the layer with this diff_id ("sha256:…") is (or would be) unpacked.
  std::filesystem::path dir_for(const std::string& diff_id) const;

  /// The layer directory for diff_id, applying the layer blob at blob_path
  /// (named blob_digest in messages) when it is not there yet. The applied
  /// layer's diff_id must equal diff_id (when diff_id is non-empty).
  Result<std::filesystem::path> ensure(const std::filesystem::path& blob_path, const std::string& blob_digest,
                                       const std::string& diff_id);

  /// Deletes the layer directory of diff_id, if unpacked (renamed aside
  /// first, so ensure() never finds half of one); returns the bytes of the
  /// regular files it held. The caller makes sure nothing uses the layer.
  Result<uint64_t> remove(const std::string& diff_id);

  /// Bytes of the regular files in the layer directory of diff_id (0 when
  /// it is not unpacked).
  uint64_t size_of(const std::string& diff_id) const;

  /// The root holding the layer directories.
  const std::filesystem::path& root() const { return m_root; }

  /// io::random_hex() (16 digits), under the name cli/cmd_container.cpp
  /// still uses; new code calls io::random_hex.
  static std::string random_hex() { return io::random_hex(); }

private:
  Result<std::filesystem::path> unpack(const std::filesystem::path& blob_path, const std::string& blob_digest,
                                       const std::string& diff_id, const std::filesystem::path& want);

  std::filesystem::path m_root;
  std::mutex m_mu;
  std::condition_variable m_cv;
  std::set<std::string> m_busy;
};

}  // namespace imgbuild::snapshot
