#include "image/metadata.hpp"
#include "image/sql_stmt.hpp"
#include "util/fault.hpp"

#include <sqlite3.h>

#include <ctime>
#include <utility>

#include <fmt/format.h>

namespace imgbuild::image {

namespace {

// Schema migrations, applied in order; index i upgrades version i to i+1.
const char* const k_migrations[] = {
    R"sql(
CREATE TABLE images (
  manifest_digest TEXT PRIMARY KEY,
  config_digest   TEXT NOT NULL,
  media_type      TEXT NOT NULL,
  created         TEXT NOT NULL,
  size            INTEGER NOT NULL,
  added_at        INTEGER NOT NULL
);
CREATE INDEX images_config ON images(config_digest);
CREATE TABLE names (
  name            TEXT PRIMARY KEY,
  manifest_digest TEXT NOT NULL REFERENCES images(manifest_digest)
);
CREATE INDEX names_manifest ON names(manifest_digest);
CREATE TABLE image_blobs (
  manifest_digest TEXT NOT NULL REFERENCES images(manifest_digest),
  blob_digest     TEXT NOT NULL,
  PRIMARY KEY (manifest_digest, blob_digest)
);
CREATE INDEX image_blobs_blob ON image_blobs(blob_digest);
CREATE TABLE layers (
  blob_digest TEXT PRIMARY KEY,
  diff_id     TEXT NOT NULL,
  media_type  TEXT NOT NULL,
  blob_size   INTEGER NOT NULL,
  diff_size   INTEGER NOT NULL
);
CREATE INDEX layers_diff_id ON layers(diff_id);
)sql",
    // 2: the build cache (cache/records.hpp documents the record format) and
    // the stat index of context files (cache/stat_index.hpp).
    R"sql(
CREATE TABLE cache_records (
  key         TEXT PRIMARY KEY,
  parent_key  TEXT NOT NULL,
  position    INTEGER NOT NULL,
  kind        TEXT NOT NULL,
  blob_digest TEXT NOT NULL,
  diff_id     TEXT NOT NULL,
  media_type  TEXT NOT NULL,
  blob_size   INTEGER NOT NULL,
  diff_size   INTEGER NOT NULL,
  config      TEXT NOT NULL,
  created_by  TEXT NOT NULL,
  inputs      TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  last_used   INTEGER NOT NULL
);
CREATE INDEX cache_records_parent ON cache_records(parent_key, position, created_at);
CREATE INDEX cache_records_blob ON cache_records(blob_digest);
CREATE TABLE stat_index (
  dev      INTEGER NOT NULL,
  ino      INTEGER NOT NULL,
  size     INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  ctime_ns INTEGER NOT NULL,
  digest   TEXT NOT NULL,
  PRIMARY KEY (dev, ino)
);
)sql",
    // 3: whether a stat-index file was seen without xattrs (NULL or -1
    // unknown, 0 none, 1 some), so a stat hit also skips listing its xattrs.
    R"sql(
ALTER TABLE stat_index ADD COLUMN xattrs INTEGER;
)sql",
    // 4: the step keys of recent builds of each Dockerfile and target
    // (cache/records.hpp, build traces), so a miss is explained against the
    // closest earlier build of the same Dockerfile.
    R"sql(
CREATE TABLE build_traces (
  identity    TEXT NOT NULL,
  finished_at INTEGER NOT NULL,
  trace       TEXT NOT NULL
);
CREATE INDEX build_traces_identity ON build_traces(identity, finished_at);
)sql",
    // 5: a layer's content size as Docker counts it (tar::content_bytes), of
    // image layers and of cache records' layers; NULL = not known yet (a
    // layer stored before: computed on first use).
    R"sql(
ALTER TABLE layers ADD COLUMN content_size INTEGER;
ALTER TABLE cache_records ADD COLUMN content_size INTEGER;
)sql",
    // 6: compressed forms of layers, made when an output or a push needed
    // them (image/layer_compression.hpp): (diff_id, "gzip-4") → blob.
    R"sql(
CREATE TABLE layer_variants (
  diff_id     TEXT NOT NULL,
  compression TEXT NOT NULL,
  blob_digest TEXT NOT NULL,
  PRIMARY KEY (diff_id, compression)
);
)sql",
    // 7: multi-platform images: an image index is an `images` row (its
    // config_digest is its own digest) and these rows name the platform
    // images the store holds for it; a child row keeps its image alive.
    R"sql(
CREATE TABLE index_children (
  index_digest    TEXT NOT NULL REFERENCES images(manifest_digest),
  position        INTEGER NOT NULL,
  manifest_digest TEXT NOT NULL REFERENCES images(manifest_digest),
  platform        TEXT NOT NULL,
  PRIMARY KEY (index_digest, position)
);
CREATE INDEX index_children_manifest ON index_children(manifest_digest);
)sql",
};
static_assert(std::size(k_migrations) == k_schema_version, "one migration per schema version");

