// `imgbuild system check [--repair]`: a consistency check of the store, in
// the spirit of `git fsck` and containerd's content/snapshot garbage checks,
// and the space hint added to "no space left on device" errors.
//
// What is checked, in this order (each finding is one "problem:" line):
//   leases      stale lease files of processes that are gone are dropped
//               (not a problem: every deleter does the same)
//   tmp/        staging directories and temp files whose process is gone
//   blobs       every file under blobs/sha256 is named by a digest and its
//               content hashes to that digest
//   meta.db     SQLite's integrity_check
//   images      every blob an image holds is present; manifest and config
//               parse; names point at images
//   cache       every cache record's layer blob is present
//   layers      layer rows that nothing references
//   blobs       blobs that no image, cache record or lease references
//   snapshots   unpacked layer directories nothing references; leftovers of
//               unpacking/committing; views without a live mount record
//   mounts      mount records of processes that are gone; mounts below the
//               store that no live record accounts for
//   containers  directories without a record, records of missing images
//
// --repair fixes what is safe: it deletes what is corrupt, stale or
// unreferenced and can be made again (a corrupt blob, a cache record without
// its blob, an orphaned unpacked layer, a stale mount), but never an image a
// user named: an image with a missing blob stays a problem (rmi it, or pull
// or load it again). The check holds the lease lock throughout (nothing a
// running build holds is touched; its hold() calls wait) and takes the same
// care as prune on a full disk (StoreUse::freeing). Exit status 1 when
// problems remain.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cache/records.hpp"
#include "cli/commands.hpp"
#include "cli/image_common.hpp"
#include "image/index.hpp"
#include "image/json.hpp"
#include "image/lease.hpp"
#include "image/metadata.hpp"
#include "image/types.hpp"
#include "snapshot/layer_dirs.hpp"
#include "snapshot/mounts.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/hash.hpp"

