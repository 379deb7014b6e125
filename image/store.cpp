#include "image/store.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <set>

#include <fmt/format.h>

#include "image/index.hpp"
#include "image/json.hpp"
#include "util/fault.hpp"
#include "util/fd.hpp"
#include "util/strings.hpp"
#include "util/tar.hpp"

namespace imgbuild::image {

namespace fs = std::filesystem;

namespace {

Unexpected no_such_image(std::string_view arg) {
  return fail(Errc::not_found, fmt::format("No such image: {}", arg));
}

bool all_hex(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// Removes staging directories under tmp/ whose owning process is gone.
void clean_stale_tmp(const fs::path& tmp) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(tmp, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("stage-", 0) != 0) {
      continue;
    }
    size_t dash = name.find('-', 6);
    std::string pid_text = name.substr(6, dash == std::string::npos ? std::string::npos : dash - 6);
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      std::error_code rm_ec;
      fs::remove_all(entry.path(), rm_ec);
    }
  }
}

// Allocates <root>/reserve when it is missing (written aside, then renamed,
// so a reserve is always whole). Nothing happens when there is no room.
void make_reserve(const fs::path& root) {
  fs::path reserve = root / "reserve";
  if (::access(reserve.c_str(), F_OK) == 0) {
    return;
  }
  fs::path tmp = root / "tmp" / fmt::format("reserve-{}", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return;
  }
  bool whole = ::posix_fallocate(fd, 0, static_cast<off_t>(k_reserve_bytes)) == 0;
  ::close(fd);
  if (!whole || ::rename(tmp.c_str(), reserve.c_str()) != 0) {
    ::unlink(tmp.c_str());
  }
}

// "familiar name" of an image for messages: its first name, else its ID.
std::string display_name(MetaDb& db, const ImageRecord& rec) {
  auto names = db.names_of(rec.manifest_digest);
  if (names && !names->empty()) {
    auto ref = parse_reference(names->front(), DefaultTag::none);
    return ref ? ref->familiar() : names->front();
  }
  return rec.config_digest;
}

}  // namespace

Result<std::unique_ptr<ImageStore>> ImageStore::open(const fs::path& root, StoreUse use) {
  TRY(ContentStore content, ContentStore::open(root));
  if (use == StoreUse::freeing) {
    ::unlink((root / "reserve").c_str());
  }
  TRY(std::unique_ptr<MetaDb> db, MetaDb::open(meta_db_path(root)));
  // Staging directories of processes that died (killed mid-load) go now.
  clean_stale_tmp(root / "tmp");
  if (use == StoreUse::normal) {
    make_reserve(root);
  }
  return std::unique_ptr<ImageStore>(new ImageStore(std::move(content), std::move(db)));
}

ImageStore::~ImageStore() = default;

Lease& ImageStore::lease() {
  std::lock_guard lock(m_lease_mu);
  if (!m_lease) {
    m_lease = std::make_unique<Lease>(m_content.root());
  }
  return *m_lease;
}

Result<void> ImageStore::hold(const LoadedImage& img) {
  std::vector<LeaseEntry> entries = {{LeaseKind::blob, img.record.manifest_digest},
                                     {LeaseKind::blob, img.record.config_digest}};
  for (const auto& l : img.manifest.layers) {
    entries.push_back({LeaseKind::blob, l.digest});
  }
  for (const auto& d : img.config.rootfs.diff_ids) {
    entries.push_back({LeaseKind::layer, d});
  }
  TRY_VOID(lease().hold(entries));
  // Held now: what is still there stays (image/lease.hpp).
  for (const auto& e : entries) {
    if (e.kind == LeaseKind::blob && !m_content.has(e.id)) {
      return fail(Errc::not_found, fmt::format("blob {} of image {} was removed by a concurrent rmi or prune; "
                                               "run the command again",
                                               e.id, img.record.config_digest));
    }
  }
  return ok();
}

void ImageStore::restore_reserve() { make_reserve(m_content.root()); }

Result<ImageRecord> ImageStore::resolve(std::string_view arg) { return resolve(arg, std::nullopt); }

Result<ImageRecord> ImageStore::resolve(std::string_view arg, const std::optional<Platform>& platform) {
  TRY(ImageRecord rec, resolve_target(arg));
  return select_platform(rec, platform, arg);
}

