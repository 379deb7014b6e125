// Tar reading and writing over libarchive.
//
// Reading runs two libarchive readers in a pipe: the outer one only
// decompresses (filters gzip/bzip2/xz/zstd, format "raw"), the inner one parses
// tar from the outer one's output. Every decompressed byte passes through the
// pipe, so the diff_id is hashed there — including bytes after the end marker,
// which finish() drains. Only those four decompressors are enabled: libarchive
// would run an external program for others. Past the first few MiB the hash
// runs on a worker thread over a ring of pipe buffers (ChunkHasher), so that
// unpacking a big layer costs about what `tar -x` costs when a core is free.
//
// Writing uses libarchive's PAX writer for the tar stream and compresses
// through util/compress (parallel, deterministic gzip and zstd), because the
// bytes of libarchive's own compressors (gzip header timestamp, thread
// count) are not ours to pin.

#include "util/tar.hpp"

#include "util/compress.hpp"
#include "util/fault.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include <fmt/format.h>

namespace imgbuild::tar {

namespace {

constexpr size_t k_chunk = 128 * 1024;

std::string archive_message(archive* a) {
  const char* s = archive_error_string(a);
  return s != nullptr ? std::string(s) : std::string("unknown libarchive error");
}

// Drops "./" and "/" prefixes and trailing "/" for ordering purposes.
std::string_view trim_for_order(std::string_view p) {
  while (true) {
    if (p.substr(0, 2) == "./") {
      p.remove_prefix(2);
    } else if (!p.empty() && p.front() == '/') {
      p.remove_prefix(1);
    } else {
      break;
    }
  }
  while (!p.empty() && p.back() == '/') {
    p.remove_suffix(1);
  }
  return p;
}

int name_rank(std::string_view name) {
  if (name == k_opaque_marker) {
    return 0;
  }
  if (name.substr(0, k_whiteout_prefix.size()) == k_whiteout_prefix) {
    return 1;
  }
  return 2;
}


}  // namespace

std::string_view entry_type_name(EntryType t) {
  switch (t) {
    case EntryType::file: return "file";
    case EntryType::dir: return "directory";
    case EntryType::symlink: return "symlink";
    case EntryType::hardlink: return "hardlink";
    case EntryType::char_device: return "character device";
    case EntryType::block_device: return "block device";
    case EntryType::fifo: return "fifo";
  }
  return "unknown";
}

std::string_view compression_name(Compression c) {
  switch (c) {
    case Compression::none: return "none";
    case Compression::gzip: return "gzip";
    case Compression::zstd: return "zstd";
    case Compression::bzip2: return "bzip2";
    case Compression::xz: return "xz";
  }
  return "unknown";
}

bool layer_path_less(std::string_view a, std::string_view b) {
  a = trim_for_order(a);
  b = trim_for_order(b);
  while (true) {
    if (a.empty() || b.empty()) {
      return a.empty() && !b.empty();
    }
    size_t ea = a.find('/');
    size_t eb = b.find('/');
    std::string_view ca = a.substr(0, ea);
    std::string_view cb = b.substr(0, eb);
    if (ca != cb) {
      int ra = name_rank(ca);
      int rb = name_rank(cb);
      if (ra != rb) {
        return ra < rb;
      }
      return ca < cb;
    }
    a = ea == std::string_view::npos ? std::string_view() : a.substr(ea + 1);
    b = eb == std::string_view::npos ? std::string_view() : b.substr(eb + 1);
  }
}

void sort_layer_paths(std::vector<std::string>& paths) {
  std::sort(paths.begin(), paths.end(),
            [](const std::string& x, const std::string& y) { return layer_path_less(x, y); });
}

// ---------------------------------------------------------------- reading

// sha256 over a sequence of buffers from a fixed ring. The first
// k_sync_bytes are hashed inline (small archives never start a thread);
// then each buffer is handed to a worker, and buffer() waits until the
// worker is done with a slot before giving it out again.
class ChunkHasher {
public:
  static constexpr size_t k_slots = 4;
  static constexpr uint64_t k_sync_bytes = 4 << 20;

