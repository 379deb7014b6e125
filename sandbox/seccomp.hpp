#pragma once
// The system-call filter of the sandbox: what Docker's default seccomp
// profile allows a container with Docker's default capabilities, compiled
// once per process into a classic BPF program that a sandboxed child loads
// with one system call (no allocation after fork).

#include <linux/filter.h>

#include <vector>

#include "util/result.hpp"

namespace imgbuild::sandbox::detail {

/// A compiled seccomp program (classic BPF), ready for
/// seccomp(SECCOMP_SET_MODE_FILTER).
struct SeccompProgram {
  std::vector<sock_filter> code;
};

/// The filter equivalent to Docker's default profile (moby
/// profiles/seccomp/default.json, the one BuildKit v0.22 applies to RUN) for
/// a process holding Docker's default capability set: about 350 system calls
/// are allowed, every other one fails with EPERM. Conditional rules as
/// Docker's: clone only without namespace flags, clone3 fails with ENOSYS (so
/// that libc falls back to clone), socket of any family but AF_VSOCK,
/// personality only for the harmless personas, chroot (CAP_SYS_CHROOT is a
/// default capability). mount, unshare, setns, bpf, keyctl, ptrace-like
/// calls that need CAP_SYS_PTRACE and friends are refused. The native
/// architecture and its compat ABIs (x86 and x32 on x86_64, arm on aarch64)
/// are covered. Built on first call, then shared (thread-safe).
Result<const SeccompProgram*> default_seccomp_program();

/// Loads `program` into the calling process (async-signal-safe: one system
/// call). Without no_new_privs this needs CAP_SYS_ADMIN, so call it before
/// capabilities are dropped, as runc does. Returns 0 or -1 with errno set.
int load_seccomp(const SeccompProgram& program) noexcept;

}  // namespace imgbuild::sandbox::detail
