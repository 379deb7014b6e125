// Where a stage starts and where its sources come from: base images (their
// layers recorded, unpacked only when a step mounts them), scratch, a parent
// stage, a named context (a directory, docker-image://, oci-layout://), and
// the source roots COPY --from and RUN --mount read (a stage's or image's
// rootfs in a view, a context directory seen through its .dockerignore).

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "builder/build.hpp"
#include "builder/context_filter.hpp"
#include "builder/oci_layout.hpp"
#include "builder/step_label.hpp"
#include "image/reference.hpp"
#include "snapshot/copy.hpp"
#include "util/fs.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

Result<image::LoadedImage> Build::resolve_image(const std::string& reference, const Platform& platform) {
  std::lock_guard lock(*m_resolve_mu);
  return m_resolver.resolve(reference, platform);
}

Result<StageResult> Build::base_from_image(const image::LoadedImage& img, const std::string& created,
                                           const Platform& platform) {
  TRY_VOID(m_store.hold(img));  // leased: no prune removes it while the build runs
  StageResult res;
  res.state = start_stage(img.config, platform, created);
  res.platform = platform;
  const auto& diff_ids = img.config.rootfs.diff_ids;
  if (diff_ids.size() != img.manifest.layers.size()) {
    return fail(Errc::corrupt, fmt::format("image {} has {} layers but {} diff_ids", img.record.config_digest,
                                           img.manifest.layers.size(), diff_ids.size()));
  }
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    const image::Descriptor& d = img.manifest.layers[i];
    image::LayerRecord rec;
    std::unique_lock db_lock(*m_resolve_mu);
    TRY(auto known, m_store.db().layer(d.digest));
    db_lock.unlock();
    if (known) {
      rec = *known;
    } else {
      rec.blob_digest = d.digest;
      rec.blob_size = d.size;
      rec.diff_id = diff_ids[i];
    }
    rec.media_type = d.media_type;
    res.layers.push_back(Layer{rec, m_layer_dirs.dir_for(rec.diff_id)});
  }
  return res;
}

Result<void> Build::unpack_layers(const std::vector<Layer>& layers) {
  for (const auto& l : layers) {
    std::error_code ec;
    if (!fsys::is_directory(l.dir, ec)) {
      TRY(fsys::path dir, m_layer_dirs.ensure(m_store.content().blob_path(l.record.blob_digest),
                                              l.record.blob_digest, l.record.diff_id));
      (void)dir;
    }
  }
  return ok();
}

Result<StageResult> Build::base_of(const PlannedStage& stage, const std::string& created, StepInfo& info) {
  switch (stage.base.kind) {
    case BaseKind::scratch: {
      StageResult res;
      res.state = start_stage(std::nullopt, stage.platform, created);
      res.platform = stage.platform;
      res.cache_key = scratch_base_key(stage.platform);
      return res;
    }
    case BaseKind::stage: {
      const StageResult* parent = wait_stage(stage.base.stage);
      if (parent == nullptr) {
        return fail(Errc::internal, "parent stage failed");
      }
      StageResult res = *parent;
      res.cache_reason.clear();
      res.cache_reason_quiet = false;
      res.state.created = created;
      res.state.cmd_set = false;  // "CMD set in this stage" starts over
      res.cache_key = stage_base_key(parent->cache_key);
      if (m_options.cache_io != nullptr) {
        m_options.cache_io->note_link(res.cache_key, parent->cache_key);
      }
      if (parent->cache_broken) {
        const PlannedStage* ps = m_plan.stage(stage.base.stage);
        res.cache_reason = fmt::format("stage {} changed", ps != nullptr ? ps->display_name : "?");
      }
      res.cache_broken = false;
      return res;
    }
    case BaseKind::image: {
      auto ref = image::parse_reference(stage.base.name);
      info = new_step(step_label(label_name(stage), 1, 0) + "FROM " + (ref ? ref->str() : stage.base.name),
                      stage.from.header.range.start_line);
      TRY(auto img, resolve_image(stage.base.name, stage.platform));
      TRY(auto res, base_from_image(img, created, stage.platform));
      TRY_VOID(base_cache(stage, res, img));
      return res;
    }
    case BaseKind::context: {
      const std::string& src = stage.base.source;
      if (src.starts_with("docker-image://")) {
        TRY(auto img, resolve_image(src.substr(std::strlen("docker-image://")), stage.platform));
        TRY(auto res, base_from_image(img, created, stage.platform));
        TRY_VOID(base_cache(stage, res, img));
        return res;
      }
      if (src.starts_with("oci-layout://")) {
        TRY(auto img, oci_layout_image(src, stage.platform));
        TRY(auto res, base_from_image(img, created, stage.platform));
        TRY_VOID(base_cache(stage, res, img));
        return res;
      }
      TRY(auto res, base_from_dir(stage.base.name, src, created, stage.platform));
      // The directory's content (its layer's diff_id) keys the steps after it.
      res.cache_key =
          stage_base_key(from_parent_key(src + "@" + res.state.image.rootfs.diff_ids.back(), stage.platform));
      return res;
    }
  }
  return fail(Errc::internal, "unknown base kind");
}

Result<image::LoadedImage> Build::oci_layout_image(const std::string& source, const Platform& platform) {
  std::lock_guard lock(*m_resolve_mu);
  return load_oci_layout_image(m_store, source, platform);
}

