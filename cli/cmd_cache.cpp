// `imgbuild cache ls|du|prune`: the build cache records of the store
// (cache/records.hpp) and the RUN --mount=type=cache directories.
//
// prune removes records (all of them by default, or those matched by
// --filter until=DURATION / beyond --keep-storage SIZE), then the layer blobs
// only those records used and their unpacked layer directories
// (<store>/snapshots/<hex>); blobs that an image uses are never deleted.
// --all also empties the cache-mount directories. du counts the unpacked
// directories of cache-only layers as reclaimable too.

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "builder/cache_steps.hpp"
#include "builder/context.hpp"
#include "cache/records.hpp"
#include "cache/stat_index.hpp"
#include "cli/commands.hpp"
#include "image/metadata.hpp"
#include "snapshot/layer_dirs.hpp"
#include "cli/image_common.hpp"
#include "util/fs.hpp"
#include "util/strings.hpp"

namespace imgbuild::cli {

namespace {

namespace fsys = std::filesystem;

struct CacheHandles {
  std::unique_ptr<image::ImageStore> store;
  std::unique_ptr<cache::CacheDb> db;
};

// A record's layer content size (as history counts it): the record's, else
// the store's layer record's or the blob's.
int64_t content_size(const CacheHandles& h, const cache::CacheRecord& r) {
  if (r.layer.content_size >= 0) {
    return r.layer.content_size;
  }
  return unwrap(h.store->layer_content_size(r.layer.blob_digest));
}

CacheHandles open_cache(const Context& ctx, image::StoreUse use = image::StoreUse::normal) {
  CacheHandles h;
  h.store = open_store(ctx, use);
  h.db = unwrap(cache::CacheDb::open(image::meta_db_path(h.store->content().root())));
  return h;
}

/// Parses a size: bytes, or a number with B, KB/K, MB/M, GB/G, TB/T (powers
/// of 1024, as docker's RAMInBytes), KiB… too.
std::optional<uint64_t> parse_cache_size(const std::string& text) { return str::parse_size(text); }

/// Parses a Go duration ("24h", "1h30m", "90s", "500ms") to seconds.
std::optional<int64_t> parse_cache_duration(const std::string& text) {
  std::string s(str::trim(text));
  if (s.empty()) {
    return std::nullopt;
  }
  double total = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) != 0 || s[i] == '.')) {
      ++i;
    }
    if (i == start) {
      return std::nullopt;
    }
    double n = 0;
    try {
      n = std::stod(s.substr(start, i - start));
    } catch (...) {
      return std::nullopt;
    }
    size_t ustart = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i])) != 0) {
      ++i;
    }
    std::string unit = s.substr(ustart, i - ustart);
    static const std::map<std::string, double> k_units = {{"ns", 1e-9}, {"us", 1e-6}, {"ms", 1e-3}, {"s", 1},
                                                          {"m", 60},    {"h", 3600},  {"d", 86400}};
    auto it = k_units.find(unit);
    if (it == k_units.end()) {
      return std::nullopt;
    }
    total += n * it->second;
  }
  return static_cast<int64_t>(total);
}

}  // namespace

