// Whole-image pull and push (see transfer.hpp).

#include "registry/transfer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "image/index.hpp"
#include "image/types.hpp"
#include "util/tar.hpp"

namespace imgbuild::registry {

namespace {

std::string short_blob_id(const std::string& digest) {
  std::string_view hex = digest;
  if (auto colon = hex.find(':'); colon != std::string_view::npos) {
    hex.remove_prefix(colon + 1);
  }
  return std::string(hex.substr(0, 12));
}

void report(const TransferProgress& progress, const std::string& digest, const std::string& status) {
  if (progress) {
    progress(short_blob_id(digest), status);
  }
}

// diff_id and uncompressed size of a layer blob (reads it through).
struct LayerSums {
  std::string diff_id;
  uint64_t diff_size = 0;
};

Result<LayerSums> layer_sums(const std::filesystem::path& path, const std::string& what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(Errc::io, fmt::format("open {}: {}", path.string(), std::strerror(errno)));
  }
  auto reader = tar::Reader::open_fd(fd, what);
  if (!reader) {
    ::close(fd);
    return fail(std::move(reader).error());
  }
  auto summary = (*reader)->finish();
  ::close(fd);
  if (!summary) {
    return fail(std::move(summary).error());
  }
  return LayerSums{summary->diff_id.str(), summary->uncompressed_size};
}

// Computes a layer's diff_id while it downloads: the download thread feeds
// the bytes it receives (in order) and a second thread reads them through
// the tar reader (decompressing as needed), so nothing reads the blob again
// after it lands. Bounded: feed() waits while k_max_queued bytes are pending.
class DiffSummer {
public:
  // blob_digest: the digest the download is verified against. An
  // uncompressed layer's diff_id is that digest: it is not hashed again.
  DiffSummer(std::string what, std::string blob_digest)
      : m_what(std::move(what)), m_blob_digest(std::move(blob_digest)), m_thread([this] { run(); }) {}
  ~DiffSummer() { abort(); }
  DiffSummer(const DiffSummer&) = delete;
  DiffSummer& operator=(const DiffSummer&) = delete;

  // Hands the next bytes of the blob to the reader (dropped once it stopped).
  void feed(std::string_view chunk) {
    std::unique_lock lock(m_mutex);
    m_cv.wait(lock, [&] { return m_queued < k_max_queued || m_stopped; });
    if (m_stopped) {
      return;
    }
    m_queue.emplace_back(chunk);
    m_queued += chunk.size();
    m_cv.notify_all();
  }

  // The end of the blob: waits for the reader and returns what it saw.
  Result<LayerSums> finish() {
    close(false);
    if (!m_result) {
      return fail(Errc::internal, m_what + ": layer reader ended without a result");
    }
    return *m_result;
  }

  // Stops the reader (the download failed).
  void abort() { close(true); }

private:
  static constexpr size_t k_max_queued = 8 * 1024 * 1024;

  void close(bool abort) {
    {
      std::lock_guard lock(m_mutex);
      m_closed = true;
      m_aborted = m_aborted || abort;
      m_cv.notify_all();
    }
    if (m_thread.joinable()) {
      m_thread.join();
    }
  }

  Result<size_t> read(void* buf, size_t cap) {
    while (m_pos >= m_current.size()) {
      std::unique_lock lock(m_mutex);
      m_cv.wait(lock, [&] { return !m_queue.empty() || m_closed; });
      if (m_aborted) {
        return fail(Errc::io, m_what + ": download abandoned");
      }
      if (m_queue.empty()) {
        return size_t{0};
      }
      m_current = std::move(m_queue.front());
      m_queue.pop_front();
      m_queued -= m_current.size();
      m_pos = 0;
      m_cv.notify_all();
    }
    size_t n = std::min(cap, m_current.size() - m_pos);
    std::memcpy(buf, m_current.data() + m_pos, n);
    m_pos += n;
    return n;
  }

