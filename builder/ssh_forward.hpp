#pragma once
// The SSH agent socket a RUN --mount=type=ssh step sees. BuildKit gives the
// step its own socket, owned and moded as the mount asks (root, 0600 unless
// uid=/gid=/mode= say otherwise), and relays every connection to the agent
// the client forwarded (--ssh default). Bind-mounting the client's socket
// instead would show the step that socket's owner and mode.

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "util/fd.hpp"
#include "util/result.hpp"

namespace imgbuild::builder {

/// A listening socket that relays each connection to an agent socket, for
/// as long as the object lives.
class SshForwarder {
public:
  /// Listens on `dir`/agent.sock (owner uid:gid, permission bits `mode`) and
  /// starts relaying to `agent`. Errors: the socket cannot be made.
  static Result<std::unique_ptr<SshForwarder>> start(const std::filesystem::path& agent,
                                                     const std::filesystem::path& dir, uid_t uid, gid_t gid,
                                                     mode_t mode);
  /// Stops relaying (open connections are closed), removes the socket.
  ~SshForwarder();
  SshForwarder(const SshForwarder&) = delete;
  SshForwarder& operator=(const SshForwarder&) = delete;

  /// The socket to bind-mount into the step.
  const std::filesystem::path& path() const { return m_path; }

private:
  SshForwarder() = default;
  void accept_loop();
  void relay(UniqueFd client, UniqueFd upstream);

  std::filesystem::path m_agent;
  std::filesystem::path m_path;
  UniqueFd m_listen;
  UniqueFd m_stop_read;
  UniqueFd m_stop_write;
  std::thread m_acceptor;
  std::mutex m_mutex;
  std::vector<std::thread> m_relays;
};

}  // namespace imgbuild::builder
