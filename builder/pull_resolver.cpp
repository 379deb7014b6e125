// Store-then-registry base image resolution (see pull_resolver.hpp).

#include "builder/pull_resolver.hpp"

#include <mutex>

#include <fmt/format.h>

#include "image/index.hpp"
#include "image/reference.hpp"
#include "registry/client.hpp"
#include "registry/platform.hpp"
#include "registry/transfer.hpp"
#include "util/strings.hpp"

namespace imgbuild::builder {

namespace {

class PullResolver final : public builder::ImageResolver {
public:
  PullResolver(image::ImageStore& store, bool pull_always, std::string platform, MessageSink messages)
      : m_store(store), m_pull_always(pull_always), m_platform(std::move(platform)), m_messages(std::move(messages)) {}

  Result<image::LoadedImage> resolve(const std::string& reference) override {
    // A base that parses as a name is looked up by that name only, as
    // BuildKit does: `FROM 0` is docker.io/library/0, never the stored image
    // whose ID happens to start with 0 (the store's ID-prefix fallback is for
    // the image commands). "sha256:…" and bare 64-hex IDs stay IDs.
    auto named = image::parse_reference(reference);
    std::string lookup = reference;
    if (named && !reference.starts_with("sha256:")) {
      lookup = named->str();
    }
    // A multi-platform base: the build's platform when one is given.
    std::optional<image::Platform> platform;
    if (!m_platform.empty()) {
      TRY(platform, image::parse_platform_text(m_platform));
    }
    if (!m_pull_always) {
      auto rec = m_store.resolve(lookup, platform);
      if (rec) {
        return m_store.load(*rec);
      }
      if (rec.error().code != Errc::not_found) {
        return fail(std::move(rec).error());
      }
    }
    if (!named || reference.starts_with("sha256:")) {
      // Not a reference (an image ID, say): only the store can have it.
      TRY(image::ImageRecord rec, m_store.resolve(reference));
      return m_store.load(rec);
    }
    if (auto pulled = pull(*named); !pulled) {
      const char* where = m_pull_always ? "" : " not found in the local store, and";
      return fail(pulled.error().code, fmt::format("base image {}{} pulling it failed: {}",
                                                   str::go_quote(reference), where, pulled.error().message));
    }
    TRY(image::ImageRecord rec, m_store.resolve(named->str(), platform));
    return m_store.load(rec);
  }

private:
  Result<void> pull(const image::Reference& ref) {
    std::lock_guard lock(m_mutex);
    registry::Platform platform = registry::host_platform();
    if (!m_platform.empty()) {
      TRY(platform, registry::parse_platform(m_platform));
    }
    if (!m_client) {
      registry::ClientOptions o;
      o.credentials = registry::docker_config_credentials();
      m_client = std::make_unique<registry::Client>(std::move(o));
    }
    if (m_messages) {
      m_messages("pulling " + ref.familiar());
    }
    registry::TransferProgress progress;
    if (m_messages) {
      progress = [this](const std::string& id, const std::string& status) { m_messages(id + ": " + status); };
    }
    TRY_VOID(registry::pull_image(*m_client, m_store, ref, platform, progress));
    return ok();
  }

  image::ImageStore& m_store;
  bool m_pull_always = false;
  std::string m_platform;
  std::mutex m_mutex;
  std::unique_ptr<registry::Client> m_client;
  MessageSink m_messages;
};

}  // namespace

std::unique_ptr<ImageResolver> make_pull_resolver(image::ImageStore& store, bool pull_always,
                                                  const std::string& platform, MessageSink messages) {
  return std::make_unique<PullResolver>(store, pull_always, platform, std::move(messages));
}

}  // namespace imgbuild::builder
