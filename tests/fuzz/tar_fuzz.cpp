// libFuzzer target: arbitrary bytes as a (possibly compressed) layer tar,
// read with util/tar and applied with snapshot/apply into a scratch root.
// The first input byte picks the whiteout mode. After every input the
// scratch root is emptied and a sentinel beside it is checked: any write
// outside the root aborts (a crash for the fuzzer).

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "snapshot/apply.hpp"
#include "util/fs.hpp"
#include "util/tar.hpp"

using namespace imgbuild;

namespace {

struct Scratch {
  std::string base;
  std::string root;
  std::string sentinel;

  Scratch() {
    // Under $TMPDIR (scripts/fuzz points it into build-fuzz/ and empties it).
    const char* tmpdir = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") + "/imgbuild-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::abort();
    }
    base = tmpl;
    root = base + "/root";
    sentinel = base + "/outside";
    if (::mkdir(root.c_str(), 0755) != 0 || ::mkdir(sentinel.c_str(), 0755) != 0) {
      std::abort();
    }
  }

  // The sentinel directory must stay empty with its original mode.
  void check_outside() const {
    struct stat st {};
    if (::lstat(sentinel.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_mode & 07777) != 0755 ||
        st.st_nlink != 2) {
      std::fprintf(stderr, "tar_fuzz: something outside the root changed\n");
      std::abort();
    }
    auto base_root = fs::Root::open(base);
    if (!base_root) {
      std::abort();
    }
    auto names = fs::list_dir(base_root->fd());
    if (!names || names->size() != 2) {
      std::fprintf(stderr, "tar_fuzz: an entry appeared beside the root\n");
      std::abort();
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Scratch scratch;
  if (size == 0) {
    return 0;
  }
  snapshot::ApplyOptions options;
  options.mode = (data[0] & 1) != 0 ? snapshot::ApplyMode::overlay_lower : snapshot::ApplyMode::merged;
  std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
  size_t pos = 0;
  tar::ReadFn source = [&](void* buf, size_t cap) -> Result<size_t> {
    size_t n = std::min(cap, input.size() - pos);
    std::memcpy(buf, input.data() + pos, n);
    pos += n;
    return n;
  };
  auto root = fs::Root::open(scratch.root);
  if (!root) {
    std::abort();
  }
  auto reader = tar::Reader::open(std::move(source), "fuzz.tar");
  if (reader) {
    auto result = snapshot::apply_layer(*root, **reader, options);
    (void)result;
  }
  scratch.check_outside();
  auto cleared = fs::clear_dir(root->fd());
  (void)cleared;
  return 0;
}
