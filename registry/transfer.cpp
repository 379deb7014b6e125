// Whole-image pull and push (see transfer.hpp).

#include "registry/transfer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>

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

// One blob to download into the staging area.
struct Download {
  image::Descriptor desc;
  std::optional<image::BlobWriter> writer;
  std::optional<Error> error;
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

Result<PullResult> pull_image(Client& client, image::ImageStore& store, const image::Reference& ref,
                              const Platform& platform, const TransferProgress& progress) {
  Repository repo = repository_of(ref);
  std::string reference = manifest_ref(ref);
  TRY(ResolvedManifest resolved, client.resolve_manifest(repo, reference, platform));
  const FetchedManifest& fm = resolved.manifest;
  std::string what = fmt::format("{}@{}", repo.str(), fm.digest.str());
  TRY(image::Manifest manifest, image::parse_manifest(fm.bytes, what));
  TRY(auto staging, image::Staging::create(store.content()));
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
  for (const auto& l : manifest.layers) {
    TRY_VOID(want(l));
  }

  // Download concurrently (a few at a time); commit each under a lock (the
  // staging area's bookkeeping is not thread-safe).
  std::mutex commit_mutex;
  auto fetch = [&](Download& dl) {
    auto digest = Sha256Digest::parse(dl.desc.digest);
    if (!digest) {
      dl.error = digest.error();
      return;
    }
    image::BlobWriter& w = *dl.writer;
    auto got = client.get_blob(repo, *digest, static_cast<uint64_t>(dl.desc.size),
                               [&w](std::string_view chunk) { return w.write(chunk); });
    if (!got) {
      dl.error = got.error();
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
  constexpr size_t k_parallel = 3;
  for (size_t start = 0; start < downloads.size(); start += k_parallel) {
    std::vector<std::thread> threads;
    for (size_t i = start; i < downloads.size() && i < start + k_parallel; ++i) {
      threads.emplace_back(fetch, std::ref(*downloads[i]));
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
    if (known) {
      rec = *known;
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
  img.names.push_back(ref);
  std::string repo_digest = manifest_digest;
  if (!resolved.indexes.empty()) {
    repo_digest = resolved.indexes.front().digest.str();
    if (ref.digest.empty()) {
      image::Reference by_digest = ref;
      by_digest.tag.clear();
      by_digest.digest = repo_digest;
      img.names.push_back(by_digest);
    }
  }
  TRY_VOID(store.commit(*staging, {img}));
  return PullResult{manifest_digest, repo_digest, manifest.config.digest, downloads.empty()};
}

Result<PushResult> push_image(Client& client, image::ImageStore& store, const std::string& source,
                              const image::Reference& dest, const TransferProgress& progress) {
  TRY(image::ImageRecord rec, store.resolve(source));
  TRY(image::LoadedImage img, store.load(rec));
  Repository repo = repository_of(dest);

  // Other repositories of the same registry that hold a blob (the store
  // has an image pulled from or pushed to there that uses it): blobs can be
  // mounted from them instead of uploaded. This image's own names first.
  TRY(auto mount_sources, mount_sources_for(store, rec, repo));
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
  for (const auto& l : img.manifest.layers) {
    TRY_VOID(push_one(l.digest));
  }
  TRY_VOID(push_one(img.manifest.config.digest));
  std::string tag = dest.digest.empty() ? (dest.tag.empty() ? "latest" : dest.tag) : dest.digest;
  TRY(Sha256Digest pushed, client.put_manifest(repo, tag, img.manifest_bytes, rec.media_type));
  if (pushed.str() != rec.manifest_digest) {
    return fail(Errc::corrupt, fmt::format("{}: the registry stored the manifest as {}, expected {}",
                                           repo.str(), pushed.str(), rec.manifest_digest));
  }
  return PushResult{rec.manifest_digest, img.manifest_bytes.size()};
}

}  // namespace imgbuild::registry