void register_cache_commands(CLI::App& app, Context& ctx) {
  CLI::App* cache_cmd = app.add_subcommand("cache", "Manage the build cache");
  cache_cmd->require_subcommand(1);

  CLI::App* ls = cache_cmd->add_subcommand("ls", "List build cache records");
  ls->callback([&ctx]() {
    CacheHandles h = open_cache(ctx);
    auto records = unwrap(h.db->list());
    std::vector<std::vector<std::string>> rows = {{"KEY", "KIND", "SIZE", "LAST USED", "CREATED BY"}};
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    for (const auto& r : records) {
      // One line per record: a heredoc's line breaks are shown as "\n".
      std::string by = str::replace_all(str::replace_all(r.created_by, "\n", "\\n"), "\t", " ");
      if (by.size() > 60) {
        by = by.substr(0, 57) + "...";
      }
      rows.push_back({short_id(r.key), r.kind, r.has_layer() ? size3(content_size(h, r)) : "0B",
                      human_duration(now - r.last_used) + " ago", by});
    }
    std::fputs(format_table(rows).c_str(), stdout);
  });

  CLI::App* du = cache_cmd->add_subcommand("du", "Show build cache disk usage");
  du->callback([&ctx]() {
    CacheHandles h = open_cache(ctx);
    auto records = unwrap(h.db->list());
    auto image_blobs = unwrap(h.db->image_blobs());
    std::set<std::string> shared(image_blobs.begin(), image_blobs.end());
    std::map<std::string, int64_t> own;
    std::map<std::string, int64_t> with_images;
    std::map<std::string, int64_t> content;  // blob → content size
    std::set<std::string> own_diffs;
    for (const auto& r : records) {
      if (r.has_layer()) {
        bool is_shared = shared.count(r.layer.blob_digest) != 0;
        (is_shared ? with_images : own)[r.layer.blob_digest] = r.layer.blob_size;
        content[r.layer.blob_digest] = content_size(h, r);
        if (!is_shared && !r.layer.diff_id.empty()) {
          own_diffs.insert(r.layer.diff_id);
        }
      }
    }
    snapshot::LayerDirs dirs(h.store->content().root() / "snapshots");
    int unpacked_count = 0;
    int64_t unpacked = 0;
    for (const auto& d : own_diffs) {
      uint64_t n = dirs.size_of(d);
      if (n > 0 || fsys::exists(dirs.dir_for(d))) {
        ++unpacked_count;
        unpacked += static_cast<int64_t>(n);
      }
    }
    auto sum = [](const std::map<std::string, int64_t>& m) {
      int64_t t = 0;
      for (const auto& [d, n] : m) {
        t += n;
      }
      return t;
    };
    uint64_t mounts = fs::tree_bytes((h.store->content().root() / "cache-mounts").string());
    std::vector<std::vector<std::string>> rows = {{"TYPE", "COUNT", "SIZE", "RECLAIMABLE"}};
    rows.push_back({"records", std::to_string(records.size()), "", ""});
    // SIZE: the layers' content (as history counts it); RECLAIMABLE: the
    // bytes their blobs take.
    auto content_of = [&](const std::map<std::string, int64_t>& m) {
      int64_t t = 0;
      for (const auto& [d, n] : m) {
        t += content[d];
      }
      return t;
    };
    rows.push_back({"layers (cache only)", std::to_string(own.size()), size3(content_of(own)), size3(sum(own))});
    rows.push_back({"layers (shared with images)", std::to_string(with_images.size()),
                    size3(content_of(with_images)), "0B"});
    rows.push_back({"unpacked layers (cache only)", std::to_string(unpacked_count), size3(unpacked), size3(unpacked)});
    rows.push_back({"cache mounts", "", size3(static_cast<int64_t>(mounts)), size3(static_cast<int64_t>(mounts))});
    std::fputs(format_table(rows).c_str(), stdout);
    std::printf("Total reclaimable: %s\n", size3(sum(own) + unpacked + static_cast<int64_t>(mounts)).c_str());
  });

  // Hidden, for bench/bench_hash.sh: hashes a directory the way a COPY's
  // cache key does (every file read, no stat index unless --index) and
  // prints what it read and how fast.
  struct HashFlags {
    std::string dir;
    std::vector<std::string> sources;
    bool index = false;
  };
  auto hf = std::make_shared<HashFlags>();
  CLI::App* hash = cache_cmd->add_subcommand("hash-context", "Hash a context directory as COPY keys do (benchmark)");
  hash->group("");
  hash->add_option("dir", hf->dir, "Context directory")->required();
  hash->add_option("sources", hf->sources, "Sources in the context (default .)");
  hash->add_flag("--index", hf->index, "Use and update the store's stat index");
  hash->callback([hf, &ctx]() {
    auto context = unwrap(builder::BuildContext::from_dir(hf->dir));
    builder::SourceTree tree{&context.root(), &context.ignore()};
    std::vector<builder::SelectedSource> all;
    for (const auto& s : hf->sources.empty() ? std::vector<std::string>{"."} : hf->sources) {
      auto matches = unwrap(builder::select_sources(tree, s));
      all.insert(all.end(), matches.begin(), matches.end());
    }
    CacheHandles h;
    cache::StatIndex fresh;
    std::optional<cache::StatIndex> loaded;
    if (hf->index) {
      h = open_cache(ctx);
      loaded.emplace(unwrap(cache::StatIndex::load(*h.db)));
    }
    cache::StatIndex& index = loaded ? *loaded : fresh;
    auto start = std::chrono::steady_clock::now();
    auto files = unwrap(builder::hash_sources(tree, all, nullptr, index));
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (hf->index) {
      unwrap(index.save(*h.db, static_cast<int64_t>(std::time(nullptr)) * 1'000'000'000));
    }
    double mb = static_cast<double>(index.hashed_bytes()) / 1e6;
    std::printf("entries %zu\nfiles hashed %llu\nfiles from the stat index %llu\nbytes hashed %llu\n"
                "seconds %.3f\nMB/s %.1f\ndigest %s\n",
                files.files.size(), static_cast<unsigned long long>(index.hashed()),
                static_cast<unsigned long long>(index.reused()),
                static_cast<unsigned long long>(index.hashed_bytes()), sec, sec > 0 ? mb / sec : 0.0,
                files.digest.c_str());
  });

  struct PruneFlags {
    bool all = false;
    std::string keep_storage;
    std::vector<std::string> filters;
    bool force = false;
  };
  auto pf = std::make_shared<PruneFlags>();
  CLI::App* prune = cache_cmd->add_subcommand("prune", "Remove build cache records and their layers");
  prune->add_flag("-a,--all", pf->all, "Remove every record and empty the cache mounts");
  prune->add_option("--keep-storage", pf->keep_storage, "Keep at most this much cache-only layer data (e.g. 5GB)");
  prune->add_option("--filter", pf->filters, "until=DURATION: records unused for longer");
  prune->add_flag("-f,--force", pf->force, "Do not prompt (prune never prompts)");
  prune->callback([pf, &ctx]() {
    cache::PruneOptions opts;
    opts.all = pf->all;
    for (const auto& f : pf->filters) {
      if (f.rfind("until=", 0) != 0) {
        throw CommandError{fmt::format("invalid filter {}: only until=DURATION is supported", str::go_quote(f)), 2};
      }
      auto d = parse_cache_duration(f.substr(6));
      if (!d || *d <= 0) {
        throw CommandError{fmt::format("invalid filter {}: expected a duration like 24h", str::go_quote(f)), 2};
      }
      opts.unused_for_sec = *d;
    }
    if (!pf->keep_storage.empty()) {
      auto n = parse_cache_size(pf->keep_storage);
      if (!n) {
        throw CommandError{fmt::format("invalid --keep-storage {}: expected a size like 5GB",
                                       str::go_quote(pf->keep_storage)),
                           2};
      }
      opts.keep_storage = *n;
    }
    if (opts.unused_for_sec == 0 && opts.keep_storage == 0) {
      opts.all = true;  // no filter: every record (cache mounts only with --all)
    }
    CacheHandles h = open_cache(ctx, image::StoreUse::freeing);
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    const image::ContentStore& content = h.store->content();
    // What running builds hold stays; the lease lock is held until the
    // directories below are gone too (image/lease.hpp).
    auto leases = unwrap(image::LeaseSnapshot::take(content.root()));
    opts.leases = &leases;
    auto result = unwrap(h.db->prune(opts, now, [&](const std::string& d) { return content.remove(d); }));
    for (const auto& d : result.blobs) {
      std::printf("Deleted: %s\n", d.c_str());
    }
    uint64_t reclaimed = result.reclaimed;
    snapshot::LayerDirs dirs(content.root() / "snapshots");
    for (const auto& diff : result.diff_ids) {
      auto freed = dirs.remove(diff);
      if (!freed) {  // the records and blobs are gone already: go on
        std::fprintf(stderr, "imgbuild: warning: %s\n", freed.error().message.c_str());
        continue;
      }
      reclaimed += *freed;
    }
    int leased_mounts = 0;
    if (pf->all) {
      // Every cache-mount directory but those a running build holds (and
      // their lock files, which builds open to share a directory).
      fsys::path mounts = content.root() / "cache-mounts";
      std::error_code ec;
      std::vector<fsys::path> entries;
      for (const auto& entry : fsys::directory_iterator(mounts, ec)) {
        entries.push_back(entry.path());
      }
      for (const auto& p : entries) {
        std::string name = p.filename().string();
        std::string base = name.ends_with(".lock") ? name.substr(0, name.size() - 5) : name;
        if (leases.holds(image::LeaseKind::cache_mount, base)) {
          leased_mounts += name == base ? 1 : 0;
          continue;
        }
        reclaimed += fs::tree_bytes(p.string());
        fsys::remove_all(p, ec);
        if (ec) {
          throw CommandError{fmt::format("cannot remove {}: {}", p.string(), ec.message()), 1};
        }
      }
      fsys::remove(mounts, ec);  // gone entirely when nothing was kept
    }
    h.store->restore_reserve();
    std::printf("Removed %d cache records\n", result.records);
    if (result.leased > 0) {
      std::printf("Kept %d cache records: in use by a running build\n", result.leased);
    }
    if (leased_mounts > 0) {
      std::printf("Kept %d cache mounts: in use by a running build\n", leased_mounts);
    }
    std::printf("Total reclaimed space: %s\n", size3(static_cast<int64_t>(reclaimed)).c_str());
  });
}

}  // namespace imgbuild::cli
