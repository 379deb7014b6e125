#pragma once
// Real registries for tests: Debian's docker-registry (distribution 2.8)
// started on a free 127.0.0.1 port with its own config and storage in a
// temporary directory, either plain HTTP or TLS (a self-signed certificate
// with SAN IP:127.0.0.1 made by openssl, trusted through a certs.d directory)
// with htpasswd (bcrypt) auth; and the fault-injecting proxy
// (tests/support/fault_proxy.py) in front of one. Each object stops its
// process and removes its directory when destroyed.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/paths.hpp"
#include "support/scratch_dir.hpp"

extern char** environ;

namespace imgbuild::test {

/// Reads a whole file ("" when missing).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Writes a whole file.
inline void spit(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

/// A port on 127.0.0.1 that was free a moment ago.
inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

/// True when something accepts connections on 127.0.0.1:port.
inline bool port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

/// Runs a command to completion (stdout+stderr to `log`); returns its exit status.
inline int run_command(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    return 127;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/// A background process, terminated on destruction.
class Process {
public:
  Process(const std::vector<std::string>& argv, const std::filesystem::path& log) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    std::vector<char*> args;
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    if (posix_spawn(&m_pid, args[0], &fa, nullptr, args.data(), environ) != 0) {
      m_pid = -1;
    }
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Process() {
    if (m_pid > 0) {
      ::kill(m_pid, SIGTERM);
      for (int i = 0; i < 50; ++i) {
        if (::waitpid(m_pid, nullptr, WNOHANG) == m_pid) {
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      ::kill(m_pid, SIGKILL);
      ::waitpid(m_pid, nullptr, 0);
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  bool alive() const { return m_pid > 0 && ::waitpid(m_pid, nullptr, WNOHANG) == 0; }

private:
  pid_t m_pid = -1;
};

/// What kind of registry to start.
struct RegistrySpec {
  bool tls = false;
  /// htpasswd user and password (both empty = no auth).
  std::string user;
  std::string password;
};

/// A running docker-registry.
class TestRegistry {
public:
  /// Why registries cannot run here ("" when they can).
  static std::string missing_prerequisite() {
    for (const char* tool : {"/usr/bin/docker-registry", "/usr/bin/htpasswd", "/usr/bin/openssl"}) {
      if (::access(tool, X_OK) != 0) {
        return std::string(tool) + " is missing (scripts/deps --test installs it)";
      }
    }
    return "";
  }

  explicit TestRegistry(RegistrySpec spec) : m_spec(std::move(spec)) {
    m_port = free_port();
    const auto& dir = m_dir.path();
    std::filesystem::create_directories(dir / "data");
    std::string cfg = "version: 0.1\nlog: {level: warn}\n";
    cfg += "storage: {filesystem: {rootdirectory: " + (dir / "data").string() +
           "}, delete: {enabled: true}}\n";
    cfg += "http: {addr: 127.0.0.1:" + std::to_string(m_port) + ", secret: fixed";
    if (m_spec.tls) {
      auto crt = dir / "registry.crt";
      auto key = dir / "registry.key";
      int rc = run_command({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                            key.string(), "-out", crt.string(), "-days", "2", "-subj",
                            "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"},
                           dir / "openssl.log");
      if (rc != 0) {
        throw std::runtime_error("openssl req failed: " + slurp(dir / "openssl.log"));
      }
      auto ca_dir = certs_dir() / host();
      std::filesystem::create_directories(ca_dir);
      std::filesystem::copy_file(crt, ca_dir / "ca.crt");
      cfg += ", tls: {certificate: " + crt.string() + ", key: " + key.string() + "}";
    }
    cfg += "}\n";
    if (!m_spec.user.empty()) {
      auto htpasswd = dir / "htpasswd";
      int rc = run_command({"sh", "-c", "htpasswd -Bbn \"$0\" \"$1\" > \"$2\"", m_spec.user,
                            m_spec.password, htpasswd.string()},
                           dir / "htpasswd.log");
      if (rc != 0) {
        throw std::runtime_error("htpasswd failed: " + slurp(dir / "htpasswd.log"));
      }
      cfg += "auth: {htpasswd: {realm: test, path: " + htpasswd.string() + "}}\n";
    }
    spit(dir / "config.yml", cfg);
    m_process = std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/docker-registry", "serve", (dir / "config.yml").string()},
        dir / "registry.log");
    for (int i = 0; i < 500 && !port_open(m_port); ++i) {
      if (!m_process->alive()) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!port_open(m_port)) {
      throw std::runtime_error("docker-registry did not start: " + slurp(dir / "registry.log"));
    }
  }

  /// "127.0.0.1:PORT".
  std::string host() const { return "127.0.0.1:" + std::to_string(m_port); }
  int port() const { return m_port; }
  /// The certs.d directory that trusts this registry's certificate.
  std::filesystem::path certs_dir() const { return m_dir.path() / "certs.d"; }
  /// The registry's log (for failure messages).
  std::string log() const { return slurp(m_dir.path() / "registry.log"); }

private:
  RegistrySpec m_spec;
  ScratchDir m_dir;
  int m_port = 0;
  std::unique_ptr<Process> m_process;
};

/// The fault-injecting proxy in front of a plain-HTTP registry.
class FaultProxy {
public:
  explicit FaultProxy(const std::string& upstream) {
    auto port_file = m_dir.path() / "ports";
    m_process = std::make_unique<Process>(
        std::vector<std::string>{"/usr/bin/python3",
                                 (source_dir() / "tests" / "support" / "fault_proxy.py").string(),
                                 "--upstream", upstream, "--port-file", port_file.string(),
                                 "--lifetime", "600"},
        m_dir.path() / "proxy.log");
    for (int i = 0; i < 500 && !std::filesystem::exists(port_file); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::istringstream in(slurp(port_file));
    in >> m_main >> m_second;
    if (m_main == 0) {
      throw std::runtime_error("fault proxy did not start: " + slurp(m_dir.path() / "proxy.log"));
    }
  }
  /// "127.0.0.1:PORT" of the main port.
  std::string host() const { return "127.0.0.1:" + std::to_string(m_main); }
  int second_port() const { return m_second; }

private:
  ScratchDir m_dir;
  std::unique_ptr<Process> m_process;
  int m_main = 0;
  int m_second = 0;
};

}  // namespace imgbuild::test
