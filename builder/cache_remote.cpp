#include "builder/cache_remote.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "builder/oci_layout.hpp"
#include "image/archive.hpp"
#include "image/reference.hpp"
#include "image/types.hpp"
#include "registry/reference.hpp"
#include "util/fd.hpp"
#include "util/hash.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

namespace {

constexpr std::string_view k_ref_name = "org.opencontainers.image.ref.name";
constexpr size_t k_max_manifest = size_t{4} << 20;

// ---- an OCI layout directory --------------------------------------------------

class LocalCache final : public CacheRemote {
public:
  LocalCache(fsys::path dir, std::string tag)
      : m_dir(std::move(dir)),
        m_tag(std::move(tag)),
        m_label(fmt::format("cache dir {}", str::go_quote(m_dir.string()))),
        m_layout(m_dir.string(), m_label) {}

  const std::string& label() const override { return m_label; }

  Result<std::string> read_manifest() override {
    std::error_code ec;
    if (!fsys::exists(m_dir / "index.json", ec)) {
      return fail(Errc::not_found, fmt::format("{}: no index.json", m_label));
    }
    TRY(image::Index index, m_layout.read_index());
    const image::Descriptor* chosen = nullptr;
    for (const auto& m : index.manifests) {
      auto it = m.annotations.find(std::string(k_ref_name));
      if (it != m.annotations.end() && it->second == m_tag) {
        chosen = &m;
        break;
      }
    }
    if (chosen == nullptr && index.manifests.size() == 1) {
      chosen = &index.manifests.front();
    }
    if (chosen == nullptr) {
      return fail(Errc::not_found, fmt::format("{}: index.json has no entry named {}", m_label, str::go_quote(m_tag)));
    }
    if (chosen->media_type != image::media::oci_manifest) {
      return fail(Errc::invalid_argument, fmt::format("{}: index.json entry {} is a {}, not an OCI image manifest",
                                                      m_label, chosen->digest, str::go_quote(chosen->media_type)));
    }
    return read_blob(chosen->digest, k_max_manifest);
  }

  Result<std::string> read_blob(const std::string& digest, size_t max) override {
    TRY(std::string bytes, m_layout.read_blob(digest));
    if (bytes.size() > max) {
      return fail(Errc::invalid_argument, fmt::format("{}: blob {} is larger than {} bytes", m_label, digest, max));
    }
    return bytes;
  }

  Result<void> fetch_blob(const std::string& digest, int64_t size, const BlobChunkSink& sink) override {
    if (!OciLayoutDir::valid_digest(digest)) {
      return fail(Errc::invalid_argument, fmt::format("{}: invalid digest {}", m_label, str::go_quote(digest)));
    }
    fsys::path p = m_layout.blob_path(digest);
    UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
      return fail(Errc::not_found, fmt::format("{}: blob {} is missing: {}", m_label, digest, std::strerror(errno)));
    }
    int64_t total = 0;
    TRY(uint64_t read, io::read_chunks(fd.get(), fmt::format("{}: blob {}", m_label, digest),
                                       [&](const void* data, size_t n) -> Result<void> {
                                         total += static_cast<int64_t>(n);
                                         if (size >= 0 && total > size) {
                                           return fail(Errc::corrupt, fmt::format("{}: blob {} is larger than its "
                                                                                  "{} bytes",
                                                                                  m_label, digest, size));
                                         }
                                         return sink(data, n);
                                       }));
    (void)read;
    return ok();
  }

  Result<bool> put_blob_file(const std::string& digest, int64_t size, const fsys::path& path) override {
    TRY_VOID(ensure_dir());
    return image::put_layout_blob(path, digest, static_cast<uint64_t>(size), m_dir);
  }

  Result<bool> put_blob_bytes(const std::string& digest, const std::string& bytes) override {
    TRY_VOID(ensure_dir());
    fsys::path dest = m_layout.blob_path(digest);
    std::error_code ec;
    if (fsys::is_regular_file(fsys::symlink_status(dest, ec)) && fsys::file_size(dest, ec) == bytes.size()) {
      return false;
    }
    fsys::path tmp = dest;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!out) {
        return fail(Errc::io, fmt::format("{}: cannot write {}", m_label, tmp.string()));
      }
    }
    fsys::rename(tmp, dest, ec);
    if (ec) {
      return fail(Errc::io, fmt::format("{}: cannot rename {}: {}", m_label, tmp.string(), ec.message()));
    }
    return true;
  }

  Result<void> put_manifest(const std::string& manifest) override {
    std::string digest = sha256(manifest).str();
    TRY(bool written, put_blob_bytes(digest, manifest));
    (void)written;
    // Entries of other tags stay; an unreadable index.json is replaced.
    image::Index index;
    index.media_type = std::string(image::media::oci_index);
    std::error_code ec;
    if (fsys::exists(m_dir / "index.json", ec)) {
      auto old = m_layout.read_index();
      if (old) {
        for (auto& m : old->manifests) {
          auto it = m.annotations.find(std::string(k_ref_name));
          if (it == m.annotations.end() || it->second != m_tag) {
            index.manifests.push_back(std::move(m));
          }
        }
      }
    }
    image::Descriptor d;
    d.media_type = std::string(image::media::oci_manifest);
    d.digest = digest;
    d.size = static_cast<int64_t>(manifest.size());
    d.annotations[std::string(k_ref_name)] = m_tag;
    index.manifests.push_back(std::move(d));
    return image::write_layout_index(m_dir, image::serialize(index));
  }