namespace imgbuild::cli {

namespace {

namespace fsys = std::filesystem;

// The sha256 of a file's content, streamed.
Result<std::string> hash_file(const fsys::path& p) {
  UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    return fail(Errc::io, fmt::format("cannot open {}: {}", p.string(), std::strerror(errno)));
  }
  TRY(auto hashed, sha256_fd(fd.get(), p.string()));
  return hashed.first.str();
}

bool process_alive(long pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

// The pid in a name "<prefix><pid>[-…]", or 0.
long pid_in_name(const std::string& name, const std::string& prefix) {
  if (!name.starts_with(prefix)) {
    return 0;
  }
  std::string rest = name.substr(prefix.size());
  std::string digits = rest.substr(0, rest.find('-'));
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) {
    return 0;
  }
  return std::stol(digits);
}

bool is_hex64(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

Result<void> remove_tree(const fsys::path& p) {
  std::error_code ec;
  fsys::remove_all(p, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot remove {}: {}", p.string(), ec.message()));
  }
  return ok();
}

// One finding; `repair` is empty when no safe repair exists.
struct Problem {
  std::string what;
  std::function<Result<void>()> repair;
  std::string hint;  // what the user can do when there is no repair
};

class StoreCheck {
public:
  StoreCheck(image::ImageStore& store, cache::CacheDb& cache, const image::LeaseSnapshot& leases)
      : m_store(store), m_cache(cache), m_leases(leases), m_root(store.content().root()),
        m_dirs(m_root / "snapshots") {}

  Result<void> run() {
    check_tmp();
    TRY_VOID(check_blobs());
    TRY_VOID(check_db());
    TRY_VOID(check_images());
    TRY_VOID(check_cache());
    TRY_VOID(check_layers());
    TRY_VOID(check_unreferenced_blobs());
    TRY_VOID(check_snapshots());
    TRY_VOID(check_mounts());
    check_containers();
    return ok();
  }

  std::vector<Problem>& problems() { return m_problems; }
  const std::map<std::string, int>& counts() const { return m_counts; }

private:
  void add(std::string what, std::function<Result<void>()> repair, std::string hint = "") {
    m_problems.push_back(Problem{std::move(what), std::move(repair), std::move(hint)});
  }
  bool busy() const { return !m_leases.holders().empty(); }
  std::string rel(const fsys::path& p) const { return p.lexically_relative(m_root).string(); }

  void check_tmp() {
    std::error_code ec;
    for (const auto& entry : fsys::directory_iterator(m_root / "tmp", ec)) {
      std::string name = entry.path().filename().string();
      long pid = pid_in_name(name, "stage-");
      if (pid == 0) {
        pid = pid_in_name(name, "reserve-");
      }
      if (pid != 0 ? process_alive(pid) : busy()) {
        continue;  // its process still runs
      }
      fsys::path p = entry.path();
      add(fmt::format("stale temporary file {} (left by a process that is gone)", rel(p)),
          [p]() -> Result<void> { return remove_tree(p); });
    }
  }

  Result<void> check_blobs() {
    std::error_code ec;
    fsys::path dir = m_root / "blobs" / "sha256";
    std::vector<fsys::path> files;
    for (const auto& entry : fsys::directory_iterator(dir, ec)) {
      files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& p : files) {
      std::string name = p.filename().string();
      struct stat st {};
      if (!is_hex64(name) || ::lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        add(fmt::format("stray entry {} in the content store (not a blob)", rel(p)), [p]() -> Result<void> { return remove_tree(p); });
        continue;
      }
      ++m_counts["blobs"];
      std::string digest = "sha256:" + name;
      m_present.insert(digest);
      auto got = hash_file(p);
      if (!got) {
        add(fmt::format("blob {} cannot be read: {}", digest, got.error().message), {});
        continue;
      }
      if (*got == digest) {
        continue;
      }
      m_corrupt.insert(digest);
      if (m_leases.holds(image::LeaseKind::blob, digest)) {
        add(fmt::format("blob {} is corrupt: its content hashes to {}", digest, *got), {},
            "a running build or container holds it; run the check again when it has finished");
        continue;
      }
      const image::ContentStore& content = m_store.content();
      add(fmt::format("blob {} is corrupt: its content hashes to {}", digest, *got), [&content, digest]() -> Result<void> {
        TRY(uint64_t n, content.remove(digest));
        (void)n;
        return ok();
      });
    }
    return ok();
  }

  bool blob_ok(const std::string& d) const { return m_present.count(d) != 0 && m_corrupt.count(d) == 0; }

  Result<void> check_db() {
    TRY(std::vector<std::string> complaints, m_store.db().integrity_problems());
    for (const auto& c : complaints) {
      add(fmt::format("meta.db: {}", c), {}, "restore meta.db from a backup, or move the store aside");
    }
    return ok();
  }

  Result<void> check_images() {
    TRY(std::vector<image::ImageRecord> images, m_store.db().images());
    std::set<std::string> manifests;
    for (const auto& rec : images) {
      ++m_counts["images"];
      manifests.insert(rec.manifest_digest);
      TRY(std::vector<std::string> names, m_store.db().names_of(rec.manifest_digest));
      std::string label = names.empty() ? rec.config_digest : names.front();
      std::string hint = fmt::format("remove it (imgbuild rmi {}) or pull or load it again",
                                     names.empty() ? rec.config_digest.substr(7, 12) : names.front());
      TRY(std::vector<std::string> blobs, m_store.db().blobs_of(rec.manifest_digest));
      bool whole = true;
      for (const auto& b : blobs) {
        if (!blob_ok(b)) {
          whole = false;
          add(fmt::format("image {}: blob {} is {}", label, b, m_corrupt.count(b) != 0 ? "corrupt" : "missing"), {},
              hint);
        }
      }
      if (!whole) {
        continue;
      }
      if (rec.is_index()) {
        // A multi-platform image: its document and the platform images it
        // keeps (each checked as an image of its own).
        auto idx = image::load_index(m_store, rec);
        if (!idx) {
          add(fmt::format("image {}: {}", label, idx.error().message), {}, hint);
          continue;
        }
        for (const auto& c : idx->children) {
          if (static_cast<size_t>(c.position) >= idx->index.manifests.size() ||
              idx->index.manifests[static_cast<size_t>(c.position)].digest != c.manifest_digest) {
            add(fmt::format("image {}: its {} image {} is not the one its index lists", label, c.platform,
                            c.manifest_digest),
                {}, hint);
          }
        }
        continue;
      }
      auto loaded = m_store.load(rec);
      if (!loaded) {
        add(fmt::format("image {}: {}", label, loaded.error().message), {}, hint);
        continue;
      }
      std::set<std::string> held(blobs.begin(), blobs.end());
      std::vector<std::string> needed = {rec.config_digest};
      for (const auto& l : loaded->manifest.layers) {
        needed.push_back(l.digest);
      }
      for (const auto& d : needed) {
        if (held.count(d) == 0) {
          add(fmt::format("image {}: its manifest names {}, which its record does not hold", label, d), {}, hint);
        }
      }
    }
    TRY(std::vector<image::NameRecord> names, m_store.db().names());
    for (const auto& n : names) {
      if (manifests.count(n.manifest_digest) == 0) {
        image::MetaDb* db = &m_store.db();
        std::string name = n.name;
        add(fmt::format("name {} points at {}, which is not in the store", n.name, n.manifest_digest), [db, name]() -> Result<void> {
          TRY(bool gone, db->remove_name(name));
          (void)gone;
          return ok();
        });
      }
    }
    return ok();
  }

  Result<void> check_cache() {
    TRY(std::vector<cache::CacheRecord> records, m_cache.list());
    for (const auto& r : records) {
      ++m_counts["cache records"];
      if (!r.has_layer() || blob_ok(r.layer.blob_digest)) {
        continue;
      }
      std::string what = fmt::format("cache record {} ({}): layer blob {} is {}", r.key.substr(7, 12), r.kind,
                                     r.layer.blob_digest, m_corrupt.count(r.layer.blob_digest) != 0 ? "corrupt" : "missing");
      if (m_leases.holds(image::LeaseKind::record, r.key)) {
        add(what, {}, "a running build holds it; run the check again when it has finished");
        continue;
      }
      cache::CacheDb* db = &m_cache;
      std::string key = r.key;
      add(what, [db, key]() -> Result<void> { return db->remove(key); });  // the step runs again next time
    }
    return ok();
  }

  Result<void> check_layers() {
    TRY(std::vector<image::LayerRecord> rows, m_store.db().unreferenced_layers());
    for (const auto& row : rows) {
      if (m_leases.holds(image::LeaseKind::blob, row.blob_digest)) {
        continue;
      }
      image::MetaDb* db = &m_store.db();
      add(fmt::format("layer record {} is not used by any image or cache record", row.blob_digest),
          [db]() -> Result<void> { return db->delete_unreferenced_layers(); });
    }
    return ok();
  }

  Result<void> check_unreferenced_blobs() {
    TRY(std::set<std::string> referenced, m_store.db().referenced_blobs());
    for (const auto& d : m_present) {
      if (referenced.count(d) != 0 || m_corrupt.count(d) != 0 || m_leases.holds(image::LeaseKind::blob, d)) {
        continue;
      }
      image::ImageStore* store = &m_store;
      add(fmt::format("blob {} is not used by any image or cache record", d), [store, d]() -> Result<void> {
        // Under the write lock, as prune deletes: a load or pull publishes
        // its blobs and records them in one transaction.
        TRY(image::MetaDb::Transaction tx, store->db().begin());
        TRY(std::set<std::string> now, store->db().referenced_blobs());
        if (now.count(d) == 0) {
          TRY(uint64_t n, store->content().remove(d));
          (void)n;
        }
        return tx.commit();
      });
    }
    return ok();
  }

  Result<void> check_snapshots() {
    std::set<std::string> used;
    TRY(std::vector<image::LayerRecord> rows, m_store.db().layers());
    for (const auto& r : rows) {
      used.insert(r.diff_id);
    }
    TRY(std::vector<cache::CacheRecord> records, m_cache.list());
    for (const auto& r : records) {
      if (r.has_layer()) {
        used.insert(r.layer.diff_id);
      }
    }
    std::error_code ec;
    std::vector<fsys::path> entries;
    for (const auto& entry : fsys::directory_iterator(m_dirs.root(), ec)) {
      entries.push_back(entry.path());
    }
    std::sort(entries.begin(), entries.end());
    snapshot::LayerDirs* dirs = &m_dirs;
    for (const auto& p : entries) {
      std::string name = p.filename().string();
      if (name == "work") {
        continue;  // views: check_mounts
      }
      if (is_hex64(name)) {
        ++m_counts["unpacked layers"];
        std::string diff = "sha256:" + name;
        if (used.count(diff) != 0 || m_leases.holds(image::LeaseKind::layer, diff)) {
          if (!fsys::is_directory(p / "fs", ec)) {
            add(fmt::format("unpacked layer {} has no fs directory", rel(p)), [dirs, diff]() -> Result<void> {
              TRY(uint64_t n, dirs->remove(diff));
              (void)n;
              return ok();  // unpacked again when next needed
            });
          }
          continue;
        }
        add(fmt::format("unpacked layer {} is not used by any image or cache record", rel(p)), [dirs, diff]() -> Result<void> {
          TRY(uint64_t n, dirs->remove(diff));
          (void)n;
          return ok();
        });
        continue;
      }
      bool leftover = name.starts_with(".unpack-") || name.starts_with(".commit-") || name.starts_with(".remove-");
      if (leftover && !busy()) {
        add(fmt::format("stale temporary directory {} (an interrupted unpack or commit)", rel(p)),
            [p]() -> Result<void> { return remove_tree(p); });
      }
    }
    return ok();
  }

  Result<void> check_mounts() {
    fsys::path runtime = m_root / "run";
    fsys::path work = m_root / "snapshots" / "work";
    TRY(std::vector<snapshot::mounts::RecordInfo> records, snapshot::mounts::list_records(runtime));
    std::set<std::string> accounted;  // mounts and views that a record lists
    for (const auto& r : records) {
      for (const auto& m : r.mounts) {
        accounted.insert(m.lexically_normal().string());
      }
      for (const auto& d : r.removes) {
        accounted.insert(d.lexically_normal().string());
      }
      if (r.live) {
        continue;
      }
      add(fmt::format("stale mount record {} of process {} that is gone ({} mounts, {} directories)", rel(r.file),
                      r.pid, r.mounts.size(), r.removes.size()),
          [r, work]() -> Result<void> { return snapshot::mounts::undo_record(r, work); });
    }
    for (const auto& m : snapshot::mounts::mount_points_under(m_root)) {
      if (accounted.count(m.lexically_normal().string()) != 0) {
        continue;
      }
      add(fmt::format("mount at {} is not held by any running imgbuild process", rel(m)),
          [m]() -> Result<void> { return snapshot::mounts::unmount(m); });
    }
    std::error_code ec;
    for (const auto& entry : fsys::directory_iterator(work / "views", ec)) {
      fsys::path p = entry.path();
      if (accounted.count(p.lexically_normal().string()) != 0 || busy()) {
        continue;
      }
      add(fmt::format("view {} has no mount record (left by a killed process)", rel(p)), [p]() -> Result<void> {
        for (const auto& m : snapshot::mounts::mount_points_under(p)) {
          TRY_VOID(snapshot::mounts::unmount(m));
        }
        if (snapshot::mounts::is_mount_point(p)) {
          TRY_VOID(snapshot::mounts::unmount(p));
        }
        return remove_tree(p);
      });
    }
    return ok();
  }

  void check_containers() {
    std::error_code ec;
    for (const auto& entry : fsys::directory_iterator(m_root / "containers", ec)) {
      fsys::path dir = entry.path();
      if (fsys::exists(dir / "container.json.tmp", ec) && !busy()) {
        fsys::path tmp = dir / "container.json.tmp";
        add(fmt::format("stale temporary file {}", rel(tmp)), [tmp] { return remove_tree(tmp); });
      }
      if (!fsys::exists(dir / "container.json", ec)) {
        if (!busy()) {
          add(fmt::format("container directory {} has no container.json", rel(dir)), [dir] { return remove_tree(dir); });
        }
        continue;
      }
      ++m_counts["containers"];
    }
  }

  image::ImageStore& m_store;
  cache::CacheDb& m_cache;
  const image::LeaseSnapshot& m_leases;
  fsys::path m_root;
  snapshot::LayerDirs m_dirs;
  std::set<std::string> m_present;  // blobs named by their digest
  std::set<std::string> m_corrupt;
  std::vector<Problem> m_problems;
  std::map<std::string, int> m_counts;
};

// Bytes of the blobs in `blobs` that are present.
uint64_t blob_bytes(const image::ContentStore& content, const std::set<std::string>& blobs) {
  uint64_t total = 0;
  for (const auto& d : blobs) {
    if (image::is_valid_digest(d)) {
      auto n = content.size(d);
      total += n ? *n : 0;
    }
  }
  return total;
}

std::string megabytes(uint64_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6); }

}  // namespace

