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
#include "cache/key.hpp"

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

std::optional<std::string> Build::copy_share_key(const ResolvedCopy& copy) {
  const CopyRequest& req = copy.request;
  if (m_shared == nullptr || !req.heredocs.empty() || copy.keyword != "COPY") {
    return std::nullopt;  // ADD: an archive's entries can make the links they are written through
  }
  for (const auto& s : req.sources) {
    if (classify_source(s) != SourceKind::local) {
      return std::nullopt;
    }
  }
  if (req.chown) {
    // Numeric ids only: a name is looked up in the stage's own /etc/passwd.
    for (char c : *req.chown) {
      if (c != ':' && (c < '0' || c > '9')) {
        return std::nullopt;
      }
    }
  }
  cache::KeyBuilder k(cache::KeyBuilder::Transcript::skipped);
  switch (copy.origin) {
    case SourceOrigin::context:
      if (copy.context == nullptr) {
        return std::nullopt;
      }
      k.str("context", copy.context->dir());
      break;
    case SourceOrigin::stage: {
      const StageResult* other = wait_stage(copy.ref->stage);
      if (other == nullptr) {
        return std::nullopt;
      }
      std::vector<std::string> dirs;
      for (const auto& d : dirs_of(other->layers)) {
        dirs.push_back(d.string());
      }
      k.list("stage", dirs);
      break;
    }
    case SourceOrigin::image:
    case SourceOrigin::oci_layout:
      return std::nullopt;
  }
  k.str("text", copy.text).list("sources", req.sources).str("dest", req.dest).str("workdir", req.workdir);
  k.str("chown", req.chown.value_or("-")).str("chmod", req.chmod.value_or("-"));
  k.boolean("parents", req.parents).list("excludes", req.excludes);
  k.boolean("link", req.link_mode == LinkMode::linked);
  k.str("source-date-epoch", m_plan.source_date_epoch ? std::to_string(*m_plan.source_date_epoch) : "-");
  return k.finish();
}

Result<bool> Build::take_shared_copy(StageResult& st, const ResolvedCopy& copy, CopyShare::Slot& slot,
                                     StepRecord& record) {
  const std::vector<fsys::path> mine = dirs_of(st.layers);
  const std::vector<fsys::path>& theirs = slot.parents;  // set at claim, never changed
  std::unique_ptr<snapshot::View> their_view;
  std::unique_ptr<snapshot::View> my_view;
  auto drop_views = [&]() -> Result<void> {
    if (their_view) {
      TRY_VOID(their_view->remove());
    }
    if (my_view) {
      TRY_VOID(my_view->remove());
    }
    return ok();
  };
  if (mine != theirs) {
    // Another parent: first the destination path (before waiting, so that
    // a stage whose parent differs there copies in parallel), then, once
    // the owner's layer is there, every path of it. Through overlay views
    // (mounts): the copy snapshotter's views are copies of the whole
    // rootfs, dearer than the copy they could save.
    if (m_snapshotter->name() != "overlay") {
      return false;
    }
    TRY_VOID(unpack_layers(st.layers));
    TRY(their_view, m_snapshotter->prepare_source(theirs));
    TRY(my_view, m_snapshotter->prepare_source(mine));
    TRY(bool same_path, same_dest_path(dest_prefixes(copy.request.dest, copy.request.workdir),
                                       their_view->root(), my_view->root()));
    if (!same_path) {
      TRY_VOID(drop_views());
      return false;
    }
  }
  std::optional<SharedCopyLayer> done = CopyShare::wait(slot);
  if (done && their_view) {
    TRY(bool same, same_targets(done->targets, their_view->root(), my_view->root()));
    if (same) {
      TRY(same, same_copy_result(done->dir, their_view->root(), my_view->root()));
    }
    if (!same) {
      done.reset();
    }
  }
  TRY_VOID(drop_views());
  if (!done) {
    return false;
  }
  const image::LayerRecord& rec = done->record;
  TRY_VOID(m_store.lease().hold({{image::LeaseKind::blob, rec.blob_digest}, {image::LeaseKind::layer, rec.diff_id}}));
  st.layers.push_back(Layer{rec, done->dir});
  st.state.image.rootfs.diff_ids.push_back(rec.diff_id);
  add_history(st.state, copy.created_by, true, true);
  record.layer_digest = rec.blob_digest;
  record.layer_bytes = rec.blob_size;
  record.layer_content = rec.content_size;
  return true;
}

Result<void> Build::do_copy(StageResult& st, const ResolvedCopy& copy, StepRecord& record) {
  // The same COPY in another platform's stage: take its layer when it is
  // the one this copy would make (builder/copy_share.hpp).
  std::shared_ptr<CopyShare::Slot> slot;
  bool owner = false;
  if (std::optional<std::string> share = copy_share_key(copy)) {
    TRY_VOID(unpack_layers(st.layers));  // before claiming: waiters mount the owner's parents
    std::tie(slot, owner) = m_copies->claim(*share, dirs_of(st.layers));
    if (!owner) {
      TRY(bool taken, take_shared_copy(st, copy, *slot, record));
      if (taken) {
        return ok();
      }
    }
  }
  // The owner publishes its layer, or nothing when it fails.
  struct Publish {
    CopyShare::Slot* slot;
    std::optional<SharedCopyLayer> layer;
    ~Publish() {
      if (slot != nullptr) {
        CopyShare::publish(*slot, std::move(layer));
      }
    }
  } publish{owner ? slot.get() : nullptr, std::nullopt};
  std::vector<std::string> targets;
  TRY_VOID(copy_into_layer(st, copy, record, &targets));
  publish.layer = SharedCopyLayer{st.layers.back().record, st.layers.back().dir, std::move(targets)};
  return ok();
}

Result<void> Build::copy_into_layer(StageResult& st, const ResolvedCopy& copy, StepRecord& record,
                                    std::vector<std::string>* targets) {
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
  if (targets != nullptr) {
    *targets = written_paths(written);
  }
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
