#pragma once
// COPY and ADD: what one instruction writes into a step's rootfs.
//
// The caller (the executor) expands the instruction's words, picks the source
// tree (the context, another stage's rootfs, an image rootfs — each a
// contained fs::Root) and the destination Root (the step's writable rootfs
// view), and calls apply_copy. Everything written goes through util/fs, so no
// source symlink, archive entry or destination symlink leads outside a root.
//
// Rules (BuildKit v0.22's Dockerfile frontend and file op):
// - dest: relative against WORKDIR; "" means WORKDIR; a trailing "/" (or
//   "/." ) means "into this directory". Without one, each source (each
//   wildcard match) is copied on its own: into the dest when a directory is
//   there at that moment (a symlink to one counts), else onto the dest path —
//   so several sources onto a new path leave the last one, and a directory
//   source makes the dest a directory for the sources after it (a directory
//   source onto an existing non-directory fails: "cannot copy to
//   non-directory").
// - a directory source copies its contents, not itself; a file source keeps
//   its name under a directory dest; missing parent dirs (and a directory
//   source's missing dest) are created 0755 — an octal --chmod's mode with
//   --chmod — owned by the --chown owner (0:0 without). The
//   destination of a directory source keeps its metadata when it exists;
//   directories below it that exist already take the source's owner, mode,
//   xattrs and mtime (BuildKit's copier overwrites them).
// - owners: without --chown everything written is 0:0 (even under USER);
//   --chown user[:group] names resolve from the *destination* rootfs's
//   /etc/passwd and /etc/group (a user alone takes its primary group), ids
//   may be numeric. --chmod (octal or symbolic like u=rwX,go=rX) applies to
//   every file and directory written (not to symlinks), as BuildKit does.
// - files keep their mode, mtime and xattrs; hardlinks within one source
//   stay hardlinks; a socket becomes an empty regular file (BuildKit's
//   testCopySocket);
//   devices and fifos are recreated.
// - --parents keeps each source's parent dirs (below a `/./` pivot when the
//   source has one); --exclude patterns remove entries (matched on the path
//   relative to the source argument's base directory).
// - ADD: a local tar archive (plain, gzip, bzip2, xz, zstd) is extracted into
//   the dest directory unless --unpack=false; a URL is downloaded (name from
//   the URL path, mode 0600, mtime from Last-Modified) and only extracted with
//   --unpack=true; --checksum sha256:… verifies a URL or pins a git commit;
//   git sources are cloned with the `git` program. Git sources are what
//   BuildKit accepts: `https://…/repo.git[#ref[:subdir]]` (also http, with
//   query keys ref|tag|branch, subdir, checksum|commit, keep-git-dir,
//   submodules), `git@host:path`, `git://…`, `ssh://…`; a local path or a
//   file:// URL is not a git source (tests serve a bare repository over
//   "dumb" HTTP on 127.0.0.1 instead). --checksum on a git source pins the
//   commit (a prefix of at least 7 hex digits).
// - COPY refuses URL and git sources.
//
// --link: the caller passes an empty directory as `dest` and sets
// CopyRequest::link_mode = linked; `user_db` still names the stage's rootfs so
// --chown names resolve as without --link. Existing-directory checks then see
// only the empty directory (a dest without a trailing "/" is a file name).

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "builder/context.hpp"
#include "parser/ast.hpp"
#include "parser/instructions.hpp"
#include "util/fs.hpp"
#include "util/result.hpp"

namespace imgbuild::registry {
class HttpTransport;
}

