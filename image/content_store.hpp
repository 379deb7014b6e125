#pragma once
// The content store: blobs addressed by sha256 under <root>/blobs/sha256/<hex>.
//
// A blob is never visible under its name until it is complete and verified:
// writers stream into a file under <root>/tmp/, the digest is computed on the
// fly, and commit() checks it against the expected digest, fsyncs, and
// renames. Writes go through a Staging area (a private directory under tmp/)
// so that a multi-blob operation (load, import) can be abandoned without
// leaving anything behind, and published at the end in one step. Identical
// blobs are stored once: publishing a blob that exists drops the new copy.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "util/hash.hpp"
#include "util/result.hpp"

namespace imgbuild::image {

/// Resolves the store root: `flag` (--root) if set, else $IMGBUILD_ROOT, else
/// /var/lib/imgbuild for root and $XDG_DATA_HOME/imgbuild (default
/// ~/.local/share/imgbuild) for other users. Always absolute: a relative --root or $IMGBUILD_ROOT is taken from the
/// current directory.
std::filesystem::path default_store_root(const std::string& flag);

/// Read access and layout of blobs/ and tmp/ below a store root.
class ContentStore {
public:
  /// Opens (creating if needed) the store's blobs/sha256 and tmp directories.
  static Result<ContentStore> open(const std::filesystem::path& root);

  /// The store root.
  const std::filesystem::path& root() const { return m_root; }
  /// Where a blob lives (whether or not it exists). `digest` must be valid.
  std::filesystem::path blob_path(std::string_view digest) const;
  /// True when the blob is present.
  bool has(std::string_view digest) const;
  /// Size of a present blob.
  Result<uint64_t> size(std::string_view digest) const;
  /// Reads a small blob (a JSON document) whole; refuses blobs above `max`.
  Result<std::string> read_small(std::string_view digest, size_t max) const;
  /// Digests of every blob present, sorted.
  Result<std::vector<std::string>> list() const;
  /// Deletes a blob; missing blobs are not an error. Returns bytes freed.
  Result<uint64_t> remove(std::string_view digest) const;

private:
  explicit ContentStore(std::filesystem::path root) : m_root(std::move(root)) {}
  std::filesystem::path m_root;
};

class Staging;

/// Streams one blob into a Staging area. Abandoned writers delete their file.
class BlobWriter {
public:
  BlobWriter(BlobWriter&&) noexcept;
  BlobWriter& operator=(BlobWriter&&) noexcept;
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;
  ~BlobWriter();

  /// Appends bytes.
  Result<void> write(const void* data, size_t size);
  Result<void> write(std::string_view s) { return write(s.data(), s.size()); }
  /// Bytes written so far.
  uint64_t size() const { return m_size; }
  /// Finishes hashing and returns the digest of every byte written (a
  /// downloader compares it with the digest it expects instead of hashing
  /// the same bytes a second time). Further writes fail; commit() checks
  /// this same digest.
  Result<Sha256Digest> digest();
  /// fsyncs the bytes written so far, so that commit() need not: callers that
  /// commit under a lock sync first, outside it. Further writes fail.
  Result<void> sync();
  /// Finishes the blob: when `expected` is given the content must hash to it
  /// (Errc::corrupt naming both digests otherwise). The blob is fsync'd and
  /// moved into the staging area. Returns the digest.
  Result<std::string> commit(std::optional<std::string_view> expected = std::nullopt);

private:
  friend class Staging;
  BlobWriter(Staging* staging, int fd, std::filesystem::path tmp_path, bool discard);
  void abort();
  Staging* m_staging = nullptr;
  int m_fd = -1;
  std::filesystem::path m_tmp_path;
  bool m_discard = false;  // the blob is already stored: hash only
  Sha256 m_hash;
  std::optional<Sha256Digest> m_digest;  // set once hashing is finished
  bool m_synced = false;                 // sync() ran: commit skips its fsync
  uint64_t m_size = 0;
};

/// A private directory under tmp/ collecting verified blobs until publish().
/// Destroying an unpublished Staging removes everything it holds.
class Staging {
public:
  /// Creates tmp/stage-<unique>/ in the store.
  static Result<std::unique_ptr<Staging>> create(const ContentStore& store);
  ~Staging();
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  /// A writer for one blob. When `expected` names a blob that the store
  /// already holds, the writer only hashes (nothing is written twice).
  Result<BlobWriter> writer(std::optional<std::string_view> expected = std::nullopt);
  /// Stores a small in-memory blob and returns its digest.
  Result<std::string> put(std::string_view bytes);
  /// True when the blob is staged or already in the store.
  bool has(std::string_view digest) const;
  /// Path to read a staged-or-stored blob from.
  std::filesystem::path path(std::string_view digest) const;
  /// Size of a staged-or-stored blob.
  Result<uint64_t> size(std::string_view digest) const;
  /// Reads a small staged-or-stored blob.
  Result<std::string> read_small(std::string_view digest, size_t max) const;
  /// Moves the staged blobs named in `wanted` into blobs/sha256 (dropping
  /// those already there; staged blobs nobody wants are discarded) and
  /// fsyncs the directory. Returns the digests newly added, which rollback()
  /// can remove if the metadata commit fails.
  Result<std::vector<std::string>> publish(const std::set<std::string>& wanted);
  /// Moves one staged blob into blobs/sha256 now (the caller holds the
  /// database write lock and records a reference in the same transaction).
  /// A blob the store already holds is dropped from staging. True when the
  /// blob was newly added; Errc::not_found when it is neither staged nor stored.
  Result<bool> publish_one(std::string_view digest);
  /// Removes blobs that publish() added.
  void rollback(const std::vector<std::string>& added);
  /// The store this stages into.
  const ContentStore& store() const { return m_store; }

private:
  friend class BlobWriter;
  Staging(const ContentStore& store, std::filesystem::path dir) : m_store(store), m_dir(std::move(dir)) {}
  ContentStore m_store;
  std::filesystem::path m_dir;
  std::map<std::string, uint64_t> m_staged;  // digest → size (staged files)
  uint64_t m_counter = 0;
};

}  // namespace imgbuild::image