Result<ImageRecord> ImageStore::select_platform(const ImageRecord& rec, const std::optional<Platform>& platform,
                                                std::string_view arg) {
  if (!rec.is_index()) {
    if (!platform) {
      return rec;
    }
    TRY(LoadedImage img, load(rec));
    Platform have = config_platform(img.config);
    if (!have.architecture.empty() && !platform_matches(have, *platform)) {  // no platform recorded: any
      return fail(Errc::not_found, fmt::format("image {} is for platform {}, not {}", arg, platform_text(have),
                                               platform_text(*platform)));
    }
    return rec;
  }
  TRY(LoadedIndex idx, load_index(*this, rec));
  std::vector<std::string> present;
  for (const auto& c : idx.children) {
    present.push_back(c.platform);
  }
  auto child_record = [&](const IndexChildRecord& c) -> Result<ImageRecord> {
    TRY(std::optional<ImageRecord> child, m_db->image(c.manifest_digest));
    if (!child) {
      return fail(Errc::corrupt, fmt::format("image {}: its {} image {} is not in the store", arg, c.platform,
                                             c.manifest_digest));
    }
    return *child;
  };
  auto child_at = [&](size_t position) -> const IndexChildRecord* {
    for (const auto& c : idx.children) {
      if (static_cast<size_t>(c.position) == position) {
        return &c;
      }
    }
    return nullptr;
  };
  const Platform want = platform ? *platform : host_oci_platform();
  for (size_t i = 0; i < idx.index.manifests.size(); ++i) {
    const Descriptor& d = idx.index.manifests[i];
    if (!d.platform || !platform_matches(descriptor_platform(d), want)) {
      continue;
    }
    if (const IndexChildRecord* c = child_at(i)) {
      return child_record(*c);
    }
    if (platform) {
      return fail(Errc::not_found,
                  fmt::format("image {}: platform {} is listed in its index but not in the store (it has: {}); "
                              "pull it with --platform {} or --all-platforms",
                              arg, platform_text(descriptor_platform(d)), str::join(present, ", "),
                              platform_text(*platform)));
    }
  }
  if (!platform && !idx.children.empty()) {
    return child_record(idx.children.front());  // the host's is not there: the first there is
  }
  return fail(Errc::not_found, fmt::format("image {} has no image for platform {} (it has: {})", arg,
                                           platform_text(want), present.empty() ? "none" : str::join(present, ", ")));
}

Result<ImageRecord> ImageStore::resolve_target(std::string_view arg) {
  if (arg.empty()) {
    return fail(Errc::invalid_argument, "empty image reference");
  }
  // An ID: "sha256:<prefix>" always; a bare hex string when no name matches.
  std::string_view id = arg;
  bool explicit_id = false;
  if (id.rfind("sha256:", 0) == 0) {
    id = id.substr(7);
    explicit_id = true;
  }
  if (!explicit_id) {
    auto ref = parse_reference(arg);
    if (ref) {
      if (!ref->digest.empty()) {
        TRY(std::optional<ImageRecord> rec, m_db->image(ref->digest));
        if (rec) {
          return *rec;
        }
        // A digest name: an image selected from an index is named
        // repository@<index digest>.
        TRY(std::optional<std::string> named, m_db->lookup_name(ref->str()));
        if (named) {
          TRY(std::optional<ImageRecord> by_name, m_db->image(*named));
          if (by_name) {
            return *by_name;
          }
        }
        return no_such_image(arg);
      }
      TRY(std::optional<std::string> digest, m_db->lookup_name(ref->str()));
      if (digest) {
        TRY(std::optional<ImageRecord> rec, m_db->image(*digest));
        if (rec) {
          return *rec;
        }
      }
    } else if (!all_hex(id)) {
      return fail(std::move(ref).error());
    }
  }
  if (!all_hex(id) || id.size() > 64) {
    return no_such_image(arg);
  }
  TRY(std::vector<ImageRecord> all, m_db->images());
  std::vector<ImageRecord> by_config;
  std::vector<ImageRecord> by_manifest;
  for (const auto& rec : all) {
    if (rec.config_digest.compare(7, id.size(), id) == 0) {
      by_config.push_back(rec);
    }
    if (rec.manifest_digest.compare(7, id.size(), id) == 0) {
      by_manifest.push_back(rec);
    }
  }
  for (const auto* matches : {&by_config, &by_manifest}) {
    if (matches->empty()) {
      continue;
    }
    if (matches->size() == 1) {
      return matches->front();
    }
    // Several manifests may share one config (same image, other compression):
    // prefer one that has names.
    bool same_config = std::all_of(matches->begin(), matches->end(), [&](const ImageRecord& r) {
      return r.config_digest == matches->front().config_digest;
    });
    if (!same_config) {
      return fail(Errc::invalid_argument, fmt::format("image ID prefix {} is ambiguous", arg));
    }
    for (const auto& rec : *matches) {
      TRY(std::vector<std::string> names, m_db->names_of(rec.manifest_digest));
      if (!names.empty()) {
        return rec;
      }
    }
    return matches->front();
  }
  return no_such_image(arg);
}