  void run() {
    auto summary = [&]() -> Result<LayerSums> {
      TRY(auto reader, tar::Reader::open([this](void* buf, size_t cap) { return read(buf, cap); }, m_what));
      const bool plain = reader->compression() == tar::Compression::none;
      if (plain) {
        reader->stop_hashing();
      }
      TRY(tar::ReadSummary sum, reader->finish());
      return LayerSums{plain ? m_blob_digest : sum.diff_id.str(), sum.uncompressed_size};
    }();
    std::lock_guard lock(m_mutex);
    m_result = std::move(summary);
    m_stopped = true;
    m_cv.notify_all();
  }

  std::string m_what;
  std::string m_blob_digest;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<std::string> m_queue;
  size_t m_queued = 0;
  bool m_closed = false;
  bool m_aborted = false;
  bool m_stopped = false;
  std::string m_current;
  size_t m_pos = 0;
  std::optional<Result<LayerSums>> m_result;
  std::thread m_thread;  // last: starts once the members above exist
};

// One blob to download into the staging area.
struct Download {
  image::Descriptor desc;
  bool is_layer = false;
  std::optional<image::BlobWriter> writer;
  std::optional<Error> error;
  /// For layers: diff_id and size, computed while downloading.
  std::optional<LayerSums> sums;
};

// For each blob of `rec` (and of every image sharing blobs with it), a
// repository of dest's registry other than dest's that the store knows holds
// it: the names of `rec` come first, then the other images' names.
Result<std::map<std::string, Repository>> mount_sources_for(image::ImageStore& store, const image::ImageRecord& rec,
                                                           const Repository& dest) {
  std::map<std::string, Repository> out;
  TRY(std::vector<image::ImageRecord> all, store.db().images());
  std::stable_partition(all.begin(), all.end(),
                        [&](const image::ImageRecord& r) { return r.manifest_digest == rec.manifest_digest; });
  for (const auto& r : all) {
    TRY(auto names, store.names_of(r.manifest_digest));
    // A platform image of a multi-platform image: its index's names.
    TRY(std::vector<std::string> parents, store.db().indexes_of(r.manifest_digest));
    for (const auto& p : parents) {
      TRY(auto more, store.names_of(p));
      names.insert(names.end(), more.begin(), more.end());
    }
    std::optional<Repository> from;
    for (const auto& n : names) {
      Repository other = repository_of(n);
      if (other.registry == dest.registry && other.name != dest.name) {
        from = other;
        break;
      }
    }
    if (!from) {
      continue;
    }
    auto manifest_bytes = store.content().read_small(r.manifest_digest, 4 * 1024 * 1024);
    if (!manifest_bytes) {
      continue;
    }
    auto manifest = image::parse_manifest(*manifest_bytes, r.manifest_digest);
    if (!manifest) {
      continue;
    }
    out.emplace(manifest->config.digest, *from);
    for (const auto& l : manifest->layers) {
      out.emplace(l.digest, *from);
    }
  }
  return out;
}

}  // namespace

