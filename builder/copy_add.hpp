#pragma once
// What ADD can do and COPY cannot (internal to builder/copy*.cpp): extract
// a local or downloaded tar archive into the destination, download a URL,
// and check out a git repository. Downloads and checkouts land in the
// caller's private temporary directory; the caller copies a checkout like a
// local source. The rules are in builder/copy.hpp.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "builder/copy.hpp"
#include "builder/copy_writer.hpp"
#include "util/io.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// The path part of a URL ("/a/b.tar" of "https://h/a/b.tar?x#y"); "" when
/// there is none.
std::string url_path(std::string_view url);

/// Extracts the archive at `fd` (rewound first) into the directory `into`
/// (relative; made 0755 when missing) inside a Root opened there, recording
/// what it wrote; with `chown` every extracted entry gets the --chown owner.
/// `label` names the archive in errors.
Result<void> extract_archive(Copier& copier, int fd, const std::string& label, const std::string& into,
                             bool chown);

/// A downloaded ADD <url> source.
struct Download {
  /// The file in the temporary directory.
  std::string file;
  /// The file name for the destination (the URL path's last component, or
  /// "index.html").
  std::string name;
  /// Last-Modified, when the server sent one.
  std::optional<int64_t> mtime;
};

/// Downloads `url` into `tmp` (file "download-<index>"), verifying
/// `checksum` (sha256:<hex>) when given.
Result<Download> download(const std::string& url, const CopyEnv& env, const io::TempDir& tmp, size_t index,
                          const std::optional<std::string>& checksum);

/// A checked-out ADD git source.
struct GitCheckout {
  /// The working tree in the temporary directory (.git removed unless
  /// --keep-git-dir or keep-git-dir=true).
  std::string dir;
  /// The subdirectory to copy ("" = the whole tree).
  std::string subdir;
};

/// Clones `source` into `tmp` (directory "git-<index>") with env.git_program,
/// checks out its ref (submodules too unless turned off) and verifies the
/// pinned commit (--checksum or the checksum/commit query key).
Result<GitCheckout> checkout_git(const std::string& source, const CopyRequest& req, const CopyEnv& env,
                                 const io::TempDir& tmp, size_t index);

}  // namespace imgbuild::builder
