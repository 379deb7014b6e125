#pragma once
// Where an exported build cache lives: one OCI image manifest (see
// builder/cache_io.hpp for what it holds) reachable through a small
// transport, either an OCI layout directory (--cache-to type=local,dest=DIR)
// or a registry tag (type=registry,ref=REG/REPO:TAG).
//
// Readers verify what they return: a manifest matches the digest its index
// entry (or the registry) names, small blobs match their digest, and a
// streamed blob is verified by whoever stores it (image::BlobWriter::commit
// with the expected digest), so a caller never keeps an unverified byte.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "registry/client.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// Receives the bytes of a streamed blob.
using BlobChunkSink = std::function<Result<void>(const void* data, size_t size)>;

/// The transport of one exported cache.
class CacheRemote {
public:
  virtual ~CacheRemote() = default;
  /// Names the cache in messages ("cache dir \"/x\"", "cache registry 127.0.0.1:5000/c:latest").
  virtual const std::string& label() const = 0;
  /// The cache manifest's bytes, verified against their digest;
  /// Errc::not_found when there is no cache there yet.
  virtual Result<std::string> read_manifest() = 0;
  /// A small blob (at most `max` bytes) read whole and verified.
  virtual Result<std::string> read_blob(const std::string& digest, size_t max) = 0;
  /// Streams the blob `digest` (`size` bytes) to `sink`; the caller
  /// verifies the digest of what it received.
  virtual Result<void> fetch_blob(const std::string& digest, int64_t size, const BlobChunkSink& sink) = 0;
  /// Stores the blob `digest` (`size` bytes) read from the file `path`,
  /// unless the remote has it already; true when sent.
  virtual Result<bool> put_blob_file(const std::string& digest, int64_t size, const std::filesystem::path& path) = 0;
  /// Stores a small in-memory blob unless present; true when sent.
  virtual Result<bool> put_blob_bytes(const std::string& digest, const std::string& bytes) = 0;
  /// Publishes `manifest` (an OCI image manifest whose blobs are all
  /// stored) as the cache: the only entry of index.json, or the tag.
  virtual Result<void> put_manifest(const std::string& manifest) = 0;
};

/// An OCI layout directory. `tag` is the org.opencontainers.image.ref.name
/// of the index entry written and looked for ("latest" by default).
std::unique_ptr<CacheRemote> make_local_cache(const std::filesystem::path& dir, std::string tag = "latest");

/// How a registry cache connects.
struct RegistryCacheOptions {
  /// Speak plain HTTP and skip TLS verification (registry.insecure=true).
  bool insecure = false;
};

/// A registry tag ("REG/REPO:TAG"; the tag defaults to latest). Credentials
/// come from the docker config file, as for pull and push.
Result<std::unique_ptr<CacheRemote>> make_registry_cache(const std::string& ref,
                                                         const RegistryCacheOptions& options = {});

}  // namespace imgbuild::builder
