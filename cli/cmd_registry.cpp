// imgbuild login / logout: verify credentials against a registry and keep
// them in docker's config.json ($DOCKER_CONFIG/config.json, default
// ~/.docker/config.json), so docker and imgbuild share one login.

#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cerrno>
#include <memory>
#include <mutex>
#include <string>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/image_common.hpp"
#include "registry/client.hpp"
#include "registry/platform.hpp"
#include "registry/transfer.hpp"
#include "registry/credentials.hpp"
#include "registry/reference.hpp"
#include "util/io.hpp"
#include "util/strings.hpp"

namespace imgbuild::cli {

namespace {

std::string prompt_line(const std::string& prompt, bool echo) {
  std::fputs(prompt.c_str(), stderr);
  std::fflush(stderr);
  termios old{};
  bool restore = false;
  if (!echo && tcgetattr(STDIN_FILENO, &old) == 0) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    restore = tcsetattr(STDIN_FILENO, TCSANOW, &quiet) == 0;
  }
  std::string line;
  char buf[1024];
  if (std::fgets(buf, sizeof buf, stdin) != nullptr) {
    line = buf;
  }
  if (restore) {
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::fputs("\n", stderr);
  }
  return std::string(str::trim(line));
}

// The password piped to --password-stdin (at most 1 MiB).
std::string read_all_stdin() {
  auto text = io::read_all(STDIN_FILENO, "the password on stdin", size_t{1} << 20);
  if (!text) {
    throw CommandError{text.error().message, 1};
  }
  return std::move(*text);
}

struct LoginOptions {
  std::string registry;
  std::string username;
  std::string password;
  bool password_stdin = false;
  bool tls_verify = true;
  std::string cert_dir;
};

registry::ClientOptions client_options(bool tls_verify, const std::string& cert_dir) {
  registry::ClientOptions o;
  o.transport.tls_verify = tls_verify;
  if (!cert_dir.empty()) {
    o.transport.certs_dir = cert_dir;
  }
  return o;
}

void run_login(const LoginOptions& opt) {
  std::string host = registry::normalize_registry_host(opt.registry);
  if (opt.password_stdin && !opt.password.empty()) {
    throw CommandError{"--password and --password-stdin are mutually exclusive", 2};
  }
  std::string username = opt.username;
  std::string password = opt.password;
  bool tty = isatty(STDIN_FILENO) != 0;
  if (opt.password_stdin) {
    if (username.empty()) {
      throw CommandError{"--password-stdin needs --username (-u)", 2};
    }
    password = read_all_stdin();
    while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
      password.pop_back();
    }
  } else if (!password.empty()) {
    std::fputs("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n", stderr);
  }
  if (username.empty()) {
    if (!tty) {
      throw CommandError{"no username given: use --username (-u)", 2};
    }
    username = prompt_line("Username: ", true);
  }
  if (password.empty() && !opt.password_stdin) {
    if (!tty) {
      throw CommandError{"no password given: use --password-stdin", 2};
    }
    password = prompt_line("Password: ", false);
  }
  if (username.empty() || password.empty()) {
    throw CommandError{"username and password must not be empty", 2};
  }
  registry::Credentials creds{username, password, ""};
  registry::Client client(client_options(opt.tls_verify, opt.cert_dir));
  auto checked = client.check_login(host, creds);
  if (!checked) {
    throw CommandError{checked.error().to_string(), 1};
  }
  auto cfg = registry::DockerConfig::load(registry::docker_config_path());
  if (!cfg) {
    throw CommandError{cfg.error().to_string(), 1};
  }
  if (auto r = cfg->set(host, creds); !r) {
    throw CommandError{r.error().to_string(), 1};
  }
  if (auto r = cfg->save(); !r) {
    throw CommandError{r.error().to_string(), 1};
  }
  std::puts("Login Succeeded");
}

void run_logout(const std::string& registry_arg) {
  std::string host = registry::normalize_registry_host(registry_arg);
  auto cfg = registry::DockerConfig::load(registry::docker_config_path());
  if (!cfg) {
    throw CommandError{cfg.error().to_string(), 1};
  }
  auto erased = cfg->erase(host);
  if (!erased) {
    throw CommandError{erased.error().to_string(), 1};
  }
  if (!*erased) {
    std::printf("Not logged in to %s\n", host.c_str());
    return;
  }
  if (auto r = cfg->save(); !r) {
    throw CommandError{r.error().to_string(), 1};
  }
  std::printf("Removing login credentials for %s\n", host.c_str());
}

struct TransferOptions {
  std::string ref;
  std::string dest;
  std::string platform;
  bool all_platforms = false;
  bool tls_verify = true;
  std::string cert_dir;
  bool quiet = false;
};

registry::Client transfer_client(const TransferOptions& opt) {
  registry::ClientOptions o = client_options(opt.tls_verify, opt.cert_dir);
  o.credentials = registry::docker_config_credentials();
  return registry::Client(std::move(o));
}

registry::TransferProgress progress_printer(bool quiet) {
  if (quiet) {
    return {};
  }
  auto mutex = std::make_shared<std::mutex>();
  return [mutex](const std::string& id, const std::string& status) {
    std::lock_guard lock(*mutex);
    std::printf("%s: %s\n", id.c_str(), status.c_str());
    std::fflush(stdout);
  };
}

