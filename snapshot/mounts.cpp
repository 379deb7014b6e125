#include "snapshot/mounts.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "util/fd.hpp"
#include "util/io.hpp"
#include "util/mountinfo.hpp"
#include "util/rootless.hpp"
#include "util/strings.hpp"

namespace imgbuild::snapshot::mounts {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view k_magic = "imgbuild-mount-record 1";

// A file's text; "" when it cannot be read.
std::string read_text(const fs::path& p) {
  auto text = io::read_all(p.string());
  return text ? std::move(*text) : std::string();
}

// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or ""
// when the process does not exist.
std::string process_start_time(long pid) {
  std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos) {
    return {};
  }
  // Fields after the command name start at field 3.
  std::vector<std::string> fields = str::split(std::string_view(stat).substr(close + 2), ' ');
  if (fields.size() < 20) {
    return {};
  }
  return fields[19];
}

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      out += s[i + 1] == 'n' ? '\n' : s[i + 1];
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

// True when child lies strictly inside dir (lexically, both absolute).
bool strictly_inside(const fs::path& child, const fs::path& dir) {
  fs::path c = child.lexically_normal();
  fs::path d = dir.lexically_normal();
  if (!c.is_absolute() || !d.is_absolute()) {
    return false;
  }
  auto rel = c.lexically_relative(d);
  return !rel.empty() && *rel.begin() != ".." && rel != ".";
}

}  // namespace

const char* opaque_xattr() {
  // trusted.* needs CAP_SYS_ADMIN: in a rootless namespace (overlay with
  // userxattr) and for root without it (a container with Docker's default
  // profile: no overlay at all, the copy snapshotter keeps the marker)
  // the user.* form is used.
  static const bool admin = [] {
    struct __user_cap_header_struct header {};
    header.version = _LINUX_CAPABILITY_VERSION_3;
    struct __user_cap_data_struct data[2] = {};
    return ::syscall(SYS_capget, &header, data) == 0 && (data[CAP_SYS_ADMIN / 32].effective & (1U << (CAP_SYS_ADMIN % 32))) != 0;
  }();
  return rootless::active() || !admin ? "user.overlay.opaque" : "trusted.overlay.opaque";
}

bool is_overlay_xattr(std::string_view name) {
  return name.rfind("trusted.overlay.", 0) == 0 || name.rfind("user.overlay.", 0) == 0;
}

MountRecord& MountRecord::operator=(MountRecord&& o) noexcept {
  if (this != &o) {
    erase();
    m_path = std::move(o.m_path);
    o.m_path.clear();
  }
  return *this;
}

Result<MountRecord> MountRecord::create(const fs::path& runtime_dir, const std::string& id,
                                        const std::vector<fs::path>& mount_points,
                                        const std::vector<fs::path>& remove_dirs) {
  std::error_code ec;
  fs::path dir = runtime_dir / "mounts";
  fs::create_directories(dir, ec);
  if (ec) {
    return fail(Errc::io, "cannot create " + dir.string() + ": " + ec.message());
  }
  std::string text(k_magic);
  text += "\npid " + std::to_string(::getpid()) + "\nstart " + process_start_time(::getpid()) + "\n";
  for (const fs::path& m : mount_points) {
    text += "mount " + str::escape_line(m.string()) + "\n";
  }
  for (const fs::path& r : remove_dirs) {
    text += "remove " + str::escape_line(r.string()) + "\n";
  }
  fs::path final_path = dir / id;
  fs::path tmp = dir / ("." + id + ".tmp");
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) {
      return fail(Errc::io, "cannot write mount record " + tmp.string() + ": " + std::strerror(errno));
    }
    // Not fsync'd: a record matters while its mounts exist, and a power
    // loss ends them both (a record it leaves empty is skipped as not ours).
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      return fail(Errc::io, "cannot write mount record " + tmp.string() + ": " + std::strerror(errno));
    }
  }
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    return fail(Errc::io, "cannot write mount record " + final_path.string() + ": " + std::strerror(errno));
  }
  MountRecord r;
  r.m_path = final_path;
  return r;
}

void MountRecord::erase() noexcept {
  if (!m_path.empty()) {
    ::unlink(m_path.c_str());
    m_path.clear();
  }
}

