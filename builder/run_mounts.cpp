// One function per RUN --mount type. Cache mounts carry the one algorithm
// worth a note: the directory is <store>/cache-mounts/<hash of id>, made
// aside and renamed into place the first time (so a shared user never sees
// it half-seeded), and guarded by a lock file next to it (flock, so it holds
// across imgbuild processes): shared users hold it shared; locked waits for
// it exclusively; private takes it exclusively when free and otherwise gets
// a fresh directory of its own, discarded afterwards.

#include "builder/run_mounts.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <variant>

#include <fmt/format.h>

#include "builder/cache_io.hpp"
#include "builder/context.hpp"
#include "snapshot/copy.hpp"
#include "snapshot/layer_dirs.hpp"
#include "util/fs.hpp"
#include "util/io.hpp"
#include "util/hash.hpp"

namespace imgbuild::builder {

namespace fsys = std::filesystem;

void RunMounts::release() {
  m_relays.clear();
  for (auto& s : m_sources) {
    if (s.view) {
      (void)s.view->remove();
    }
  }
  m_sources.clear();
  m_locks.clear();
  m_temps.clear();
}

Result<fsys::path> RunMounts::temp_dir() {
  fsys::path d = m_tmp_root / ("run-" + io::random_hex());
  std::error_code ec;
  fsys::create_directories(d, ec);
  if (ec) {
    return fail(Errc::io, fmt::format("cannot create {}: {}", d.string(), ec.message()));
  }
  m_temps.push_back(io::TempDir::adopt(d.string()));
  return d;
}

fsys::path cache_mount_path(const fsys::path& store_root, const std::string& id) {
  return store_root / "cache-mounts" / sha256(id).hex().substr(0, 32);
}

Result<void> mount_bind(const BindMount& mount, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec) {
  TRY(SourceRoot src, env.roots->open_source(mount.source, mount.source.path));
  fsys::path host;
  {
    TRY(fs::Root sroot, fs::Root::open(src.path.string()));
    // Symlinks on the way are followed inside the source, never on the host.
    TRY(std::string sub, resolve_real_path(sroot, mount.source.path, false));
    host = src.path / sub;
    TRY(auto exists, sroot.lstat(sub));
    if (!sub.empty() && !exists) {
      return fail(Errc::not_found, fmt::format("failed to mount {}: \"/{}\": not found", mount.target,
                                               fs::clean_path(mount.source.path)));
    }
    if (!sub.empty() && exists && S_ISLNK(exists->st_mode)) {
      return fail(Errc::unsupported, fmt::format("bind mount source {} is a symlink", mount.source.path));
    }
  }
  if (!mount.read_only) {
    // Writes are discarded: mount a copy.
    TRY(fsys::path d, held.temp_dir());
    std::error_code ec;
    fsys::copy(host, d / "src", fsys::copy_options::recursive | fsys::copy_options::copy_symlinks, ec);
    host = d / "src";
  }
  spec.mounts.push_back(sandbox::BindMount{
      host, mount.target, mount.read_only ? sandbox::Access::read_only : sandbox::Access::read_write});
  held.keep(std::move(src));
  return ok();
}

namespace {

// Fills a new cache directory: the seed (a stage, image or context path),
// then mode and owner.
Result<void> seed_cache(const CacheMount& mount, const MountEnv& env, RunMounts& held, const fsys::path& into) {
  const MountSource& from = mount.source;
  if (!from.from.empty()) {
    TRY(SourceRoot src, env.roots->open_source(from, from.path));
    std::string sub = fs::clean_path(from.path);
    {
      TRY(fs::Root sroot, fs::Root::open(src.path.string()));
      // The seed is copied through a host path: no component may be a
      // symlink, or the copy could read outside the source.
      std::string prefix;
      for (const auto& comp : fs::clean_components(sub)) {
        prefix += (prefix.empty() ? "" : "/") + comp;
        TRY(auto cst, sroot.lstat(prefix));
        if (cst && S_ISLNK(cst->st_mode)) {
          return fail(Errc::invalid_argument,
                      fmt::format("cache mount {}: source \"/{}\" of {} goes through the symlink \"/{}\"", mount.id,
                                  sub, from.from, prefix));
        }
      }
      TRY(auto st, sroot.lstat(sub));
      if (!sub.empty() && !st) {
        return fail(Errc::not_found,
                    fmt::format("cache mount {}: \"/{}\" not found in {}", mount.id, sub, from.from));
      }
      if (st && !S_ISDIR(st->st_mode)) {
        return fail(Errc::invalid_argument,
                    fmt::format("cache mount {}: source \"/{}\" of {} is not a directory", mount.id, sub, from.from));
      }
    }
    TRY_VOID(snapshot::merge_layer(sub.empty() ? src.path : src.path / sub, into));
    held.keep(std::move(src));
  }
  if (mount.mode || from.from.empty()) {
    ::chmod(into.c_str(), mount.mode.value_or(0755));
  }
  if (mount.uid || mount.gid || from.from.empty()) {
    if (::chown(into.c_str(), mount.uid.value_or(0), mount.gid.value_or(0)) != 0) {
      return fail(Errc::io, fmt::format("cannot prepare cache mount {}: {}", mount.id, std::strerror(errno)));
    }
  }
  return ok();
}

// The cache directory the mount uses (see the file comment).
Result<fsys::path> cache_dir(const CacheMount& mount, const MountEnv& env, RunMounts& held) {
  fsys::path dir = cache_mount_path(env.store_root, mount.id);
  fsys::path parent = dir.parent_path();
  if (env.lease != nullptr) {
    TRY_VOID(env.lease->hold(image::LeaseKind::cache_mount, dir.filename().string()));  // cache prune --all keeps it
  }
  std::error_code ec;
  fsys::create_directories(parent, ec);
  fsys::path lock_path = parent / (dir.filename().string() + ".lock");
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) {
    return fail(Errc::io, fmt::format("cache mount {}: cannot open {}: {}", mount.id, lock_path.string(),
                                      std::strerror(errno)));
  }
  bool fresh = false;
  int op = mount.sharing == parser::CacheSharing::shared ? LOCK_SH : LOCK_EX;
  if (mount.sharing == parser::CacheSharing::private_) {
    op |= LOCK_NB;
  }
  while (::flock(lock.get(), op) != 0) {
    if (errno == EINTR) {
      continue;
    }
    if (errno == EWOULDBLOCK && mount.sharing == parser::CacheSharing::private_) {
      fresh = true;
      break;
    }
    return fail(Errc::io, fmt::format("cache mount {}: cannot lock {}: {}", mount.id, lock_path.string(),
                                      std::strerror(errno)));
  }
  if (fresh) {
    TRY(fsys::path d, held.temp_dir());
    fsys::path into = d / "cache";
    fsys::create_directory(into, ec);
    TRY_VOID(seed_cache(mount, env, held, into));
    return into;
  }
  held.hold(std::move(lock));
  bool imported = env.cache_io != nullptr && mount.source.from.empty();
  if (!fsys::exists(dir, ec)) {
    fsys::path tmp = parent / (".new-" + io::random_hex());
    fsys::create_directory(tmp, ec);
    io::TempDir aside = io::TempDir::adopt(tmp.string());  // gone unless renamed into place
    TRY_VOID(seed_cache(mount, env, held, tmp));
    if (imported) {
      env.cache_io->seed_mount(mount.id, tmp);  // --cache-from with mounts
    }
    (void)::rename(tmp.c_str(), dir.c_str());  // on failure another build made it first
  } else if (imported) {
    env.cache_io->seed_mount_if_empty(mount.id, dir);
  }
  return dir;
}

}  // namespace