namespace imgbuild::builder {

/// Which instruction is being applied.
enum class CopyKind { copy, add };

/// Whether the destination is the stage's rootfs or an empty --link dir.
enum class LinkMode { merged, linked };

/// What a source argument is.
enum class SourceKind { local, url, git };

/// Classifies a source argument: `http(s)://…` is a URL unless it looks like a
/// git repository (`.git` path or a `#fragment` on a URL ending in .git);
/// `git@host:…`, `git://…`, `ssh://…` and `…​.git#…` are git sources.
SourceKind classify_source(std::string_view source);

/// A parsed --chmod value.
struct ChmodSpec {
  /// Octal form: the mode itself (≤ 07777).
  std::optional<uint32_t> octal;
  /// Symbolic form, kept as clauses: applied per entry by chmod_apply.
  std::string symbolic;
};

/// Parses --chmod. Errors read BuildKit's way:
/// `invalid chmod parameter: '64a'. it should be octal string like 0755 or symbolic like u=rwX`.
Result<ChmodSpec> parse_chmod(std::string_view value);

/// The mode an entry gets: `mode` (07777 bits of the source) changed by
/// `spec`; `is_dir` decides `X`.
uint32_t chmod_apply(const ChmodSpec& spec, uint32_t mode, bool is_dir);

/// uid and gid for written entries.
struct Owner {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

/// Resolves a --chown value (user[:group], names or ids) against the
/// passwd/group files inside `user_db` (missing files: only ids resolve).
/// A user name without a group takes the user's primary gid from passwd; a
/// numeric uid without a group takes gid = uid (BuildKit's ByID rule). Parent
/// directories COPY creates get this owner too (BuildKit chowns them). Errors: `unable to find user app: no matching entries in
/// passwd file`, `unable to find group grp: no matching entries in group file`.
Result<Owner> resolve_chown(std::string_view spec, const fs::Root& user_db);

/// Expands a heredoc body (the stage's ARG/ENV expansion); called only for
/// heredocs whose delimiter was not quoted.
using HeredocExpander = std::function<Result<std::string>(const std::string& body)>;

/// One COPY/ADD, words already expanded.
struct CopyRequest {
  CopyKind kind = CopyKind::copy;
  /// Source arguments (paths/patterns; URLs and git sources for ADD).
  std::vector<std::string> sources;
  /// Heredoc sources (`COPY <<EOF /dst`), in order, after `sources`.
  std::vector<parser::Heredoc> heredocs;
  /// Destination as written (expanded).
  std::string dest;
  /// The stage's WORKDIR (absolute; "/" default).
  std::string workdir = "/";
  std::optional<std::string> chown;
  std::optional<std::string> chmod;
  /// ADD --checksum.
  std::optional<std::string> checksum;
  /// ADD --unpack; unset = local archives yes, URLs no.
  std::optional<bool> unpack;
  /// ADD --keep-git-dir.
  bool keep_git_dir = false;
  /// COPY --parents.
  bool parents = false;
  /// --exclude patterns.
  std::vector<std::string> excludes;
  /// merged (write into the rootfs) or linked (dest is an empty dir).
  LinkMode link_mode = LinkMode::merged;
  /// mtime of heredoc files: SOURCE_DATE_EPOCH when set, else none (the
  /// time they are written, as BuildKit's mkfile leaves it).
  std::optional<int64_t> heredoc_mtime;
};

/// Expands one Dockerfile word with the stage's ARG/ENV (the builder's expander).
using WordExpander = std::function<Result<std::string>(std::string_view word)>;

/// Builds a CopyRequest from a COPY instruction: expands sources, dest,
/// --chown and --chmod with `expand` (--from is the caller's business, and
/// --exclude values are kept as written); `workdir` is the stage's WORKDIR.
Result<CopyRequest> copy_request(const parser::CopyInstruction& instruction, const WordExpander& expand,
                                 const std::string& workdir);
/// The same for ADD (also --checksum, --unpack, --keep-git-dir).
Result<CopyRequest> add_request(const parser::AddInstruction& instruction, const WordExpander& expand,
                                const std::string& workdir);

/// What apply_copy needs besides the request.
struct CopyEnv {
  /// The tree local sources come from (context with its .dockerignore, or a
  /// stage/image rootfs with ignore = nullptr).
  SourceTree source;
  /// The rootfs whose /etc/passwd and /etc/group resolve --chown names
  /// (the stage's rootfs; with LinkMode::merged usually the same as dest).
  const fs::Root* user_db = nullptr;
  /// Files keep the source's uid/gid when there is no --chown (COPY --from a
  /// stage or image; context files are always root-owned).
  bool keep_source_owner = false;
  /// Expands unquoted heredoc bodies; nullptr = bodies used as written.
  HeredocExpander expand_heredoc;
  /// HTTP transport for ADD <url>; nullptr = a default one is created.
  registry::HttpTransport* http = nullptr;
  /// Directory for downloads and git clones ("" = $TMPDIR or /tmp).
  std::string temp_parent;
  /// The git program ("git" from PATH by default).
  std::string git_program = "git";
};

/// One entry apply_copy wrote (created, replaced, or — for a directory
/// below a source directory that already existed — given the source's
/// metadata). BuildKit's layer holds each of them, changed or not.
struct WrittenEntry {
  /// Absolute path in the destination ("/app/a.txt").
  std::string path;
  /// S_IFREG, S_IFDIR, S_IFLNK, … of what was written.
  mode_t type = 0;
};

/// What apply_copy did.
struct CopyResult {
  /// Every entry written, in write order (parent dirs it created included).
  std::vector<WrittenEntry> written;
  /// Regular files written and their total bytes.
  uint64_t files = 0;
  uint64_t bytes = 0;
};

/// The paths of result.written, in order: what the step's view must keep
/// in the layer even when unchanged (snapshot::View::note_written).
std::vector<std::string> written_paths(const CopyResult& result);

/// Applies one COPY/ADD into `dest` (see the file comment for the rules).
/// On error the destination may hold a partial result (the caller discards
/// the step's snapshot).
Result<CopyResult> apply_copy(const CopyRequest& request, const CopyEnv& env, const fs::Root& dest);

/// Copies everything `tree` shows (its ignore patterns applied) into `dest`,
/// keeping owners, modes, mtimes, xattrs and hardlinks: the context as a RUN
/// --mount=type=bind sees it. Sockets become empty regular files.
Result<CopyResult> export_tree(const SourceTree& tree, const fs::Root& dest);

}  // namespace imgbuild::builder
