#include "registry/credentials.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "registry/reference.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"

extern char** environ;

namespace imgbuild::registry {

namespace {

constexpr std::string_view k_b64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The registry a config key names: scheme and path dropped, hub aliases mapped.
std::string key_registry(std::string_view key) { return normalize_registry_host(key); }

struct ProcessResult {
  int status = -1;
  std::string out;
  std::string err;
};

Result<ProcessResult> run_process(const std::vector<std::string>& argv, const std::string& input) {
  int in_pipe[2];
  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0 ||
      pipe2(err_pipe, O_CLOEXEC) != 0) {
    return fail(Errc::io, fmt::format("pipe: {}", std::strerror(errno)));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return fail(Errc::not_found, fmt::format("cannot run {}: {}", argv[0], std::strerror(rc)));
  }
  ProcessResult result;
  size_t written = 0;
  int in_fd = in_pipe[1];
  if (input.empty()) {
    ::close(in_fd);
    in_fd = -1;
  }
  int out_fd = out_pipe[0];
  int err_fd = err_pipe[0];
  constexpr size_t k_cap = 1024 * 1024;
  while (out_fd >= 0 || err_fd >= 0 || in_fd >= 0) {
    std::array<pollfd, 3> fds{{{in_fd, POLLOUT, 0}, {out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}}};
    if (::poll(fds.data(), fds.size(), 30000) <= 0) {
      if (errno == EINTR) {
        continue;
      }
      ::kill(pid, SIGKILL);
      break;
    }
    if (in_fd >= 0 && (fds[0].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      ssize_t n = ::write(in_fd, input.data() + written, input.size() - written);
      if (n > 0) {
        written += static_cast<size_t>(n);
      }
      if (n <= 0 || written == input.size()) {
        ::close(in_fd);
        in_fd = -1;
      }
    }
    for (int i = 1; i <= 2; ++i) {
      int& fd = i == 1 ? out_fd : err_fd;
      std::string& buf = i == 1 ? result.out : result.err;
      if (fd >= 0 && (fds[static_cast<size_t>(i)].revents & (POLLIN | POLLERR | POLLHUP)) != 0) {
        char tmp[4096];
        ssize_t n = ::read(fd, tmp, sizeof tmp);
        if (n > 0 && buf.size() < k_cap) {
          buf.append(tmp, static_cast<size_t>(n));
        } else if (n <= 0) {
          ::close(fd);
          fd = -1;
        }
      }
    }
  }
  for (int fd : {in_fd, out_fd, err_fd}) {
    if (fd >= 0) {
      ::close(fd);
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// The server URL a helper is asked about: Docker Hub's legacy key, else the host.
std::string helper_server_url(std::string_view registry) { return config_key(registry); }

}  // namespace

std::filesystem::path docker_config_path() {
  if (const char* d = std::getenv("DOCKER_CONFIG"); d != nullptr && *d != '\0') {
    return std::filesystem::path(d) / "config.json";
  }
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr && *home != '\0' ? home : "/root") / ".docker" /
         "config.json";
}

std::string config_key(std::string_view registry) {
  std::string host = normalize_registry_host(registry);
  if (host == k_docker_hub_domain) {
    return std::string(k_docker_hub_config_key);
  }
  return host;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out += k_b64[(v >> 18) & 63];
    out += k_b64[(v >> 12) & 63];
    out += k_b64[(v >> 6) & 63];
    out += k_b64[v & 63];
  }
  if (i + 1 == bytes.size()) {
    uint32_t v = at(i) << 16;
    out += k_b64[(v >> 18) & 63];
    out += k_b64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    uint32_t v = (at(i) << 16) | (at(i + 1) << 8);
    out += k_b64[(v >> 18) & 63];
    out += k_b64[(v >> 12) & 63];
    out += k_b64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : str::trim(text)) {
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad > 0) {
      return std::nullopt;
    }
    auto pos = k_b64.find(c);
    if (pos == std::string_view::npos) {
      return std::nullopt;
    }
    acc = (acc << 6) | static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (pad > 2 || bits >= 6) {
    return std::nullopt;
  }
  return out;
}

Result<std::string> run_credential_helper(const std::string& helper, const std::string& action,
                                          const std::string& input) {
  std::string program = "docker-credential-" + helper;
  TRY(ProcessResult r, run_process({program, action}, input));
  if (r.status != 0) {
    std::string msg(str::trim(r.out.empty() ? r.err : r.out));
    return fail(Errc::not_found, fmt::format("credential helper {} {} failed (exit {}): {}",
                                             program, action, r.status, msg));
  }
  return r.out;
}

Result<DockerConfig> DockerConfig::load(std::filesystem::path path) {
  DockerConfig cfg;
  cfg.m_path = std::move(path);
  auto read = io::read_all(cfg.m_path.string());
  if (!read) {
    if (read.error().code == Errc::not_found) {
      return cfg;
    }
    return fail(Errc::io, fmt::format("{}: cannot read", cfg.m_path.string()));
  }
  std::string text = std::move(*read);
  if (str::trim(text).empty()) {
    return cfg;
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(Errc::corrupt, fmt::format("{}: not a JSON object", cfg.m_path.string()));
  }
  cfg.m_json = std::move(j);
  return cfg;
}

std::optional<std::string> DockerConfig::helper_for(std::string_view registry) const {
  std::string want = normalize_registry_host(registry);
  if (auto it = m_json.find("credHelpers"); it != m_json.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (key_registry(k) == want && v.is_string() && !v.get<std::string>().empty()) {
        return v.get<std::string>();
      }
    }
  }
  if (auto it = m_json.find("credsStore"); it != m_json.end() && it->is_string() &&
                                          !it->get<std::string>().empty()) {
    return it->get<std::string>();
  }
  return std::nullopt;
}

std::optional<std::string> DockerConfig::auths_key(std::string_view registry) const {
  auto it = m_json.find("auths");
  if (it == m_json.end() || !it->is_object()) {
    return std::nullopt;
  }
  std::string exact = config_key(registry);
  if (it->contains(exact)) {
    return exact;
  }
  std::string want = normalize_registry_host(registry);
  for (const auto& [k, v] : it->items()) {
    if (key_registry(k) == want) {
      return k;
    }
  }
  return std::nullopt;
}

Result<Credentials> DockerConfig::get(std::string_view registry) const {
  if (auto helper = helper_for(registry)) {
    auto out = run_credential_helper(*helper, "get", helper_server_url(registry));
    if (out) {
      auto j = nlohmann::json::parse(*out, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        return fail(Errc::corrupt, fmt::format("docker-credential-{} get: output is not JSON",
                                               *helper));
      }
      Credentials c;
      std::string user = j.value("Username", "");
      std::string secret = j.value("Secret", "");
      if (user == "<token>") {
        c.identity_token = secret;
      } else {
        c.username = user;
        c.password = secret;
      }
      return c;
    }
    // "credentials not found" is a normal answer; fall through to auths.
  }
  Credentials c;
  auto key = auths_key(registry);
  if (!key) {
    return c;
  }
  const auto& entry = m_json["auths"][*key];
  if (!entry.is_object()) {
    return c;
  }
  if (entry.contains("auth") && entry["auth"].is_string() && !entry["auth"].get<std::string>().empty()) {
    auto decoded = base64_decode(entry["auth"].get<std::string>());
    auto colon = decoded ? decoded->find(':') : std::string::npos;
    if (!decoded || colon == std::string::npos) {
      return fail(Errc::corrupt, fmt::format("{}: auths[{}].auth is not base64 of user:password",
                                             m_path.string(), str::go_quote(*key)));
    }
    c.username = decoded->substr(0, colon);
    c.password = decoded->substr(colon + 1);
  } else {
    c.username = entry.value("username", "");
    c.password = entry.value("password", "");
  }
  c.identity_token = entry.value("identitytoken", "");
  return c;
}

Result<void> DockerConfig::set(std::string_view registry, const Credentials& creds) {
  std::string key = config_key(registry);
  if (auto helper = helper_for(registry)) {
    nlohmann::json in = {{"ServerURL", helper_server_url(registry)},
                         {"Username", creds.identity_token.empty() ? creds.username : "<token>"},
                         {"Secret", creds.identity_token.empty() ? creds.password : creds.identity_token}};
    TRY(std::string out, run_credential_helper(*helper, "store", in.dump()));
    (void)out;
    // docker leaves an empty entry in auths so the registry is listed.
    if (!m_json.contains("auths") || !m_json["auths"].is_object()) {
      m_json["auths"] = nlohmann::json::object();
    }
    m_json["auths"][key] = nlohmann::json::object();
    return ok();
  }
  if (!m_json.contains("auths") || !m_json["auths"].is_object()) {
    m_json["auths"] = nlohmann::json::object();
  }
  if (auto old = auths_key(registry); old && *old != key) {
    m_json["auths"].erase(*old);
  }
  nlohmann::json entry = nlohmann::json::object();
  if (!creds.username.empty() || !creds.password.empty()) {
    entry["auth"] = base64_encode(creds.username + ":" + creds.password);
  }
  if (!creds.identity_token.empty()) {
    entry["identitytoken"] = creds.identity_token;
  }
  m_json["auths"][key] = entry;
  return ok();
}

Result<bool> DockerConfig::erase(std::string_view registry) {
  bool found = false;
  if (auto helper = helper_for(registry)) {
    if (run_credential_helper(*helper, "erase", helper_server_url(registry))) {
      found = true;
    }
  }
  while (auto key = auths_key(registry)) {
    m_json["auths"].erase(*key);
    found = true;
  }
  return found;
}

Result<void> DockerConfig::save() const {
  std::error_code ec;
  std::filesystem::path dir = m_path.parent_path();
  if (!dir.empty()) {
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return fail(Errc::io, fmt::format("{}: {}", dir.string(), ec.message()));
    }
  }
  std::string tmp = m_path.string() + fmt::format(".tmp{}", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(Errc::io, fmt::format("{}: {}", tmp, std::strerror(errno)));
  }
  std::string text = m_json.dump(1, '\t') + "\n";
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail(Errc::io, fmt::format("{}: {}", tmp, std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return fail(Errc::io, fmt::format("{}: {}", tmp, std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), m_path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return fail(Errc::io, fmt::format("{}: {}", m_path.string(), std::strerror(err)));
  }
  return ok();
}

}  // namespace imgbuild::registry