private:
  Result<void> ensure_dir() {
    std::error_code ec;
    fsys::create_directories(m_dir / "blobs" / "sha256", ec);
    if (ec) {
      return fail(Errc::io, fmt::format("{}: cannot create it: {}", m_label, ec.message()));
    }
    return ok();
  }

  fsys::path m_dir;
  std::string m_tag;
  std::string m_label;
  OciLayoutDir m_layout;
};

// ---- a registry tag -----------------------------------------------------------

class RegistryCache final : public CacheRemote {
public:
  RegistryCache(registry::Repository repo, std::string tag, registry::ClientOptions options)
      : m_repo(std::move(repo)),
        m_tag(std::move(tag)),
        m_label(fmt::format("cache registry {}:{}", m_repo.str(), m_tag)),
        m_client(std::move(options)) {}

  const std::string& label() const override { return m_label; }

  Result<std::string> read_manifest() override {
    auto got = m_client.get_manifest(m_repo, m_tag);
    if (!got) {
      return fail(got.error().code, fmt::format("{}: {}", m_label, got.error().message));
    }
    if (got->media_type != registry::media_type::oci_manifest) {
      return fail(Errc::invalid_argument, fmt::format("{}: the tag names a {}, not an OCI image manifest", m_label,
                                                      str::go_quote(got->media_type)));
    }
    return std::move(got->bytes);
  }

  Result<std::string> read_blob(const std::string& digest, size_t max) override {
    std::string out;
    TRY_VOID(fetch_blob(digest, -1, [&](const void* data, size_t size) -> Result<void> {
      if (out.size() + size > max) {
        return fail(Errc::invalid_argument, fmt::format("{}: blob {} is larger than {} bytes", m_label, digest, max));
      }
      out.append(static_cast<const char*>(data), size);
      return ok();
    }));
    return out;
  }

  Result<void> fetch_blob(const std::string& digest, int64_t size, const BlobChunkSink& sink) override {
    TRY(auto d, parse(digest));
    std::optional<uint64_t> expect;
    if (size >= 0) {
      expect = static_cast<uint64_t>(size);
    }
    auto got = m_client.get_blob(m_repo, d, expect,
                                 [&](std::string_view chunk) { return sink(chunk.data(), chunk.size()); });
    if (!got) {
      return fail(got.error().code, fmt::format("{}: {}", m_label, got.error().message));
    }
    return ok();
  }

  Result<bool> put_blob_file(const std::string& digest, int64_t size, const fsys::path& path) override {
    (void)size;
    TRY(auto d, parse(digest));
    TRY(auto body, registry::file_body(path));
    return pushed(m_client.push_blob(m_repo, d, body));
  }

  Result<bool> put_blob_bytes(const std::string& digest, const std::string& bytes) override {
    TRY(auto d, parse(digest));
    return pushed(m_client.push_blob(m_repo, d, registry::string_body(bytes)));
  }

  Result<void> put_manifest(const std::string& manifest) override {
    auto put = m_client.put_manifest(m_repo, m_tag, manifest, std::string(registry::media_type::oci_manifest));
    if (!put) {
      return fail(put.error().code, fmt::format("{}: {}", m_label, put.error().message));
    }
    return ok();
  }

private:
  Result<Sha256Digest> parse(const std::string& digest) const {
    if (!OciLayoutDir::valid_digest(digest)) {
      return fail(Errc::invalid_argument, fmt::format("{}: invalid digest {}", m_label, str::go_quote(digest)));
    }
    return Sha256Digest::parse(digest);
  }

  Result<bool> pushed(Result<registry::BlobPush> r) const {
    if (!r) {
      return fail(r.error().code, fmt::format("{}: {}", m_label, r.error().message));
    }
    return *r != registry::BlobPush::existed;
  }

  registry::Repository m_repo;
  std::string m_tag;
  std::string m_label;
  registry::Client m_client;
};

}  // namespace

std::unique_ptr<CacheRemote> make_local_cache(const fsys::path& dir, std::string tag) {
  return std::make_unique<LocalCache>(dir, tag.empty() ? std::string("latest") : std::move(tag));
}

Result<std::unique_ptr<CacheRemote>> make_registry_cache(const std::string& ref, const RegistryCacheOptions& options) {
  auto parsed = image::parse_reference(ref);
  if (!parsed) {
    return fail(Errc::invalid_argument, fmt::format("invalid cache reference {}: {}", str::go_quote(ref),
                                                    parsed.error().message));
  }
  if (!parsed->digest.empty()) {
    return fail(Errc::invalid_argument,
                fmt::format("invalid cache reference {}: name a tag, not a digest", str::go_quote(ref)));
  }
  registry::ClientOptions o;
  o.credentials = registry::docker_config_credentials();
  if (options.insecure) {
    o.plain_http = true;
    o.transport.tls_verify = false;
  }
  o.retry.max_attempts = 3;
  std::string tag = parsed->tag.empty() ? std::string("latest") : parsed->tag;
  return std::unique_ptr<CacheRemote>(
      std::make_unique<RegistryCache>(registry::repository_of(*parsed), tag, std::move(o)));
}

}  // namespace imgbuild::builder
