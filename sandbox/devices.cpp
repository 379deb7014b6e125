// The device cgroup of a run: a cgroup v2 directory beside imgbuild's own,
// with a BPF_PROG_TYPE_CGROUP_DEVICE program compiled from the rule table.
//
// The kernel calls the program with (access_type, major, minor): the low 16
// bits of access_type are the node type (1 block, 2 char), the high 16 the
// access asked for (1 mknod, 2 read, 4 write); returning 1 allows it. The
// program is a chain of blocks, one per rule:
//
//     if type != rule.type        goto next
//     if major != rule.major      goto next   (only when the rule names one)
//     if minor != rule.minor      goto next   (likewise)
//     if access & ~rule.access    goto next
//     return 1
//   next: …
//     return 0
//
// so that a request is allowed when one rule covers all of it, as runc's
// device filter decides.

#include "sandbox/devices.hpp"

#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <thread>

#include "util/io.hpp"
#include "util/mountinfo.hpp"
#include "util/strings.hpp"

namespace imgbuild::sandbox::detail {

namespace {

constexpr const char* k_prefix = "imgbuild-run-";

// ---- the program ----------------------------------------------------------

bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

bpf_insn load_u32(uint8_t dst, int16_t offset) { return insn(BPF_LDX | BPF_MEM | BPF_W, dst, BPF_REG_1, offset, 0); }
bpf_insn mov_reg(uint8_t dst, uint8_t src) { return insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0); }
bpf_insn mov_imm(uint8_t dst, int32_t imm) { return insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm); }
bpf_insn and_imm(uint8_t dst, int32_t imm) { return insn(BPF_ALU64 | BPF_AND | BPF_K, dst, 0, 0, imm); }
bpf_insn rsh_imm(uint8_t dst, int32_t imm) { return insn(BPF_ALU64 | BPF_RSH | BPF_K, dst, 0, 0, imm); }
bpf_insn jne_imm(uint8_t dst, int32_t imm, int16_t off) { return insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm); }
bpf_insn exit_insn() { return insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }

int32_t type_code(char type) { return type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR; }

std::vector<bpf_insn> compile(const std::vector<DeviceRule>& rules) {
  std::vector<bpf_insn> p;
  // r2 = access, r3 = type, r4 = major, r5 = minor
  p.push_back(load_u32(BPF_REG_2, 0));
  p.push_back(mov_reg(BPF_REG_3, BPF_REG_2));
  p.push_back(and_imm(BPF_REG_3, 0xffff));
  p.push_back(rsh_imm(BPF_REG_2, 16));
  p.push_back(load_u32(BPF_REG_4, 4));
  p.push_back(load_u32(BPF_REG_5, 8));
  for (const DeviceRule& r : rules) {
    std::vector<bpf_insn> block;
    // Jumps are written with offset 0 and patched to the block's end below.
    std::vector<size_t> to_next;
    to_next.push_back(block.size());
    block.push_back(jne_imm(BPF_REG_3, type_code(r.type), 0));
    if (r.major >= 0) {
      to_next.push_back(block.size());
      block.push_back(jne_imm(BPF_REG_4, static_cast<int32_t>(r.major), 0));
    }
    if (r.minor >= 0) {
      to_next.push_back(block.size());
      block.push_back(jne_imm(BPF_REG_5, static_cast<int32_t>(r.minor), 0));
    }
    block.push_back(mov_reg(BPF_REG_6, BPF_REG_2));
    block.push_back(and_imm(BPF_REG_6, static_cast<int32_t>(~r.access & 0xffffu)));
    to_next.push_back(block.size());
    block.push_back(jne_imm(BPF_REG_6, 0, 0));
    block.push_back(mov_imm(BPF_REG_0, 1));
    block.push_back(exit_insn());
    for (size_t at : to_next) {
      block[at].off = static_cast<int16_t>(block.size() - at - 1);
    }
    p.insert(p.end(), block.begin(), block.end());
  }
  p.push_back(mov_imm(BPF_REG_0, 0));
  p.push_back(exit_insn());
  return p;
}

long bpf(int cmd, bpf_attr& attr) { return ::syscall(SYS_bpf, cmd, &attr, sizeof attr); }

// ---- where the cgroup goes ------------------------------------------------

// The directory of imgbuild's own cgroup in the v2 hierarchy, or "" with
// the reason.
std::string own_cgroup_dir(std::string& why) {
  auto read = io::read_all("/proc/self/cgroup");
  const std::string cgroups = read ? std::move(*read) : std::string();
  std::string rel;
  bool found = false;
  for (std::string_view line : str::split_lines(cgroups)) {
    if (line.starts_with("0::")) {
      rel = std::string(line.substr(3));
      found = true;
    }
  }
  if (!found) {
    why = "no cgroup v2 hierarchy";
    return {};
  }
  for (const mountinfo::Mount& m : mountinfo::read_self()) {
    if (m.fs_type != "cgroup2") {
      continue;
    }
    // The mount shows the hierarchy from its root down; our cgroup must lie there.
    std::string sub;
    if (m.root == "/") {
      sub = rel;
    } else if (rel == m.root || rel.starts_with(m.root + "/")) {
      sub = rel.substr(m.root.size());
    } else {
      continue;
    }
    return m.mount_point + (sub == "/" ? std::string() : sub);
  }
  why = "the cgroup v2 hierarchy is not mounted";
  return {};
}