namespace {

// Downloads the config and layers of the image manifest `fm` into `staging`
// (verified) and returns the image to commit, without names. `downloaded`
// counts the blobs fetched.
Result<image::NewImage> stage_image(Client& client, image::ImageStore& store, image::Staging& staging_area,
                                    const Repository& repo, const FetchedManifest& fm,
                                    const TransferProgress& progress, size_t& downloaded) {
  image::Staging* staging = &staging_area;
  std::string what = fmt::format("{}@{}", repo.str(), fm.digest.str());
  TRY(image::Manifest manifest, image::parse_manifest(fm.bytes, what));
  TRY(std::string manifest_digest, staging->put(fm.bytes));
  if (manifest_digest != fm.digest.str()) {
    return fail(Errc::corrupt, fmt::format("{}: manifest hashes to {}", what, manifest_digest));
  }

  std::vector<std::unique_ptr<Download>> downloads;
  std::set<std::string> seen;
  auto want = [&](const image::Descriptor& d) -> Result<void> {
    if (!image::is_valid_digest(d.digest)) {
      return fail(Errc::corrupt, fmt::format("{}: invalid blob digest \"{}\"", what, d.digest));
    }
    if (d.size < 0) {
      return fail(Errc::corrupt, fmt::format("{}: blob {} has a negative size", what, d.digest));
    }
    if (staging->has(d.digest)) {
      report(progress, d.digest, "Already exists");
      return ok();
    }
    if (!seen.insert(d.digest).second) {
      return ok();
    }
    auto dl = std::make_unique<Download>();
    dl->desc = d;
    TRY(image::BlobWriter w, staging->writer(d.digest));
    dl->writer.emplace(std::move(w));
    downloads.push_back(std::move(dl));
    return ok();
  };
  TRY_VOID(want(manifest.config));
  size_t config_downloads = downloads.size();
  for (const auto& l : manifest.layers) {
    TRY_VOID(want(l));
  }
  for (size_t i = config_downloads; i < downloads.size(); ++i) {
    downloads[i]->is_layer = true;
  }

  // Download concurrently (a pool of workers); each layer's diff_id is
  // computed while it streams in. Commits happen under a lock (the staging
  // area's bookkeeping is not thread-safe).
  std::mutex commit_mutex;
  auto fetch = [&](Download& dl) {
    auto digest = Sha256Digest::parse(dl.desc.digest);
    if (!digest) {
      dl.error = digest.error();
      return;
    }
    image::BlobWriter& w = *dl.writer;
    std::optional<DiffSummer> summer;
    if (dl.is_layer) {
      summer.emplace(fmt::format("{}: layer {}", what, dl.desc.digest), dl.desc.digest);
    }
    auto got = client.get_blob(repo, *digest, static_cast<uint64_t>(dl.desc.size),
                               [&](std::string_view chunk) -> Result<void> {
                                 TRY_VOID(w.write(chunk));
                                 if (summer) {
                                   summer->feed(chunk);
                                 }
                                 return ok();
                               },
                               [&] { return w.digest(); });
    if (!got) {
      dl.error = got.error();
      return;
    }
    if (summer) {
      auto sums = summer->finish();
      if (!sums) {
        dl.error = sums.error();
        return;
      }
      dl.sums = *sums;
    }
    // The fsync (the slow part of a commit) happens outside the lock,
    // alongside the other downloads.
    if (auto synced = w.sync(); !synced) {
      dl.error = synced.error();
      return;
    }
    std::lock_guard lock(commit_mutex);
    auto committed = w.commit(dl.desc.digest);
    if (!committed) {
      dl.error = committed.error();
      return;
    }
    report(progress, dl.desc.digest, "Pull complete");
  };
  constexpr size_t k_parallel = 4;
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < downloads.size(); i = next++) {
      fetch(*downloads[i]);
    }
  };
  {
    std::vector<std::thread> threads;
    for (size_t t = 0; t < std::min(k_parallel, downloads.size()); ++t) {
      threads.emplace_back(worker);
    }
    for (auto& t : threads) {
      t.join();
    }
  }
  for (const auto& dl : downloads) {
    if (dl->error) {
      return fail(*dl->error);
    }
  }

  TRY(std::string config_bytes, staging->read_small(manifest.config.digest, 64 * 1024 * 1024));
  TRY(image::ImageConfig config,
      image::parse_config(config_bytes, fmt::format("{}: config {}", what, manifest.config.digest)));
  if (config.rootfs.diff_ids.size() != manifest.layers.size()) {
    return fail(Errc::corrupt, fmt::format("{}: {} layers but the config lists {} diff_ids", what,
                                           manifest.layers.size(), config.rootfs.diff_ids.size()));
  }
  image::NewImage img;
  img.manifest_digest = manifest_digest;
  img.media_type = fm.media_type;
  img.config_digest = manifest.config.digest;
  img.created = config.created;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const auto& l = manifest.layers[i];
    std::optional<image::LayerRecord> known;
    if (store.content().has(l.digest)) {
      TRY(known, store.db().layer(l.digest));
    }
    image::LayerRecord rec;
    auto streamed = std::find_if(downloads.begin(), downloads.end(), [&](const std::unique_ptr<Download>& dl) {
      return dl->desc.digest == l.digest && dl->sums;
    });
    if (known) {
      rec = *known;
    } else if (streamed != downloads.end()) {
      rec = image::LayerRecord{l.digest, (*streamed)->sums->diff_id, l.media_type, l.size,
                               static_cast<int64_t>((*streamed)->sums->diff_size)};
    } else {
      TRY(LayerSums sums, layer_sums(staging->path(l.digest), fmt::format("{}: layer {}", what, l.digest)));
      rec = image::LayerRecord{l.digest, sums.diff_id, l.media_type, l.size,
                               static_cast<int64_t>(sums.diff_size)};
    }
    if (rec.diff_id != config.rootfs.diff_ids[i]) {
      return fail(Errc::corrupt, fmt::format("{}: layer {} has diff_id {}, the config says {}", what, i,
                                             rec.diff_id, config.rootfs.diff_ids[i]));
    }
    img.layers.push_back(rec);
  }
  downloaded += downloads.size();
  return img;
}

}  // namespace

