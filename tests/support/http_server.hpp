#pragma once
// A static file server for tests: python3's http.server on 127.0.0.1 at a
// free port, serving one directory over HTTP, or over HTTPS with a given
// certificate and key. Killed when the object goes away.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

namespace imgbuild::test {

/// A loopback TCP port nothing listens on right now.
inline int free_loopback_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(s, reinterpret_cast<struct sockaddr*>(&a), sizeof a);
  ::getsockname(s, reinterpret_cast<struct sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

/// python3 http.server in a directory on 127.0.0.1 (HTTPS when a
/// certificate and key are given).
class HttpServer {
public:
  /// Starts serving `dir`; ok() says whether the port answered in time.
  explicit HttpServer(const std::filesystem::path& dir, const std::filesystem::path& cert = {},
                      const std::filesystem::path& key = {}) {
    m_port = free_loopback_port();
    m_tls = !cert.empty();
    static const char* k_script =
        "import functools, http.server, ssl, sys\n"
        "d, port, cert, key = sys.argv[1:5]\n"
        "h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=d)\n"
        "s = http.server.ThreadingHTTPServer(('127.0.0.1', int(port)), h)\n"
        "if cert:\n"
        "    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
        "    c.load_cert_chain(cert, key)\n"
        "    s.socket = c.wrap_socket(s.socket, server_side=True)\n"
        "s.serve_forever()\n";
    m_pid = ::fork();
    if (m_pid == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      std::string port = std::to_string(m_port);
      ::execlp("python3", "python3", "-c", k_script, dir.c_str(), port.c_str(), cert.c_str(), key.c_str(),
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      int c = ::socket(AF_INET, SOCK_STREAM, 0);
      struct sockaddr_in b {};
      b.sin_family = AF_INET;
      b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      b.sin_port = htons(static_cast<uint16_t>(m_port));
      bool up = ::connect(c, reinterpret_cast<struct sockaddr*>(&b), sizeof b) == 0;
      ::close(c);
      if (up) {
        m_ok = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~HttpServer() {
    if (m_pid > 0) {
      ::kill(m_pid, SIGTERM);
      ::waitpid(m_pid, nullptr, 0);
    }
  }
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// True when the server answered on its port.
  bool ok() const { return m_ok; }
  /// The URL of a path on the server ("/file.txt").
  std::string url(const std::string& path) const {
    return std::string(m_tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(m_port) + path;
  }

private:
  pid_t m_pid = -1;
  int m_port = 0;
  bool m_tls = false;
  bool m_ok = false;
};

}  // namespace imgbuild::test
