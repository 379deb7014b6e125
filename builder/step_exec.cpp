// The filesystem steps, each executed from its resolved value in a snapshot
// view over the stage's layers and finished into one layer: WORKDIR (the
// directory, owned by USER), COPY/ADD (builder/copy.hpp; --link into an
// empty view) and RUN (builder/run.hpp, mounts in builder/run_mounts.hpp).

#include <fcntl.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "builder/build.hpp"
#include "builder/copy.hpp"
#include "builder/run.hpp"
#include "parser/shell.hpp"
#include "sandbox/user.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

Result<void> Build::do_workdir(StageResult& st, const std::string& wd, StepRecord& record) {
  if (wd == "/") {
    add_history(st.state, "WORKDIR /", false, false);
    return ok();
  }
  TRY_VOID(unpack_layers(st.layers));
  TRY(auto view, m_snapshotter->prepare(dirs_of(st.layers)));
  {
    // Scoped: the directory fd must be closed before the view is unmounted,
    // or the unmount is refused (EBUSY) and falls back to a lazy detach.
    TRY(fs::Root root, fs::Root::open(view->root().string()));
    uint32_t uid = 0;
    uint32_t gid = 0;
    const std::string& user = st.state.image.config->user;
    if (!user.empty()) {
      TRY(auto passwd, root.read_file("etc/passwd", sandbox::k_max_user_db_file));
      TRY(auto group, root.read_file("etc/group", sandbox::k_max_user_db_file));
      TRY(auto eu, sandbox::resolve_user(user, passwd, group));
      uid = eu.uid;
      gid = eu.gid;
    }
    std::string path;
    for (const auto& comp : fs::clean_components(wd)) {
      path += (path.empty() ? "" : "/") + comp;
      TRY(auto existing, root.lstat(path));
      if (existing) {
        continue;
      }
      TRY_VOID(root.mkdir(path, 0755));
      TRY_VOID(root.chown(path, uid, gid));
      if (m_plan.source_date_epoch) {
        TRY_VOID(root.set_mtime(path, *m_plan.source_date_epoch, 0));
      }
    }
  }
  return finish_layer(st, *view, "WORKDIR " + wd, record);
}

Result<void> Build::do_copy(StageResult& st, const ResolvedCopy& copy, StepRecord& record) {
  const CopyRequest& req = copy.request;
  // The source tree: the context or a named context dir (with its
  // .dockerignore), or a stage / image rootfs.
  std::optional<fs::Root> source_fs;
  SourceTree tree;
  SourceRoot src;
  if (copy.origin == SourceOrigin::context) {
    tree = SourceTree{&copy.context->root(), &copy.context->ignore()};
  } else {
    TRY(src, source_root(copy.from, copy.ref, ""));
    TRY(auto r, fs::Root::open(src.path.string()));
    source_fs.emplace(std::move(r));
    tree = SourceTree{&*source_fs, nullptr};
  }
  // --link: the files go into an empty view whose diff does not depend on
  // the stage's rootfs; --chown names still resolve in the rootfs.
  bool linked = req.link_mode == LinkMode::linked;
  std::unique_ptr<snapshot::View> rootfs_view;
  TRY_VOID(unpack_layers(st.layers));
  if (linked) {
    TRY(rootfs_view, m_snapshotter->prepare(dirs_of(st.layers)));
  }
  TRY(auto view, m_snapshotter->prepare(linked ? std::vector<fsys::path>{} : dirs_of(st.layers)));
  // The directory fds into the views are closed (reset) before the views are
  // unmounted below, or the unmount is refused (EBUSY).
  std::optional<fs::Root> dest;
  {
    TRY(auto d, fs::Root::open(view->root().string()));
    dest.emplace(std::move(d));
  }
  std::optional<fs::Root> user_db;
  if (linked) {
    TRY(auto r, fs::Root::open(rootfs_view->root().string()));
    user_db.emplace(std::move(r));
  }
  CopyEnv env;
  env.source = tree;
  env.keep_source_owner = source_fs.has_value();
  env.user_db = linked ? &*user_db : &*dest;
  parser::LexerOptions lo;
  lo.escape = m_plan.escape;
  lo.process_quotes = false;
  parser::Lexer heredoc_lexer(lo);
  env.expand_heredoc = [&](const std::string& body) -> Result<std::string> {
    return heredoc_lexer.process_word(body, st.state.env);
  };
  env.temp_parent = (m_store.content().root() / "tmp").string();
  TRY(auto written, apply_copy(req, env, *dest));
  view->note_written(written_paths(written));  // unchanged rewrites stay in the layer
  env.user_db = nullptr;
  user_db.reset();
  dest.reset();
  source_fs.reset();
  if (src.view) {
    TRY_VOID(src.view->remove());
  }
  if (rootfs_view) {
    TRY_VOID(rootfs_view->remove());
  }
  return finish_layer(st, *view, copy.created_by, record, linked);
}

Result<void> Build::do_run(StageResult& st, const ResolvedRun& run, const StepInfo& info, StepRecord& record) {
  fsys::path root = m_store.content().root();
  MountEnv env;
  env.roots = this;
  env.store_root = root;
  env.cache_io = m_options.cache_io;
  env.secrets = &m_options.secrets;
  env.ssh_socket = m_options.ssh_socket;
  env.lease = &m_store.lease();
  TRY_VOID(m_sandbox->can_run(st.platform));
  RunMounts held(root / "tmp");
  TRY(sandbox::RunSpec spec, run_spec(run, env, held));
  TRY_VOID(unpack_layers(st.layers));
  TRY(auto view, m_snapshotter->prepare(dirs_of(st.layers)));
  spec.rootfs = view->root();
  auto ran = run_process(*m_sandbox, std::move(spec), held.mask(),
                         [&](OutputStream stream, std::string_view line) { m_progress.output(info, stream, line); });
  held.release();
  TRY_VOID(ran);
  return finish_layer(st, *view, run.created_by, record);
}

}  // namespace imgbuild::builder
