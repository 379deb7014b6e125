// Pushing a build's result (see build_push.hpp).

#include "builder/build_push.hpp"

#include <fmt/format.h>

#include "registry/client.hpp"
#include "registry/transfer.hpp"

namespace imgbuild::builder {

Result<image::Descriptor> push_built_image(image::ImageStore& store, const std::string& manifest_digest,
                                           const PushTarget& target, const MessageSink& messages) {
  if (target.names.empty()) {
    return fail(Errc::invalid_argument, fmt::format("nothing to push {} to: no name", manifest_digest));
  }
  registry::ClientOptions o;
  o.credentials = registry::docker_config_credentials();
  if (target.insecure) {
    o.plain_http = true;
    o.transport.tls_verify = false;
  }
  registry::Client client(std::move(o));
  registry::TransferProgress progress;
  if (messages) {
    progress = [messages](const std::string& id, const std::string& status) { messages(id + ": " + status); };
  }
  registry::PushOptions popts;
  popts.compression = target.compression;
  image::Descriptor out;
  for (const auto& name : target.names) {
    if (messages) {
      messages("pushing layers to " + name.str());
    }
    auto pushed = registry::push_image(client, store, manifest_digest, name, progress, popts);
    if (!pushed) {
      return fail(pushed.error().code,
                  fmt::format("failed to push {}: {}", name.familiar(), pushed.error().to_string()));
    }
    if (messages) {
      messages(fmt::format("pushing manifest for {}@{} done", name.str(), pushed->manifest_digest));
    }
    out.media_type = pushed->media_type;
    out.digest = pushed->manifest_digest;
    out.size = static_cast<int64_t>(pushed->manifest_size);
  }
  return out;
}

}  // namespace imgbuild::builder
