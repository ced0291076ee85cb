#include "runtime/session.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels/matmul/matmul.h"
#include "loader/error.h"
#include "loader/gguf.h"
#include "runtime/gemma4.h"
#include "runtime/huge_pages.h"
#include "runtime/threadpool.h"

namespace qgemma {
namespace {

constexpr int64_t kMaxCtx = 262144;

// Touches every page of the tensor data so the first forward pass does not stall on the disk,
// reporting progress in chunks.
void prefault(const GgufFile& f, const std::function<void(uint64_t, uint64_t)>& progress) {
  const auto& ts = f.tensors();
  if (ts.empty()) return;
  const uint8_t* begin = ts.front().data;
  const uint8_t* end = begin;
  for (const GgufTensor& t : ts) {
    begin = std::min(begin, t.data);
    end = std::max(end, t.data + t.nbytes);
  }
  const uint64_t total = end - begin;
  const uint64_t chunk = 64ull << 20;
  volatile uint8_t sink = 0;
  for (uint64_t done = 0; done < total;) {
    const uint64_t n = std::min(chunk, total - done);
    for (uint64_t i = 0; i < n; i += 4096) sink = sink + begin[done + i];
    done += n;
    progress(done, total);
  }
}

}  // namespace

std::string format_bytes(uint64_t b) {
  char buf[32];
  if (b >= kGiB) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(b) / kGiB);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(b) / (1 << 20));
  }
  return buf;
}

std::unique_ptr<Model> Model::load(const std::string& path,
                                   const std::function<void(uint64_t, uint64_t)>& progress,
                                   bool repack) {
  std::unique_ptr<Model> m(new Model);
  m->file_ = GgufFile::open(path);
  m->config_ = ModelConfig::from_gguf(*m->file_);
  m->weights_ = ModelWeights::load(*m->file_, m->config_);
  const bool large = m->file_->file_size() >= (256ull << 20);
  if (repack) {
    m->repack_matrices(large ? progress : nullptr);
  } else if (progress && large) {
    prefault(*m->file_, progress);
  }
  return m;
}