// A named context directory as a base: an empty config and one layer with
// the directory's files as its .dockerignore leaves them (owners and modes
// kept), as BuildKit's local source. BuildKit's exporter gives that layer a
// history entry of its own with the source's description (it appends the
// entry after the frontend's; here it stays at the layer's position).
Result<StageResult> Build::base_from_dir(const std::string& name, const std::string& dir, const std::string& created,
                                         const Platform& platform) {
  StageResult res;
  res.state = start_stage(std::nullopt, platform, created);
  res.platform = platform;
  std::error_code ec;
  if (!fsys::is_directory(dir, ec)) {
    return fail(Errc::not_found, fmt::format("named context directory {} does not exist", str::go_quote(dir)));
  }
  TRY(const BuildContext* context, named_context(dir));
  TRY(SourceRoot src, filtered_root(*context, ""));
  TRY(auto view, m_snapshotter->prepare({}));
  TRY_VOID(snapshot::merge_layer(src.path, view->root()));
  if (src.view) {
    TRY_VOID(src.view->remove());
  }
  StepRecord record;
  TRY_VOID(finish_layer(res, *view, "", record, true));
  res.state.image.history.back().created_by = "local source for " + name;
  res.state.image.history.back().comment = "buildkit.exporter.image.v0";
  return res;
}

Result<const BuildContext*> Build::named_context(const std::string& dir) {
  std::lock_guard lock(m_named_mu);
  auto it = m_named.find(dir);
  if (it == m_named.end()) {
    TRY(auto c, BuildContext::from_dir(dir));
    it = m_named.emplace(dir, std::make_unique<BuildContext>(std::move(c))).first;
  }
  return it->second.get();
}

Result<SourceRoot> Build::filtered_root(const BuildContext& context, std::string_view sub) {
  SourceRoot out;
  out.path = context.dir();
  if (context.ignore().empty()) {
    return out;
  }
  TRY(std::string real, resolve_real_path(context.root(), sub, false));
  TRY(auto hidden, ignored_entries(context.root(), context.ignore(), real));
  if (hidden.empty()) {
    return out;
  }
  // A store inside the context cannot sit above it in an overlay (the
  // kernel refuses overlapping layers), nor be copied into itself: then the
  // filtered files are copied outside the context.
  std::error_code ec;
  auto inside = [&](const fsys::path& p, const fsys::path& dir) {
    fsys::path a = fsys::weakly_canonical(p, ec);
    fsys::path b = fsys::weakly_canonical(dir, ec);
    auto [end, rest] = std::mismatch(b.begin(), b.end(), a.begin(), a.end());
    return end == b.end();
  };
  if (inside(m_store.content().root(), context.dir())) {
    fsys::path parent = fsys::temp_directory_path(ec);
    if (ec || inside(parent, context.dir())) {
      return fail(Errc::unsupported, fmt::format("cannot apply {} to {}: the store and the temporary directory are "
                                                 "inside it (set TMPDIR elsewhere)",
                                                 context.ignore_file(), context.dir()));
    }
    fsys::path copy = parent / ("imgbuild-filtered-" + io::random_hex());
    if (::mkdir(copy.c_str(), 0700) != 0) {
      return fail(Errc::io, fmt::format("cannot create {}: {}", copy.string(), std::strerror(errno)));
    }
    out.filter = io::TempDir::adopt(copy.string());
    TRY_VOID(copy_filtered(context.root(), context.ignore(), real, copy));
    out.path = copy;
    return out;
  }
  fsys::path dir = m_store.content().root() / "tmp" / ("ignore-" + io::random_hex());
  fsys::create_directories(dir, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  }
  out.filter = io::TempDir::adopt(dir.string());
  TRY(size_t n, write_whiteouts(context.root(), hidden, dir));
  (void)n;
  TRY(out.view, m_snapshotter->prepare_source({fsys::path(context.dir()), dir}));
  out.path = out.view->root();
  return out;
}

Result<SourceRoot> Build::source_root(const std::string& from, const std::optional<SourceRef>& resolved,
                                      std::string_view sub) {
  SourceRoot out;
  std::vector<fsys::path> dirs;
  switch (source_origin(resolved)) {
    case SourceOrigin::context: {
      if (resolved) {
        TRY(const BuildContext* context, named_context(resolved->source));
        return filtered_root(*context, sub);
      }
      if (m_options.context == nullptr) {
        return fail(Errc::internal, "no build context");
      }
      return filtered_root(*m_options.context, sub);
    }
    case SourceOrigin::stage: {
      const StageResult* st = wait_stage(resolved->stage);
      if (st == nullptr) {
        return fail(Errc::internal, fmt::format("stage {} did not complete", from));
      }
      TRY_VOID(unpack_layers(st->layers));
      dirs = dirs_of(st->layers);
      break;
    }
    case SourceOrigin::oci_layout: {
      TRY(auto img, oci_layout_image(resolved->source, resolved->platform));
      TRY(auto base, base_from_image(img, "", resolved->platform));
      dirs = dirs_of(base.layers);
      break;
    }
    case SourceOrigin::image: {
      TRY(auto img, resolve_image(source_image(*resolved), resolved->platform));
      TRY(auto base, base_from_image(img, "", resolved->platform));
      TRY_VOID(unpack_layers(base.layers));
      dirs = dirs_of(base.layers);
      break;
    }
  }
  TRY(out.view, m_snapshotter->prepare_source(dirs));
  out.path = out.view->root();
  return out;
}

}  // namespace imgbuild::builder