  ChunkHasher() {
    for (auto& b : m_slots) {
      b.resize(k_chunk);
    }
  }
  ~ChunkHasher() {
    if (m_worker.joinable()) {
      {
        std::lock_guard lock(m_mu);
        m_stop = true;
      }
      m_cv.notify_all();
      m_worker.join();
    }
  }
  ChunkHasher(const ChunkHasher&) = delete;
  ChunkHasher& operator=(const ChunkHasher&) = delete;

  // The next buffer to fill (k_chunk bytes), free of the worker.
  char* buffer() {
    std::unique_lock lock(m_mu);
    m_cv.wait(lock, [&] { return m_done + k_slots > m_submitted; });
    return m_slots[m_submitted % k_slots].data();
  }

  // Hashes the first n bytes of the buffer last returned by buffer().
  void submit(size_t n) {
    if (m_off) {
      return;  // the slot is free again at once
    }
    size_t slot = m_submitted % k_slots;
    if (!m_worker.joinable() && m_inline + n <= k_sync_bytes) {
      m_hash.update(m_slots[slot].data(), n);
      m_inline += n;
      return;  // the slot is free again at once
    }
    if (!m_worker.joinable()) {
      m_worker = std::thread([this] { work(); });
    }
    {
      std::lock_guard lock(m_mu);
      m_sizes[slot] = n;
      ++m_submitted;
    }
    m_cv.notify_all();
  }

  Sha256Digest finish() {
    std::unique_lock lock(m_mu);
    m_cv.wait(lock, [&] { return m_done == m_submitted; });
    if (m_off) {
      return Sha256Digest{};
    }
    return m_hash.finish();
  }

  // Buffers submitted from now on are not hashed (what was submitted
  // before still is, by the worker, harmlessly).
  void stop() { m_off = true; }

private:
  void work() {
    std::unique_lock lock(m_mu);
    while (true) {
      m_cv.wait(lock, [&] { return m_stop || m_done < m_submitted; });
      if (m_done == m_submitted) {
        return;  // stopping with nothing left
      }
      size_t slot = m_done % k_slots;
      size_t n = m_sizes[slot];
      lock.unlock();
      m_hash.update(m_slots[slot].data(), n);
      lock.lock();
      ++m_done;
      m_cv.notify_all();
    }
  }

  std::array<std::vector<char>, k_slots> m_slots;
  std::array<size_t, k_slots> m_sizes{};
  Sha256 m_hash;
  uint64_t m_inline = 0;
  bool m_off = false;  // only touched by the reading thread
  std::mutex m_mu;
  std::condition_variable m_cv;
  uint64_t m_submitted = 0;  // buffers handed to the worker
  uint64_t m_done = 0;       // buffers the worker has hashed
  bool m_stop = false;
  std::thread m_worker;
};

struct Reader::Impl {
  std::string name;
  ReadFn source;
  archive* outer = nullptr;
  archive* inner = nullptr;
  std::vector<char> in_buf = std::vector<char>(k_chunk);
  ChunkHasher hash;
  uint64_t total = 0;
  std::optional<Error> source_error;
  Compression compression = Compression::none;
  uint64_t max_total = 0;
  bool limit_hit = false;
  bool outer_eof = false;
  bool at_end = false;
  bool finished = false;
  std::string current;  // path of the current entry, for messages
  WriteFn tee;          // receives the decompressed bytes (open_fd_tee)

  ~Impl() {
    if (inner != nullptr) {
      archive_read_free(inner);
    }
    if (outer != nullptr) {
      archive_read_free(outer);
    }
  }

  Error error(std::string what) const {
    if (source_error) {
      Error e = *source_error;
      e.with_context("reading " + name);
      return e;
    }
    if (limit_hit) {
      return Error(Errc::limit, fmt::format("{}: decompressed size exceeds the limit of {} bytes", name, max_total));
    }
    if (current.empty()) {
      return Error(Errc::corrupt, fmt::format("{}: {}", name, what));
    }
    return Error(Errc::corrupt, fmt::format("{}: entry \"{}\": {}", name, current, what));
  }