// Repacks each Q4_0 / Q8_0 matrix into one owned arena, then drops the file pages it came
// from, so resident memory holds one copy. The tied embedding is repacked too (it is the output
// head); the embedding lookup unpacks the 8-row group of a token (CpuBackend, Op::Embed).
void Model::repack_matrices(const std::function<void(uint64_t, uint64_t)>& progress) {
  std::vector<Matrix*> todo;
  const Matrix& e = weights_.token_embd;
  if (config_.tied_output && should_repack(e.type, e.out, e.in))
    todo.push_back(&weights_.token_embd);
  for (LayerWeights& l : weights_.layers) {
    for (Matrix* mt : {&l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) {
      if (mt->data && should_repack(mt->type, mt->out, mt->in)) todo.push_back(mt);
    }
  }
  uint64_t total = 0, done = 0;
  for (const Matrix* mt : todo) total += mt->nbytes();
  if (todo.empty()) {
    if (config_.tied_output) weights_.output = weights_.token_embd;
    return;
  }
  // One arena for all repacked matrices (each 64-byte aligned), 2 MiB aligned and advised for
  // transparent huge pages: decoding streams every weight once per token, and with 4 KiB pages
  // each 4 KiB of weights costs a TLB miss (a two-level page walk in a virtual machine) and
  // stops the hardware prefetcher at the page boundary. Pages are committed as they are
  // written, so resident memory still grows one matrix at a time.
  size_t arena = 0;
  for (const Matrix* mt : todo) arena += (mt->nbytes() + 63) / 64 * 64;
  uint8_t* base = alloc_huge(arena).release();
  if (!base) {
    throw Error("out of memory repacking the weights (" + format_bytes(arena) + ")");
  }
  repacked_.emplace_back(base, std::free);
  ThreadPool& pool = ThreadPool::global();
  const long page = sysconf(_SC_PAGESIZE);
  size_t at = 0;
  for (Matrix* mt : todo) {
    const size_t n = mt->nbytes();
    uint8_t* dst = base + at;
    at += (n + 63) / 64 * 64;
    const Matrix src = *mt;
    pool.parallel_range(src.out, 8, [&](int64_t r0, int64_t r1, int) {
      repack_rows(src.type, src.data, dst, src.in, r0, r1);
    });
    // The source pages are no longer needed: let the kernel drop them from this process.
    const uintptr_t b = (reinterpret_cast<uintptr_t>(src.data) + page - 1) / page * page;
    const uintptr_t e = (reinterpret_cast<uintptr_t>(src.data) + n) / page * page;
    if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
    mt->type = repacked_type(src.type);
    mt->data = dst;
    done += n;
    if (progress) progress(done, total);
  }
  if (config_.tied_output) weights_.output = weights_.token_embd;
}

Model::~Model() = default;

MemoryEstimate Session::estimate(const Model& m, const SessionOptions& o) {
  const ModelConfig& c = m.config();
  MemoryEstimate e;
  e.weights = m.weights().nbytes;
  e.kv = KvCache::bytes_needed(c, o.n_ctx, std::min(o.n_batch, o.n_ctx), o.kv_type);
  const Graph g = build_gemma4(c, m.weights(), o.n_batch, 1);
  const int64_t B = o.n_batch, K = std::max<int64_t>(c.n_embd, c.max_ff());
  e.activations = plan_memory(g).arena_floats * 4 + B * K * 2 /* quantized activations */ +
                  c.n_vocab * 4 * 64 /* logits */;
  return e;
}

namespace {

SessionOptions checked(const Model& m, SessionOptions o) {
  if (o.n_ctx <= 0 || o.n_ctx > kMaxCtx) {
    throw Error("--ctx " + std::to_string(o.n_ctx) + " is out of range (1.." +
                std::to_string(kMaxCtx) + ")");
  }
  if (o.n_batch <= 0) throw Error("--batch must be > 0");
  o.n_batch = std::min(o.n_batch, o.n_ctx);
  const BackendChoice b = resolve_backend(o.backend, o.device);  // auto -> cpu or vulkan
  o.backend = b.kind;
  o.device = b.device;
  const MemoryEstimate e = Session::estimate(m, o);
  if (e.total() > o.mem_budget) {
    throw Error("memory budget exceeded: weights " + format_bytes(e.weights) + " + KV cache " +
                format_bytes(e.kv) + " (ctx " + std::to_string(o.n_ctx) + ", " +
                std::string(type_traits(o.kv_type).name) + ") + activations " +
                format_bytes(e.activations) + " = " + format_bytes(e.total()) + " > --mem-budget " +
                format_bytes(o.mem_budget) +
                "; lower --ctx, use --kv-type q8_0, a smaller --batch or a smaller quantization");
  }
  return o;
}

}  // namespace

Session::Session(const Model& m, const SessionOptions& o)
    : m_(m),
      o_(checked(m, o)),
      pool_(std::make_unique<ThreadPool>(o_.n_threads)),
      // On Vulkan the cache lives on the device: the host one is a placeholder.
      kv_(m.config(), o_.backend == BackendKind::vulkan ? 1 : o_.n_ctx,
          o_.backend == BackendKind::vulkan ? 1 : o_.n_batch, o_.kv_type),
      backend_(m.config(), *pool_) {
  if (o_.backend == BackendKind::vulkan)
    gpu_ = GpuBackend::open(o_.device, m.config(), o_.n_ctx, o_.n_batch, o_.kv_type);
}

Session::~Session() = default;

int Session::n_threads() const { return pool_->size(); }

std::string Session::backend_name() const { return gpu_ ? gpu_->name() : "CPU"; }

const Session::Plan& Session::plan(int64_t n_tokens, int64_t n_outputs) {
  const auto key = std::make_pair(n_tokens, n_outputs);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    Plan p;
    p.graph = build_gemma4(m_.config(), m_.weights(), n_tokens, n_outputs);
    p.memory = plan_memory(p.graph);
    it = plans_.emplace(key, std::move(p)).first;
  }
  if (!gpu_ && static_cast<int64_t>(arena_.size()) < it->second.memory.arena_floats) {
    arena_.resize(it->second.memory.arena_floats);
  }
  return it->second;
}