std::string no_space_hint(const std::string& root_flag) {
  fsys::path root = image::default_store_root(root_flag);
  // Measuring reads meta.db, which may need a little room (its shared-memory
  // index): the space reserve (image/store.hpp) lends it for the moment.
  ::unlink((root / "reserve").c_str());
  std::string hint = "; `imgbuild image prune -a` and `imgbuild cache prune` can free space";
  auto measure = [&]() -> Result<std::string> {
    TRY(auto store, image::ImageStore::open(root, image::StoreUse::freeing));
    TRY(auto cache_db, cache::CacheDb::open(image::meta_db_path(root)));
    TRY(std::vector<std::string> image_list, cache_db->image_blobs());
    TRY(std::vector<cache::CacheRecord> records, cache_db->list());
    TRY(std::vector<std::string> all, store->content().list());
    std::set<std::string> image_blobs(image_list.begin(), image_list.end());
    std::set<std::string> cache_blobs;
    std::set<std::string> cache_diffs;
    for (const auto& r : records) {
      if (r.has_layer()) {
        cache_blobs.insert(r.layer.blob_digest);
        cache_diffs.insert(r.layer.diff_id);
      }
    }
    std::set<std::string> image_only;  // what image prune -a can free
    std::set<std::string> cache_only;  // what cache prune can free
    for (const auto& d : all) {
      if (cache_blobs.count(d) == 0) {
        image_only.insert(d);
      } else if (image_blobs.count(d) == 0) {
        cache_only.insert(d);
      }
    }
    snapshot::LayerDirs dirs(root / "snapshots");
    std::set<std::string> image_diffs;
    TRY(std::vector<image::LayerRecord> rows, store->db().layers());
    for (const auto& row : rows) {
      if (image_blobs.count(row.blob_digest) != 0) {
        image_diffs.insert(row.diff_id);
      }
    }
    uint64_t images = blob_bytes(store->content(), image_only);
    uint64_t cache = blob_bytes(store->content(), cache_only) + fs::tree_bytes((root / "cache-mounts").string());
    for (const auto& d : image_diffs) {
      images += cache_diffs.count(d) == 0 ? dirs.size_of(d) : 0;
    }
    for (const auto& d : cache_diffs) {
      cache += image_diffs.count(d) == 0 ? dirs.size_of(d) : 0;
    }
    return fmt::format("; `imgbuild image prune -a` can free {} and `imgbuild cache prune` {}", megabytes(images),
                       megabytes(cache));
  };
  auto measured = measure();
  if (measured) {
    hint = *measured;
  }
  auto store = image::ImageStore::open(root);  // takes the reserve back when there is room
  (void)store;
  return hint;
}

