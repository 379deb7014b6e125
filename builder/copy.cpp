// COPY/ADD: one instruction applied into a step's rootfs (the rules are in
// builder/copy.hpp).
//
// apply_copy resolves the destination once (symlinks followed inside the
// destination root) and decides whether it names a directory, then copies
// each source: local sources are selected first (builder/context.cpp's
// select_sources, so a missing one fails before anything is written) and
// walked with walk_source (so .dockerignore and --exclude hide the same
// entries the source digest skips); local archives, URLs and git sources go
// through builder/copy_add.cpp; heredocs are written last. The entries
// themselves are written by the Copier (builder/copy_writer.cpp); the
// request and its options come from builder/copy_options.cpp.

#include "builder/copy.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "builder/copy_add.hpp"
#include "builder/copy_writer.hpp"
#include "parser/instructions.hpp"
#include "util/fd.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"
#include "util/tar.hpp"

namespace imgbuild::builder {

namespace {

// The number of leading components before a `/./` pivot in a source
// argument (for --parents), or nullopt when there is none.
std::optional<size_t> pivot_components(std::string_view source) {
  size_t at = source.find("/./");
  if (at == std::string_view::npos) {
    return std::nullopt;
  }
  return fs::clean_components(source.substr(0, at)).size();
}

std::string strip_components(const std::string& path, size_t n) {
  std::vector<std::string> comps = fs::clean_components(path);
  std::string out;
  for (size_t i = n; i < comps.size(); ++i) {
    out = str::join_path(out, comps[i]);
  }
  return out;
}

}  // namespace

std::vector<std::string> written_paths(const CopyResult& result) {
  std::vector<std::string> out;
  out.reserve(result.written.size());
  for (const auto& w : result.written) {
    out.push_back(w.path);
  }
  return out;
}

Result<CopyResult> apply_copy(const CopyRequest& req, const CopyEnv& env, const fs::Root& dest) {
  // Source kinds and the rules that depend on them.
  for (const auto& s : req.sources) {
    SourceKind k = classify_source(s);
    if (k != SourceKind::local) {
      if (req.kind == CopyKind::copy) {
        return fail(Errc::invalid_argument, fmt::format("source can't be a URL for COPY"));
      }
    } else if (req.checksum) {
      return fail(Errc::invalid_argument, "checksum requires HTTP(S) or Git sources");
    }
  }
  if (req.checksum && req.sources.size() != 1) {
    return fail(Errc::invalid_argument, "checksum can't be specified for multiple sources");
  }

  Copier c(dest);
  if (req.chmod) {
    TRY(c.chmod, parse_chmod(*req.chmod));
    if (c.chmod->octal) {
      // Go's os.Mkdir takes a FileMode: the 07000 bits of a plain number
      // are not its setuid/setgid/sticky flags, so only 0777 reaches mkdir.
      c.dir_mode = *c.chmod->octal & 0777;
    }
  }
  if (req.chown) {
    const fs::Root& db = env.user_db != nullptr ? *env.user_db : dest;
    TRY(c.owner, resolve_chown(*req.chown, db));
  } else {
    c.keep_owner = env.keep_source_owner;
  }
  TRY(auto excludes, IgnoreMatcher::from_patterns(req.excludes));

  // Destination.
  std::string dest_abs = req.dest;
  if (dest_abs.empty()) {
    dest_abs = req.workdir.empty() ? "/" : req.workdir + "/";
  } else if (dest_abs[0] != '/') {
    dest_abs = (req.workdir.empty() ? std::string("/") : req.workdir) + "/" + dest_abs;
  }
  bool dir_hint = dest_abs.ends_with("/") || dest_abs.ends_with("/.") || dest_abs.ends_with("/..");
  TRY(auto dest_path, resolve_real_path(dest, dest_abs, true));
  // BuildKit v0.22 copies each source (each wildcard match) on its own: a
  // dest without a trailing "/" is a directory to copy into when one exists
  // there at that moment, else the path the source is copied onto — with
  // several sources the last one wins, and a directory source's contents
  // go into a directory made there (after a file source: an error).
  auto dest_is_dir = [&]() -> bool {
    return dir_hint || dest_path.empty() || static_cast<bool>(dest.open_at(dest_path, O_PATH | O_DIRECTORY));
  };

  // Local sources first: select everything (so a missing one fails before
  // anything is written), then copy.
  struct LocalItem {
    SelectedSource src;
    std::optional<size_t> pivot;
    size_t source_index = 0;  // which of req.sources matched it
  };
  std::vector<LocalItem> locals;
  for (size_t source_index = 0; source_index < req.sources.size(); ++source_index) {
    const std::string& s = req.sources[source_index];
    if (classify_source(s) != SourceKind::local) {
      continue;
    }
    if (env.source.root == nullptr) {
      return fail(Errc::internal, "apply_copy: no source tree for local sources");
    }
    TRY(auto matches, select_sources(env.source, s, &excludes, req.parents));
    for (auto& m : matches) {
      locals.push_back(LocalItem{std::move(m), pivot_components(s), source_index});
    }
  }

  auto copy_local = [&](const SourceTree& tree, const SelectedSource& src, const std::string& base_target,
                        const IgnoreMatcher* ex) -> Result<void> {
    return walk_source(tree, src, ex, [&](const WalkEntry& e) -> Result<void> {
      return c.write_entry(e, str::join_path(base_target, e.rel));
    });
  };

  std::optional<size_t> links_of_source;
  for (const auto& item : locals) {
    const SelectedSource& src = item.src;
    bool is_dir = S_ISDIR(src.st.st_mode);
    std::string target;
    if (req.parents) {
      std::string keep = item.pivot ? strip_components(src.named_path, *item.pivot) : src.named_path;
      target = str::join_path(dest_path, keep);
    } else if (is_dir) {
      target = dest_path;
    } else {
      target = dest_is_dir() ? str::join_path(dest_path, str::base_name(src.named_path)) : dest_path;
    }
    if (req.kind == CopyKind::add && !is_dir && S_ISREG(src.st.st_mode) && req.unpack.value_or(true)) {
      TRY(auto fd, env.source.root->open_at(src.path, O_RDONLY | O_NOFOLLOW));
      if (tar::starts_with_archive(fd.get())) {
        std::string into = req.parents ? fs::clean_path(target + "/..") : dest_path;
        TRY_VOID(extract_archive(c, fd.get(), "/" + src.named_path, into, req.chown.has_value()));
        continue;
      }
    }
    if (is_dir && !req.parents) {
      // BuildKit makes the target of a directory's contents first (0755 or an
      // octal --chmod's mode, the --chown owner; an existing directory keeps
      // its metadata): the source directory's mode does not reach it.
      TRY_VOID(c.ensure_dir(target, c.dir_mode));
    }
    // Hardlinks are kept within one source (all its wildcard matches), as
    // BuildKit copies each source separately.
    if (links_of_source != item.source_index) {
      c.links.clear();
      links_of_source = item.source_index;
    }
    TRY_VOID(copy_local(env.source, src, target, &excludes));
  }

  // Remote sources.
  std::optional<io::TempDir> tmp;
  size_t index = 0;
  for (const auto& s : req.sources) {
    SourceKind k = classify_source(s);
    if (k == SourceKind::local) {
      continue;
    }
    if (!tmp) {
      TRY(auto t, io::TempDir::create(env.temp_parent, "imgbuild-add-"));
      tmp.emplace(std::move(t));
    }
    ++index;
    if (k == SourceKind::url) {
      TRY(auto d, download(s, env, *tmp, index, req.checksum));
      std::string target = dest_is_dir() ? str::join_path(dest_path, d.name) : dest_path;
      UniqueFd in(::open(d.file.c_str(), O_RDONLY | O_CLOEXEC));
      if (!in) {
        return fail(Errc::io, fmt::format("{}: {}", d.file, std::strerror(errno)));
      }
      if (req.unpack.value_or(false) && tar::starts_with_archive(in.get())) {
        TRY_VOID(extract_archive(c, in.get(), s, dest_path, req.chown.has_value()));
        continue;
      }
      TRY_VOID(c.write_file_from(in.get(), target, 0600, d.mtime.value_or(0)));
      continue;
    }
    TRY(auto g, checkout_git(s, req, env, *tmp, index));
    TRY(auto git_root, fs::Root::open(g.dir));
    SourceTree tree{&git_root, nullptr};
    std::string sub = fs::clean_path(g.subdir);
    TRY(auto matches, select_sources(tree, sub.empty() ? "." : sub, nullptr));
    for (const auto& m : matches) {
      SelectedSource top = m;
      std::string target = S_ISDIR(m.st.st_mode)
                               ? dest_path
                               : (dest_is_dir() ? str::join_path(dest_path, str::base_name(m.named_path)) : dest_path);
      TRY_VOID(copy_local(tree, top, target, &excludes));
    }
  }

  // Heredocs.
  for (const auto& h : req.heredocs) {
    std::string body = parser::heredoc_body(h);
    if (h.expand && env.expand_heredoc) {
      TRY(body, env.expand_heredoc(body));
    }
    std::string target = dest_is_dir() ? str::join_path(dest_path, h.name) : dest_path;
    TRY_VOID(c.write_bytes(target, body, 0644, req.heredoc_mtime));
  }

  TRY_VOID(c.finish());
  return std::move(c.result);
}

Result<CopyResult> export_tree(const SourceTree& tree, const fs::Root& dest) {
  if (tree.root == nullptr) {
    return fail(Errc::internal, "export_tree: no source root");
  }
  Copier c(dest);
  c.keep_owner = true;
  SelectedSource top;
  top.path = "";
  TRY(auto st, tree.root->lstat(""));
  top.st = st.value_or(top.st);
  TRY_VOID(walk_source(tree, top, nullptr, [&](const WalkEntry& e) -> Result<void> {
    if (e.rel.empty()) {
      return ok();
    }
    return c.write_entry(e, e.rel);
  }));
  TRY_VOID(c.finish());
  return std::move(c.result);
}

}  // namespace imgbuild::builder
