#pragma once
// A registry that never gets to the point: a TCP server on 127.0.0.1 (a free
// port) that either accepts connections and never says a word (silent), or
// speaks plain HTTP well enough to answer the /v2/ probe and then answers
// every other request one byte at a time, a byte every `interval` (trickle).
// A TLS ClientHello is refused by closing the connection, so a client that
// probes TLS first falls back to plain HTTP. It counts what it sees; tests
// assert on those counts, never on times. Stops and joins its threads when
// destroyed.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace imgbuild::test {

/// A misbehaving registry on 127.0.0.1.
class StallServer {
public:
  enum class Mode {
    silent,   ///< accept, read nothing, write nothing
    trickle,  ///< answer GET /v2/, then one byte per interval for anything else
  };

  explicit StallServer(Mode mode, std::chrono::milliseconds interval = std::chrono::milliseconds(2000))
      : m_mode(mode), m_interval(interval) {
    if (::pipe2(m_stop_pipe, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe2 failed");
    }
    m_listen = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(m_listen, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(m_listen, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(m_listen, 64) != 0) {
      throw std::runtime_error("stall server: bind/listen failed");
    }
    socklen_t len = sizeof a;
    ::getsockname(m_listen, reinterpret_cast<sockaddr*>(&a), &len);
    m_port = ntohs(a.sin_port);
    m_acceptor = std::thread([this] { accept_loop(); });
  }

  ~StallServer() {
    m_stopping = true;
    char c = 'x';
    (void)!::write(m_stop_pipe[1], &c, 1);
    m_acceptor.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(m_mutex);
      threads.swap(m_threads);
    }
    for (auto& t : threads) {
      t.join();
    }
    ::close(m_listen);
    ::close(m_stop_pipe[0]);
    ::close(m_stop_pipe[1]);
  }
  StallServer(const StallServer&) = delete;
  StallServer& operator=(const StallServer&) = delete;

  /// "127.0.0.1:PORT".
  std::string host() const { return "127.0.0.1:" + std::to_string(m_port); }
  /// Connections accepted so far.
  int connections() const { return m_connections; }
  /// Requests answered a byte at a time so far (trickle mode; not /v2/).
  int stalled_requests() const { return m_stalled; }
  /// TLS handshakes refused so far (trickle mode).
  int tls_refused() const { return m_tls_refused; }

private:
  // Waits until `fd` is readable or the server stops (false then), at most `ms`.
  bool wait_readable(int fd, int ms) {
    pollfd p[2] = {{fd, POLLIN, 0}, {m_stop_pipe[0], POLLIN, 0}};
    int r = ::poll(p, 2, ms);
    return r > 0 && (p[1].revents & POLLIN) == 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
  }

  void accept_loop() {
    while (!m_stopping) {
      if (!wait_readable(m_listen, -1)) {
        return;
      }
      int c = ::accept4(m_listen, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        continue;
      }
      ++m_connections;
      std::lock_guard lock(m_mutex);
      m_threads.emplace_back([this, c] {
        serve(c);
        ::close(c);
      });
    }
  }

  void serve(int c) {
    if (m_mode == Mode::silent) {
      // Hold the connection until the peer gives up or the server stops.
      char buf[4096];
      while (wait_readable(c, -1)) {
        if (::read(c, buf, sizeof buf) <= 0) {
          return;
        }
      }
      return;
    }
    std::string pending;
    char buf[4096];
    for (;;) {
      size_t end = pending.find("\r\n\r\n");
      while (end == std::string::npos) {
        if (!wait_readable(c, -1)) {
          return;
        }
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) {
          return;
        }
        if (pending.empty() && static_cast<unsigned char>(buf[0]) == 0x16) {
          ++m_tls_refused;  // a TLS ClientHello: plain HTTP only here
          return;
        }
        pending.append(buf, static_cast<size_t>(n));
        end = pending.find("\r\n\r\n");
      }
      std::string head = pending.substr(0, end);
      pending.erase(0, end + 4);
      if (head.rfind("GET /v2/ ", 0) == 0) {
        std::string answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        if (::write(c, answer.data(), answer.size()) != static_cast<ssize_t>(answer.size())) {
          return;
        }
        continue;
      }
      ++m_stalled;
      const std::string slow = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
      for (size_t i = 0; !m_stopping; i = (i + 1) % slow.size()) {
        if (::send(c, slow.data() + i, 1, MSG_NOSIGNAL) != 1) {
          return;
        }
        // Sleeps by waiting on the stop pipe (a peer closing shows as
        // readable: the next send then fails).
        pollfd p{m_stop_pipe[0], POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(m_interval.count())) != 0) {
          return;
        }
      }
      return;
    }
  }

  Mode m_mode;
  std::chrono::milliseconds m_interval;
  int m_listen = -1;
  int m_port = 0;
  int m_stop_pipe[2] = {-1, -1};
  std::atomic<bool> m_stopping{false};
  std::atomic<int> m_connections{0};
  std::atomic<int> m_stalled{0};
  std::atomic<int> m_tls_refused{0};
  std::mutex m_mutex;
  std::vector<std::thread> m_threads;
  std::thread m_acceptor;
};

}  // namespace imgbuild::test