  static la_ssize_t outer_read(archive* a, void* ud, const void** buf) {
    auto* self = static_cast<Impl*>(ud);
    auto n = self->source(self->in_buf.data(), self->in_buf.size());
    if (!n) {
      self->source_error = std::move(n).error();
      archive_set_error(a, EIO, "read failed");
      return -1;
    }
    *buf = self->in_buf.data();
    return static_cast<la_ssize_t>(*n);
  }

  static la_ssize_t inner_read(archive* a, void* ud, const void** buf) {
    auto* self = static_cast<Impl*>(ud);
    if (self->outer_eof) {
      return 0;
    }
    char* mid_buf = self->hash.buffer();
    la_ssize_t n = archive_read_data(self->outer, mid_buf, k_chunk);
    if (n < 0) {
      archive_set_error(a, EIO, "%s", archive_message(self->outer).c_str());
      return -1;
    }
    if (n == 0) {
      self->outer_eof = true;
    }
    if (self->tee && n > 0) {
      if (auto t = self->tee(mid_buf, static_cast<size_t>(n)); !t) {
        self->source_error = std::move(t).error();
        archive_set_error(a, EIO, "write failed");
        return -1;
      }
    }
    self->hash.submit(static_cast<size_t>(n));
    self->total += static_cast<uint64_t>(n);
    if (self->max_total != 0 && self->total > self->max_total) {
      self->limit_hit = true;
      archive_set_error(a, EFBIG, "size limit");
      return -1;
    }
    *buf = mid_buf;
    return n;
  }

  Result<void> start() {
    outer = archive_read_new();
    inner = archive_read_new();
    if (outer == nullptr || inner == nullptr) {
      return fail(Errc::internal, "libarchive: out of memory");
    }
    archive_read_support_filter_gzip(outer);
    archive_read_support_filter_bzip2(outer);
    archive_read_support_filter_xz(outer);
    archive_read_support_filter_zstd(outer);
    archive_read_support_format_raw(outer);
    archive_read_support_format_empty(outer);
    if (archive_read_open(outer, this, nullptr, &Impl::outer_read, nullptr) != ARCHIVE_OK) {
      return fail(error(archive_message(outer)));
    }
    archive_entry* raw = nullptr;
    int r = archive_read_next_header(outer, &raw);
    if (r == ARCHIVE_EOF) {
      outer_eof = true;
    } else if (r < ARCHIVE_WARN) {
      return fail(error(archive_message(outer)));
    }
    switch (archive_filter_code(outer, 0)) {
      case ARCHIVE_FILTER_GZIP: compression = Compression::gzip; break;
      case ARCHIVE_FILTER_BZIP2: compression = Compression::bzip2; break;
      case ARCHIVE_FILTER_XZ: compression = Compression::xz; break;
      case ARCHIVE_FILTER_ZSTD: compression = Compression::zstd; break;
      default: compression = Compression::none; break;
    }
    archive_read_support_format_tar(inner);
    archive_read_support_format_empty(inner);
    if (archive_read_open(inner, this, nullptr, &Impl::inner_read, nullptr) != ARCHIVE_OK) {
      return fail(error(archive_message(inner)));
    }
    return ok();
  }

