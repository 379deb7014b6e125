#include "image/archive.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "image/assemble.hpp"
#include "image/blob_reader.hpp"
#include "image/change.hpp"
#include "image/index.hpp"
#include "image/json.hpp"
#include "util/fd.hpp"
#include "util/io.hpp"
#include "util/platform.hpp"
#include "util/strings.hpp"
#include "util/tar.hpp"
#include "util/fault.hpp"

namespace imgbuild::image {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t k_copy_buffer = 1 << 20;
constexpr int k_max_symlink_hops = 40;
constexpr std::string_view k_containerd_name = "io.containerd.image.name";
constexpr std::string_view k_oci_ref_name = "org.opencontainers.image.ref.name";

Unexpected bad_archive(std::string_view label, std::string msg) {
  return fail(Errc::corrupt, fmt::format("{}: {}", label, msg));
}

// Splits a path into its components, dropping "", "." and a leading "/".
// Returns false when a ".." component appears.
bool split_clean(std::string_view path, std::vector<std::string>& out) {
  out.clear();
  for (auto& c : str::split(path, '/')) {
    if (c.empty() || c == ".") {
      continue;
    }
    if (c == "..") {
      return false;
    }
    out.push_back(std::move(c));
  }
  return true;
}

std::string join_path(const std::vector<std::string>& parts) { return str::join(parts, "/"); }

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  if (const char* sde = std::getenv("SOURCE_DATE_EPOCH"); sde != nullptr && *sde != '\0') {
    char* end = nullptr;
    long long v = std::strtoll(sde, &end, 10);
    if (end != nullptr && *end == '\0' && v >= 0) {
      t = static_cast<std::time_t>(v);
    }
  }
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Tracks the symlinks an archive creates so that every later path can be
// resolved the way an extraction inside a root would resolve it, and refused
// when that resolution would leave the root.
class RootResolver {
public:
  explicit RootResolver(std::string label) : m_label(std::move(label)) {}

  // A symlink followed while resolving: its resolved path and its target.
  struct Followed {
    std::string link;
    std::string target;
  };

  // Resolves `path` (components) following recorded symlinks in every
  // component (the last one too when follow_last). `entry` names the entry
  // being checked in errors. The first symlink followed goes to *followed.
  Result<std::string> resolve(const std::vector<std::string>& path, bool follow_last, std::string_view entry,
                              std::optional<Followed>* followed = nullptr) const {
    std::vector<std::string> done;
    std::deque<std::string> todo(path.begin(), path.end());
    int hops = 0;
    while (!todo.empty()) {
      std::string comp = std::move(todo.front());
      todo.pop_front();
      if (comp.empty() || comp == ".") {
        continue;
      }
      if (comp == "..") {
        if (done.empty()) {
          return bad_archive(m_label, fmt::format("entry {} resolves outside the root", str::go_quote(entry)));
        }
        done.pop_back();
        continue;
      }
      done.push_back(comp);
      std::string candidate = join_path(done);
      auto it = m_links.find(candidate);
      if (it == m_links.end() || (todo.empty() && !follow_last)) {
        continue;
      }
      if (++hops > k_max_symlink_hops) {
        return bad_archive(m_label, fmt::format("entry {}: too many levels of symbolic links", str::go_quote(entry)));
      }
      done.pop_back();
      const std::string& target = it->second;
      if (followed != nullptr && !*followed) {
        *followed = Followed{candidate, target};
      }
      if (!target.empty() && target.front() == '/') {
        done.clear();  // absolute targets are relative to the root
      }
      std::vector<std::string> parts = str::split(target, '/');
      for (auto p = parts.rbegin(); p != parts.rend(); ++p) {
        todo.push_front(*p);
      }
      // A ".." that climbs above the root through a symlink is an escape.
      std::vector<std::string> probe = done;
      for (const auto& p : parts) {
        if (p == "..") {
          if (probe.empty()) {
            return bad_archive(m_label, fmt::format("entry {} passes through symlink {} -> {} which leaves the root",
                                                    str::go_quote(entry), str::go_quote(candidate),
                                                    str::go_quote(target)));
          }
          probe.pop_back();
        } else if (!p.empty() && p != ".") {
          probe.push_back(p);
        }
      }
    }
    return join_path(done);
  }

  void set_symlink(const std::string& resolved_path, const std::string& target) { m_links[resolved_path] = target; }
  void set_other(const std::string& resolved_path, tar::EntryType type) {
    m_links.erase(resolved_path);
    m_types[resolved_path] = type;
  }
  std::optional<tar::EntryType> type_of(const std::string& resolved_path) const {
    auto it = m_types.find(resolved_path);
    if (it == m_types.end()) {
      if (m_links.count(resolved_path) != 0) {
        return tar::EntryType::symlink;
      }
      return std::nullopt;
    }
    return it->second;
  }

private:
  std::string m_label;
  std::map<std::string, std::string> m_links;
  std::map<std::string, tar::EntryType> m_types;
};

enum class HardlinkTargets { must_precede, may_be_below };
enum class Duplicates { refused, allowed };
// Whether an entry below a symlink must find a directory of the same archive
// at the link's target (a single-layer archive: nothing below it can supply
// one, and applying the entry would meet the symlink in its way).
enum class LinkedParents { must_be_directories, unchecked };

// Checks and normalises archive entries one by one, in archive order: no
// path, hardlink or chain of symlinks may leave the root; invalid whiteouts
// and hardlinks to directories are refused. Paths come out relative, without
// "./" or a leading "/".
class EntryChecker {
public:
  EntryChecker(std::string label, HardlinkTargets targets, Duplicates duplicates,
               LinkedParents linked_parents = LinkedParents::unchecked)
      : m_label(std::move(label)), m_resolver(m_label), m_targets(targets), m_duplicates(duplicates),
        m_linked_parents(linked_parents) {}