void register_system_commands(CLI::App& app, Context& ctx) {
  CLI::App* system = app.add_subcommand("system", "Manage the store");
  system->require_subcommand(1);
  auto repair = std::make_shared<bool>(false);
  CLI::App* check = system->add_subcommand("check", "Check the store for damage and leftovers");
  check->add_flag("--repair", *repair, "Fix what can be fixed safely (delete what is corrupt, stale or unused)");
  check->callback([&ctx, repair]() {
    auto store = open_store(ctx, *repair ? image::StoreUse::freeing : image::StoreUse::normal);
    fsys::path root = store->content().root();
    auto cache_db = unwrap(cache::CacheDb::open(image::meta_db_path(root)));
    auto leases = unwrap(image::LeaseSnapshot::take(root));
    std::map<std::string, int> counts;
    std::set<std::string> printed;
    int found = 0;
    int remaining = 0;
    int repairable = 0;
    // With --repair, a repair can leave something else unused (a cache
    // record without its blob leaves its layer row): check again until a
    // pass has nothing left to repair.
    for (int pass = 0;; ++pass) {
      StoreCheck checker(*store, *cache_db, leases);
      unwrap(checker.run());
      if (pass == 0) {
        counts = checker.counts();
      }
      bool final_pass = !*repair || pass == 4;
      int repaired_now = 0;
      remaining = 0;
      repairable = 0;
      for (auto& p : checker.problems()) {
        bool fresh = printed.insert(p.what).second;
        if (fresh) {
          ++found;
          std::printf("problem: %s\n", p.what.c_str());
        }
        if (!p.repair || final_pass) {
          ++remaining;
          repairable += p.repair ? 1 : 0;
          if (fresh && !p.repair && !p.hint.empty()) {
            std::printf("  not repairable: %s\n", p.hint.c_str());
          }
          continue;
        }
        auto fixed = p.repair();
        if (fixed) {
          ++repaired_now;
          std::printf("  repaired\n");
        } else {
          ++remaining;
          std::printf("  repair failed: %s\n", fixed.error().to_string().c_str());
        }
      }
      if (final_pass || repaired_now == 0) {
        break;
      }
    }
    std::printf("Checked %s:", root.c_str());
    bool first = true;
    for (const char* what : {"blobs", "images", "cache records", "unpacked layers", "containers"}) {
      auto it = counts.find(what);
      std::printf("%s %d %s", first ? "" : ",", it == counts.end() ? 0 : it->second, what);
      first = false;
    }
    std::printf("\n");
    if (!leases.holders().empty()) {
      std::printf("%zu running imgbuild processes hold parts of the store; those parts were left alone\n",
                  leases.holders().size());
    }
    if (*repair) {
      store->restore_reserve();
    }
    if (found == 0) {
      std::printf("No problems found\n");
      return;
    }
    if (remaining == 0) {
      std::printf("%d problems found, all repaired\n", found);
      return;
    }
    if (*repair) {
      std::printf("%d problems found, %d remain\n", found, remaining);
    } else {
      std::printf("%d problems found (%d repairable with `imgbuild system check --repair`)\n", found, repairable);
    }
    ctx.exit_code = 1;
  });
}

}  // namespace imgbuild::cli
