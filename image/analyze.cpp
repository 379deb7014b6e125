#include "image/analyze.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/hash.hpp"

namespace imgbuild::image {

namespace {

constexpr size_t k_largest_per_layer = 5;

bool below(const std::string& path, const std::string& dir) {
  return dir.empty() || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

std::string shown(const std::string& path) { return "/" + path; }

}  // namespace

void LayerReplay::begin_layer(std::string created_by, std::string diff_id) {
  LayerAnalysis l;
  l.created_by = std::move(created_by);
  l.diff_id = std::move(diff_id);
  m_layers.push_back(std::move(l));
}

void LayerReplay::drop(const std::string& path, const Node& n, const std::string& reason) {
  if (n.size == 0) {
    return;
  }
  int layer = static_cast<int>(m_layers.size()) - 1;
  m_layers[static_cast<size_t>(n.layer)].wasted += n.size;
  m_wasted.push_back(WastedFile{shown(path), n.layer, n.size, reason, layer});
}

// Removes `path` (unless subtree_only) and everything below it that a layer
// lower than `below_layer` stored.
void LayerReplay::remove(const std::string& path, bool subtree_only, int below_layer, const std::string& reason) {
  auto it = path.empty() ? m_nodes.begin() : m_nodes.lower_bound(path);
  while (it != m_nodes.end()) {
    bool self = it->first == path;
    if (!self && !below(it->first, path)) {
      if (it->first > path && !path.empty() && it->first.compare(0, path.size(), path) != 0) {
        break;  // past every name with this prefix
      }
      ++it;
      continue;
    }
    if ((self && subtree_only) || it->second.layer >= below_layer) {
      ++it;
      continue;
    }
    drop(it->first, it->second, reason);
    it = m_nodes.erase(it);
  }
}

void LayerReplay::entry(const tar::Entry& e, const std::string& digest) {
  if (m_layers.empty()) {
    begin_layer("", "");
  }
  int layer = static_cast<int>(m_layers.size()) - 1;
  LayerAnalysis& current = m_layers.back();
  std::string path = fs::clean_path(e.path);
  std::string parent;
  std::string base = path;
  if (size_t slash = path.rfind('/'); slash != std::string::npos) {
    parent = path.substr(0, slash);
    base = path.substr(slash + 1);
  }
  if (base == tar::k_opaque_marker) {
    remove(parent, true, layer, "deleted");
    return;
  }
  if (base.starts_with(tar::k_whiteout_prefix)) {
    std::string target = (parent.empty() ? "" : parent + "/") + base.substr(tar::k_whiteout_prefix.size());
    remove(target, false, layer + 1, "deleted");
    return;
  }
  if (path.empty()) {
    return;  // the root directory itself
  }
  int64_t size = static_cast<int64_t>(tar::content_bytes(e));
  bool dir = e.type == tar::EntryType::dir;
  current.content_size += size;
  if (!dir) {
    ++current.files;
  }
  // An ancestor that is not a directory gives way to the directory this
  // entry implies.
  for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    auto a = m_nodes.find(path.substr(0, slash));
    if (a != m_nodes.end() && !a->second.dir) {
      drop(a->first, a->second, "overwritten");
      m_nodes.erase(a);
    }
  }
  if (auto old = m_nodes.find(path); old != m_nodes.end()) {
    Node prev = old->second;
    m_nodes.erase(old);
    if (prev.dir && !dir) {
      remove(path, true, layer + 1, "overwritten");
    }
    bool same = !prev.dir && !dir && !digest.empty() && prev.digest == digest;
    drop(path, prev, same ? "metadata only" : "overwritten");
  }
  m_nodes[path] = Node{layer, size, digest, dir};
  if (size > 0 && !dir) {
    AnalyzedFile f{shown(path), size, layer};
    current.largest.push_back(f);
    std::sort(current.largest.begin(), current.largest.end(),
              [](const AnalyzedFile& a, const AnalyzedFile& b) { return a.size != b.size ? a.size > b.size : a.path < b.path; });
    if (current.largest.size() > k_largest_per_layer) {
      current.largest.pop_back();
    }
    if (!digest.empty()) {
      m_by_digest[digest].push_back(f);
      m_digest_size[digest] = size;
    }
  }
}

ImageAnalysis LayerReplay::finish() {
  ImageAnalysis out;
  out.layers = m_layers;
  for (const auto& l : out.layers) {
    out.total += l.content_size;
    out.wasted += l.wasted;
  }
  for (const auto& [path, n] : m_nodes) {
    out.visible += n.size;
    if (n.size > 0) {
      out.final_files.push_back(AnalyzedFile{shown(path), n.size, n.layer});
    }
  }
  out.efficiency = out.total == 0 ? 1.0 : static_cast<double>(out.visible) / static_cast<double>(out.total);
  out.wasted_files = m_wasted;
  std::stable_sort(out.wasted_files.begin(), out.wasted_files.end(),
                   [](const WastedFile& a, const WastedFile& b) { return a.size > b.size; });
  for (const auto& [digest, copies] : m_by_digest) {
    std::vector<int> layers;
    for (const auto& c : copies) {
      layers.push_back(c.layer);
    }
    std::sort(layers.begin(), layers.end());
    if (std::unique(layers.begin(), layers.end()) - layers.begin() < 2) {
      continue;  // all in one layer
    }
    out.duplicates.push_back(DuplicateFiles{digest, m_digest_size[digest], copies});
  }
  std::stable_sort(out.duplicates.begin(), out.duplicates.end(),
                   [](const DuplicateFiles& a, const DuplicateFiles& b) { return a.extra_bytes() > b.extra_bytes(); });
  return out;
}

Result<ImageAnalysis> analyze_image(ImageStore& store, const ImageRecord& rec) {
  TRY(LoadedImage img, store.load(rec));
  // The history entries that made layers, in order.
  std::vector<std::string> created_by;
  for (const auto& h : img.config.history) {
    if (!h.empty_layer) {
      created_by.push_back(h.created_by);
    }
  }
  LayerReplay replay;
  std::vector<char> buf(1 << 16);
  for (size_t i = 0; i < img.manifest.layers.size(); ++i) {
    const std::string& digest = img.manifest.layers[i].digest;
    std::string diff_id = i < img.config.rootfs.diff_ids.size() ? img.config.rootfs.diff_ids[i] : "";
    replay.begin_layer(i < created_by.size() ? created_by[i] : "", diff_id);
    std::filesystem::path blob = store.content().blob_path(digest);
    UniqueFd fd(::open(blob.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      return fail(Errc::not_found, fmt::format("layer blob {} is missing", digest));
    }
    TRY(auto reader, tar::Reader::open_fd(fd.get(), "layer " + digest));
    reader->stop_hashing();
    while (true) {
      TRY(auto e, reader->next());
      if (!e) {
        break;
      }
      std::string content;
      if (e->type == tar::EntryType::file) {
        Sha256 h;
        while (true) {
          TRY(size_t n, reader->read_data(buf.data(), buf.size()));
          if (n == 0) {
            break;
          }
          h.update(buf.data(), n);
        }
        content = h.finish().str();
      }
      replay.entry(*e, content);
    }
  }
  return replay.finish();
}

}  // namespace imgbuild::image