Result<PullResult> pull_image(Client& client, image::ImageStore& store, const image::Reference& ref,
                              const Platform& platform, const TransferProgress& progress) {
  PullOptions options;
  options.platform = platform;
  return pull_image(client, store, ref, options, progress);
}

Result<PullResult> pull_image(Client& client, image::ImageStore& store, const image::Reference& ref,
                              const PullOptions& options, const TransferProgress& progress) {
  Repository repo = repository_of(ref);
  std::string reference = manifest_ref(ref);
  const Platform want = options.platform.value_or(host_platform());
  TRY(FetchedManifest top, client.get_manifest(repo, reference));
  TRY(auto staging, image::Staging::create(store.content()));
  size_t downloaded = 0;
  std::vector<image::Reference> names = {ref};
  if (!is_index_media_type(top.media_type)) {
    TRY(image::NewImage img, stage_image(client, store, *staging, repo, top, progress, downloaded));
    img.names = names;
    TRY_VOID(store.commit(*staging, {img}));
    return PullResult{img.manifest_digest, img.manifest_digest, img.config_digest, downloaded == 0};
  }
  std::string where = fmt::format("registry {}, repository {}, index {}", repo.registry, repo.name, top.digest.str());
  TRY(image::Index index, image::parse_index(top.bytes, where));
  if (ref.digest.empty()) {
    image::Reference by_digest = ref;
    by_digest.tag.clear();
    by_digest.digest = top.digest.str();
    names.push_back(by_digest);
  }
  // Which entries to fetch: one platform's (as containerd matches it), or
  // every platform's (attestations and nested indexes left out).
  std::vector<size_t> picks;
  if (options.all_platforms) {
    for (size_t i = 0; i < index.manifests.size(); ++i) {
      const auto& d = index.manifests[i];
      if (d.platform && d.platform->os != "unknown" && image::media_kind(d.media_type) == image::MediaKind::manifest) {
        picks.push_back(i);
      }
    }
    if (picks.empty()) {
      return fail(Errc::not_found, fmt::format("{}: the index lists no platform image", where));
    }
  } else {
    auto doc = nlohmann::json::parse(top.bytes, nullptr, false);
    auto pick = select_platform_manifest(doc, want);
    if (!pick) {
      return fail(pick.error().code, fmt::format("{}: {}", where, pick.error().message));
    }
    if (image::media_kind(index.manifests[*pick].media_type) == image::MediaKind::index) {
      // An index of indexes: the selected image alone, named as before.
      TRY(ResolvedManifest resolved, client.resolve_manifest(repo, reference, want));
      TRY(image::NewImage img, stage_image(client, store, *staging, repo, resolved.manifest, progress, downloaded));
      img.names = names;
      TRY_VOID(store.commit(*staging, {img}));
      return PullResult{img.manifest_digest, top.digest.str(), img.config_digest, downloaded == 0};
    }
    picks.push_back(*pick);
  }
  std::vector<image::NewImage> images;
  image::NewIndex kept;
  kept.digest = top.digest.str();
  kept.media_type = top.media_type;
  kept.names = names;
  for (size_t i : picks) {
    const image::Descriptor& d = index.manifests[i];
    TRY(Sha256Digest child_digest, Sha256Digest::parse(d.digest));
    TRY(FetchedManifest child, client.get_manifest(repo, child_digest.str()));
    if (static_cast<int64_t>(child.bytes.size()) != d.size) {
      return fail(Errc::corrupt, fmt::format("{}: manifest {} is {} bytes, the index says {}", where, d.digest,
                                             child.bytes.size(), d.size));
    }
    if (image::media_kind(child.media_type) != image::MediaKind::manifest) {
      child.media_type = d.media_type;
    }
    TRY(image::NewImage img, stage_image(client, store, *staging, repo, child, progress, downloaded));
    kept.children.push_back(image::IndexChildRecord{static_cast<int>(i), img.manifest_digest,
                                                    image::platform_text(image::descriptor_platform(d))});
    images.push_back(std::move(img));
  }
  // Platforms of this index pulled before stay recorded.
  TRY(std::optional<image::ImageRecord> before, store.db().image(kept.digest));
  bool known = before.has_value();
  if (before) {
    TRY(std::vector<image::IndexChildRecord> had, store.db().index_children(kept.digest));
    for (const auto& c : had) {
      bool dup = std::any_of(kept.children.begin(), kept.children.end(),
                             [&](const image::IndexChildRecord& k) { return k.position == c.position; });
      if (!dup) {
        kept.children.push_back(c);
      }
    }
    std::sort(kept.children.begin(), kept.children.end(),
              [](const image::IndexChildRecord& a, const image::IndexChildRecord& b) { return a.position < b.position; });
  }
  TRY(std::string index_digest, staging->put(top.bytes));
  if (index_digest != kept.digest) {
    return fail(Errc::corrupt, fmt::format("{}: index hashes to {}", where, index_digest));
  }
  TRY_VOID(store.commit(*staging, images, {kept}));
  const image::NewImage& first = images.front();
  std::string manifest_digest = first.manifest_digest;
  std::string config_digest = first.config_digest;
  image::Platform want_oci;
  want_oci.os = want.os;
  want_oci.architecture = want.architecture;
  want_oci.variant = want.variant;
  for (size_t k = 0; k < picks.size(); ++k) {
    const auto& d = index.manifests[picks[k]];
    if (d.platform && image::platform_matches(image::descriptor_platform(d), want_oci)) {
      manifest_digest = images[k].manifest_digest;
      config_digest = images[k].config_digest;
      break;
    }
  }
  return PullResult{manifest_digest, kept.digest, config_digest, downloaded == 0 && known};
}

