#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "image/lease.hpp"
#include "support/scratch_dir.hpp"

using namespace imgbuild;
using namespace imgbuild::image;
using imgbuild::test::ScratchDir;
namespace fs = std::filesystem;

namespace {

size_t lease_files(const fs::path& root) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(lease_dir(root))) {
    n += e.path().extension() == ".lease" ? 1 : 0;
  }
  return n;
}

}  // namespace

TEST_CASE("lease: what a live lease holds is in the snapshot until the lease goes", "[image][lease]") {
  ScratchDir dir;
  fs::path root = dir.path();
  {
    Lease lease(root);
    REQUIRE(lease.hold(LeaseKind::blob, "sha256:aa"));
    REQUIRE(lease.hold({{LeaseKind::layer, "sha256:bb"}, {LeaseKind::record, "sha256:cc"},
                        {LeaseKind::cache_mount, "m1"}, {LeaseKind::blob, "sha256:aa"}}));
    auto snap = LeaseSnapshot::take(root);
    REQUIRE(snap);
    CHECK(snap->holds(LeaseKind::blob, "sha256:aa"));
    CHECK(snap->holds(LeaseKind::layer, "sha256:bb"));
    CHECK(snap->holds(LeaseKind::record, "sha256:cc"));
    CHECK(snap->holds(LeaseKind::cache_mount, "m1"));
    CHECK_FALSE(snap->holds(LeaseKind::layer, "sha256:aa"));  // kinds are apart
    CHECK(snap->holders() == std::vector<long>{static_cast<long>(::getpid())});
    CHECK(snap->stale_removed() == 0);
    CHECK(lease_files(root) == 1);
  }
  CHECK(lease_files(root) == 0);
  auto after = LeaseSnapshot::take(root);
  REQUIRE(after);
  CHECK_FALSE(after->holds(LeaseKind::blob, "sha256:aa"));
  CHECK(after->holders().empty());
}

TEST_CASE("lease: the lease of a process that died is stale, ignored and deleted", "[image][lease]") {
  ScratchDir dir;
  fs::path root = dir.path();
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // A process that ends without cleaning up, as SIGKILL would leave it.
    auto* lease = new Lease(root);
    bool held = static_cast<bool>(lease->hold(LeaseKind::blob, "sha256:dead"));
    ::_exit(held ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(lease_files(root) == 1);
  auto snap = LeaseSnapshot::take(root);
  REQUIRE(snap);
  CHECK_FALSE(snap->holds(LeaseKind::blob, "sha256:dead"));
  CHECK(snap->stale_removed() == 1);
  CHECK(lease_files(root) == 0);
}