using Stmt = SqlStmt;

ImageRecord read_image(Stmt& s) {
  ImageRecord r;
  r.manifest_digest = s.text(0);
  r.config_digest = s.text(1);
  r.media_type = s.text(2);
  r.created = s.text(3);
  r.size = s.integer(4);
  r.added_at = s.integer(5);
  return r;
}

// A layers row selected as (blob_digest, diff_id, media_type, blob_size,
// diff_size, COALESCE(content_size, -1)).
LayerRecord read_layer(Stmt& s) {
  return LayerRecord{s.text(0), s.text(1), s.text(2), s.integer(3), s.integer(4), s.integer(5)};
}

// Every remaining row of `s` as layer records.
Result<std::vector<LayerRecord>> read_layers(Stmt& s) {
  std::vector<LayerRecord> out;
  while (true) {
    TRY(bool row, s.step());
    if (!row) {
      return out;
    }
    out.push_back(read_layer(s));
  }
}

constexpr const char* k_image_columns =
    "SELECT manifest_digest, config_digest, media_type, created, size, added_at FROM images";

}  // namespace

Result<std::unique_ptr<MetaDb>> MetaDb::open(const std::filesystem::path& path) {
  TRY(sqlite3* raw, sql_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  std::unique_ptr<MetaDb> db(new MetaDb(raw));
  sqlite3_extended_result_codes(raw, 1);
  TRY_VOID(db->exec("PRAGMA journal_mode=WAL"));
  // NORMAL in WAL mode: a commit is not fsync'd (a checkpoint is). A
  // killed process loses nothing; a power loss can lose the last commits,
  // never the database's consistency, and a lost commit only leaves blobs
  // (fsync'd before it) that nothing names, which prune removes.
  TRY_VOID(db->exec("PRAGMA synchronous=NORMAL"));
  TRY_VOID(db->exec("PRAGMA foreign_keys=ON"));
  TRY_VOID(db->migrate());
  return db;
}

MetaDb::~MetaDb() { sqlite3_close(m_db); }

Result<void> MetaDb::exec(const char* sql) { return sql_exec(m_db, sql); }

Result<void> MetaDb::migrate() {
  TRY(Transaction tx, begin());
  TRY_VOID(exec("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"));
  TRY(int version, schema_version());
  if (version > k_schema_version) {
    return fail(Errc::unsupported, fmt::format("meta.db has schema version {}, newer than this imgbuild ({})",
                                               version, k_schema_version));
  }
  for (int v = version; v < k_schema_version; ++v) {
    TRY_VOID(exec(k_migrations[v]));
    Stmt s(m_db, "INSERT INTO migrations(version, applied_at) VALUES (?, ?)");
    s.bind(1, int64_t{v + 1}).bind(2, static_cast<int64_t>(std::time(nullptr)));
    TRY_VOID(s.run());
  }
  return tx.commit();
}

Result<int> MetaDb::schema_version() {
  Stmt s(m_db, "SELECT COALESCE(MAX(version), 0) FROM migrations");
  TRY(bool row, s.step());
  return row ? static_cast<int>(s.integer(0)) : 0;
}

Result<MetaDb::Transaction> MetaDb::begin() {
  TRY_VOID(exec("BEGIN IMMEDIATE"));
  return Transaction(*this);
}

MetaDb::Transaction::~Transaction() {
  if (m_open) {
    (void)m_db->exec("ROLLBACK");
  }
}

Result<void> MetaDb::Transaction::commit() {
  if (!m_open) {
    return fail(Errc::internal, "commit of a closed transaction");
  }
  m_open = false;
  fault::point("db-commit");
  Result<void> r = m_db->exec("COMMIT");
  if (!r) {
    (void)m_db->exec("ROLLBACK");
  }
  return r;
}

Result<void> MetaDb::put_image(const ImageRecord& rec, const std::set<std::string>& blobs) {
  {
    Stmt s(m_db,
           "INSERT INTO images(manifest_digest, config_digest, media_type, created, size, added_at) "
           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(manifest_digest) DO UPDATE SET "
           "config_digest=excluded.config_digest, media_type=excluded.media_type, "
           "created=excluded.created, size=excluded.size");
    s.bind(1, rec.manifest_digest).bind(2, rec.config_digest).bind(3, rec.media_type).bind(4, rec.created);
    s.bind(5, rec.size).bind(6, rec.added_at);
    TRY_VOID(s.run());
  }
  {
    Stmt s(m_db, "DELETE FROM image_blobs WHERE manifest_digest = ?");
    s.bind(1, rec.manifest_digest);
    TRY_VOID(s.run());
  }
  for (const auto& b : blobs) {
    Stmt s(m_db, "INSERT OR IGNORE INTO image_blobs(manifest_digest, blob_digest) VALUES (?, ?)");
    s.bind(1, rec.manifest_digest).bind(2, b);
    TRY_VOID(s.run());
  }
  return ok();
}

Result<void> MetaDb::put_layer(const LayerRecord& rec) {
  // A content size not known now keeps the one known before.
  Stmt s(m_db,
         "INSERT INTO layers(blob_digest, diff_id, media_type, blob_size, diff_size, content_size) "
         "VALUES (?, ?, ?, ?, ?, NULLIF(?, -1)) ON CONFLICT(blob_digest) DO UPDATE SET diff_id=excluded.diff_id, "
         "media_type=excluded.media_type, blob_size=excluded.blob_size, diff_size=excluded.diff_size, "
         "content_size=COALESCE(excluded.content_size, layers.content_size)");
  s.bind(1, rec.blob_digest).bind(2, rec.diff_id).bind(3, rec.media_type).bind(4, rec.blob_size);
  s.bind(5, rec.diff_size).bind(6, rec.content_size);
  return s.run();
}

Result<void> MetaDb::set_content_size(const std::string& blob_digest, int64_t size) {
  Stmt s(m_db, "UPDATE layers SET content_size = ? WHERE blob_digest = ?");
  s.bind(1, size).bind(2, blob_digest);
  return s.run();
}

Result<void> MetaDb::put_layer_variant(const std::string& diff_id, const std::string& compression,
                                       const std::string& blob_digest) {
  Stmt s(m_db, "INSERT OR REPLACE INTO layer_variants(diff_id, compression, blob_digest) VALUES (?, ?, ?)");
  s.bind(1, diff_id).bind(2, compression).bind(3, blob_digest);
  return s.run();
}

Result<std::optional<std::string>> MetaDb::layer_variant(const std::string& diff_id, const std::string& compression) {
  Stmt s(m_db, "SELECT blob_digest FROM layer_variants WHERE diff_id = ? AND compression = ?");
  s.bind(1, diff_id).bind(2, compression);
  TRY(bool row, s.step());
  if (!row) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(s.text(0));
}

Result<void> MetaDb::set_name(const std::string& name, const std::string& manifest_digest) {
  Stmt s(m_db, "INSERT OR REPLACE INTO names(name, manifest_digest) VALUES (?, ?)");
  s.bind(1, name).bind(2, manifest_digest);
  return s.run();
}

Result<bool> MetaDb::remove_name(const std::string& name) {
  Stmt s(m_db, "DELETE FROM names WHERE name = ?");
  s.bind(1, name);
  TRY_VOID(s.run());
  return sqlite3_changes(m_db) > 0;
}

Result<std::vector<NameRecord>> MetaDb::names() {
  Stmt s(m_db, "SELECT name, manifest_digest FROM names ORDER BY name");
  std::vector<NameRecord> out;
  TRY_VOID(s.each_row([&] {
    out.push_back({s.text(0), s.text(1)});
  }));
  return out;
}

Result<std::vector<std::string>> MetaDb::names_of(const std::string& manifest_digest) {
  Stmt s(m_db, "SELECT name FROM names WHERE manifest_digest = ? ORDER BY name");
  s.bind(1, manifest_digest);
  return s.first_column_texts();
}

Result<std::optional<std::string>> MetaDb::lookup_name(const std::string& name) {
  Stmt s(m_db, "SELECT manifest_digest FROM names WHERE name = ?");
  s.bind(1, name);
  TRY(bool row, s.step());
  if (!row) {
    return std::optional<std::string>();
  }
  return std::optional<std::string>(s.text(0));
}

Result<std::vector<ImageRecord>> MetaDb::images() {
  Stmt s(m_db, fmt::format("{} ORDER BY created DESC, added_at DESC, manifest_digest", k_image_columns).c_str());
  std::vector<ImageRecord> out;
  TRY_VOID(s.each_row([&] {
    out.push_back(read_image(s));
  }));
  return out;
}

Result<std::optional<ImageRecord>> MetaDb::image(const std::string& manifest_digest) {
  Stmt s(m_db, fmt::format("{} WHERE manifest_digest = ?", k_image_columns).c_str());
  s.bind(1, manifest_digest);
  TRY(bool row, s.step());
  if (!row) {
    return std::optional<ImageRecord>();
  }
  return std::optional<ImageRecord>(read_image(s));
}

Result<void> MetaDb::put_index_children(const std::string& index_digest,
                                        const std::vector<IndexChildRecord>& children) {
  {
    Stmt s(m_db, "DELETE FROM index_children WHERE index_digest = ?");
    s.bind(1, index_digest);
    TRY_VOID(s.run());
  }
  for (const auto& c : children) {
    Stmt s(m_db, "INSERT INTO index_children(index_digest, position, manifest_digest, platform) VALUES (?, ?, ?, ?)");
    s.bind(1, index_digest).bind(2, int64_t{c.position}).bind(3, c.manifest_digest).bind(4, c.platform);
    TRY_VOID(s.run());
  }
  return ok();
}

Result<std::vector<IndexChildRecord>> MetaDb::index_children(const std::string& index_digest) {
  Stmt s(m_db, "SELECT position, manifest_digest, platform FROM index_children WHERE index_digest = ? ORDER BY position");
  s.bind(1, index_digest);
  std::vector<IndexChildRecord> out;
  while (true) {
    TRY(bool row, s.step());
    if (!row) {
      return out;
    }
    out.push_back(IndexChildRecord{static_cast<int>(s.integer(0)), s.text(1), s.text(2)});
  }
}

Result<std::vector<std::string>> MetaDb::indexes_of(const std::string& manifest_digest) {
  Stmt s(m_db, "SELECT DISTINCT index_digest FROM index_children WHERE manifest_digest = ? ORDER BY index_digest");
  s.bind(1, manifest_digest);
  return s.first_column_texts();
}

Result<void> MetaDb::delete_image(const std::string& manifest_digest) {
  for (const char* sql : {"DELETE FROM index_children WHERE index_digest = ?",
                          "DELETE FROM names WHERE manifest_digest = ?",
                          "DELETE FROM image_blobs WHERE manifest_digest = ?",
                          "DELETE FROM images WHERE manifest_digest = ?"}) {
    Stmt s(m_db, sql);
    s.bind(1, manifest_digest);
    TRY_VOID(s.run());
  }
  return ok();
}

Result<std::set<std::string>> MetaDb::referenced_blobs() {
  Stmt s(m_db,
         "SELECT blob_digest FROM image_blobs UNION "
         "SELECT blob_digest FROM cache_records WHERE blob_digest != ''");
  std::set<std::string> out;
  TRY_VOID(s.each_row([&] {
    out.insert(s.text(0));
  }));
  return out;
}

Result<std::optional<LayerRecord>> MetaDb::layer(const std::string& blob_digest) {
  Stmt s(m_db, "SELECT blob_digest, diff_id, media_type, blob_size, diff_size, COALESCE(content_size, -1) "
               "FROM layers WHERE blob_digest = ?");
  s.bind(1, blob_digest);
  TRY(bool row, s.step());
  if (!row) {
    return std::optional<LayerRecord>();
  }
  return std::optional<LayerRecord>(read_layer(s));
}

Result<void> MetaDb::delete_unreferenced_layers() {
  return exec(
      "DELETE FROM layers WHERE blob_digest NOT IN (SELECT blob_digest FROM image_blobs) "
      "AND blob_digest NOT IN (SELECT blob_digest FROM cache_records)");
}

Result<std::vector<LayerRecord>> MetaDb::unreferenced_layers() {
  Stmt s(m_db,
         "SELECT blob_digest, diff_id, media_type, blob_size, diff_size, COALESCE(content_size, -1) FROM layers "
         "WHERE blob_digest NOT IN (SELECT blob_digest FROM image_blobs) "
         "AND blob_digest NOT IN (SELECT blob_digest FROM cache_records) ORDER BY blob_digest");
  return read_layers(s);
}

Result<std::vector<std::string>> MetaDb::blobs_of(const std::string& manifest_digest) {
  Stmt s(m_db, "SELECT blob_digest FROM image_blobs WHERE manifest_digest = ? ORDER BY blob_digest");
  s.bind(1, manifest_digest);
  return s.first_column_texts();
}

Result<std::vector<LayerRecord>> MetaDb::layers() {
  Stmt s(m_db, "SELECT blob_digest, diff_id, media_type, blob_size, diff_size, COALESCE(content_size, -1) "
               "FROM layers ORDER BY blob_digest");
  return read_layers(s);
}

Result<std::vector<std::string>> MetaDb::integrity_problems() {
  Stmt s(m_db, "PRAGMA integrity_check");
  std::vector<std::string> out;
  TRY_VOID(s.each_row([&] {
    if (s.text(0) != "ok") {
      out.push_back(s.text(0));
    }
  }));
  return out;
}

Result<bool> MetaDb::diff_id_used(const std::string& diff_id) {
  Stmt s(m_db,
         "SELECT (SELECT COUNT(*) FROM layers WHERE diff_id = ?1) + "
         "(SELECT COUNT(*) FROM cache_records WHERE diff_id = ?1)");
  s.bind(1, diff_id);
  TRY(bool row, s.step());
  return row && s.integer(0) > 0;
}

}  // namespace imgbuild::image
