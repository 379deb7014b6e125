#include "util/compress.hpp"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace imgbuild::compress {
namespace {

constexpr size_t k_gzip_block = 128 * 1024;
constexpr size_t k_zstd_chunk = 4 * 1024 * 1024;
constexpr size_t k_window = 32 * 1024;

// One block: its input, the dictionary it is compressed against (gzip), and,
// once a worker is done with it, its output.
struct Job {
  std::vector<unsigned char> in;
  std::vector<unsigned char> dict;
  bool last = false;
  std::vector<unsigned char> out;
  uint32_t crc = 0;
  std::optional<Error> error;
  bool done = false;
};

Result<void> deflate_job(Job& job, int level) {
  int block_level = compress::looks_incompressible(job.in.data(), job.in.size()) ? 0 : level;
  z_stream z{};
  if (deflateInit2(&z, block_level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return fail(Errc::internal, "zlib: cannot initialise deflate");
  }
  struct End {
    z_stream* z;
    ~End() { deflateEnd(z); }
  } end{&z};
  if (!job.dict.empty() &&
      deflateSetDictionary(&z, job.dict.data(), static_cast<uInt>(job.dict.size())) != Z_OK) {
    return fail(Errc::internal, "zlib: cannot set the deflate dictionary");
  }
  job.out.resize(deflateBound(&z, static_cast<uLong>(job.in.size())) + 64);
  z.next_in = job.in.data();
  z.avail_in = static_cast<uInt>(job.in.size());
  size_t produced = 0;
  const int flush = job.last ? Z_FINISH : Z_SYNC_FLUSH;
  while (true) {
    z.next_out = job.out.data() + produced;
    z.avail_out = static_cast<uInt>(job.out.size() - produced);
    int r = deflate(&z, flush);
    if (r == Z_STREAM_ERROR) {
      return fail(Errc::internal, "zlib: deflate stream error");
    }
    produced = job.out.size() - z.avail_out;
    bool complete = job.last ? r == Z_STREAM_END : (z.avail_in == 0 && z.avail_out != 0);
    if (complete) {
      break;
    }
    job.out.resize(job.out.size() * 2);
  }
  job.out.resize(produced);
  job.crc = static_cast<uint32_t>(crc32(0L, job.in.data(), static_cast<uInt>(job.in.size())));
  return ok();
}

Result<void> zstd_job(Job& job, int level) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (cctx == nullptr) {
    return fail(Errc::internal, "zstd: out of memory");
  }
  struct Free {
    ZSTD_CCtx* c;
    ~Free() { ZSTD_freeCCtx(c); }
  } free_ctx{cctx};
  job.out.resize(ZSTD_compressBound(job.in.size()));
  size_t n = ZSTD_compressCCtx(cctx, job.out.data(), job.out.size(), job.in.data(), job.in.size(), level);
  if (ZSTD_isError(n) != 0U) {
    return fail(Errc::internal, fmt::format("zstd: {}", ZSTD_getErrorName(n)));
  }
  job.out.resize(n);
  return ok();
}

void put_le32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<unsigned char>(v >> (8 * i));
  }
}

}  // namespace

std::string_view algorithm_name(Algorithm a) { return a == Algorithm::gzip ? "gzip" : "zstd"; }

int effective_level(const Options& options) {
  if (options.level >= 0) {
    return options.level;
  }
  // gzip 4: about half the CPU of zlib's 6 on real layers (binaries, packages)
  // for some 3% more bytes; pushes are CPU-bound on small CI machines.
  return options.algorithm == Algorithm::gzip ? 4 : 3;
}

Result<void> check_level(Algorithm algorithm, int level) {
  int lo = 1;
  int hi = algorithm == Algorithm::gzip ? 9 : 19;
  if (level == -1 || (level >= lo && level <= hi)) {
    return ok();
  }
  return fail(Errc::invalid_argument,
              fmt::format("{} compression level {} is out of range {}-{}", algorithm_name(algorithm), level, lo, hi));
}

bool looks_incompressible(const unsigned char* p, size_t n) {
  if (n < 64 * 1024) {
    return false;
  }
  // Four tables break the store-to-load dependency between equal bytes.
  std::array<std::array<uint32_t, 256>, 4> counts{};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++counts[0][p[i]];
    ++counts[1][p[i + 1]];
    ++counts[2][p[i + 2]];
    ++counts[3][p[i + 3]];
  }
  for (; i < n; ++i) {
    ++counts[0][p[i]];
  }
  uint64_t sum_sq = 0;
  for (size_t b = 0; b < 256; ++b) {
    uint64_t c = uint64_t{counts[0][b]} + counts[1][b] + counts[2][b] + counts[3][b];
    sum_sq += c * c;
  }
  // Uniform bytes give sum_sq ≈ n²/256 + n.
  const uint64_t nn = uint64_t{n} * n;
  return sum_sq * 256 <= nn + nn / 64;
}