namespace {

// Pushes one stored image manifest (blobs first) and puts it under
// `reference` (a tag, or "" for its digest).
Result<PushResult> push_manifest(Client& client, image::ImageStore& store, const std::string& source,
                                 const image::ImageRecord& stored, const image::Reference& dest,
                                 const std::string& reference, const TransferProgress& progress,
                                 const PushOptions& options) {
  TRY(image::LoadedImage img, store.load(stored));
  const image::LoadedImage as_stored = img;
  auto refused = [&](Error e) -> Error {
    e.message = fmt::format("cannot push {} to {}: {}", source, dest.str(), e.message);
    return e;
  };
  if (options.compression) {
    auto compressed = image::compressed_form(store, img, *options.compression,
                                             [&](const std::string&, const std::string& digest, uint64_t) {
                                               report(progress, digest, "Compressed");
                                             });
    if (!compressed) {
      return fail(refused(std::move(compressed).error()));
    }
    img = std::move(compressed).value();
  }
  const image::ImageRecord& rec = img.record;
  Repository repo = repository_of(dest);
  // The manifest and config were read whole: checked before anything goes
  // out. Layers are checked while they upload (Client::push_blob).
  for (const auto& [digest, bytes] : {std::pair{rec.manifest_digest, &img.manifest_bytes},
                                      std::pair{rec.config_digest, &img.config_bytes}}) {
    if (std::string has = sha256(*bytes).str(); has != digest) {
      return fail(refused(Error(Errc::corrupt, fmt::format("blob {} is corrupt in the store: its {} bytes hash to {}",
                                                           digest, bytes->size(), has))));
    }
  }

  // Other repositories of the same registry that hold a blob (the store
  // has an image pulled from or pushed to there that uses it): blobs can be
  // mounted from them instead of uploaded. This image's own names first.
  TRY(auto mount_sources, mount_sources_for(store, as_stored.record, repo));
  // A layer compressed for this push was compressed, byte for byte the same,
  // when the image went to the repository its stored form is known in.
  for (size_t i = 0; i < img.manifest.layers.size() && i < as_stored.manifest.layers.size(); ++i) {
    auto it = mount_sources.find(as_stored.manifest.layers[i].digest);
    if (it != mount_sources.end() && img.manifest.layers[i].digest != it->first) {
      mount_sources.emplace(img.manifest.layers[i].digest, it->second);
    }
  }
  auto push_one = [&](const std::string& digest_text) -> Result<void> {
    TRY(Sha256Digest digest, Sha256Digest::parse(digest_text));
    TRY(BodySource body, file_body(store.content().blob_path(digest_text)));
    PushBlobOptions opts;
    if (auto it = mount_sources.find(digest_text); it != mount_sources.end()) {
      opts.mount_from = it->second;
    }
    TRY(BlobPush how, client.push_blob(repo, digest, body, opts));
    switch (how) {
      case BlobPush::existed:
        report(progress, digest_text, "Layer already exists");
        break;
      case BlobPush::mounted:
        report(progress, digest_text, "Mounted from " + opts.mount_from->name);
        break;
      case BlobPush::uploaded:
        report(progress, digest_text, "Pushed");
        break;
    }
    return ok();
  };
  // Blobs concurrently (a pool of workers, each blob once), the manifest
  // after all of them.
  std::vector<std::string> blobs;
  for (const auto& l : img.manifest.layers) {
    if (std::find(blobs.begin(), blobs.end(), l.digest) == blobs.end()) {
      blobs.push_back(l.digest);
    }
  }
  if (std::find(blobs.begin(), blobs.end(), img.manifest.config.digest) == blobs.end()) {
    blobs.push_back(img.manifest.config.digest);
  }
  std::vector<std::optional<Error>> errors(blobs.size());
  std::atomic<size_t> next{0};
  // After a failure no further blob starts (those in flight finish).
  std::atomic<bool> failed{false};
  auto worker = [&] {
    for (size_t i = next++; i < blobs.size() && !failed; i = next++) {
      if (auto pushed = push_one(blobs[i]); !pushed) {
        Error e = std::move(pushed).error();
        errors[i] = e.code == Errc::corrupt ? refused(std::move(e)) : std::move(e);
        failed = true;
      }
    }
  };
  {
    constexpr size_t k_parallel = 4;
    std::vector<std::thread> threads;
    for (size_t t = 0; t < std::min(k_parallel, blobs.size()); ++t) {
      threads.emplace_back(worker);
    }
    for (auto& t : threads) {
      t.join();
    }
  }
  for (const auto& e : errors) {
    if (e) {
      return fail(*e);
    }
  }
  std::string tag = reference.empty() ? rec.manifest_digest : reference;
  TRY(Sha256Digest pushed, client.put_manifest(repo, tag, img.manifest_bytes, rec.media_type));
  if (pushed.str() != rec.manifest_digest) {
    return fail(Errc::corrupt, fmt::format("{}: the registry stored the manifest as {}, expected {}",
                                           repo.str(), pushed.str(), rec.manifest_digest));
  }
  return PushResult{rec.manifest_digest, img.manifest_bytes.size(), rec.media_type};
}

// Pushes a multi-platform image: every platform image the store holds (by
// digest), then the index under the tag. Platforms the store lacks must be
// in the destination repository already. When a platform's manifest changes
// (its layers compressed for the push) the index is rewritten to name it.
Result<PushResult> push_index(Client& client, image::ImageStore& store, const std::string& source,
                              const image::ImageRecord& rec, const image::Reference& dest,
                              const TransferProgress& progress, const PushOptions& options) {
  TRY(image::LoadedIndex idx, image::load_index(store, rec));
  Repository repo = repository_of(dest);
  bool rewritten = false;
  std::set<size_t> present;
  for (const auto& c : idx.children) {
    size_t pos = static_cast<size_t>(c.position);
    TRY(std::optional<image::ImageRecord> child, store.db().image(c.manifest_digest));
    if (!child || pos >= idx.index.manifests.size()) {
      return fail(Errc::corrupt, fmt::format("cannot push {}: its {} image {} is not in the store", source, c.platform,
                                             c.manifest_digest));
    }
    TRY(PushResult pushed, push_manifest(client, store, source, *child, dest, "", progress, options));
    image::Descriptor& d = idx.index.manifests[pos];
    if (pushed.manifest_digest != d.digest) {
      d.digest = pushed.manifest_digest;
      d.size = static_cast<int64_t>(pushed.manifest_size);
      d.media_type = pushed.media_type;
      rewritten = true;
    }
    present.insert(pos);
  }
  for (size_t i = 0; i < idx.index.manifests.size(); ++i) {
    const image::Descriptor& d = idx.index.manifests[i];
    if (present.count(i) != 0) {
      continue;
    }
    auto there = client.head_manifest(repo, d.digest);
    if (!there) {
      std::string platform = d.platform ? image::platform_text(image::descriptor_platform(d)) : "(no platform)";
      return fail(Errc::not_found,
                  fmt::format("cannot push {} to {}: its index lists platform {} (manifest {}), which the store "
                              "does not hold and {} lacks; pull it first (pull --all-platforms)",
                              source, dest.str(), platform, d.digest, repo.str()));
    }
  }
  std::string bytes = rewritten ? image::serialize(idx.index) : idx.bytes;
  std::string media_type = rec.media_type;
  if (rewritten && !idx.index.media_type.empty()) {
    media_type = idx.index.media_type;
  }
  std::string tag = dest.digest.empty() ? (dest.tag.empty() ? "latest" : dest.tag) : dest.digest;
  TRY(Sha256Digest pushed, client.put_manifest(repo, tag, bytes, media_type));
  std::string want = sha256(bytes).str();
  if (pushed.str() != want) {
    return fail(Errc::corrupt, fmt::format("{}: the registry stored the index as {}, expected {}", repo.str(),
                                           pushed.str(), want));
  }
  return PushResult{want, bytes.size(), media_type};
}

}  // namespace

Result<PushResult> push_image(Client& client, image::ImageStore& store, const std::string& source,
                              const image::Reference& dest, const TransferProgress& progress,
                              const PushOptions& options) {
  TRY(image::ImageRecord stored, store.resolve_target(source));
  if (stored.is_index()) {
    return push_index(client, store, source, stored, dest, progress, options);
  }
  std::string tag = dest.digest.empty() ? (dest.tag.empty() ? "latest" : dest.tag) : dest.digest;
  return push_manifest(client, store, source, stored, dest, tag, progress, options);
}

}  // namespace imgbuild::registry
