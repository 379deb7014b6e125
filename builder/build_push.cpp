// Pushing a build's result (see build_push.hpp).

#include "builder/build_push.hpp"

#include <cstdio>
#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "registry/client.hpp"
#include "registry/transfer.hpp"

namespace imgbuild::builder {

Result<std::string> push_built_image(image::ImageStore& store, const std::string& manifest_digest,
                                     const PushTarget& target, bool quiet) {
  registry::ClientOptions o;
  o.credentials = registry::docker_config_credentials();
  if (target.insecure) {
    o.plain_http = true;
    o.transport.tls_verify = false;
  }
  registry::Client client(std::move(o));
  auto mutex = std::make_shared<std::mutex>();
  registry::TransferProgress progress;
  if (!quiet) {
    progress = [mutex](const std::string& id, const std::string& status) {
      std::lock_guard lock(*mutex);
      std::fprintf(stderr, "%s: %s\n", id.c_str(), status.c_str());
    };
  }
  registry::PushOptions popts;
  popts.compression = target.compression;
  std::string digest = manifest_digest;
  for (const auto& name : target.names) {
    if (!quiet) {
      std::fprintf(stderr, "pushing layers to %s\n", name.str().c_str());
    }
    auto pushed = registry::push_image(client, store, manifest_digest, name, progress, popts);
    if (!pushed) {
      return fail(pushed.error().code,
                  fmt::format("failed to push {}: {}", name.familiar(), pushed.error().to_string()));
    }
    if (!quiet) {
      std::fprintf(stderr, "pushing manifest for %s@%s done\n", name.str().c_str(),
                   pushed->manifest_digest.c_str());
    }
    digest = pushed->manifest_digest;
  }
  return digest;
}

}  // namespace imgbuild::builder