  // False when the entry is the root directory itself (nothing to write).
  Result<bool> check(tar::Entry& e) {
    if (!split_clean(e.path, m_parts)) {
      return bad_archive(m_label, fmt::format("entry {} contains \"..\"", str::go_quote(e.path)));
    }
    if (m_parts.empty()) {
      return false;
    }
    const std::string& base = m_parts.back();
    if (base == ".wh." || base == ".wh..") {
      return bad_archive(m_label, fmt::format("entry {} is an invalid whiteout", str::go_quote(e.path)));
    }
    std::string clean = join_path(m_parts);
    std::vector<std::string> parent(m_parts.begin(), m_parts.end() - 1);
    std::optional<RootResolver::Followed> followed;
    TRY(std::string resolved_parent, m_resolver.resolve(parent, true, e.path, &followed));
    std::string resolved = resolved_parent.empty() ? base : resolved_parent + "/" + base;
    if (m_linked_parents == LinkedParents::must_be_directories) {
      if (followed && !resolved_parent.empty() && m_dirs.count(resolved_parent) == 0) {
        return bad_archive(m_label, fmt::format("entry {} is below symlink {} -> {}, which does not point to a "
                                                "directory of the archive",
                                                str::go_quote(e.path), str::go_quote(followed->link),
                                                str::go_quote(followed->target)));
      }
      // Every directory the entry is written into exists once it is.
      std::string prefix;
      for (const auto& c : str::split(resolved_parent, '/')) {
        if (c.empty()) {
          continue;
        }
        prefix = prefix.empty() ? c : prefix + "/" + c;
        m_dirs.insert(prefix);
      }
      if (e.type == tar::EntryType::dir) {
        m_dirs.insert(resolved);
      } else {
        m_dirs.erase(resolved);
      }
    }
    if (e.type == tar::EntryType::hardlink) {
      std::vector<std::string> target;
      if (!split_clean(e.link_target, target) || target.empty()) {
        return bad_archive(m_label, fmt::format("hardlink {} -> {} points outside the root", str::go_quote(e.path),
                                                str::go_quote(e.link_target)));
      }
      TRY(std::string resolved_target, m_resolver.resolve(target, false, e.path));
      std::optional<tar::EntryType> t = m_resolver.type_of(resolved_target);
      if (!t && m_targets == HardlinkTargets::must_precede) {
        return bad_archive(m_label, fmt::format("hardlink {} -> {}: the target is not an earlier entry",
                                                str::go_quote(e.path), str::go_quote(e.link_target)));
      }
      if (t && *t == tar::EntryType::dir) {
        return bad_archive(m_label, fmt::format("hardlink {} -> {}: the target is a directory",
                                                str::go_quote(e.path), str::go_quote(e.link_target)));
      }
      e.link_target = join_path(target);
    }
    if (e.type == tar::EntryType::symlink) {
      m_resolver.set_symlink(resolved, e.link_target);
    } else {
      m_resolver.set_other(resolved, e.type);
    }
    if (m_duplicates == Duplicates::refused && !m_seen.insert(clean).second && e.type != tar::EntryType::dir) {
      return bad_archive(m_label, fmt::format("entry {} appears twice", str::go_quote(clean)));
    }
    e.path = std::move(clean);
    return true;
  }

private:
  std::string m_label;
  RootResolver m_resolver;
  HardlinkTargets m_targets;
  Duplicates m_duplicates;
  LinkedParents m_linked_parents;
  std::set<std::string> m_dirs;  // resolved paths known to be directories (LinkedParents::must_be_directories)
  std::set<std::string> m_seen;
  std::vector<std::string> m_parts;
};

Result<tar::Compression> sniff_compression(const fs::path& p) {
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return fail(Errc::io, fmt::format("open {}: {}", p.string(), std::strerror(errno)));
  }
  unsigned char m[6] = {};
  ssize_t n = ::read(fd.get(), m, sizeof m);
  if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b) {
    return tar::Compression::gzip;
  }
  if (n >= 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd) {
    return tar::Compression::zstd;
  }
  if (n >= 3 && m[0] == 'B' && m[1] == 'Z' && m[2] == 'h') {
    return tar::Compression::bzip2;
  }
  if (n >= 6 && m[0] == 0xfd && m[1] == '7' && m[2] == 'z' && m[3] == 'X' && m[4] == 'Z' && m[5] == 0) {
    return tar::Compression::xz;
  }
  return tar::Compression::none;
}

// diff_id and uncompressed size of a staged layer blob.
struct LayerIdentity {
  std::string diff_id;
  uint64_t diff_size = 0;
  tar::Compression compression = tar::Compression::none;
};

Result<LayerIdentity> layer_identity(const Staging& staging, const std::string& digest, std::string_view what) {
  fs::path p = staging.path(digest);
  TRY(tar::Compression c, sniff_compression(p));
  if (c == tar::Compression::none) {
    TRY(uint64_t size, staging.size(digest));
    return LayerIdentity{digest, size, c};
  }
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return fail(Errc::io, fmt::format("open {}: {}", p.string(), std::strerror(errno)));
  }
  TRY(auto reader, tar::Reader::open_fd(fd.get(), std::string(what)));
  TRY(tar::ReadSummary summary, reader->finish());
  return LayerIdentity{summary.diff_id.str(), summary.uncompressed_size, c};
}

// Reads a blob as a layer tar, checking every entry. Returns the layer's
// identity, or nothing when the blob is not a tar (or is damaged: the
// diff_id check reports that later). Hostile entries are an error.
Result<std::optional<LayerIdentity>> scan_layer(const tar::ReadFn& pull, const std::string& what) {
  auto reader = tar::Reader::open(pull, what);
  if (!reader) {
    return std::optional<LayerIdentity>();
  }
  EntryChecker checker(what, HardlinkTargets::may_be_below, Duplicates::allowed);
  while (true) {
    auto next = (*reader)->next();
    if (!next) {
      return std::optional<LayerIdentity>();
    }
    if (!*next) {
      break;
    }
    TRY(bool keep, checker.check(**next));
    (void)keep;
  }
  auto summary = (*reader)->finish();
  if (!summary) {
    return std::optional<LayerIdentity>();
  }
  return std::optional<LayerIdentity>(
      LayerIdentity{summary->diff_id.str(), summary->uncompressed_size, summary->compression});
}

std::string_view layer_media_type(tar::Compression c) {
  switch (c) {
    case tar::Compression::gzip:
      return media::oci_layer_gzip;
    case tar::Compression::zstd:
      return media::oci_layer_zstd;
    default:
      return media::oci_layer;
  }
}

// Counts non-empty history entries; docker refuses more than diff_ids.
Result<void> check_config_layers(const ImageConfig& cfg, size_t layers, std::string_view what) {
  if (cfg.rootfs.diff_ids.size() != layers) {
    return fail(Errc::corrupt, fmt::format("{}: the config lists {} diff_ids but the image has {} layers", what,
                                           cfg.rootfs.diff_ids.size(), layers));
  }
  size_t non_empty = 0;
  for (const auto& h : cfg.history) {
    if (!h.empty_layer) {
      ++non_empty;
    }
  }
  if (non_empty > layers) {
    return fail(Errc::corrupt, fmt::format("{}: history has {} non-empty entries but only {} layers", what,
                                           non_empty, layers));
  }
  return ok();
}

}  // namespace