const float* Session::forward(std::span<const int32_t> tokens, int64_t n_outputs) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t V = m_.config().n_vocab;
  for (int32_t t : tokens) {
    if (t < 0 || t >= V) {
      throw Error("token id " + std::to_string(t) + " is outside the vocabulary of " +
                  std::to_string(V));
    }
  }
  if (n_past_ + T > o_.n_ctx) {
    throw Error("context full: " + std::to_string(n_past_ + T) + " positions needed, --ctx is " +
                std::to_string(o_.n_ctx));
  }
  pos_.resize(T);
  for (int64_t i = 0; i < T; ++i) pos_[i] = static_cast<int32_t>(n_past_ + i);
  const Plan& p = plan(T, n_outputs);
  const float* out =
      gpu_ ? gpu_->run(p.graph, p.memory, tokens.data(), pos_.data())
           : backend_.run(p.graph, p.memory, arena_.data(), tokens.data(), pos_.data(), kv_);
  n_past_ += T;
  if (gpu_) {
    hidden_ = gpu_->hidden().empty() ? nullptr : gpu_->hidden().data();
  } else {
    hidden_ = p.graph.hidden >= 0 ? arena_.data() + p.memory.offset[p.graph.hidden] : nullptr;
  }
  hidden_rows_ = hidden_ ? n_outputs : 0;
  return out;
}

std::span<const float> Session::eval(std::span<const int32_t> tokens, int64_t n_logits) {
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t V = m_.config().n_vocab;
  if (T == 0) throw Error("eval: no tokens");
  n_logits = std::clamp<int64_t>(n_logits, 1, T);
  logits_.resize(n_logits * V);
  int64_t done = 0;
  while (done < T) {
    const int64_t n = std::min(o_.n_batch, T - done);
    const int64_t first_needed = T - n_logits;  // logits rows wanted from this position on
    const int64_t n_out = std::clamp<int64_t>(done + n - first_needed, 0, n);
    const float* out = forward(tokens.subspan(done, n), n_out);
    // Copy the rows of this batch that are among the last n_logits tokens.
    for (int64_t r = 0; r < n_out; ++r) {
      const int64_t t = done + n - n_out + r;
      if (t >= first_needed)
        std::copy(out + r * V, out + (r + 1) * V, logits_.begin() + (t - first_needed) * V);
    }
    done += n;
  }
  return logits_;
}

std::vector<float> Session::eval_all(std::span<const int32_t> tokens) {
  const int64_t V = m_.config().n_vocab;
  // Keep one batch's logits to ~64 MiB.
  const int64_t step = std::max<int64_t>(1, std::min<int64_t>(o_.n_batch, (64ll << 20) / (V * 4)));
  std::vector<float> all;
  all.reserve(tokens.size() * V);
  for (size_t done = 0; done < tokens.size(); done += step) {
    const size_t n = std::min<size_t>(step, tokens.size() - done);
    const float* out = forward(tokens.subspan(done, n), static_cast<int64_t>(n));
    all.insert(all.end(), out, out + n * V);
  }
  return all;
}

void Session::crop(int64_t n) {
  if (n < 0 || n > n_past_) throw Error("crop: position " + std::to_string(n) + " out of range");
  if (gpu_) {
    gpu_->crop(n);
  } else {
    kv_.crop(n);
  }
  n_past_ = n;
}

void Session::reset() {
  if (gpu_) {
    gpu_->clear();
  } else {
    kv_.clear();
  }
  n_past_ = 0;
}

}  // namespace qgemma