struct Compressor::Impl {
  Sink sink;
  Options options;
  int level = 6;
  size_t block_size = k_gzip_block;
  std::vector<unsigned char> current;
  std::vector<unsigned char> tail;  // gzip: the last k_window bytes of input before `current`
  uint64_t in_total = 0;
  uint64_t out_total = 0;
  uint32_t crc = 0;
  bool header_sent = false;
  bool finished = false;
  std::optional<Error> failed;

  // Blocks in input order: handed to workers, emitted from the front.
  std::deque<std::shared_ptr<Job>> pending;
  std::deque<std::shared_ptr<Job>> todo;
  std::mutex mu;
  std::condition_variable work_cv;
  std::condition_variable done_cv;
  bool stopping = false;
  std::vector<std::thread> workers;

  ~Impl() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    work_cv.notify_all();
    for (auto& t : workers) {
      t.join();
    }
  }

  void run_job(Job& job) {
    auto r = options.algorithm == Algorithm::gzip ? deflate_job(job, level) : zstd_job(job, level);
    if (!r) {
      job.error = std::move(r).error();
    }
  }

  void worker_loop() {
    while (true) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mu);
        work_cv.wait(lock, [&] { return stopping || !todo.empty(); });
        if (todo.empty()) {
          return;
        }
        job = todo.front();
        todo.pop_front();
      }
      run_job(*job);
      {
        std::lock_guard lock(mu);
        job->done = true;
      }
      done_cv.notify_all();
    }
  }

  Result<void> out(const void* data, size_t n) {
    out_total += n;
    return sink(data, n);
  }

  Result<void> emit(Job& job) {
    if (job.error) {
      return fail(*job.error);
    }
    if (options.algorithm == Algorithm::gzip) {
      if (!header_sent) {
        // No name, no mtime, XFL as zlib sets it, OS unix.
        unsigned char xfl = level == 9 ? 2 : (level == 1 ? 4 : 0);
        const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3};
        TRY_VOID(out(header, sizeof header));
        header_sent = true;
      }
      crc = static_cast<uint32_t>(crc32_combine(crc, job.crc, static_cast<z_off_t>(job.in.size())));
    }
    return out(job.out.data(), job.out.size());
  }

  // Emits finished blocks from the front while more than `keep` are pending.
  Result<void> drain(size_t keep) {
    while (pending.size() > keep) {
      std::shared_ptr<Job> front = pending.front();
      {
        std::unique_lock lock(mu);
        done_cv.wait(lock, [&] { return front->done; });
      }
      pending.pop_front();
      TRY_VOID(emit(*front));
    }
    return ok();
  }

  Result<void> submit(bool last) {
    auto job = std::make_shared<Job>();
    job->last = last;
    job->in.swap(current);
    if (options.algorithm == Algorithm::gzip) {
      job->dict = tail;
      if (job->in.size() >= k_window) {
        tail.assign(job->in.end() - static_cast<std::ptrdiff_t>(k_window), job->in.end());
      } else {
        tail.insert(tail.end(), job->in.begin(), job->in.end());
        if (tail.size() > k_window) {
          tail.erase(tail.begin(), tail.end() - static_cast<std::ptrdiff_t>(k_window));
        }
      }
    }
    current.reserve(block_size);
    pending.push_back(job);
    if (workers.empty()) {
      run_job(*job);
      job->done = true;
    } else {
      {
        std::lock_guard lock(mu);
        todo.push_back(job);
      }
      work_cv.notify_one();
    }
    // Two blocks a worker in flight bounds the memory and keeps every core busy.
    return drain(last ? 0 : 2 * std::max<size_t>(1, workers.size()));
  }
};

