#include "builder/ssh_forward.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace imgbuild::builder {

namespace {

// A sockaddr_un for `path`; false when the path does not fit.
bool unix_address(const std::filesystem::path& path, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  const std::string& s = path.native();
  if (s.size() >= sizeof addr.sun_path) {
    return false;
  }
  std::memcpy(addr.sun_path, s.c_str(), s.size() + 1);
  return true;
}

// Writes all of buf; false on any error.
bool send_all(int fd, const char* buf, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, buf, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      return false;
    }
    buf += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<SshForwarder>> SshForwarder::start(const std::filesystem::path& agent,
                                                          const std::filesystem::path& dir, uid_t uid, gid_t gid,
                                                          mode_t mode) {
  std::unique_ptr<SshForwarder> f(new SshForwarder());
  f->m_agent = agent;
  f->m_path = dir / "agent.sock";
  sockaddr_un addr{};
  if (!unix_address(f->m_path, addr)) {
    return fail(Errc::invalid_argument, fmt::format("ssh agent socket path {} is too long", f->m_path.string()));
  }
  f->m_listen = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!f->m_listen) {
    return fail(Errc::io, fmt::format("ssh agent socket: {}", std::strerror(errno)));
  }
  if (::bind(f->m_listen.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chown(f->m_path.c_str(), uid, gid) != 0 || ::chmod(f->m_path.c_str(), mode & 07777) != 0 ||
      ::listen(f->m_listen.get(), 16) != 0) {
    return fail(Errc::io, fmt::format("ssh agent socket {}: {}", f->m_path.string(), std::strerror(errno)));
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail(Errc::io, fmt::format("ssh agent relay: {}", std::strerror(errno)));
  }
  f->m_stop_read = UniqueFd(fds[0]);
  f->m_stop_write = UniqueFd(fds[1]);
  f->m_acceptor = std::thread([p = f.get()] { p->accept_loop(); });
  return f;
}

SshForwarder::~SshForwarder() {
  if (m_stop_write) {
    char c = 1;
    while (::write(m_stop_write.get(), &c, 1) < 0 && errno == EINTR) {
    }
  }
  if (m_acceptor.joinable()) {
    m_acceptor.join();
  }
  std::vector<std::thread> relays;
  {
    std::lock_guard lock(m_mutex);
    relays.swap(m_relays);
  }
  for (auto& t : relays) {
    t.join();
  }
  std::error_code ec;
  std::filesystem::remove(m_path, ec);
}

void SshForwarder::accept_loop() {
  while (true) {
    pollfd p[2] = {{m_listen.get(), POLLIN, 0}, {m_stop_read.get(), POLLIN, 0}};
    int n = ::poll(p, 2, -1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 || p[1].revents != 0) {
      return;
    }
    if ((p[0].revents & POLLIN) == 0) {
      continue;
    }
    UniqueFd client(::accept4(m_listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) {
      continue;
    }
    sockaddr_un addr{};
    UniqueFd upstream(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!upstream || !unix_address(m_agent, addr) ||
        ::connect(upstream.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      continue;  // the client sees its connection closed
    }
    std::lock_guard lock(m_mutex);
    m_relays.emplace_back([this, c = std::move(client), u = std::move(upstream)]() mutable {
      relay(std::move(c), std::move(u));
    });
  }
}

void SshForwarder::relay(UniqueFd client, UniqueFd upstream) {
  char buf[16384];
  while (true) {
    pollfd p[3] = {{client.get(), POLLIN, 0}, {upstream.get(), POLLIN, 0}, {m_stop_read.get(), POLLIN, 0}};
    int n = ::poll(p, 3, -1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 || p[2].revents != 0) {
      return;
    }
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents == 0) {
        continue;
      }
      int from = i == 0 ? client.get() : upstream.get();
      int to = i == 0 ? upstream.get() : client.get();
      ssize_t r = ::recv(from, buf, sizeof buf, 0);
      if (r < 0 && errno == EINTR) {
        continue;
      }
      if (r <= 0 || !send_all(to, buf, static_cast<size_t>(r))) {
        return;  // either side closed: both ends are closed
      }
    }
  }
}

}  // namespace imgbuild::builder
