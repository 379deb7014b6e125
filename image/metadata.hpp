#pragma once
// Store metadata in SQLite (<root>/meta.db): image names, image records,
// layer records, and which blobs each image holds on to.
//
// The database runs in WAL mode with a busy timeout, so several imgbuild
// processes can share one store: readers never block, writers queue. Every
// multi-step change happens inside one IMMEDIATE transaction (Transaction),
// which takes the write lock up front so that two writers never deadlock on a
// lock upgrade. The schema carries a version in the `migrations` table;
// opening a store applies the missing migrations in order.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "util/result.hpp"

struct sqlite3;

namespace imgbuild::image {

/// The metadata database's file name in a store root (DESIGN.md's layout).
inline constexpr const char k_meta_db_file[] = "meta.db";

/// `<root>/meta.db`: the one place the name is joined to a store root.
inline std::filesystem::path meta_db_path(const std::filesystem::path& root) { return root / k_meta_db_file; }

/// One stored image, keyed by its manifest digest.
struct ImageRecord {
  std::string manifest_digest;
  std::string config_digest;  ///< the docker image ID
  std::string media_type;     ///< of the manifest
  std::string created;        ///< config "created", RFC 3339 or empty
  int64_t size = 0;           ///< sum of uncompressed layer sizes
  int64_t added_at = 0;       ///< unix seconds when first stored

  /// True when the record is an image index (OCI index or Docker manifest
  /// list): a multi-platform image. Its config_digest is its own digest (the
  /// image ID, as docker's containerd store shows it) and its platforms are
  /// its index_children rows.
  bool is_index() const {
    return media_type == "application/vnd.oci.image.index.v1+json" ||
           media_type == "application/vnd.docker.distribution.manifest.list.v2+json";
  }
};

/// One platform image of a stored index: the child manifest (an image
/// record of its own) and its place in the index document.
struct IndexChildRecord {
  int position = 0;            ///< index into the index's "manifests"
  std::string manifest_digest;
  std::string platform;        ///< "os/arch[/variant]" as the index entry says
};

/// A layer blob and its uncompressed identity.
struct LayerRecord {
  std::string blob_digest;
  std::string diff_id;
  std::string media_type;
  int64_t blob_size = 0;
  int64_t diff_size = 0;
  /// The content size as Docker counts it (tar::content_bytes summed): what
  /// images, history and inspect show; -1 = not known yet.
  int64_t content_size = -1;
};

/// A name pointing at an image.
struct NameRecord {
  std::string name;  ///< full normalised reference, "docker.io/library/busybox:latest"
  std::string manifest_digest;
};

/// The current schema version written by this build.
inline constexpr int k_schema_version = 7;

/// A connection to meta.db.
class MetaDb {
public:
  /// Opens or creates the database and applies pending migrations.
  static Result<std::unique_ptr<MetaDb>> open(const std::filesystem::path& path);
  ~MetaDb();
  MetaDb(const MetaDb&) = delete;
  MetaDb& operator=(const MetaDb&) = delete;

  /// Schema version recorded in the database.
  Result<int> schema_version();

  /// Inserts or replaces an image record and the set of blobs it references.
  Result<void> put_image(const ImageRecord& rec, const std::set<std::string>& blobs);
  /// Records a layer (idempotent).
  Result<void> put_layer(const LayerRecord& rec);
  /// Records that `blob_digest` is the layer `diff_id` compressed as
  /// `compression` (LayerCompression::key(), e.g. "gzip-4").
  Result<void> put_layer_variant(const std::string& diff_id, const std::string& compression,
                                 const std::string& blob_digest);
  /// The blob recorded for (diff_id, compression), if any; the blob itself
  /// may have been pruned since.
  Result<std::optional<std::string>> layer_variant(const std::string& diff_id, const std::string& compression);
  /// Sets the content size of a stored layer record.
  Result<void> set_content_size(const std::string& blob_digest, int64_t size);
  /// Points `name` at an image, replacing what it pointed at.
  Result<void> set_name(const std::string& name, const std::string& manifest_digest);
  /// Removes a name; false when it did not exist.
  Result<bool> remove_name(const std::string& name);
  /// Every name, sorted.
  Result<std::vector<NameRecord>> names();
  /// Names of one image, sorted.
  Result<std::vector<std::string>> names_of(const std::string& manifest_digest);
  /// The image a name points at.
  Result<std::optional<std::string>> lookup_name(const std::string& name);
  /// Records the platform images of the index `index_digest` (replacing
  /// what was recorded): only the children the store holds.
  Result<void> put_index_children(const std::string& index_digest, const std::vector<IndexChildRecord>& children);
  /// The recorded children of an index, by position.
  Result<std::vector<IndexChildRecord>> index_children(const std::string& index_digest);
  /// The indexes that hold the image `manifest_digest` as a child, sorted.
  Result<std::vector<std::string>> indexes_of(const std::string& manifest_digest);
  /// Every image, newest first.
  Result<std::vector<ImageRecord>> images();
  /// One image record.
  Result<std::optional<ImageRecord>> image(const std::string& manifest_digest);
  /// Deletes an image record, its blob references, its names and (for an
  /// index) its children rows; the child images stay.
  Result<void> delete_image(const std::string& manifest_digest);
  /// Blobs referenced by any image or cache record.
  Result<std::set<std::string>> referenced_blobs();
  /// The layer record of a blob.
  Result<std::optional<LayerRecord>> layer(const std::string& blob_digest);
  /// Deletes layer records whose blob no image and no cache record references.
  Result<void> delete_unreferenced_layers();
  /// The layer records delete_unreferenced_layers() would delete.
  Result<std::vector<LayerRecord>> unreferenced_layers();
  /// True when a layer record or a cache record has this diff_id.
  Result<bool> diff_id_used(const std::string& diff_id);
  /// The blobs one image holds on to, sorted.
  Result<std::vector<std::string>> blobs_of(const std::string& manifest_digest);
  /// Every layer record.
  Result<std::vector<LayerRecord>> layers();
  /// SQLite's own consistency check: empty when the database is sound,
  /// else its complaints.
  Result<std::vector<std::string>> integrity_problems();

  /// Runs statements in an IMMEDIATE transaction; rolled back unless committed.
  class Transaction {
  public:
    /// Adopts a transaction already begun on `db` (see MetaDb::begin).
    explicit Transaction(MetaDb& db) : m_db(&db) {}
    Transaction(Transaction&& o) noexcept : m_db(o.m_db), m_open(o.m_open) { o.m_open = false; }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    ~Transaction();
    /// Commits; the transaction is closed afterwards either way.
    Result<void> commit();

  private:
    friend class MetaDb;
    MetaDb* m_db;
    bool m_open = true;
  };
  /// Starts an IMMEDIATE transaction (waits for other writers).
  Result<Transaction> begin();

private:
  explicit MetaDb(sqlite3* db) : m_db(db) {}
  Result<void> exec(const char* sql);
  Result<void> migrate();
  sqlite3* m_db;
};

}  // namespace imgbuild::image
