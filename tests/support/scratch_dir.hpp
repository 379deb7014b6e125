#pragma once
// ScratchDir: a fresh directory under $TMPDIR (or /tmp) removed with its
// contents when the test ends; plus a listing helper to prove that nothing
// outside a root changed.

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <sstream>
#include <string>

namespace imgbuild::test {

/// A temporary directory, recursively removed on destruction.
class ScratchDir {
public:
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/imgbuild-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    m_path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  /// The directory.
  const std::filesystem::path& path() const { return m_path; }
  /// path() / rel.
  std::filesystem::path operator/(const std::string& rel) const { return m_path / rel; }

private:
  std::filesystem::path m_path;
};

/// Writes a whole file (creating or truncating it).
inline void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

/// Reads a whole file ("" if it cannot be read).
inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// path → "type mode size mtime content-or-target" for every entry under dir
/// (symlinks not followed): equal listings mean nothing changed.
inline std::map<std::string, std::string> snapshot_listing(const std::filesystem::path& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) {
      continue;
    }
    std::string desc = std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
                       std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    if (S_ISLNK(st.st_mode)) {
      desc += " -> ";
      desc += std::filesystem::read_symlink(it->path(), ec).string();
    } else if (S_ISREG(st.st_mode)) {
      desc += ' ';
      desc += read_text(it->path());
    }
    out[it->path().lexically_relative(dir).string()] = desc;
  }
  return out;
}

}  // namespace imgbuild::test