// ---- import -------------------------------------------------------------------

Result<std::string> import_rootfs(ImageStore& store, int in_fd, const ImportOptions& options) {
  std::string label = options.source == "-" ? "stdin" : options.source;
  ImageConfig cfg;
  cfg.config = ContainerConfig{};
  for (const auto& change : options.changes) {
    TRY_VOID(apply_change(*cfg.config, change));
  }
  imgbuild::Platform platform = host_platform();
  if (!options.platform.empty()) {
    TRY(platform, parse_platform(options.platform));
  }
  cfg.os = platform.os;
  cfg.architecture = platform.architecture;
  cfg.variant = platform.variant;

  TRY(std::unique_ptr<Staging> staging, Staging::create(store.content()));
  // The layer is the tar as read, byte for byte (decompressed when it came
  // compressed), as `docker import` keeps it: its diff_id is the tar's own
  // sha256. Entries are only checked, never rewritten.
  TRY(BlobWriter blob, staging->writer());
  TRY(auto reader, tar::Reader::open_fd_tee(in_fd, label, [&blob](const void* d, size_t n) {
    return blob.write(d, n);
  }));
  EntryChecker checker(label, HardlinkTargets::must_precede, Duplicates::refused, LinkedParents::must_be_directories);
  std::vector<char> buf(k_copy_buffer);
  uint64_t content = 0;
  while (true) {
    TRY(std::optional<tar::Entry> next, reader->next());
    if (!next) {
      break;
    }
    tar::Entry e = std::move(*next);
    std::string raw_path = e.path;
    TRY(bool keep, checker.check(e));
    (void)keep;  // the root directory itself stays too
    content += tar::content_bytes(e);
    if (e.type == tar::EntryType::file) {
      uint64_t copied = 0;
      while (true) {
        TRY(size_t n, reader->read_data(buf.data(), buf.size()));
        if (n == 0) {
          break;
        }
        copied += n;
      }
      if (copied != e.size) {
        return bad_archive(label, fmt::format("entry {}: body is {} bytes, header says {}", str::go_quote(raw_path),
                                              copied, e.size));
      }
    }
  }
  TRY(tar::ReadSummary layer, reader->finish());
  if (layer.compression != tar::Compression::none && options.notes != nullptr) {
    options.notes->push_back(fmt::format("{}: {} input decompressed: the layer is the tar it holds", label,
                                         tar::compression_name(layer.compression)));
  }
  TRY(std::string layer_digest, blob.commit(layer.diff_id.str()));

  std::string created = now_rfc3339();
  cfg.created = created;
  cfg.rootfs.diff_ids = {layer.diff_id.str()};
  HistoryEntry h;
  h.created = created;
  h.created_by = "imgbuild import";
  h.comment = options.message.empty() ? "Imported from " + options.source : options.message;
  cfg.history.push_back(h);
  AssembledLayer l;
  l.descriptor.media_type = std::string(media::oci_layer);
  l.descriptor.digest = layer_digest;
  l.descriptor.size = static_cast<int64_t>(layer.uncompressed_size);
  l.record = LayerRecord{layer_digest, layer.diff_id.str(), std::string(media::oci_layer),
                         static_cast<int64_t>(layer.uncompressed_size),
                         static_cast<int64_t>(layer.uncompressed_size), static_cast<int64_t>(content)};
  std::vector<Reference> names;
  if (options.name) {
    names.push_back(*options.name);
  }
  TRY(AssembledImage img, commit_image(store, *staging, cfg, {l}, names));
  return img.config_digest;
}

// ---- save ---------------------------------------------------------------------