  Result<Entry> convert(archive_entry* e) {
    Entry out;
    const char* p = archive_entry_pathname(e);
    if (p == nullptr) {
      p = archive_entry_pathname_utf8(e);
    }
    if (p == nullptr || *p == '\0') {
      return fail(error("entry without a path"));
    }
    out.path = p;
    current = out.path;
    const char* hard = archive_entry_hardlink(e);
    mode_t ft = archive_entry_filetype(e);
    if (hard != nullptr) {
      out.type = EntryType::hardlink;
      out.link_target = hard;
    } else {
      switch (ft) {
        case AE_IFREG: out.type = EntryType::file; break;
        case AE_IFDIR: out.type = EntryType::dir; break;
        case AE_IFLNK: out.type = EntryType::symlink; break;
        case AE_IFCHR: out.type = EntryType::char_device; break;
        case AE_IFBLK: out.type = EntryType::block_device; break;
        case AE_IFIFO: out.type = EntryType::fifo; break;
        default: return fail(error(fmt::format("unsupported entry type (mode {:o})", ft)));
      }
      if (out.type == EntryType::symlink) {
        const char* t = archive_entry_symlink(e);
        if (t == nullptr) {
          t = archive_entry_symlink_utf8(e);
        }
        if (t == nullptr) {
          return fail(error("symlink without a target"));
        }
        out.link_target = t;
      }
    }
    out.mode = static_cast<uint32_t>(archive_entry_perm(e)) & 07777;
    la_int64_t uid = archive_entry_uid(e);
    la_int64_t gid = archive_entry_gid(e);
    if (uid < 0 || gid < 0 || uid > std::numeric_limits<uint32_t>::max() ||
        gid > std::numeric_limits<uint32_t>::max()) {
      return fail(error(fmt::format("uid/gid out of range ({}:{})", uid, gid)));
    }
    out.uid = static_cast<uint32_t>(uid);
    out.gid = static_cast<uint32_t>(gid);
    if (out.type == EntryType::file) {
      la_int64_t size = archive_entry_size(e);
      if (size < 0) {
        return fail(error("negative size"));
      }
      out.size = static_cast<uint64_t>(size);
    }
    if (archive_entry_mtime_is_set(e) != 0) {
      out.mtime_sec = archive_entry_mtime(e);
      long ns = archive_entry_mtime_nsec(e);
      out.mtime_nsec = ns >= 0 && ns < 1000000000 ? static_cast<uint32_t>(ns) : 0;
    }
    if (out.type == EntryType::char_device || out.type == EntryType::block_device) {
      out.dev_major = static_cast<uint32_t>(archive_entry_rdevmajor(e));
      out.dev_minor = static_cast<uint32_t>(archive_entry_rdevminor(e));
    }
    archive_entry_xattr_reset(e);
    const char* xname = nullptr;
    const void* xvalue = nullptr;
    size_t xsize = 0;
    while (archive_entry_xattr_next(e, &xname, &xvalue, &xsize) == ARCHIVE_OK) {
      if (xname == nullptr) {
        continue;
      }
      out.xattrs.emplace_back(xname, std::string(static_cast<const char*>(xvalue), xsize));
    }
    return out;
  }
};

Reader::Reader(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Reader::~Reader() = default;

Result<std::unique_ptr<Reader>> Reader::open(ReadFn read, std::string name) {
  auto impl = std::make_unique<Impl>();
  impl->name = std::move(name);
  impl->source = std::move(read);
  TRY_VOID(impl->start());
  return std::unique_ptr<Reader>(new Reader(std::move(impl)));
}

bool starts_with_archive(int fd) {
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    return false;
  }
  bool yes = false;
  if (auto r = Reader::open_fd(fd, "probe")) {
    auto e = (*r)->next();
    yes = e.has_value() && e->has_value();
  }
  ::lseek(fd, 0, SEEK_SET);
  return yes;
}

Result<std::unique_ptr<Reader>> Reader::open_fd(int fd, std::string name) {
  return open_fd_tee(fd, std::move(name), {});
}

Result<std::unique_ptr<Reader>> Reader::open_fd_tee(int fd, std::string name, WriteFn tee) {
  std::string label = name;
  ReadFn fn = [fd, label](void* buf, size_t cap) -> Result<size_t> {
    while (true) {
      ssize_t n = ::read(fd, buf, cap);
      if (n >= 0) {
        return static_cast<size_t>(n);
      }
      if (errno != EINTR) {
        return fail(Errc::io, fmt::format("read {}: {}", label, std::strerror(errno)));
      }
    }
  };
  auto impl = std::make_unique<Impl>();
  impl->name = std::move(name);
  impl->source = std::move(fn);
  impl->tee = std::move(tee);
  TRY_VOID(impl->start());
  return std::unique_ptr<Reader>(new Reader(std::move(impl)));
}

Result<std::optional<Entry>> Reader::next() {
  Impl& s = *m_impl;
  if (s.at_end) {
    return std::optional<Entry>();
  }
  archive_entry* e = nullptr;
  int r = archive_read_next_header(s.inner, &e);
  if (r == ARCHIVE_EOF) {
    s.at_end = true;
    s.current.clear();
    return std::optional<Entry>();
  }
  if (r < ARCHIVE_WARN) {
    return fail(s.error(archive_message(s.inner)));
  }
  TRY(Entry entry, s.convert(e));
  return std::optional<Entry>(std::move(entry));
}

Result<size_t> Reader::read_data(void* buf, size_t cap) {
  la_ssize_t n = archive_read_data(m_impl->inner, buf, cap);
  if (n < 0) {
    return fail(m_impl->error(archive_message(m_impl->inner)));
  }
  return static_cast<size_t>(n);
}

Result<void> Reader::skip_data() {
  if (archive_read_data_skip(m_impl->inner) != ARCHIVE_OK) {
    return fail(m_impl->error(archive_message(m_impl->inner)));
  }
  return ok();
}

Result<ReadSummary> Reader::finish() {
  Impl& s = *m_impl;
  if (s.finished) {
    return fail(Errc::internal, s.name + ": tar reader finished twice");
  }
  while (!s.at_end) {
    TRY(auto e, next());
    (void)e;
  }
  s.current.clear();
  while (!s.outer_eof) {
    const void* ignored = nullptr;
    if (Impl::inner_read(s.inner, &s, &ignored) < 0) {
      return fail(s.error(archive_message(s.inner)));
    }
  }
  s.finished = true;
  ReadSummary out;
  out.diff_id = s.hash.finish();
  out.uncompressed_size = s.total;
  out.compression = s.compression;
  return out;
}

void Reader::set_max_uncompressed(uint64_t bytes) { m_impl->max_total = bytes; }
void Reader::stop_hashing() { m_impl->hash.stop(); }
Compression Reader::compression() const { return m_impl->compression; }
const std::string& Reader::name() const { return m_impl->name; }

// ---------------------------------------------------------------- writing

struct Writer::Impl {
  WriteFn sink;
  WriterOptions options;
  archive* a = nullptr;
  Sha256 diff_hash;
  Sha256 blob_hash;
  uint64_t usize = 0;
  uint64_t csize = 0;
  // Set for a compressed archive: the tar stream goes through it.
  std::unique_ptr<compress::Compressor> compressor;
  std::optional<Error> sink_error;
  uint64_t remaining = 0;
  std::string current;
  bool finished = false;