Result<LoadedImage> ImageStore::load(const ImageRecord& rec) {
  LoadedImage out;
  out.record = rec;
  TRY(out.manifest_bytes, m_content.read_small(rec.manifest_digest, k_max_json_size));
  TRY(out.manifest, parse_manifest(out.manifest_bytes, "manifest " + rec.manifest_digest));
  TRY(out.config_bytes, m_content.read_small(rec.config_digest, k_max_json_size));
  TRY(out.config, parse_config(out.config_bytes, "config " + rec.config_digest));
  return out;
}

Result<std::vector<Reference>> ImageStore::names_of(const std::string& manifest_digest) {
  TRY(std::vector<std::string> names, m_db->names_of(manifest_digest));
  std::vector<Reference> out;
  for (const auto& n : names) {
    auto ref = parse_reference(n, DefaultTag::none);
    if (ref) {
      out.push_back(std::move(*ref));
    }
  }
  return out;
}

namespace {

// The content size of a staged-or-stored layer blob.
Result<int64_t> blob_content_size(const std::filesystem::path& path, const std::string& digest) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(Errc::not_found, fmt::format("layer blob {} is missing", digest));
  }
  UniqueFd owned(fd);
  TRY(uint64_t n, tar::content_size(fd, "layer " + digest));
  return static_cast<int64_t>(n);
}

}  // namespace

Result<int64_t> ImageStore::layer_content_size(const std::string& blob_digest) {
  TRY(auto rec, m_db->layer(blob_digest));
  if (rec && rec->content_size >= 0) {
    return rec->content_size;
  }
  TRY(int64_t n, blob_content_size(m_content.blob_path(blob_digest), blob_digest));
  if (rec) {
    (void)m_db->set_content_size(blob_digest, n);  // a read-only store still answers
  }
  return n;
}

Result<int64_t> ImageStore::content_size(const ImageRecord& rec) {
  if (rec.is_index()) {
    TRY(std::vector<IndexChildRecord> children, m_db->index_children(rec.manifest_digest));
    int64_t sum = 0;
    for (const auto& c : children) {
      TRY(std::optional<ImageRecord> child, m_db->image(c.manifest_digest));
      if (child) {
        TRY(int64_t n, content_size(*child));
        sum += n;
      }
    }
    return sum;
  }
  TRY(LoadedImage img, load(rec));
  int64_t total = 0;
  for (const auto& l : img.manifest.layers) {
    TRY(int64_t n, layer_content_size(l.digest));
    total += n;
  }
  return total;
}

Result<void> ImageStore::commit(Staging& staging, const std::vector<NewImage>& given) {
  return commit(staging, given, {});
}