Compressor::Compressor(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Compressor::~Compressor() = default;

Result<std::unique_ptr<Compressor>> Compressor::open(Sink sink, Options options) {
  TRY_VOID(check_level(options.algorithm, options.level));
  auto impl = std::make_unique<Impl>();
  impl->sink = std::move(sink);
  impl->options = options;
  impl->level = effective_level(options);
  impl->block_size = options.algorithm == Algorithm::gzip ? k_gzip_block : k_zstd_chunk;
  impl->current.reserve(impl->block_size);
  unsigned threads = options.threads != 0 ? options.threads : std::max(1U, std::thread::hardware_concurrency());
  if (threads > 1) {
    for (unsigned i = 0; i < threads; ++i) {
      Impl* raw = impl.get();
      impl->workers.emplace_back([raw] { raw->worker_loop(); });
    }
  }
  return std::unique_ptr<Compressor>(new Compressor(std::move(impl)));
}

Result<void> Compressor::write(const void* data, size_t size) {
  Impl& s = *m_impl;
  if (s.finished) {
    return fail(Errc::internal, "compressor: write after finish");
  }
  if (s.failed) {
    return fail(*s.failed);
  }
  const auto* p = static_cast<const unsigned char*>(data);
  s.in_total += size;
  while (size > 0) {
    size_t take = std::min(size, s.block_size - s.current.size());
    s.current.insert(s.current.end(), p, p + take);
    p += take;
    size -= take;
    if (s.current.size() == s.block_size) {
      auto r = s.submit(false);
      if (!r) {
        s.failed = r.error();
        return r;
      }
    }
  }
  return ok();
}

Result<void> Compressor::finish() {
  Impl& s = *m_impl;
  if (s.finished) {
    return fail(Errc::internal, "compressor finished twice");
  }
  s.finished = true;
  if (s.failed) {
    return fail(*s.failed);
  }
  // gzip: the last block (empty when the input filled the previous one
  // exactly) ends the deflate stream. zstd: a trailing chunk, or one empty
  // frame when there was no input at all.
  if (s.options.algorithm == Algorithm::gzip || !s.current.empty() || s.in_total == 0) {
    TRY_VOID(s.submit(true));
  }
  TRY_VOID(s.drain(0));
  if (s.options.algorithm == Algorithm::gzip) {
    unsigned char trailer[8];
    put_le32(trailer, s.crc);
    put_le32(trailer + 4, static_cast<uint32_t>(s.in_total));
    TRY_VOID(s.out(trailer, sizeof trailer));
  }
  return ok();
}

Result<void> decompress(Algorithm algorithm, const Source& in, const Sink& out, std::string_view what) {
  std::vector<unsigned char> ibuf(128 * 1024);
  std::vector<unsigned char> obuf(256 * 1024);
  auto corrupt = [&](std::string_view why) {
    return Error(Errc::corrupt, fmt::format("{}: {} stream is damaged: {}", what, algorithm_name(algorithm), why));
  };
  if (algorithm == Algorithm::gzip) {
    z_stream z{};
    if (inflateInit2(&z, 15 + 16) != Z_OK) {
      return fail(Errc::internal, "zlib: cannot initialise inflate");
    }
    struct End {
      z_stream* z;
      ~End() { inflateEnd(z); }
    } end{&z};
    bool in_member = false;  // inside a member that has not ended yet
    while (true) {
      TRY(size_t n, in(ibuf.data(), ibuf.size()));
      if (n == 0) {
        break;
      }
      z.next_in = ibuf.data();
      z.avail_in = static_cast<uInt>(n);
      while (z.avail_in > 0) {
        if (!in_member) {
          inflateReset(&z);
          in_member = true;
        }
        z.next_out = obuf.data();
        z.avail_out = static_cast<uInt>(obuf.size());
        int r = inflate(&z, Z_NO_FLUSH);
        if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) {
          return fail(corrupt(z.msg != nullptr ? z.msg : "inflate failed"));
        }
        if (size_t got = obuf.size() - z.avail_out; got > 0) {
          TRY_VOID(out(obuf.data(), got));
        }
        if (r == Z_STREAM_END) {
          in_member = false;
        }
      }
    }
    if (in_member) {
      return fail(corrupt("unexpected end"));
    }
    return ok();
  }
  ZSTD_DStream* d = ZSTD_createDStream();
  if (d == nullptr) {
    return fail(Errc::internal, "zstd: out of memory");
  }
  struct Free {
    ZSTD_DStream* d;
    ~Free() { ZSTD_freeDStream(d); }
  } free_d{d};
  size_t last = 0;
  while (true) {
    TRY(size_t n, in(ibuf.data(), ibuf.size()));
    if (n == 0) {
      break;
    }
    ZSTD_inBuffer ib{ibuf.data(), n, 0};
    while (ib.pos < ib.size) {
      ZSTD_outBuffer ob{obuf.data(), obuf.size(), 0};
      last = ZSTD_decompressStream(d, &ob, &ib);
      if (ZSTD_isError(last) != 0U) {
        return fail(corrupt(ZSTD_getErrorName(last)));
      }
      if (ob.pos > 0) {
        TRY_VOID(out(obuf.data(), ob.pos));
      }
    }
  }
  if (last != 0) {
    return fail(corrupt("unexpected end"));
  }
  return ok();
}

uint64_t Compressor::input_size() const { return m_impl->in_total; }
uint64_t Compressor::output_size() const { return m_impl->out_total; }

}  // namespace imgbuild::compress