Result<void> mount_cache(const CacheMount& mount, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec) {
  TRY(fsys::path dir, cache_dir(mount, env, held));
  spec.mounts.push_back(sandbox::BindMount{
      dir, mount.target, mount.read_only ? sandbox::Access::read_only : sandbox::Access::read_write});
  return ok();
}

Result<void> mount_tmpfs(const TmpfsMount& mount, sandbox::RunSpec& spec) {
  spec.tmpfs.push_back(sandbox::TmpfsMount{mount.target, mount.size});
  return ok();
}

Result<void> mount_secret(const SecretMount& mount, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec) {
  const SecretSource* source = nullptr;
  if (env.secrets != nullptr) {
    auto it = env.secrets->find(mount.id);
    source = it != env.secrets->end() ? &it->second : nullptr;
  }
  if (source == nullptr) {
    if (mount.required) {
      return fail(Errc::not_found, fmt::format("secret {}: not found", mount.id));
    }
    return ok();
  }
  std::string value;
  if (source->env) {
    const char* v = std::getenv(source->env->c_str());
    value = v != nullptr ? v : "";
  } else if (source->file) {
    UniqueFd in(::open(source->file->c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) {
      return fail(Errc::not_found,
                  fmt::format("secret {}: cannot read {}: {}", mount.id, *source->file, std::strerror(errno)));
    }
    TRY(value, io::read_all(in.get(), fmt::format("secret {}: {}", mount.id, *source->file)));
  }
  held.mask().add(value);
  if (mount.env) {
    spec.env.push_back(*mount.env + "=" + value);
  }
  if (!mount.target) {
    return ok();
  }
  TRY(fsys::path d, held.temp_dir());
  fsys::path file = d / "secret";
  {
    std::ofstream out(file, std::ios::binary);
    out << value;
  }
  ::chmod(file.c_str(), mount.mode);
  if (::chown(file.c_str(), mount.uid, mount.gid) != 0) {
    return fail(Errc::io, "cannot prepare secret " + mount.id);
  }
  spec.mounts.push_back(sandbox::BindMount{file, *mount.target, sandbox::Access::read_only});
  return ok();
}

Result<void> mount_ssh(const SshMount& mount, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec) {
  if (env.ssh_socket.empty()) {
    if (mount.required) {
      return fail(Errc::not_found, "no SSH key \"default\" forwarded from the client (use --ssh default)");
    }
    return ok();
  }
  TRY(fsys::path d, held.temp_dir());
  TRY(auto forwarder, SshForwarder::start(env.ssh_socket, d, mount.uid, mount.gid, mount.mode));
  spec.mounts.push_back(sandbox::BindMount{forwarder->path(), mount.target, sandbox::Access::read_write});
  held.relay(std::move(forwarder));
  spec.env.push_back("SSH_AUTH_SOCK=" + mount.target);
  return ok();
}

Result<void> add_mounts(const ResolvedRun& run, const MountEnv& env, RunMounts& held, sandbox::RunSpec& spec) {
  for (const auto& m : run.mounts) {
    TRY_VOID(std::visit(
        [&](const auto& mount) -> Result<void> {
          using T = std::decay_t<decltype(mount)>;
          if constexpr (std::is_same_v<T, BindMount>) {
            return mount_bind(mount, env, held, spec);
          } else if constexpr (std::is_same_v<T, CacheMount>) {
            return mount_cache(mount, env, held, spec);
          } else if constexpr (std::is_same_v<T, TmpfsMount>) {
            return mount_tmpfs(mount, spec);
          } else if constexpr (std::is_same_v<T, SecretMount>) {
            return mount_secret(mount, env, held, spec);
          } else {
            return mount_ssh(mount, env, held, spec);
          }
        },
        m));
  }
  return ok();
}

}  // namespace imgbuild::builder