namespace {

// A multi-platform image of a save: its index document (rewritten when its
// platform images were compressed) and the positions of the platform images
// the store holds.
struct PlannedIndex {
  std::string digest;
  std::string media_type;
  std::string bytes;
  std::vector<size_t> children;     // into SavePlan::images
  std::optional<size_t> host_child; // the one manifest.json describes
};

struct SavePlan {
  std::vector<LoadedImage> images;            // unique, in first-seen order
  std::vector<std::vector<Reference>> names;  // per image
  std::vector<bool> in_manifest_json;         // per image: listed in manifest.json
  std::vector<PlannedIndex> indexes;
  // index.json entries: (is an index, position in images or indexes, name)
  struct Entry {
    bool index = false;
    size_t pos = 0;
    std::optional<Reference> name;
  };
  std::vector<Entry> index_entries;
  std::map<std::string, uint64_t> blobs;      // digest → size
};

// Adds one image (a stored manifest record) to the plan once; returns its position.
Result<size_t> plan_image(ImageStore& store, SavePlan& plan, std::map<std::string, size_t>& position,
                          const ImageRecord& record, const std::optional<LayerCompression>& compression) {
  auto it = position.find(record.manifest_digest);
  if (it != position.end()) {
    return it->second;
  }
  TRY(LoadedImage img, store.load(record));
  if (compression) {
    TRY(img, compressed_form(store, img, *compression));
  }
  size_t pos = plan.images.size();
  position[record.manifest_digest] = pos;
  plan.blobs[img.record.manifest_digest] = img.manifest_bytes.size();
  plan.blobs[img.record.config_digest] = img.config_bytes.size();
  for (const auto& l : img.manifest.layers) {
    TRY(uint64_t size, store.content().size(l.digest));
    plan.blobs[l.digest] = size;
  }
  plan.images.push_back(std::move(img));
  plan.names.emplace_back();
  plan.in_manifest_json.push_back(false);
  return pos;
}

// Adds a multi-platform image: its platform images the store holds, and the
// index (as stored, or rewritten to name compressed manifests).
Result<size_t> plan_index(ImageStore& store, SavePlan& plan, std::map<std::string, size_t>& position,
                          const ImageRecord& record, const std::optional<LayerCompression>& compression) {
  for (size_t i = 0; i < plan.indexes.size(); ++i) {
    if (plan.indexes[i].digest == record.manifest_digest) {
      return i;
    }
  }
  TRY(LoadedIndex idx, load_index(store, record));
  PlannedIndex planned;
  planned.media_type = record.media_type;
  const Platform host = host_oci_platform();
  bool rewritten = false;
  for (const auto& c : idx.children) {
    TRY(std::optional<ImageRecord> child, store.db().image(c.manifest_digest));
    if (!child || static_cast<size_t>(c.position) >= idx.index.manifests.size()) {
      return fail(Errc::corrupt, fmt::format("index {}: its {} image is not in the store", record.manifest_digest,
                                             c.platform));
    }
    TRY(size_t pos, plan_image(store, plan, position, *child, compression));
    planned.children.push_back(pos);
    Descriptor& d = idx.index.manifests[static_cast<size_t>(c.position)];
    const LoadedImage& img = plan.images[pos];
    if (d.digest != img.record.manifest_digest) {
      d.digest = img.record.manifest_digest;
      d.size = static_cast<int64_t>(img.manifest_bytes.size());
      d.media_type = img.record.media_type;
      rewritten = true;
    }
    if (!planned.host_child && d.platform && platform_matches(descriptor_platform(d), host)) {
      planned.host_child = pos;
    }
  }
  if (rewritten) {
    planned.bytes = serialize(idx.index);
    TRY(planned.digest, put_loose_blob(store, planned.bytes));
  } else {
    planned.bytes = std::move(idx.bytes);
    planned.digest = record.manifest_digest;
  }
  plan.blobs[planned.digest] = planned.bytes.size();
  if (planned.host_child) {
    plan.in_manifest_json[*planned.host_child] = true;
  }
  plan.indexes.push_back(std::move(planned));
  return plan.indexes.size() - 1;
}

Result<SavePlan> plan_save(ImageStore& store, const std::vector<SaveItem>& items,
                           const std::optional<LayerCompression>& compression) {
  SavePlan plan;
  std::map<std::string, size_t> position;
  for (const auto& item : items) {
    if (item.record.is_index()) {
      TRY(size_t pos, plan_index(store, plan, position, item.record, compression));
      // docker load reads manifest.json: the host's platform image carries
      // the name there.
      if (item.name && plan.indexes[pos].host_child) {
        auto& names = plan.names[*plan.indexes[pos].host_child];
        if (std::find(names.begin(), names.end(), *item.name) == names.end()) {
          names.push_back(*item.name);
        }
      }
      plan.index_entries.push_back(SavePlan::Entry{true, pos, item.name});
      continue;
    }
    TRY(size_t pos, plan_image(store, plan, position, item.record, compression));
    plan.in_manifest_json[pos] = true;
    if (item.name) {
      auto& names = plan.names[pos];
      if (std::find(names.begin(), names.end(), *item.name) == names.end()) {
        names.push_back(*item.name);
      }
    }
    plan.index_entries.push_back(SavePlan::Entry{false, pos, item.name});
  }
  return plan;
}

// Adds to `e` which of the plan's images use the blob `digest` (by name,
// else by ID): "… (image app:1, blob of 2 images)".
Error in_images(const SavePlan& plan, const std::string& digest, Error e) {
  std::vector<std::string> users;
  for (size_t i = 0; i < plan.images.size(); ++i) {
    const LoadedImage& img = plan.images[i];
    bool uses = img.record.manifest_digest == digest || img.record.config_digest == digest;
    for (const auto& l : img.manifest.layers) {
      uses = uses || l.digest == digest;
    }
    if (!uses) {
      continue;
    }
    users.push_back(plan.names[i].empty() ? img.record.config_digest : plan.names[i].front().familiar_tagged());
  }
  if (!users.empty()) {
    e.message = fmt::format("cannot save {} {}: {}", users.size() == 1 ? "image" : "images", str::join(users, ", "),
                            e.message);
  }
  return e;
}

std::string index_json(const SavePlan& plan, const std::vector<Descriptor>& existing) {
  Index idx;
  idx.media_type = std::string(media::oci_index);
  idx.manifests = existing;
  for (const auto& [is_index, pos, name] : plan.index_entries) {
    Descriptor d;
    if (is_index) {
      const PlannedIndex& pi = plan.indexes[pos];
      d.media_type = pi.media_type;
      d.digest = pi.digest;
      d.size = static_cast<int64_t>(pi.bytes.size());
    } else {
      const LoadedImage& img = plan.images[pos];
      d.media_type = img.record.media_type.empty() ? std::string(media::oci_manifest) : img.record.media_type;
      d.digest = img.record.manifest_digest;
      d.size = static_cast<int64_t>(img.manifest_bytes.size());
    }
    if (name) {
      d.annotations[std::string(k_containerd_name)] = name->str();
      d.annotations[std::string(k_oci_ref_name)] = name->tag.empty() ? name->digest : name->tag;
    }
    idx.manifests.push_back(std::move(d));
  }
  return serialize(idx);
}

std::string manifest_json(const SavePlan& plan) {
  json out = json::array();
  for (size_t i = 0; i < plan.images.size(); ++i) {
    if (!plan.in_manifest_json[i]) {
      continue;
    }
    const LoadedImage& img = plan.images[i];
    json entry;
    entry["Config"] = "blobs/sha256/" + img.record.config_digest.substr(7);
    json tags = json::array();
    for (const auto& n : plan.names[i]) {
      if (!n.tag.empty()) {
        tags.push_back(n.familiar_name() + ":" + n.tag);
      }
    }
    entry["RepoTags"] = tags.empty() ? json(nullptr) : tags;
    json layers = json::array();
    for (const auto& l : img.manifest.layers) {
      layers.push_back("blobs/sha256/" + l.digest.substr(7));
    }
    entry["Layers"] = layers;
    out.push_back(entry);
  }
  return canonical_json(out);
}

std::string repositories_json(const SavePlan& plan) {
  json repos = json::object();
  for (size_t i = 0; i < plan.images.size(); ++i) {
    const LoadedImage& img = plan.images[i];
    if (img.manifest.layers.empty() || !plan.in_manifest_json[i]) {
      continue;
    }
    for (const auto& n : plan.names[i]) {
      if (!n.tag.empty()) {
        repos[n.familiar_name()][n.tag] = img.manifest.layers.back().digest.substr(7);
      }
    }
  }
  return canonical_json(repos);
}

constexpr std::string_view k_oci_layout = R"({"imageLayoutVersion":"1.0.0"})";

tar::Entry file_entry(std::string path, uint64_t size) {
  tar::Entry e;
  e.path = std::move(path);
  e.type = tar::EntryType::file;
  e.mode = 0644;
  e.size = size;
  return e;
}

Result<void> add_bytes(tar::Writer& w, const std::string& path, std::string_view bytes) {
  TRY_VOID(w.add(file_entry(path, bytes.size())));
  return w.write_data(bytes.data(), bytes.size());
}

Result<void> write_file_atomic(const fs::path& p, std::string_view bytes) {
  fs::path tmp = p;
  tmp += ".tmp";
  TRY_VOID(io::write_all(tmp.string(), bytes));
  if (::rename(tmp.c_str(), p.c_str()) != 0) {
    return fail(Errc::io, fmt::format("rename {}: {}", tmp.string(), std::strerror(errno)));
  }
  return ok();
}

}  // namespace

