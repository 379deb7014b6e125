#pragma once
// The build context and COPY/ADD source selection.
//
// A BuildContext is a directory opened as an fs::Root (so `..`, a leading `/`
// and symlinks — absolute or relative — never leave it) plus its ignore
// patterns and the Dockerfile text. It comes from a directory, or from a tar
// stream on stdin (`-`, any compression util/tar reads, extracted with
// snapshot::apply_layer into a private temporary directory that the context
// removes when destroyed). A stdin stream that is not an archive is taken as
// the Dockerfile with an empty context, as `docker build - < Dockerfile` does.
//
// Source selection works on any contained tree (the context, another stage's
// rootfs, an image rootfs): a source argument is cleaned against the tree root,
// then resolved component by component; components with Go filepath.Match
// wildcards are matched against directory listings (a wildcard that matches
// nothing selects nothing), symlinks in the path are followed inside the root
// (including the final one: COPY copies what a symlink source points to), and
// the real path reached is checked against the ignore patterns. A literal path
// that does not exist (or is excluded) fails with BuildKit's text:
//   failed to compute cache key: failed to calculate checksum of ref <id>::<id>: "/x": not found
// shortened here to: failed to compute cache key: "/x": not found
//
// walk_source visits what one selected source contributes (the entry itself,
// and for a directory everything below it in byte order), skipping excluded
// entries; both the copier and source_digest use it, so the digest covers
// exactly what a COPY would write.

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "builder/dockerignore.hpp"
#include "util/fs.hpp"
#include "util/hash.hpp"
#include "util/io.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// How to open a build context (the `build` command's CONTEXT and -f).
struct ContextOptions {
  /// A directory path, or "-" for a tar stream (or a Dockerfile) on stdin.
  std::string context;
  /// The -f value: "" = Dockerfile (or dockerfile) in the context; "-" =
  /// read from stdin; otherwise a path (relative to the current directory;
  /// with a stdin context, relative to the context root).
  std::string dockerfile;
  /// The stdin descriptor (tests pass a pipe or a file).
  int stdin_fd = 0;
  /// Where a stdin context is extracted ("" = $TMPDIR or /tmp).
  std::string temp_parent;
};

/// An opened build context.
class BuildContext {
public:
  /// Opens the context as described; reads the Dockerfile and the ignore file
  /// (`<Dockerfile>.dockerignore` next to the Dockerfile, else
  /// `.dockerignore` at the context root).
  static Result<BuildContext> open(const ContextOptions& options);
  /// A context over a directory with no Dockerfile (named contexts,
  /// `--build-context name=DIR`); its .dockerignore applies.
  static Result<BuildContext> from_dir(const std::string& dir);

  BuildContext(BuildContext&&) noexcept = default;
  BuildContext& operator=(BuildContext&&) noexcept = default;
  BuildContext(const BuildContext&) = delete;
  BuildContext& operator=(const BuildContext&) = delete;
  ~BuildContext() = default;

  /// The context root.
  const fs::Root& root() const { return m_root; }
  /// Host path of the context root (a temporary directory for stdin).
  const std::string& dir() const { return m_dir; }
  /// The Dockerfile's text ("" for from_dir).
  const std::string& dockerfile_text() const { return m_dockerfile_text; }
  /// The Dockerfile's name for messages ("Dockerfile", a path, or "-").
  const std::string& dockerfile_name() const { return m_dockerfile_name; }
  /// The ignore patterns in force (empty when there is no ignore file).
  const IgnoreMatcher& ignore() const { return m_ignore; }
  /// Which ignore file was read ("" when none).
  const std::string& ignore_file() const { return m_ignore_file; }

private:
  BuildContext() = default;
  fs::Root m_root = fs::Root::from_fd(UniqueFd(), "");
  std::string m_dir;
  std::string m_dockerfile_text;
  std::string m_dockerfile_name;
  IgnoreMatcher m_ignore;
  std::string m_ignore_file;
  /// The stdin context's temporary directory (empty when none), removed
  /// on destruction.
  io::TempDir m_temp_dir;
};

/// A tree that COPY/ADD reads from: a contained root plus the patterns that
/// hide parts of it (the context's .dockerignore; none for stages/images).
struct SourceTree {
  const fs::Root* root = nullptr;
  /// .dockerignore of the context; nullptr for other trees.
  const IgnoreMatcher* ignore = nullptr;
};

/// One source selected by a source argument.
struct SelectedSource {
  /// Real path inside the tree (cleaned, relative, symlinks resolved, "" for
  /// the root itself).
  std::string path;
  /// The path as the argument named it (cleaned, relative; differs from path
  /// when a symlink was followed). --parents keeps this one.
  std::string named_path;
  /// Path of this match relative to the source argument's base directory
  /// (the part before the first wildcard component; "" for a literal
  /// source): --exclude patterns match exclude_rel joined with the walk's rel.
  std::string exclude_rel;
  /// lstat of the real path (never a symlink unless it dangles).
  struct stat st {};
};

/// Selects what a source argument names in `tree` (see the file comment).
/// Returns the matches in byte order of their named paths. `excludes`
/// (COPY --exclude) removes matches too. With `double_star` (COPY --parents)
/// a `**` component matches any number of directories, none included.
Result<std::vector<SelectedSource>> select_sources(const SourceTree& tree, std::string_view source,
                                                   const IgnoreMatcher* excludes = nullptr, bool double_star = false);

/// Resolves `path` inside `root` component by component, following symlinks
/// inside the root (the final one when `follow_final`), and returns the real
/// cleaned relative path ("" = root). Missing components are kept as named.
/// Fails after 40 symlinks ("too many levels of symbolic links").
Result<std::string> resolve_real_path(const fs::Root& root, std::string_view path, bool follow_final);

/// One entry visited by walk_source.
struct WalkEntry {
  /// Real path in the tree.
  std::string path;
  /// Path relative to the selected source ("" for the source itself).
  std::string rel;
  /// lstat of the entry.
  struct stat st {};
  /// The entry's parent directory (valid only during the visit callback)
  /// and its name there: open it with openat(dirfd, name, …|O_NOFOLLOW).
  int dirfd = -1;
  std::string name;
};

/// Visits `source` and (for a directory) everything below it, parents before
/// children, names in byte order, never following symlinks below the source.
/// Entries excluded by `tree.ignore` (matched on the real path) or by
/// `excludes` (matched on rel) are skipped; an excluded directory is skipped
/// whole unless the patterns have exceptions, in which case it is visited
/// only when something below it is included. Returning an error from `visit`
/// stops the walk.
Result<void> walk_source(const SourceTree& tree, const SelectedSource& source, const IgnoreMatcher* excludes,
                         const std::function<Result<void>(const WalkEntry&)>& visit);

/// Error text for a missing source, BuildKit style:
/// `failed to compute cache key: "/x": not found`.
std::string not_found_message(std::string_view source);

}  // namespace imgbuild::builder