Result<void> mount_overlay(const std::vector<fs::path>& lowers_top_first, const fs::path& upper,
                           const fs::path& work, const fs::path& target) {
  UniqueFd fsfd(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!fsfd) {
    return fail(Errc::unsupported, std::string("overlayfs is not available: ") + std::strerror(errno));
  }
  auto kernel_says = [&](const std::string& what) {
    std::string msg = what + ": " + std::strerror(errno);
    char buf[512];
    ssize_t n;
    while ((n = ::read(fsfd.get(), buf, sizeof buf - 1)) > 0) {
      buf[n] = '\0';
      msg += std::string(" (") + str::trim(buf).data() + ")";
    }
    return fail(Errc::io, msg);
  };
  auto set = [&](const char* key, const std::string& value) {
    return ::fsconfig(fsfd.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) == 0;
  };
  for (const fs::path& lower : lowers_top_first) {
    if (!set("lowerdir+", lower.string())) {
      return kernel_says("overlay: cannot add lower layer " + lower.string());
    }
  }
  if (!set("upperdir", upper.string()) || !set("workdir", work.string())) {
    return kernel_says("overlay: cannot set upper " + upper.string());
  }
  // In a user namespace overlayfs keeps its whiteouts and opaque markers in
  // user.overlay.* xattrs (trusted.* needs root of the host), and then
  // refuses to follow redirects: redirect_dir=nofollow there, off as root
  // (neither creates one, so the upper dir stays a plain diff).
  const bool user_xattr = rootless::active();
  if (user_xattr && ::fsconfig(fsfd.get(), FSCONFIG_SET_FLAG, "userxattr", nullptr, 0) != 0) {
    return kernel_says("overlay: cannot set userxattr (rootless mode needs Linux 5.11 or later)");
  }
  if (!set("redirect_dir", user_xattr ? "nofollow" : "off")) {
    return kernel_says("overlay: cannot set redirect_dir");
  }
  for (const char* key : {"index", "metacopy"}) {
    if (!set(key, "off")) {
      return kernel_says(std::string("overlay: cannot set ") + key);
    }
  }
  // volatile (Linux 5.10+): no sync of the upper filesystem when the mount
  // goes away. Without it every unmount flushes all of the filesystem's
  // dirty data (a step's files, and everything else written since), 60 ms
  // and more a step. Views are scratch space: a committed layer directory
  // is an unpacked copy of its layer, whose blob is fsync'd in the content
  // store. Older kernels refuse the flag; they get the plain mount.
  (void)::fsconfig(fsfd.get(), FSCONFIG_SET_FLAG, "volatile", nullptr, 0);
  if (::fsconfig(fsfd.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return kernel_says("overlay: cannot create the mount for " + target.string());
  }
  UniqueFd mnt(::fsmount(fsfd.get(), FSMOUNT_CLOEXEC, 0));
  if (!mnt) {
    return kernel_says("overlay: fsmount for " + target.string());
  }
  if (::move_mount(mnt.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    return fail(Errc::io, "overlay: cannot attach the mount at " + target.string() + ": " + std::strerror(errno));
  }
  return ok();
}

Result<void> unmount(const fs::path& target) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) == 0) {
      continue;  // stacked mounts: unmount until nothing is left
    }
    if (errno == EINVAL || errno == ENOENT) {
      return ok();  // not (or no longer) a mount point
    }
    if (errno != EBUSY) {
      return fail(Errc::io, "cannot unmount " + target.string() + ": " + std::strerror(errno));
    }
    ::usleep(10000);
  }
  if (::umount2(target.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL && errno != ENOENT) {
    return fail(Errc::io, "cannot unmount " + target.string() + ": " + std::strerror(errno));
  }
  return ok();
}

namespace {

// The mount points of this mount namespace, in mountinfo's order.
std::vector<std::string> mount_points() {
  std::vector<std::string> out;
  for (mountinfo::Mount& m : mountinfo::read_self()) {
    out.push_back(std::move(m.mount_point));
  }
  return out;
}

}  // namespace

bool is_mount_point(const fs::path& path) {
  std::string want = fs::path(path).lexically_normal().string();
  for (const std::string& mp : mount_points()) {
    if (mp == want) {
      return true;
    }
  }
  return false;
}

Result<std::vector<RecordInfo>> list_records(const fs::path& runtime_dir) {
  fs::path dir = runtime_dir / "mounts";
  std::error_code ec;
  std::vector<RecordInfo> out;
  if (!fs::is_directory(dir, ec)) {
    return out;
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') {
      continue;
    }
    auto lines = str::record_lines(read_text(entry.path()), k_magic);
    if (!lines) {
      continue;  // not ours, or a newer format: leave it alone
    }
    RecordInfo info;
    info.file = entry.path();
    std::string start;
    for (const auto& [key, value] : *lines) {
      if (key == "pid") {
        info.pid = std::strtol(value.c_str(), nullptr, 10);
      } else if (key == "start") {
        start = value;
      } else if (key == "mount") {
        info.mounts.emplace_back(unescape(value));
      } else if (key == "remove") {
        info.removes.emplace_back(unescape(value));
      }
    }
    info.live = info.pid > 0 && !start.empty() && process_start_time(info.pid) == start;
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(), [](const RecordInfo& a, const RecordInfo& b) { return a.file < b.file; });
  return out;
}

Result<void> undo_record(const RecordInfo& record, const fs::path& work_dir) {
  for (const fs::path& m : record.mounts) {
    TRY_VOID(unmount(m));
  }
  std::error_code ec;
  for (const fs::path& r : record.removes) {
    if (strictly_inside(r, work_dir) && !is_mount_point(r)) {
      fs::remove_all(r, ec);
    }
  }
  ::unlink(record.file.c_str());
  return ok();
}

std::vector<fs::path> mount_points_under(const fs::path& dir) {
  std::vector<fs::path> out;
  fs::path base = dir.lexically_normal();
  for (const std::string& mp : mount_points()) {
    if (strictly_inside(fs::path(mp), base)) {
      out.emplace_back(mp);
    }
  }
  return out;
}

Result<size_t> cleanup_stale(const fs::path& runtime_dir, const fs::path& work_dir) {
  TRY(std::vector<RecordInfo> records, list_records(runtime_dir));
  size_t reclaimed = 0;
  for (const auto& record : records) {
    if (record.live) {
      continue;  // its owner still runs
    }
    TRY_VOID(undo_record(record, work_dir));
    ++reclaimed;
  }
  return reclaimed;
}

}  // namespace imgbuild::snapshot::mounts