Result<void> save_archive(ImageStore& store, const std::vector<SaveItem>& items, int out_fd) {
  return save_archive(store, items, out_fd, SaveOptions{});
}

Result<void> save_archive(ImageStore& store, const std::vector<SaveItem>& items, int out_fd,
                          const SaveOptions& options) {
  const SaveFormat format = options.format;
  TRY(SavePlan plan, plan_save(store, items, options.compression));
  TRY(auto w, tar::Writer::open_fd(out_fd));
  tar::Entry dir;
  dir.type = tar::EntryType::dir;
  dir.mode = 0755;
  dir.path = "blobs";
  TRY_VOID(w->add(dir));
  dir.path = "blobs/sha256";
  TRY_VOID(w->add(dir));
  for (const auto& [digest, size] : plan.blobs) {
    fault::point("save-blob");
    // Verified while it streams: a blob that does not hash to its digest
    // stops the save before its last bytes reach the archive.
    auto copied = [&, &digest = digest, &size = size]() -> Result<void> {
      TRY(BlobReader blob, BlobReader::open(store.content(), digest));
      if (blob.size() != size) {
        return fail(Errc::corrupt, fmt::format("blob {} changed size in the store", digest));
      }
      TRY_VOID(w->add(file_entry("blobs/sha256/" + digest.substr(7), size)));
      return blob.copy_to([&](const void* data, size_t n) -> Result<void> {
        TRY_VOID(w->write_data(data, n));
        fault::point("tar-copy");
        return ok();
      });
    }();
    if (!copied) {
      return fail(in_images(plan, digest, std::move(copied).error()));
    }
  }
  TRY_VOID(add_bytes(*w, "index.json", index_json(plan, {})));
  if (format == SaveFormat::docker_and_oci) {
    TRY_VOID(add_bytes(*w, "manifest.json", manifest_json(plan)));
  }
  TRY_VOID(add_bytes(*w, "oci-layout", k_oci_layout));
  if (format == SaveFormat::docker_and_oci) {
    TRY_VOID(add_bytes(*w, "repositories", repositories_json(plan)));
  }
  TRY(tar::WriteSummary summary, w->finish());
  (void)summary;
  return ok();
}

Result<void> save_oci_dir(ImageStore& store, const std::vector<SaveItem>& items, const fs::path& dir,
                          const std::optional<LayerCompression>& compression) {
  TRY(SavePlan plan, plan_save(store, items, compression));
  std::error_code ec;
  fs::create_directories(dir / "blobs" / "sha256", ec);
  if (ec) {
    return fail(Errc::io, fmt::format("create {}: {}", dir.string(), ec.message()));
  }
  std::vector<Descriptor> existing;
  if (fs::exists(dir / "index.json")) {
    TRY(std::string text, io::read_all((dir / "index.json").string(), k_max_json_size));
    TRY(Index old, parse_index(text, (dir / "index.json").string()));
    std::set<std::string> ours;
    for (const auto& entry : plan.index_entries) {
      if (entry.name) {
        ours.insert(entry.name->str());
      }
    }
    for (auto& d : old.manifests) {
      auto it = d.annotations.find(std::string(k_containerd_name));
      if (it == d.annotations.end() || ours.count(it->second) == 0) {
        existing.push_back(std::move(d));
      }
    }
  }
  for (const auto& [digest, size] : plan.blobs) {
    auto copied = put_layout_blob(store.content().blob_path(digest), digest, size, dir);
    if (!copied) {
      return fail(in_images(plan, digest, std::move(copied).error()));
    }
  }
  return write_layout_index(dir, index_json(plan, existing));
}

Result<bool> put_layout_blob(const fs::path& source, std::string_view digest, uint64_t size, const fs::path& dir) {
  std::error_code ec;
  fs::path dest = dir / "blobs" / "sha256" / std::string(digest.substr(7));
  if (fs::is_regular_file(fs::symlink_status(dest, ec)) && fs::file_size(dest, ec) == size) {
    return false;
  }
  fs::create_directories(dest.parent_path(), ec);
  // Copied through a verifying reader: a source that does not hash to
  // `digest` fails before its last bytes are written, and the temporary
  // file goes.
  TRY(BlobReader blob, BlobReader::open_file(source, digest));
  if (blob.size() != size) {
    return fail(Errc::corrupt, fmt::format("blob {} is {} bytes in {}, expected {}", digest, blob.size(),
                                           source.string(), size));
  }
  fs::path tmp = dest;
  tmp += ".tmp";
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out) {
    return fail(Errc::io, fmt::format("copy blob {} to {}: create {}: {}", digest, dir.string(), tmp.string(),
                                      std::strerror(errno)));
  }
  auto copied = blob.copy_to([&](const void* data, size_t n) -> Result<void> {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(out.get(), p, n);
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w < 0) {
        return fail(Errc::io, fmt::format("copy blob {} to {}: write {}: {}", digest, dir.string(), tmp.string(),
                                          std::strerror(errno)));
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return ok();
  });
  out.reset();
  if (!copied) {
    fs::remove(tmp, ec);
    return fail(std::move(copied).error());
  }
  fs::rename(tmp, dest, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("rename {}: {}", tmp.string(), ec.message()));
  }
  return true;
}

Result<void> write_layout_index(const fs::path& dir, std::string_view index) {
  TRY_VOID(write_file_atomic(dir / "oci-layout", k_oci_layout));
  return write_file_atomic(dir / "index.json", index);
}

// ---- load ---------------------------------------------------------------------

namespace {

// What the single pass over a load archive collected.
struct ArchiveContents {
  std::map<std::string, std::string> files;     // path → staged digest
  std::map<std::string, std::string> aliases;   // symlink/hardlink path → target path (clean)
  std::map<std::string, std::string> documents; // top-level metadata kept in memory
};

bool is_document(const std::string& path) {
  return path == "manifest.json" || path == "index.json" || path == "repositories" || path == "oci-layout";
}

class Loader {
public:
  Loader(ImageStore& store, Staging& staging, std::string label)
      : m_store(store), m_staging(staging), m_label(std::move(label)) {}