Result<void> ImageStore::commit(Staging& staging, const std::vector<NewImage>& given,
                                const std::vector<NewIndex>& indexes) {
  // Content sizes the layers do not carry yet (loaded, pulled, imported):
  // read from the blobs before the write lock is taken.
  std::vector<NewImage> images = given;
  for (auto& img : images) {
    for (auto& layer : img.layers) {
      if (layer.content_size >= 0) {
        continue;
      }
      TRY(auto known, m_db->layer(layer.blob_digest));
      if (known && known->content_size >= 0) {
        layer.content_size = known->content_size;
      } else {
        TRY(layer.content_size, blob_content_size(staging.path(layer.blob_digest), layer.blob_digest));
      }
    }
  }
  TRY(MetaDb::Transaction tx, m_db->begin());
  std::set<std::string> wanted;
  for (const auto& img : images) {
    wanted.insert(img.manifest_digest);
    wanted.insert(img.config_digest);
    for (const auto& layer : img.layers) {
      wanted.insert(layer.blob_digest);
    }
  }
  for (const auto& idx : indexes) {
    wanted.insert(idx.digest);
  }
  for (const auto& d : wanted) {
    if (!staging.has(d)) {
      // Only possible when a concurrent rmi/prune removed a blob this
      // operation found already stored and therefore did not copy again.
      return fail(Errc::io, fmt::format("blob {} was removed from the store by a concurrent rmi or prune; "
                                        "run the command again", d));
    }
  }
  TRY(std::vector<std::string> added, staging.publish(wanted));
  fault::point("store-published");
  auto record = [&]() -> Result<void> {
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    for (const auto& img : images) {
      ImageRecord rec;
      rec.manifest_digest = img.manifest_digest;
      rec.config_digest = img.config_digest;
      rec.media_type = img.media_type;
      rec.created = img.created;
      rec.added_at = now;
      std::set<std::string> blobs = {img.manifest_digest, img.config_digest};
      for (const auto& layer : img.layers) {
        rec.size += layer.content_size;
        blobs.insert(layer.blob_digest);
        TRY_VOID(m_db->put_layer(layer));
      }
      TRY(std::optional<ImageRecord> existing, m_db->image(img.manifest_digest));
      if (existing) {
        rec.added_at = existing->added_at;
      }
      TRY_VOID(m_db->put_image(rec, blobs));
      for (const auto& name : img.names) {
        TRY_VOID(m_db->set_name(name.str(), img.manifest_digest));
      }
    }
    for (const auto& idx : indexes) {
      ImageRecord rec;
      rec.manifest_digest = idx.digest;
      rec.config_digest = idx.digest;  // the image ID of a multi-platform image
      rec.media_type = idx.media_type;
      rec.added_at = now;
      for (const auto& c : idx.children) {
        TRY(std::optional<ImageRecord> child, m_db->image(c.manifest_digest));
        if (!child || child->is_index()) {
          return fail(Errc::invalid_argument, fmt::format("index {}: its {} image {} is not an image of the store",
                                                          idx.digest, c.platform, c.manifest_digest));
        }
        rec.size += child->size;
        rec.created = std::max(rec.created, child->created);
      }
      TRY(std::optional<ImageRecord> existing, m_db->image(idx.digest));
      if (existing) {
        rec.added_at = existing->added_at;
      }
      TRY_VOID(m_db->put_image(rec, {idx.digest}));
      TRY_VOID(m_db->put_index_children(idx.digest, idx.children));
      for (const auto& name : idx.names) {
        TRY_VOID(m_db->set_name(name.str(), idx.digest));
      }
    }
    return tx.commit();
  };
  Result<void> r = record();
  if (!r) {
    staging.rollback(added);  // still under the write lock unless commit itself failed
  }
  return r;
}

Result<void> ImageStore::tag(std::string_view src, const Reference& dst) {
  TRY(MetaDb::Transaction tx, m_db->begin());
  TRY(ImageRecord rec, resolve_target(src));
  TRY_VOID(m_db->set_name(dst.str(), rec.manifest_digest));
  return tx.commit();
}

Result<uint64_t> ImageStore::delete_unreferenced_blobs_locked(const LeaseSnapshot& leases, int* leased_blobs,
                                                              std::vector<std::string>* gone_diffs) {
  TRY(std::set<std::string> keep, m_db->referenced_blobs());
  TRY(std::vector<std::string> all, m_content.list());
  uint64_t freed = 0;
  // Files first: on a full disk the space they free is what lets the
  // record changes commit.
  for (const auto& d : all) {
    if (keep.count(d) != 0) {
      continue;
    }
    if (leases.holds(LeaseKind::blob, d)) {
      if (leased_blobs != nullptr) {
        ++*leased_blobs;
      }
      continue;
    }
    TRY(uint64_t n, m_content.remove(d));
    freed += n;
  }
  TRY(std::vector<LayerRecord> rows, m_db->unreferenced_layers());
  TRY_VOID(m_db->delete_unreferenced_layers());
  std::set<std::string> diffs;
  for (const auto& row : rows) {
    if (!row.diff_id.empty()) {
      diffs.insert(row.diff_id);
    }
  }
  for (const auto& diff : diffs) {
    TRY(bool used, m_db->diff_id_used(diff));
    if (!used && !leases.holds(LeaseKind::layer, diff) && gone_diffs != nullptr) {
      gone_diffs->push_back(diff);
    }
  }
  return freed;
}