  ~Impl() {
    if (a != nullptr) {
      archive_write_free(a);
    }
  }

  // Output is gathered into pieces of k_out_piece bytes before it reaches
  // the sink: libarchive hands on one 10 KiB record at a time, and a write(2)
  // per record is most of the system time of a large export.
  static constexpr size_t k_out_piece = 256 * 1024;
  std::vector<unsigned char> obuf;

  Result<void> flush_out() {
    if (obuf.empty()) {
      return ok();
    }
    auto r = sink(obuf.data(), obuf.size());
    obuf.clear();
    return r;
  }

  Result<void> emit(const void* data, size_t n) {
    if (compressor) {  // uncompressed: the blob digest is the diff_id
      blob_hash.update(data, n);
    }
    csize += n;
    if (obuf.size() + n > k_out_piece) {
      TRY_VOID(flush_out());
      if (n >= k_out_piece) {
        return sink(data, n);
      }
    }
    if (obuf.capacity() < k_out_piece) {
      obuf.reserve(k_out_piece);
    }
    const auto* p = static_cast<const unsigned char*>(data);
    obuf.insert(obuf.end(), p, p + n);
    return ok();
  }

  Result<void> consume(const void* data, size_t n) {
    diff_hash.update(data, n);
    usize += n;
    if (!compressor) {
      return emit(data, n);
    }
    return compressor->write(data, n);
  }