  Result<void> read(int fd) {
    TRY(auto reader, tar::Reader::open_fd(fd, m_label));
    std::vector<char> buf(k_copy_buffer);
    std::vector<std::string> parts;
    while (true) {
      TRY(std::optional<tar::Entry> next, reader->next());
      if (!next) {
        break;
      }
      const tar::Entry& e = *next;
      if (!e.path.empty() && e.path.front() == '/') {
        return bad_archive(m_label, fmt::format("entry {} is an absolute path", str::go_quote(e.path)));
      }
      if (!split_clean(e.path, parts)) {
        return bad_archive(m_label, fmt::format("entry {} points outside the archive", str::go_quote(e.path)));
      }
      std::string path = join_path(parts);
      if (e.type == tar::EntryType::symlink || e.type == tar::EntryType::hardlink) {
        std::vector<std::string> target;
        std::string joined = e.type == tar::EntryType::symlink && !parts.empty()
                                 ? join_path(std::vector<std::string>(parts.begin(), parts.end() - 1)) + "/" +
                                       e.link_target
                                 : e.link_target;
        if (e.link_target.empty() || e.link_target.front() == '/' || !lexical_clean(joined, target)) {
          return bad_archive(m_label, fmt::format("link {} -> {} points outside the archive", str::go_quote(e.path),
                                                  str::go_quote(e.link_target)));
        }
        m_contents.aliases[path] = join_path(target);
        continue;
      }
      if (e.type != tar::EntryType::file) {
        continue;
      }
      if (is_document(path)) {
        if (e.size > k_max_json_size) {
          return bad_archive(m_label, fmt::format("{}: JSON document of {} bytes exceeds the limit of {} bytes",
                                                  path, e.size, k_max_json_size));
        }
        std::string text;
        while (true) {
          TRY(size_t n, reader->read_data(buf.data(), buf.size()));
          if (n == 0) {
            break;
          }
          text.append(buf.data(), n);
        }
        m_contents.documents[path] = std::move(text);
        continue;
      }
      std::optional<std::string> expected;
      if (parts.size() == 3 && parts[0] == "blobs") {
        if (parts[1] != "sha256") {
          return fail(Errc::unsupported, fmt::format("{}: blob {} uses an unsupported digest algorithm", m_label,
                                                     str::go_quote(path)));
        }
        expected = "sha256:" + parts[2];
        if (!is_valid_digest(*expected)) {
          return bad_archive(m_label, fmt::format("blob {} is not named by a sha256 digest", str::go_quote(path)));
        }
      }
      TRY(BlobWriter w, m_staging.writer(expected));
      uint64_t copied = 0;
      tar::ReadFn pull = [&](void* b, size_t cap) -> Result<size_t> {
        TRY(size_t n, reader->read_data(b, cap));
        if (n > 0) {
          copied += n;
          TRY_VOID(w.write(b, n));
        }
        return n;
      };
      // Layers are checked entry by entry as they stream past; anything that
      // is not a tar (configs, manifests) just passes through.
      TRY(std::optional<LayerIdentity> scanned, scan_layer(pull, fmt::format("{}: {}", m_label, path)));
      while (true) {
        TRY(size_t n, pull(buf.data(), buf.size()));
        if (n == 0) {
          break;
        }
      }
      if (copied != e.size) {
        return bad_archive(m_label, fmt::format("entry {} is truncated ({} of {} bytes)", str::go_quote(path), copied,
                                                e.size));
      }
      auto digest = w.commit(expected);
      if (!digest) {
        return bad_archive(m_label, fmt::format("{}: {}", path, digest.error().message));
      }
      m_contents.files[path] = *digest;
      if (scanned) {
        m_scanned[*digest] = *scanned;
      }
    }
    return ok();
  }

  Result<std::vector<std::string>> interpret() {
    if (m_contents.documents.count("index.json") != 0) {
      TRY_VOID(from_index());
    } else if (m_contents.documents.count("manifest.json") != 0) {
      TRY_VOID(from_manifest_json());
    } else {
      return bad_archive(m_label, "neither index.json nor manifest.json found: not a docker-save or OCI layout archive");
    }
    TRY_VOID(m_store.commit(m_staging, m_images, m_indexes));
    std::vector<std::string> lines;
    std::set<std::string> children;
    for (const auto& idx : m_indexes) {
      for (const auto& c : idx.children) {
        children.insert(c.manifest_digest);
      }
      if (idx.names.empty()) {
        lines.push_back("Loaded image ID: " + idx.digest);
      }
      for (const auto& n : idx.names) {
        lines.push_back("Loaded image: " + n.familiar_tagged());
      }
    }
    for (const auto& img : m_images) {
      if (img.names.empty() && children.count(img.manifest_digest) == 0) {
        lines.push_back("Loaded image ID: " + img.config_digest);
      }
      for (const auto& n : img.names) {
        lines.push_back("Loaded image: " + n.familiar_tagged());
      }
    }
    return lines;
  }

private:
  static bool lexical_clean(const std::string& path, std::vector<std::string>& out) {
    out.clear();
    for (auto& c : str::split(path, '/')) {
      if (c.empty() || c == ".") {
        continue;
      }
      if (c == "..") {
        if (out.empty()) {
          return false;
        }
        out.pop_back();
        continue;
      }
      out.push_back(std::move(c));
    }
    return true;
  }

  // The staged digest of the file at `path` (following link entries).
  Result<std::string> file_digest(const std::string& raw, std::string_view what) {
    std::vector<std::string> parts;
    if (raw.empty() || raw.front() == '/' || !lexical_clean(raw, parts)) {
      return bad_archive(m_label, fmt::format("{} {} points outside the archive", what, str::go_quote(raw)));
    }
    std::string path = join_path(parts);
    for (int hops = 0; hops < k_max_symlink_hops; ++hops) {
      if (auto it = m_contents.files.find(path); it != m_contents.files.end()) {
        return it->second;
      }
      auto alias = m_contents.aliases.find(path);
      if (alias == m_contents.aliases.end()) {
        break;
      }
      path = alias->second;
    }
    return bad_archive(m_label, fmt::format("{} {} is not in the archive", what, str::go_quote(raw)));
  }

  Result<std::string> document(const std::string& digest, std::string_view what) {
    auto r = m_staging.read_small(digest, k_max_json_size);
    if (!r) {
      return bad_archive(m_label, fmt::format("{}: {}", what, r.error().message));
    }
    return std::move(r).value();
  }