Result<RemoveReport> ImageStore::remove(std::string_view arg, bool force, const ImagesInUse& in_use,
                                        const RemoveLayerDir& remove_dir) {
  TRY(LeaseSnapshot leases, LeaseSnapshot::take(m_content.root()));  // before the write lock
  TRY(MetaDb::Transaction tx, m_db->begin());
  TRY(ImageRecord rec, resolve_target(arg));
  TRY(std::vector<std::string> names, m_db->names_of(rec.manifest_digest));
  TRY(std::vector<std::string> parents, m_db->indexes_of(rec.manifest_digest));
  RemoveReport report;
  auto familiar = [](const std::string& n) {
    auto ref = parse_reference(n, DefaultTag::none);
    return ref ? ref->familiar() : n;
  };
  // Removing by name untags only that name, unless it is the last one.
  auto ref = parse_reference(arg);
  bool by_name = false;
  if (ref) {
    TRY(std::optional<std::string> digest, m_db->lookup_name(ref->str()));
    by_name = digest.has_value() && *digest == rec.manifest_digest;
    if (by_name) {
      TRY(bool removed, m_db->remove_name(ref->str()));
      (void)removed;
      report.untagged.push_back(familiar(ref->str()));
      names.erase(std::remove(names.begin(), names.end(), ref->str()), names.end());
      // As docker does: once a repository's last tag is gone, its digest
      // names (repository@digest) go too.
      if (!ref->tag.empty()) {
        auto same_repo = [&](const std::string& n, bool tagged) {
          auto other = parse_reference(n, DefaultTag::none);
          return other && other->name() == ref->name() && other->tag.empty() != tagged;
        };
        bool tag_left = std::any_of(names.begin(), names.end(), [&](const std::string& n) { return same_repo(n, true); });
        if (!tag_left) {
          std::vector<std::string> kept;
          for (const auto& n : names) {
            if (same_repo(n, false)) {
              TRY(bool gone, m_db->remove_name(n));
              (void)gone;
              report.untagged.push_back(familiar(n));
            } else {
              kept.push_back(n);
            }
          }
          names = std::move(kept);
        }
      }
    }
  }
  std::set<std::string> repositories;
  for (const auto& n : names) {
    auto other = parse_reference(n, DefaultTag::none);
    repositories.insert(other ? other->name() : n);
  }
  if (!by_name && repositories.size() > 1 && !force) {
    return fail(Errc::invalid_argument,
                fmt::format("conflict: unable to delete {} (must be forced) - image is referenced in multiple "
                            "repositories",
                            rec.config_digest.substr(7, 12)));
  }
  // Untagged only: other names are left, or an index keeps the image.
  if (by_name && (!names.empty() || !parents.empty())) {
    TRY_VOID(tx.commit());
    return report;
  }
  if (leases.holds(LeaseKind::blob, rec.manifest_digest)) {
    // The transaction is not committed: the name removed above stays.
    return fail(Errc::invalid_argument,
                fmt::format("conflict: unable to delete {} (cannot be forced) - image is in use by a running build "
                            "or container",
                            rec.config_digest.substr(7, 12)));
  }
  auto user = in_use.find(rec.config_digest);
  if (user != in_use.end() && !force) {
    // The transaction is not committed: the name removed above stays.
    if (by_name) {
      return fail(Errc::invalid_argument,
                  fmt::format("conflict: unable to remove repository reference \"{}\" (must force) - container {} "
                              "is using its referenced image {}",
                              arg, user->second.substr(0, 12), rec.config_digest.substr(7, 12)));
    }
    return fail(Errc::invalid_argument,
                fmt::format("conflict: unable to delete {} (must be forced) - image is being used by stopped "
                            "container {}",
                            rec.config_digest.substr(7, 12), user->second.substr(0, 12)));
  }
  if (!parents.empty()) {
    // The transaction is not committed: the name removed above stays.
    TRY(std::optional<ImageRecord> parent, m_db->image(parents.front()));
    return fail(Errc::invalid_argument,
                fmt::format("conflict: unable to delete {} (cannot be forced) - it is a platform image of "
                            "multi-platform image {}; remove that instead",
                            rec.config_digest.substr(7, 12),
                            parent ? display_name(*m_db, *parent) : parents.front()));
  }
  for (const auto& n : names) {
    report.untagged.push_back(familiar(n));
  }
  if (user != in_use.end()) {
    // Forced: the names go, the image stays for its container.
    for (const auto& n : names) {
      TRY(bool removed, m_db->remove_name(n));
      (void)removed;
    }
    TRY_VOID(tx.commit());
    return report;
  }
  std::vector<IndexChildRecord> children;
  if (rec.is_index()) {
    TRY(children, m_db->index_children(rec.manifest_digest));
  }
  TRY_VOID(m_db->delete_image(rec.manifest_digest));
  report.deleted.push_back(rec.config_digest);
  // Its platform images go with it unless something else keeps them: a
  // name of their own, another index, a container or a running process.
  for (const auto& c : children) {
    TRY(std::optional<ImageRecord> child, m_db->image(c.manifest_digest));
    TRY(std::vector<std::string> child_names, m_db->names_of(c.manifest_digest));
    TRY(std::vector<std::string> child_parents, m_db->indexes_of(c.manifest_digest));
    if (!child || !child_names.empty() || !child_parents.empty() || in_use.count(child->config_digest) != 0 ||
        leases.holds(LeaseKind::blob, c.manifest_digest)) {
      continue;
    }
    TRY_VOID(m_db->delete_image(c.manifest_digest));
    report.deleted.push_back(child->config_digest);
  }
  std::vector<std::string> gone_diffs;
  TRY(uint64_t freed, delete_unreferenced_blobs_locked(leases, nullptr, &gone_diffs));
  (void)freed;
  TRY_VOID(tx.commit());
  if (remove_dir) {
    for (const auto& diff : gone_diffs) {
      (void)remove_dir(diff);  // the records are gone; a leftover is system check's
    }
  }
  return report;
}