  static la_ssize_t write_cb(archive* ar, void* ud, const void* buf, size_t n) {
    auto* self = static_cast<Impl*>(ud);
    auto r = self->consume(buf, n);
    if (!r) {
      self->sink_error = std::move(r).error();
      archive_set_error(ar, EIO, "write failed");
      return -1;
    }
    return static_cast<la_ssize_t>(n);
  }

  Error error(std::string what) const {
    if (sink_error) {
      return *sink_error;
    }
    if (current.empty()) {
      return Error(Errc::io, "writing tar: " + what);
    }
    return Error(Errc::io, fmt::format("writing tar entry \"{}\": {}", current, what));
  }

  Result<void> start() {
    if (options.compression == Compression::gzip || options.compression == Compression::zstd) {
      compress::Options copts;
      copts.algorithm =
          options.compression == Compression::gzip ? compress::Algorithm::gzip : compress::Algorithm::zstd;
      copts.level = options.compression == Compression::gzip ? options.gzip_level : options.level;
      copts.threads = options.threads;
      TRY(compressor, compress::Compressor::open([this](const void* d, size_t n) { return emit(d, n); }, copts));
    } else if (options.compression != Compression::none) {
      return fail(Errc::unsupported,
                  fmt::format("writing {} compressed tar is not supported", compression_name(options.compression)));
    }
    a = archive_write_new();
    if (a == nullptr) {
      return fail(Errc::internal, "libarchive: out of memory");
    }
    if (archive_write_set_format_pax(a) != ARCHIVE_OK ||
        archive_write_set_format_option(a, "pax", "xattrheader", "SCHILY") < ARCHIVE_OK ||
        archive_write_set_bytes_per_block(a, 10240) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK) {
      return fail(error(archive_message(a)));
    }
    if (archive_write_open(a, this, nullptr, &Impl::write_cb, nullptr) != ARCHIVE_OK) {
      return fail(error(archive_message(a)));
    }
    return ok();
  }
};

Writer::Writer(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Writer::~Writer() = default;

Result<std::unique_ptr<Writer>> Writer::open(WriteFn write, WriterOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->sink = std::move(write);
  impl->options = options;
  TRY_VOID(impl->start());
  return std::unique_ptr<Writer>(new Writer(std::move(impl)));
}

Result<std::unique_ptr<Writer>> Writer::open_fd(int fd, WriterOptions options) {
  WriteFn fn = [fd](const void* data, size_t size) -> Result<void> {
    const auto* p = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t n = ::write(fd, p, size);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return fail(Errc::io, fmt::format("write: {}", std::strerror(errno)));
      }
      p += n;
      size -= static_cast<size_t>(n);
    }
    return ok();
  };
  return open(std::move(fn), options);
}

Result<void> Writer::add(const Entry& entry) {
  Impl& s = *m_impl;
  if (s.finished) {
    return fail(Errc::internal, "tar writer: add after finish");
  }
  if (s.remaining != 0) {
    return fail(Errc::internal, fmt::format("tar writer: entry \"{}\" is {} bytes short", s.current, s.remaining));
  }
  s.current = entry.path;
  if (entry.path.empty()) {
    return fail(s.error("empty path"));
  }
  archive_entry* e = archive_entry_new();
  if (e == nullptr) {
    return fail(Errc::internal, "libarchive: out of memory");
  }
  struct Free {
    archive_entry* e;
    ~Free() { archive_entry_free(e); }
  } guard{e};
  archive_entry_copy_pathname(e, entry.path.c_str());
  archive_entry_set_perm(e, static_cast<mode_t>(entry.mode & 07777));
  archive_entry_set_uid(e, entry.uid);
  archive_entry_set_gid(e, entry.gid);
  archive_entry_set_mtime(e, static_cast<time_t>(entry.mtime_sec), static_cast<long>(entry.mtime_nsec));
  archive_entry_set_size(e, 0);
  switch (entry.type) {
    case EntryType::file:
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_size(e, static_cast<la_int64_t>(entry.size));
      break;
    case EntryType::dir: archive_entry_set_filetype(e, AE_IFDIR); break;
    case EntryType::symlink:
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_copy_symlink(e, entry.link_target.c_str());
      break;
    case EntryType::hardlink:
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_copy_hardlink(e, entry.link_target.c_str());
      break;
    case EntryType::char_device:
    case EntryType::block_device:
      archive_entry_set_filetype(e, entry.type == EntryType::char_device ? AE_IFCHR : AE_IFBLK);
      archive_entry_set_rdevmajor(e, entry.dev_major);
      archive_entry_set_rdevminor(e, entry.dev_minor);
      break;
    case EntryType::fifo: archive_entry_set_filetype(e, AE_IFIFO); break;
  }
  auto xattrs = entry.xattrs;
  std::sort(xattrs.begin(), xattrs.end());
  for (const auto& [name, value] : xattrs) {
    archive_entry_xattr_add_entry(e, name.c_str(), value.data(), value.size());
  }
  // ARCHIVE_WARN means a name was not valid UTF-8: libarchive then stores the
  // raw bytes (hdrcharset=BINARY), which is what a Linux path is.
  if (archive_write_header(s.a, e) < ARCHIVE_WARN) {
    return fail(s.error(archive_message(s.a)));
  }
  s.remaining = entry.type == EntryType::file ? entry.size : 0;
  return ok();
}