  // Verifies layers against the config and records the image.
  Result<void> add_image(const std::string& manifest_digest, const std::string& manifest_media_type,
                         const std::string& config_digest, const std::vector<std::string>& layer_digests,
                         const std::vector<std::string>& layer_media_types, std::vector<Reference> names) {
    std::string what = fmt::format("{}: image {}", m_label, config_digest);
    TRY(std::string cfg_bytes, document(config_digest, "config"));
    auto cfg = parse_config(cfg_bytes, fmt::format("{}: config {}", m_label, config_digest));
    if (!cfg) {
      return fail(std::move(cfg).error());
    }
    TRY_VOID(check_config_layers(*cfg, layer_digests.size(), what));
    NewImage img;
    img.manifest_digest = manifest_digest;
    img.media_type = manifest_media_type;
    img.config_digest = config_digest;
    img.created = cfg->created;
    img.names = std::move(names);
    for (size_t i = 0; i < layer_digests.size(); ++i) {
      const std::string& d = layer_digests[i];
      LayerIdentity id;
      if (auto it = m_scanned.find(d); it != m_scanned.end()) {
        id = it->second;
      } else {
        TRY(id, layer_identity(m_staging, d, fmt::format("{}: layer {}", m_label, d)));
      }
      if (id.diff_id != cfg->rootfs.diff_ids[i]) {
        return bad_archive(m_label, fmt::format("invalid diffID for layer {}: expected {}, got {}", i,
                                                cfg->rootfs.diff_ids[i], id.diff_id));
      }
      TRY(uint64_t size, m_staging.size(d));
      std::string mt = i < layer_media_types.size() ? layer_media_types[i] : std::string(layer_media_type(id.compression));
      img.layers.push_back(LayerRecord{d, id.diff_id, mt, static_cast<int64_t>(size),
                                       static_cast<int64_t>(id.diff_size)});
    }
    // The same image under several entries: merge names.
    for (auto& existing : m_images) {
      if (existing.manifest_digest == img.manifest_digest) {
        for (auto& n : img.names) {
          if (std::find(existing.names.begin(), existing.names.end(), n) == existing.names.end()) {
            existing.names.push_back(n);
          }
        }
        return ok();
      }
    }
    m_images.push_back(std::move(img));
    return ok();
  }

  Result<void> from_manifest_json() {
    TRY(json doc, parse_json(m_contents.documents["manifest.json"], fmt::format("{}: manifest.json", m_label)));
    if (!doc.is_array()) {
      return bad_archive(m_label, "manifest.json must be a JSON array");
    }
    for (size_t i = 0; i < doc.size(); ++i) {
      const json& entry = doc[i];
      std::string where = fmt::format("manifest.json entry {}", i);
      if (!entry.is_object() || !entry.contains("Config") || !entry["Config"].is_string()) {
        return bad_archive(m_label, where + " has no Config");
      }
      TRY(std::string cfg_digest, file_digest(entry["Config"].get<std::string>(), where + " Config"));
      std::vector<std::string> layers;
      std::vector<std::string> media_types;
      if (entry.contains("Layers") && !entry["Layers"].is_null()) {
        if (!entry["Layers"].is_array()) {
          return bad_archive(m_label, where + ": Layers must be an array");
        }
        for (const auto& l : entry["Layers"]) {
          if (!l.is_string()) {
            return bad_archive(m_label, where + ": Layers must be strings");
          }
          TRY(std::string d, file_digest(l.get<std::string>(), where + " layer"));
          layers.push_back(d);
        }
      }
      std::vector<Reference> names;
      if (entry.contains("RepoTags") && entry["RepoTags"].is_array()) {
        for (const auto& t : entry["RepoTags"]) {
          if (!t.is_string()) {
            continue;
          }
          auto ref = parse_reference(t.get<std::string>());
          if (!ref) {
            return bad_archive(m_label, fmt::format("{}: {}", where, ref.error().message));
          }
          names.push_back(*ref);
        }
      }
      // No manifest in the archive: make an OCI manifest for the store.
      TRY(uint64_t cfg_size, m_staging.size(cfg_digest));
      Manifest m;
      m.media_type = std::string(media::oci_manifest);
      m.config.media_type = std::string(media::oci_config);
      m.config.digest = cfg_digest;
      m.config.size = static_cast<int64_t>(cfg_size);
      for (const auto& d : layers) {
        TRY(tar::Compression c, sniff_compression(m_staging.path(d)));
        TRY(uint64_t size, m_staging.size(d));
        Descriptor ld;
        ld.media_type = std::string(layer_media_type(c));
        ld.digest = d;
        ld.size = static_cast<int64_t>(size);
        media_types.push_back(ld.media_type);
        m.layers.push_back(std::move(ld));
      }
      TRY(std::string m_digest, m_staging.put(serialize(m)));
      TRY_VOID(add_image(m_digest, m.media_type, cfg_digest, layers, media_types, std::move(names)));
    }
    return ok();
  }

  // Names from manifest.json RepoTags, by config digest (Docker 25+ archives
  // carry both files).
  Result<std::map<std::string, std::vector<Reference>>> repo_tags_by_config() {
    std::map<std::string, std::vector<Reference>> out;
    auto it = m_contents.documents.find("manifest.json");
    if (it == m_contents.documents.end()) {
      return out;
    }
    TRY(json doc, parse_json(it->second, fmt::format("{}: manifest.json", m_label)));
    if (!doc.is_array()) {
      return out;
    }
    for (const auto& entry : doc) {
      if (!entry.is_object() || !entry.contains("Config") || !entry["Config"].is_string() ||
          !entry.contains("RepoTags") || !entry["RepoTags"].is_array()) {
        continue;
      }
      auto cfg = file_digest(entry["Config"].get<std::string>(), "manifest.json Config");
      if (!cfg) {
        continue;
      }
      for (const auto& t : entry["RepoTags"]) {
        if (t.is_string()) {
          if (auto ref = parse_reference(t.get<std::string>())) {
            out[*cfg].push_back(*ref);
          }
        }
      }
    }
    return out;
  }