Result<PruneReport> ImageStore::prune(bool all, const ImagesInUse& in_use, const RemoveLayerDir& remove_dir) {
  TRY(LeaseSnapshot leases, LeaseSnapshot::take(m_content.root()));  // before the write lock
  TRY(MetaDb::Transaction tx, m_db->begin());
  PruneReport report;
  TRY(std::vector<ImageRecord> images, m_db->images());
  // Indexes first: a platform image is pruned only once no index keeps it.
  std::stable_partition(images.begin(), images.end(), [](const ImageRecord& r) { return r.is_index(); });
  for (const auto& rec : images) {
    TRY(std::vector<std::string> names, m_db->names_of(rec.manifest_digest));
    if ((!names.empty() && !all) || in_use.count(rec.config_digest) != 0) {
      continue;
    }
    TRY(std::vector<std::string> parents, m_db->indexes_of(rec.manifest_digest));
    if (!parents.empty()) {
      continue;  // an index that stays keeps it
    }
    if (leases.holds(LeaseKind::blob, rec.manifest_digest)) {
      report.leased.push_back(display_name(*m_db, rec));
      continue;
    }
    for (const auto& n : names) {
      auto ref = parse_reference(n, DefaultTag::none);
      report.untagged.push_back(ref ? ref->familiar() : n);
    }
    TRY_VOID(m_db->delete_image(rec.manifest_digest));
    report.deleted.push_back(rec.config_digest);
  }
  std::vector<std::string> gone_diffs;
  TRY(report.reclaimed, delete_unreferenced_blobs_locked(leases, &report.leased_blobs, &gone_diffs));
  TRY_VOID(tx.commit());
  if (remove_dir) {
    for (const auto& diff : gone_diffs) {
      auto n = remove_dir(diff);
      if (n) {
        report.reclaimed += *n;
      }
    }
  }
  clean_stale_tmp(m_content.root() / "tmp");
  return report;
}

}  // namespace imgbuild::image