// Removes run cgroups left by imgbuild processes that are gone (SIGKILL).
void sweep_stale(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind(k_prefix, 0) != 0) {
      continue;
    }
    std::string rest = name.substr(std::strlen(k_prefix));
    long pid = std::strtol(rest.c_str(), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      ::rmdir(e.path().c_str());
    }
  }
}

}  // namespace

const std::vector<DeviceRule>& default_device_rules() {
  constexpr unsigned rwm = k_dev_read | k_dev_write | k_dev_mknod;
  static const std::vector<DeviceRule> rules = {
      {'c', -1, -1, k_dev_mknod},  // any node may be created…
      {'b', -1, -1, k_dev_mknod},  // …but only these opened:
      {'c', 1, 3, rwm},            // /dev/null
      {'c', 1, 5, rwm},            // /dev/zero
      {'c', 1, 7, rwm},            // /dev/full
      {'c', 1, 8, rwm},            // /dev/random
      {'c', 1, 9, rwm},            // /dev/urandom
      {'c', 5, 0, rwm},            // /dev/tty
      {'c', 5, 1, rwm},            // /dev/console
      {'c', 5, 2, rwm},            // /dev/ptmx
      {'c', 136, -1, rwm},         // /dev/pts/*
  };
  return rules;
}

bool device_allowed(const std::vector<DeviceRule>& rules, char type, long major, long minor, unsigned access) {
  for (const DeviceRule& r : rules) {
    if (r.type == type && (r.major < 0 || r.major == major) && (r.minor < 0 || r.minor == minor) &&
        (access & ~r.access) == 0) {
      return true;
    }
  }
  return false;
}

DeviceCgroup::DeviceCgroup(DeviceCgroup&& other) noexcept
    : m_path(std::exchange(other.m_path, std::string())), m_procs(std::move(other.m_procs)) {}

DeviceCgroup& DeviceCgroup::operator=(DeviceCgroup&& other) noexcept {
  if (this != &other) {
    remove();
    m_path = std::exchange(other.m_path, std::string());
    m_procs = std::move(other.m_procs);
  }
  return *this;
}

DeviceCgroup::~DeviceCgroup() { remove(); }

void DeviceCgroup::remove() noexcept {
  m_procs.reset();
  if (m_path.empty()) {
    return;
  }
  // The run's processes are gone by now; their exit may still be settling.
  for (int attempt = 0; attempt < 200; ++attempt) {
    if (::rmdir(m_path.c_str()) == 0 || errno != EBUSY) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  m_path.clear();
}

std::optional<DeviceCgroup> DeviceCgroup::create(std::string* why) {
  std::string reason;
  auto unavailable = [&](std::string r) -> std::optional<DeviceCgroup> {
    if (why != nullptr) {
      *why = std::move(r);
    }
    return std::nullopt;
  };
  if (const char* off = std::getenv("IMGBUILD_DEVICE_CGROUP"); off != nullptr && std::string_view(off) == "off") {
    return unavailable("IMGBUILD_DEVICE_CGROUP=off");
  }
  std::string parent = own_cgroup_dir(reason);
  if (parent.empty()) {
    return unavailable(reason);
  }
  sweep_stale(parent);
  static std::atomic<unsigned> counter{0};
  std::string path = parent + "/" + k_prefix + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  if (::mkdir(path.c_str(), 0755) != 0) {
    return unavailable("cannot create cgroup " + path + ": " + std::strerror(errno));
  }
  DeviceCgroup cg(path, UniqueFd());
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    return unavailable("cannot open cgroup " + path + ": " + std::strerror(errno));
  }
  std::vector<bpf_insn> code = compile(default_device_rules());
  static const char license[] = "Apache-2.0";
  bpf_attr load{};
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = reinterpret_cast<uint64_t>(code.data());
  load.insn_cnt = static_cast<uint32_t>(code.size());
  load.license = reinterpret_cast<uint64_t>(license);
  UniqueFd prog(static_cast<int>(bpf(BPF_PROG_LOAD, load)));
  if (!prog) {
    return unavailable(std::string("cannot load the device program: ") + std::strerror(errno));
  }
  bpf_attr attach{};
  attach.target_fd = static_cast<uint32_t>(dir.get());
  attach.attach_bpf_fd = static_cast<uint32_t>(prog.get());
  attach.attach_type = BPF_CGROUP_DEVICE;
  if (bpf(BPF_PROG_ATTACH, attach) != 0) {
    return unavailable(std::string("cannot attach the device program: ") + std::strerror(errno));
  }
  cg.m_procs.reset(::openat(dir.get(), "cgroup.procs", O_WRONLY | O_CLOEXEC));
  if (!cg.m_procs) {
    return unavailable("cannot open " + path + "/cgroup.procs: " + std::strerror(errno));
  }
  // The run's monitor must be able to join (a cgroup layout may refuse
  // processes there): a short-lived child tries it first.
  pid_t probe = ::fork();
  if (probe == 0) {
    ::_exit(::write(cg.m_procs.get(), "0", 1) == 1 ? 0 : 1);
  }
  int status = 0;
  while (probe > 0 && ::waitpid(probe, &status, 0) < 0 && errno == EINTR) {
  }
  if (probe < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return unavailable("cannot move a process into cgroup " + path);
  }
  return std::optional<DeviceCgroup>(std::move(cg));
}

}  // namespace imgbuild::sandbox::detail
