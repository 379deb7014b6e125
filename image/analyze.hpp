#pragma once
// The layer analysis behind `history --analyze` and `build --report`: what
// each layer of an image holds and what of it the final filesystem still
// shows.
//
// Layers are replayed lowest first into one path map (path → the entry that
// holds it now, with its layer, content bytes and content digest). An entry
// that takes a path replaces what was there; a whiteout removes its path and
// everything below, an opaque marker everything below its directory from
// lower layers, and a non-directory that takes a directory's path removes
// the directory's subtree. A removed or replaced entry's bytes are wasted in
// the layer that stored them: the image carries them, the final filesystem
// does not show them. Each carries the reason: overwritten, deleted, or
// stored again with the same content (only its mode, owner or times
// changed: "metadata only").
//
// Bytes are content bytes as Docker counts them (tar::content_bytes), so a
// layer's total is its `history` size; the efficiency is the bytes the final
// filesystem shows over all the bytes the layers store (1 when there are
// none). Duplicates are regular files with the same content stored in more
// than one layer.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "image/store.hpp"
#include "util/result.hpp"
#include "util/tar.hpp"

namespace imgbuild::image {

/// A file of a layer, for the largest-file lists and the treemap.
struct AnalyzedFile {
  std::string path;  ///< "/usr/bin/x"
  int64_t size = 0;
  int layer = 0;
};

/// Bytes a layer stores that the final filesystem does not show.
struct WastedFile {
  std::string path;
  int layer = 0;  ///< the layer that stored the bytes
  int64_t size = 0;
  /// "overwritten", "deleted" or "metadata only"
  std::string reason;
  int by_layer = 0;  ///< the layer that overwrote or deleted it
};

/// Regular files with the same content in more than one layer.
struct DuplicateFiles {
  std::string digest;
  int64_t size = 0;  ///< of one copy
  std::vector<AnalyzedFile> copies;
  /// size × (copies − 1)
  int64_t extra_bytes() const { return size * static_cast<int64_t>(copies.size() - 1); }
};

/// One layer.
struct LayerAnalysis {
  std::string created_by;  ///< its history entry ("" when the image has none)
  std::string diff_id;
  int64_t content_size = 0;  ///< content bytes stored
  int64_t files = 0;         ///< entries that are not directories or whiteouts
  int64_t wasted = 0;        ///< of content_size, bytes the final filesystem does not show
  std::vector<AnalyzedFile> largest;  ///< its largest files, biggest first (at most 5)
};

/// A whole image.
struct ImageAnalysis {
  std::vector<LayerAnalysis> layers;
  int64_t total = 0;    ///< all layers' content bytes
  int64_t visible = 0;  ///< what the final filesystem shows
  int64_t wasted = 0;   ///< total − visible
  double efficiency = 1;
  /// The wasted entries, biggest first.
  std::vector<WastedFile> wasted_files;
  /// Duplicate sets, most extra bytes first.
  std::vector<DuplicateFiles> duplicates;
  /// The final filesystem's files with content, by path.
  std::vector<AnalyzedFile> final_files;
};

/// Replays layer tars, lowest first (see the file comment).
class LayerReplay {
public:
  /// Starts a layer whose history entry is `created_by`.
  void begin_layer(std::string created_by, std::string diff_id);
  /// One entry of the current layer, with its content digest ("" unless a
  /// regular file).
  void entry(const tar::Entry& e, const std::string& digest);
  /// The analysis of the layers replayed so far.
  ImageAnalysis finish();

private:
  struct Node {
    int layer = 0;
    int64_t size = 0;
    std::string digest;
    bool dir = false;
  };
  void remove(const std::string& path, bool subtree_only, int below_layer, const std::string& reason);
  void drop(const std::string& path, const Node& n, const std::string& reason);

  std::map<std::string, Node> m_nodes;
  std::vector<LayerAnalysis> m_layers;
  std::vector<WastedFile> m_wasted;
  std::map<std::string, std::vector<AnalyzedFile>> m_by_digest;
  std::map<std::string, int64_t> m_digest_size;
};

/// Analyses the stored image `rec` (reads every layer blob once).
Result<ImageAnalysis> analyze_image(ImageStore& store, const ImageRecord& rec);

}  // namespace imgbuild::image