Result<void> Writer::write_data(const void* data, size_t size) {
  Impl& s = *m_impl;
  if (size > s.remaining) {
    return fail(Errc::internal, fmt::format("tar writer: too much data for entry \"{}\"", s.current));
  }
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    la_ssize_t n = archive_write_data(s.a, p, size);
    if (n <= 0) {
      return fail(s.error(archive_message(s.a)));
    }
    p += n;
    size -= static_cast<size_t>(n);
    s.remaining -= static_cast<uint64_t>(n);
  }
  return ok();
}

Result<void> Writer::add_file_from_fd(const Entry& entry, int fd) {
  TRY_VOID(add(entry));
  std::vector<char> buf(k_chunk);
  uint64_t left = entry.size;
  while (left > 0) {
    ssize_t n = ::read(fd, buf.data(), std::min<uint64_t>(left, buf.size()));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Errc::io, fmt::format("reading \"{}\": {}", entry.path, std::strerror(errno)));
    }
    if (n == 0) {
      return fail(Errc::io, fmt::format("\"{}\" shrank while being archived ({} bytes missing)", entry.path, left));
    }
    TRY_VOID(write_data(buf.data(), static_cast<size_t>(n)));
    left -= static_cast<uint64_t>(n);
    fault::point("tar-copy");
  }
  return ok();
}

Result<WriteSummary> Writer::finish() {
  Impl& s = *m_impl;
  if (s.finished) {
    return fail(Errc::internal, "tar writer finished twice");
  }
  if (s.remaining != 0) {
    return fail(Errc::internal, fmt::format("tar writer: entry \"{}\" is {} bytes short", s.current, s.remaining));
  }
  s.finished = true;
  s.current.clear();
  int r = archive_write_close(s.a);
  if (r != ARCHIVE_OK) {
    return fail(s.error(archive_message(s.a)));
  }
  archive_write_free(s.a);
  s.a = nullptr;
  if (s.compressor) {
    TRY_VOID(s.compressor->finish());
  }
  TRY_VOID(s.flush_out());
  WriteSummary out;
  out.diff_id = s.diff_hash.finish();
  out.uncompressed_size = s.usize;
  out.digest = s.compressor ? s.blob_hash.finish() : out.diff_id;
  out.size = s.csize;
  return out;
}

uint64_t content_bytes(const Entry& e) {
  switch (e.type) {
    case EntryType::file: return e.size;
    case EntryType::symlink: return e.link_target.size();
    default: return 0;
  }
}

Result<uint64_t> content_size(int fd, std::string name) {
  TRY(auto reader, Reader::open_fd(fd, std::move(name)));
  reader->stop_hashing();
  uint64_t total = 0;
  while (true) {
    TRY(auto e, reader->next());
    if (!e) {
      break;
    }
    total += content_bytes(*e);
  }
  return total;
}

}  // namespace imgbuild::tar