  Result<void> add_manifest(const Descriptor& d, std::vector<Reference> names, int depth) {
    std::string what = fmt::format("{}: manifest {}", m_label, d.digest);
    if (!m_staging.has(d.digest)) {
      return bad_archive(m_label, fmt::format("index.json names {} which is not in the archive", d.digest));
    }
    TRY(uint64_t size, m_staging.size(d.digest));
    if (static_cast<int64_t>(size) != d.size) {
      return bad_archive(m_label, fmt::format("blob {} is {} bytes, its descriptor says {}", d.digest, size, d.size));
    }
    TRY(std::string bytes, document(d.digest, "manifest " + d.digest));
    MediaKind kind = media_kind(d.media_type);
    if (kind == MediaKind::index) {
      if (depth > 4) {
        return bad_archive(m_label, "indexes nested too deep");
      }
      TRY(Index idx, parse_index(bytes, what));
      bool has_platform_image = std::any_of(idx.manifests.begin(), idx.manifests.end(), [&](const Descriptor& m) {
        return m_staging.has(m.digest) && media_kind(m.media_type) == MediaKind::manifest && m.platform &&
               m.platform->os != "unknown";
      });
      if (depth == 0 && has_platform_image) {
        // A multi-platform image: every platform image the archive holds is
        // loaded and the index is kept under the entry's names (platforms
        // the archive lacks stay listed in the index only). An index
        // without platforms, or of indexes, gives one image as before.
        NewIndex rec;
        rec.digest = d.digest;
        rec.media_type = d.media_type;
        rec.names = std::move(names);
        for (size_t i = 0; i < idx.manifests.size(); ++i) {
          const Descriptor& m = idx.manifests[i];
          if (!m_staging.has(m.digest) || media_kind(m.media_type) != MediaKind::manifest || !m.platform ||
              m.platform->os == "unknown") {
            continue;  // absent, nested or an attestation
          }
          TRY_VOID(add_manifest(m, {}, depth + 1));
          rec.children.push_back(IndexChildRecord{static_cast<int>(i), m.digest, platform_text(descriptor_platform(m))});
        }
        auto same = std::find_if(m_indexes.begin(), m_indexes.end(), [&](const NewIndex& x) { return x.digest == rec.digest; });
        if (same == m_indexes.end()) {
          m_indexes.push_back(std::move(rec));
        } else {
          for (auto& n : rec.names) {
            if (std::find(same->names.begin(), same->names.end(), n) == same->names.end()) {
              same->names.push_back(n);
            }
          }
        }
        return ok();
      }
      const Descriptor* pick = nullptr;
      const imgbuild::Platform host = host_platform();
      auto host_os_arch = [&host](const imgbuild::Platform& p) {
        imgbuild::Platform n = normalize_platform({p.os, p.architecture, ""});
        return n.os == host.os && n.architecture == host.architecture;
      };
      for (const auto& m : idx.manifests) {
        if (m.platform && host_os_arch({m.platform->os, m.platform->architecture, ""}) &&
            m_staging.has(m.digest)) {
          pick = &m;
          break;
        }
      }
      for (const auto& m : idx.manifests) {
        if (pick == nullptr && m_staging.has(m.digest)) {
          pick = &m;
        }
      }
      if (pick == nullptr) {
        return bad_archive(m_label, fmt::format("index {} lists no manifest present in the archive", d.digest));
      }
      return add_manifest(*pick, std::move(names), depth + 1);
    }
    if (kind != MediaKind::manifest) {
      return fail(Errc::unsupported, fmt::format("{}: index.json entry {} has unknown media type {}", m_label,
                                                 d.digest, str::go_quote(d.media_type)));
    }
    TRY(Manifest m, parse_manifest(bytes, what));
    if (!m.media_type.empty() && media_kind(m.media_type) != MediaKind::manifest) {
      return fail(Errc::unsupported, fmt::format("{}: unknown media type {}", what, str::go_quote(m.media_type)));
    }
    if (media_kind(m.config.media_type) != MediaKind::config) {
      return fail(Errc::unsupported, fmt::format("{}: config has unknown media type {}", what,
                                                 str::go_quote(m.config.media_type)));
    }
    std::vector<std::string> layers;
    std::vector<std::string> media_types;
    for (const Descriptor* desc = &m.config;;) {
      if (!m_staging.has(desc->digest)) {
        return bad_archive(m_label, fmt::format("{}: blob {} is not in the archive", what, desc->digest));
      }
      TRY(uint64_t s, m_staging.size(desc->digest));
      if (static_cast<int64_t>(s) != desc->size) {
        return bad_archive(m_label, fmt::format("blob {} is {} bytes, its descriptor says {}", desc->digest, s,
                                                desc->size));
      }
      if (layers.size() == m.layers.size()) {
        break;
      }
      desc = &m.layers[layers.size()];
      if (media_kind(desc->media_type) != MediaKind::layer) {
        return fail(Errc::unsupported, fmt::format("{}: layer {} has unknown media type {}", what, layers.size(),
                                                   str::go_quote(desc->media_type)));
      }
      layers.push_back(desc->digest);
      media_types.push_back(desc->media_type);
    }
    std::string mt = m.media_type.empty() ? d.media_type : m.media_type;
    return add_image(d.digest, mt, m.config.digest, layers, media_types, std::move(names));
  }

  Result<void> from_index() {
    TRY(Index idx, parse_index(m_contents.documents["index.json"], fmt::format("{}: index.json", m_label)));
    TRY(auto tags, repo_tags_by_config());
    for (const auto& d : idx.manifests) {
      std::vector<Reference> names;
      auto cn = d.annotations.find(std::string(k_containerd_name));
      auto rn = d.annotations.find(std::string(k_oci_ref_name));
      if (cn != d.annotations.end()) {
        auto ref = parse_reference(cn->second);
        if (!ref) {
          return bad_archive(m_label, fmt::format("index.json: {}", ref.error().message));
        }
        names.push_back(*ref);
      } else if (rn != d.annotations.end() && rn->second.find_first_of(":/@") != std::string::npos) {
        if (auto ref = parse_reference(rn->second)) {
          names.push_back(*ref);
        }
      }
      size_t before = m_images.size();
      TRY_VOID(add_manifest(d, names, 0));
      // Docker 25+ archives: names from manifest.json when index.json has none.
      if (names.empty() && m_images.size() > before && media_kind(d.media_type) != MediaKind::index) {
        NewImage& img = m_images.back();
        if (auto t = tags.find(img.config_digest); t != tags.end()) {
          img.names = t->second;
        }
      }
    }
    return ok();
  }

  ImageStore& m_store;
  Staging& m_staging;
  std::string m_label;
  ArchiveContents m_contents;
  std::map<std::string, LayerIdentity> m_scanned;  // blob digest → identity seen while reading
  std::vector<NewImage> m_images;
  std::vector<NewIndex> m_indexes;
};

}  // namespace

Result<std::vector<std::string>> load_archive(ImageStore& store, int in_fd, const std::string& label) {
  TRY(std::unique_ptr<Staging> staging, Staging::create(store.content()));
  Loader loader(store, *staging, label);
  TRY_VOID(loader.read(in_fd));
  return loader.interpret();
}

}  // namespace imgbuild::image