void run_pull(const Context& ctx, const TransferOptions& opt) {
  image::Reference ref = unwrap(image::parse_reference(opt.ref));
  registry::PullOptions pull_options;
  pull_options.all_platforms = opt.all_platforms;
  if (!opt.platform.empty()) {
    if (opt.all_platforms) {
      throw CommandError{"--platform and --all-platforms are mutually exclusive", 2};
    }
    pull_options.platform = unwrap(parse_platform(opt.platform));
  }
  auto store = open_store(ctx);
  registry::Client client = transfer_client(opt);
  if (!opt.quiet) {
    std::printf("%s: Pulling from %s\n", ref.digest.empty() ? (ref.tag.empty() ? "latest" : ref.tag.c_str())
                                                              : ref.digest.c_str(),
                ref.familiar_name().c_str());
    std::fflush(stdout);
  }
  auto pulled = unwrap(registry::pull_image(client, *store, ref, pull_options, progress_printer(opt.quiet)));
  if (opt.quiet) {
    std::printf("%s\n", ref.str().c_str());
    return;
  }
  std::printf("Digest: %s\n", pulled.repo_digest.c_str());
  std::printf("Status: %s for %s\n",
              pulled.up_to_date ? "Image is up to date" : "Downloaded newer image",
              ref.familiar().c_str());
  std::printf("%s\n", ref.str().c_str());
}

void run_push(const Context& ctx, const TransferOptions& opt) {
  std::string dest_text = opt.dest.empty() ? opt.ref : opt.dest;
  image::Reference dest = unwrap(image::parse_reference(dest_text));
  auto store = open_store(ctx);
  registry::Client client = transfer_client(opt);
  if (!opt.quiet) {
    std::printf("The push refers to repository [%s]\n", dest.name().c_str());
    std::fflush(stdout);
  }
  auto pushed = unwrap(registry::push_image(client, *store, opt.ref, dest, progress_printer(opt.quiet)));
  std::string tag = dest.digest.empty() ? (dest.tag.empty() ? "latest" : dest.tag) : dest.digest;
  std::printf("%s: digest: %s size: %llu\n", tag.c_str(), pushed.manifest_digest.c_str(),
              static_cast<unsigned long long>(pushed.manifest_size));
}

void add_transfer_flags(CLI::App* cmd, TransferOptions& opt) {
  cmd->add_option("--tls-verify", opt.tls_verify, "Verify the registry's TLS certificate (default true)");
  cmd->add_option("--cert-dir", opt.cert_dir,
                  "Per-registry certificate directory (default /etc/docker/certs.d)");
  cmd->add_flag("-q,--quiet", opt.quiet, "Suppress progress output");
}

}  // namespace

void register_registry_commands(CLI::App& app, Context& ctx) {
  auto pull_opts = std::make_shared<TransferOptions>();
  auto* pull = app.add_subcommand("pull", "Download an image from a registry");
  pull->add_option("ref", pull_opts->ref, "Image reference (NAME[:TAG|@DIGEST])")->required();
  pull->add_option("--platform", pull_opts->platform, "Platform to pull (os/arch[/variant]; default the host's)");
  pull->add_flag("-a,--all-platforms", pull_opts->all_platforms, "Pull every platform of a multi-platform image");
  add_transfer_flags(pull, *pull_opts);
  pull->callback([&ctx, pull_opts] { run_pull(ctx, *pull_opts); });

  auto push_opts = std::make_shared<TransferOptions>();
  auto* push = app.add_subcommand("push", "Upload an image to a registry");
  push->add_option("ref", push_opts->ref, "Image in the local store")->required();
  push->add_option("dest", push_opts->dest, "Destination reference (default REF)");
  add_transfer_flags(push, *push_opts);
  push->callback([&ctx, push_opts] { run_push(ctx, *push_opts); });

  auto login_opts = std::make_shared<LoginOptions>();
  auto* login = app.add_subcommand("login", "Log in to a registry (saved in docker's config.json)");
  login->add_option("registry", login_opts->registry, "Registry host[:port] (default Docker Hub)");
  login->add_option("-u,--username", login_opts->username, "User name");
  login->add_option("-p,--password", login_opts->password, "Password (prefer --password-stdin)");
  login->add_flag("--password-stdin", login_opts->password_stdin, "Read the password from stdin");
  login->add_option("--tls-verify", login_opts->tls_verify,
                    "Verify the registry's TLS certificate (default true)");
  login->add_option("--cert-dir", login_opts->cert_dir,
                    "Per-registry certificate directory (default /etc/docker/certs.d)");
  login->callback([login_opts] { run_login(*login_opts); });

  auto registry_arg = std::make_shared<std::string>();
  auto* logout = app.add_subcommand("logout", "Log out from a registry");
  logout->add_option("registry", *registry_arg, "Registry host[:port] (default Docker Hub)");
  logout->callback([registry_arg] { run_logout(*registry_arg); });
}

}  // namespace imgbuild::cli
