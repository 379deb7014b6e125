// Store-then-registry base image resolution (see pull_resolver.hpp).

#include "builder/pull_resolver.hpp"

#include <mutex>

#include <fmt/format.h>

#include "builder/platform_outputs.hpp"
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
  PullResolver(image::ImageStore& store, bool pull_always, MessageSink messages)
      : m_store(store), m_pull_always(pull_always), m_messages(std::move(messages)) {}

  Result<image::LoadedImage> resolve(const std::string& reference, const Platform& platform) override {
    // A base that parses as a name is looked up by that name only, as
    // BuildKit does: `FROM 0` is docker.io/library/0, never the stored image
    // whose ID happens to start with 0 (the store's ID-prefix fallback is for
    // the image commands). "sha256:…" and bare 64-hex IDs stay IDs.
    auto named = image::parse_reference(reference);
    std::string lookup = reference;
    if (named && !reference.starts_with("sha256:")) {
      lookup = named->str();
    }
    std::optional<Error> other_platform;
    if (!m_pull_always) {
      // A multi-platform base: its image for the stage's platform; a
      // single-platform one is checked below, so that a wrong platform is
      // named (and pulled for the right one).
      auto rec = m_store.resolve_target(lookup);
      if (rec && rec->is_index()) {
        rec = m_store.select_platform(*rec, oci_platform(platform), lookup);
      }
      if (rec) {
        TRY(image::LoadedImage img, m_store.load(*rec));
        auto fits = builder::check_image_platform(reference, img, platform);
        if (fits) {
          return img;
        }
        other_platform = fits.error();
      } else if (rec.error().code != Errc::not_found) {
        return fail(std::move(rec).error());
      }
    }
    if (!named || reference.starts_with("sha256:")) {
      // Not a reference (an image ID, say): only the store can have it.
      if (other_platform) {
        return fail(*other_platform);
      }
      TRY(image::ImageRecord rec, m_store.resolve(reference));
      return m_store.load(rec);
    }
    if (auto pulled = pull(*named, platform); !pulled) {
      if (other_platform) {
        return fail(pulled.error().code, fmt::format("{}, and pulling it for that platform failed: {}",
                                                     other_platform->message, pulled.error().message));
      }
      const char* where = m_pull_always ? "" : " not found in the local store, and";
      return fail(pulled.error().code, fmt::format("base image {}{} pulling it failed: {}",
                                                   str::go_quote(reference), where, pulled.error().message));
    }
    TRY(image::ImageRecord rec, m_store.resolve(named->str(), oci_platform(platform)));
    return m_store.load(rec);
  }

private:
  Result<void> pull(const image::Reference& ref, const Platform& platform) {
    std::lock_guard lock(m_mutex);
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
  std::mutex m_mutex;
  std::unique_ptr<registry::Client> m_client;
  MessageSink m_messages;
};

}  // namespace

std::unique_ptr<ImageResolver> make_pull_resolver(image::ImageStore& store, bool pull_always, MessageSink messages) {
  return std::make_unique<PullResolver>(store, pull_always, std::move(messages));
}

}  // namespace imgbuild::builder
