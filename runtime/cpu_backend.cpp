#include "runtime/cpu_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/attention/attention.h"
#include "kernels/matmul/matmul.h"
#include "kernels/ops/ops.h"
#include "loader/error.h"
#include "runtime/threadpool.h"
#include "runtime/weights.h"

namespace qgemma {
namespace {

// Splits rows [0, rows) across the pool; fn(r0, r1).
template <typename Fn>
void for_rows(ThreadPool& pool, int64_t rows, Fn&& fn) {
  if (rows == 1 || pool.size() == 1) {
    fn(int64_t{0}, rows);
    return;
  }
  pool.parallel_range(rows, 1, [&](int64_t r0, int64_t r1, int) { fn(r0, r1); });
}

// Element-wise ops on n floats: split in cache-friendly chunks.
template <typename Fn>
void for_elems(ThreadPool& pool, int64_t n, Fn&& fn) {
  if (n < 8192 || pool.size() == 1) {
    fn(int64_t{0}, n);
    return;
  }
  pool.parallel_range(n, 16, [&](int64_t i0, int64_t i1, int) { fn(i0, i1); });
}

// Tasks per thread of gemv_parallel; QGEMMA_GEMV_TASKS=0 (or 1) gives one range per thread
// (for comparisons).
const int g_gemv_tasks_per_thread = [] {
  const char* e = std::getenv("QGEMMA_GEMV_TASKS");
  return e ? std::max(0, std::atoi(e)) : 4;
}();

}  // namespace

namespace {

// y [R x w.out] = x [R x w.in] . w^T, activations x in w's vec_dot_type with row stride ldx.
MatmulArgs matmul_args(const Matrix& w, const void* x, size_t ldx, int64_t R, float* y) {
  MatmulArgs a;
  a.w = w.data;
  a.x = x;
  a.ldx = ldx;
  a.y = y;
  a.ldy = w.out;
  a.K = w.in;
  a.R = R;
  return a;
}

// Output rows [0, w.out) in tasks_per_thread tasks per thread (one range per thread when 0),
// boundaries on multiples of 32 rows for the 8-row interleaved layouts (the AVX-512 kernels'
// 32-row tiles stay whole), 16 otherwise.
void split_matmul(ThreadPool& pool, const Matrix& w, const void* x, size_t ldx, int64_t R, float* y,
                  int tasks_per_thread) {
  const MatmulArgs a = matmul_args(w, x, ldx, R, y);
  const int64_t gran = matmul_row_granularity(w.type) == 8 ? 32 : 16;
  const int64_t units = (w.out + gran - 1) / gran;
  const int64_t tasks =
      std::min<int64_t>(units, std::max(1, tasks_per_thread) * int64_t{pool.size()});
  pool.parallel_for(tasks, [&](int64_t t, int) {
    const int64_t n0 = std::min(w.out, units * t / tasks * gran);
    const int64_t n1 = std::min(w.out, units * (t + 1) / tasks * gran);
    if (n0 < n1) qgemma::matmul(w.type, a, n0, n1);
  });
}

}  // namespace

void matmul_parallel(ThreadPool& pool, const Matrix& w, const void* x, size_t ldx, int64_t R,
                     float* y) {
  split_matmul(pool, w, x, ldx, R, y, 2);
}

void gemv_parallel(ThreadPool& pool, const Matrix& w, const void* x, size_t ldx, int64_t R,
                   float* y) {
  split_matmul(pool, w, x, ldx, R, y, g_gemv_tasks_per_thread);
}

CpuBackend::CpuBackend(const ModelConfig& c, ThreadPool& pool) : c_(c), pool_(pool) {
  for (const LayerConfig& l : c.layers) {
    if (l.n_rot != l.head_dim) {
      throw Error("partial rotary embedding (rope dimension count " + std::to_string(l.n_rot) +
                  " < head dim " + std::to_string(l.head_dim) + "): not supported yet");
    }
    std::vector<float> inv(l.head_dim / 2);
    rope_inv_freq(inv.data(), l.head_dim / 2, l.rope_base, l.n_rot, l.n_rot / 2,
                  l.use_freq_factors ? c.rope_freq_factors.data() : nullptr);
    inv_freq_.push_back(std::move(inv));
  }
  thread_scratch_.assign(pool.size(), std::vector<float>(c.max_head_dim()));
  partials_.resize(pool.size());
  const char* prof = std::getenv("QGEMMA_PROFILE");
  profile_ = prof && *prof && std::strcmp(prof, "0") != 0;
}

CpuBackend::~CpuBackend() {
  if (!profile_ || prof_runs_.empty()) return;
  for (const auto& [tokens, runs] : prof_runs_) {
    const auto& ops = prof_.at(tokens);
    double sum = 0;
    for (const auto& [name, e] : ops) sum += e.s;
    std::fprintf(stderr,
                 "\nQGEMMA_PROFILE: %lld runs of %lld tokens, %.3f ms per run (nodes %.3f ms, "
                 "the rest %.3f ms)\n",
                 static_cast<long long>(runs.calls), static_cast<long long>(tokens),
                 1e3 * runs.s / runs.calls, 1e3 * sum / runs.calls,
                 1e3 * (runs.s - sum) / runs.calls);
    std::vector<std::pair<std::string, ProfileEntry>> sorted(ops.begin(), ops.end());
    std::sort(sorted.begin(), sorted.end(),
              [](const auto& a, const auto& b) { return a.second.s > b.second.s; });
    std::fprintf(stderr, "  %-16s %10s %7s %10s %9s %9s\n", "op", "ms/run", "%", "calls/run",
                 "us/call", "GB/s");
    for (const auto& [name, e] : sorted) {
      std::fprintf(stderr, "  %-16s %10.3f %6.1f%% %10.1f %9.1f", name.c_str(),
                   1e3 * e.s / runs.calls, 100.0 * e.s / runs.s,
                   static_cast<double>(e.calls) / runs.calls, 1e6 * e.s / e.calls);
      if (e.bytes > 0) std::fprintf(stderr, " %9.2f", e.bytes / e.s / 1e9);
      std::fprintf(stderr, "\n");
    }
  }
}

void CpuBackend::matmul(const Node& n, const float* x, int64_t R, float* y, int x_id) {
  const Matrix& w = *n.w;
  const TensorType at = vec_dot_type(w.type);
  const void* xa = x;
  size_t ldx = static_cast<size_t>(w.in) * sizeof(float);
  if (at != TensorType::F32) {
    ldx = row_size(at, w.in);
    if (act_tensor_ != x_id || act_type_ != static_cast<int>(at)) {
      const auto t0 =
          profile_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
      if (act_.size() < ldx * R) act_.resize(ldx * R);
      for_rows(pool_, R, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          uint8_t* dst = act_.data() + r * ldx;
          if (at == TensorType::Q8_0) {
            quantize_row_q8_0(x + r * w.in, reinterpret_cast<block_q8_0*>(dst), w.in);
          } else {
            quantize_row_q8_K(x + r * w.in, reinterpret_cast<block_q8_K*>(dst), w.in);
          }
        }
      });
      act_tensor_ = x_id;
      act_type_ = static_cast<int>(at);
      if (profile_) {
        prof_quant_s_ +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    }
    xa = act_.data();
  }
  if (R <= kGemvMaxRows) {
    gemv_parallel(pool_, w, xa, ldx, R, y);
  } else {
    matmul_parallel(pool_, w, xa, ldx, R, y);
  }
}

void CpuBackend::embed(const Matrix& table, const int32_t* tokens, int64_t rows, float scale,
                       float* y) {
  const int64_t cols = table.in;
  if (unpacked_type(table.type) == table.type) {
    for_rows(pool_, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        get_row_f32(table.type, table.data, tokens[r], cols, y + r * cols, scale);
    });
    return;
  }
  for (int64_t r = 0; r < rows; ++r) embedding_row(table, tokens[r], y + r * cols, scale, group_);
}

void CpuBackend::attention(const Node& n, const float* q, int64_t rows, float* out,
                           const int32_t* pos, const KvCache& kv) {
  const LayerConfig& l = c_.layers[n.layer];
  FlashAttnArgs a;
  kv.attention_args(n.layer, &a);
  a.q = q;
  a.q_stride_token = int64_t{l.n_head} * l.head_dim;
  a.q_stride_head = l.head_dim;
  a.q_pos = pos;
  a.n_q = static_cast<int>(rows);
  a.n_head = l.n_head;
  a.window = l.sliding ? c_.sliding_window : 0;
  a.scale = c_.attn_scale;
  // QGEMMA_ATTN_F32=1: f32 products and sums in attention everywhere (no fp16 MQA decoding).
  static const bool attn_f32 = [] {
    const char* e = std::getenv("QGEMMA_ATTN_F32");
    return e && *e && *e != '0';
  }();
  a.f32_math = attn_f32;
  a.out = out;
  a.out_stride_token = a.q_stride_token;
  a.out_stride_head = l.head_dim;
  if (!invariant_ || rows == 1) {
    attention_rows(a, l);
    return;
  }
  // Batch-invariant mode: each query token runs as a decoding step at its position would (one
  // query, the slots that step saw, the same split of the slots between threads), so its rows
  // come out bit for bit as if the tokens had been decoded one at a time. A task loops over the
  // queries on the same cache rows (one KV head, or one thread's slot range), so the rereads
  // of those rows mostly hit the cache.
  std::vector<FlashAttnArgs> b(rows, a);
  int n_split = 0;
  for (int64_t i = 0; i < rows; ++i) {
    b[i].q = q + i * a.q_stride_token;
    b[i].q_pos = pos + i;
    b[i].n_q = 1;
    b[i].out = out + i * a.out_stride_token;
    b[i].n_kv = std::min<int64_t>(a.n_kv, kv.slots_at(n.layer, pos[i]));
    n_split += split_kv(b[i], l);
  }
  const int threads = pool_.size();
  const int group = l.n_head / l.n_head_kv;
  if (n_split == 0) {
    pool_.parallel_for(l.n_head_kv, [&](int64_t g, int) {
      for (int64_t i = 0; i < rows; ++i) {
        flash_attn(b[i], 0, 1, static_cast<int>(g * group), static_cast<int>((g + 1) * group));
      }
    });
  } else if (n_split == rows) {
    const int64_t stride = flash_attn_partial_floats(b[0]);  // the same for every query
    for (auto& p : partials_) p.resize(stride * rows);
    pool_.parallel_for(threads, [&](int64_t s, int) {
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t kv0 = b[i].n_kv * s / threads, kv1 = b[i].n_kv * (s + 1) / threads;
        flash_attn_partial(b[i], 0, 1, 0, l.n_head, kv0, kv1, partials_[s].data() + i * stride);
      }
    });
    std::vector<const float*> parts(threads);
    for (int64_t i = 0; i < rows; ++i) {
      for (int s = 0; s < threads; ++s) parts[s] = partials_[s].data() + i * stride;
      flash_attn_combine(b[i], 0, 1, 0, l.n_head, parts.data(), threads);
    }
  } else {
    for (const FlashAttnArgs& bi : b) attention_rows(bi, l);  // the split starts in this batch
  }
}

bool CpuBackend::split_kv(const FlashAttnArgs& a, const LayerConfig& l) const {
  return a.n_q * l.n_head_kv < pool_.size() && a.n_kv >= 256 && pool_.size() > 1;
}

void CpuBackend::attention_rows(const FlashAttnArgs& a, const LayerConfig& l) {
  const int64_t rows = a.n_q;
  const int threads = pool_.size();
  const int group = l.n_head / l.n_head_kv;
  // Few (query, KV head) pairs over a long cache (MQA decoding): split the slots instead.
  if (split_kv(a, l)) {
    for (auto& p : partials_) p.resize(flash_attn_partial_floats(a));
    pool_.parallel_for(threads, [&](int64_t s, int) {
      const int64_t kv0 = a.n_kv * s / threads, kv1 = a.n_kv * (s + 1) / threads;
      flash_attn_partial(a, 0, a.n_q, 0, l.n_head, kv0, kv1, partials_[s].data());
    });
    std::vector<const float*> parts;
    for (const auto& p : partials_) parts.push_back(p.data());
    flash_attn_combine(a, 0, a.n_q, 0, l.n_head, parts.data(), threads);
    return;
  }
  // Tasks: (query block, KV head); a task handles all query heads sharing that KV head.
  const int64_t q_block =
      std::max<int64_t>(1, std::min<int64_t>(64, rows * l.n_head_kv / (threads * 4) + 1));
  const int64_t n_qb = (rows + q_block - 1) / q_block;
  pool_.parallel_for(n_qb * l.n_head_kv, [&](int64_t task, int) {
    const int64_t qb = task / l.n_head_kv, g = task % l.n_head_kv;
    const int q0 = static_cast<int>(qb * q_block),
              q1 = static_cast<int>(std::min(rows, (qb + 1) * q_block));
    flash_attn(a, q0, q1, static_cast<int>(g * group), static_cast<int>((g + 1) * group));
  });
}

const float* CpuBackend::run(const Graph& g, const MemoryPlan& plan, float* arena,
                             const int32_t* tokens, const int32_t* pos, KvCache& kv) {
  act_tensor_ = -1;
  using Clock = std::chrono::steady_clock;
  const auto t_run = profile_ ? Clock::now() : Clock::time_point{};
  auto ptr = [&](int t) { return arena + plan.offset[t]; };
  for (const Node& n : g.nodes) {
    const auto t_node = profile_ ? Clock::now() : Clock::time_point{};
    prof_quant_s_ = 0;
    const GraphTensor* ot = n.output >= 0 ? &g.tensors[n.output] : nullptr;
    float* y = n.output >= 0 ? ptr(n.output) : nullptr;
    const float* x = n.inputs.empty() ? nullptr : ptr(n.inputs[0]);
    const int64_t rows = ot ? ot->rows : 0, cols = ot ? ot->cols : 0;
    switch (n.op) {
      case Op::Embed:
        embed(*n.w, tokens, rows, n.f, y);
        break;
      case Op::RmsNorm:
        for_rows(pool_, rows, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            if (n.group == cols) {
              rmsnorm_f32(x + r * cols, n.vec, y + r * cols, cols, n.f);
            } else {
              rmsnorm_heads_f32(x + r * cols, n.vec, y + r * cols, cols / n.group, n.group, n.f);
            }
          }
        });
        break;
      case Op::MatMul:
        matmul(n, x, rows, y, n.inputs[0]);
        break;
      case Op::Rope: {
        const std::vector<float>& inv = inv_freq_[n.layer];
        const int64_t pairs = n.group / 2;
        pool_.parallel_range(rows, 1, [&](int64_t r0, int64_t r1, int thread) {
          float* cs = thread_scratch_[thread].data();
          float* sn = cs + pairs;
          for (int64_t r = r0; r < r1; ++r) {
            std::memcpy(y + r * cols, x + r * cols, cols * sizeof(float));
            rope_angles_f32(inv.data(), pairs, static_cast<float>(pos[r]), cs, sn);
            rope_neox_f32(y + r * cols, cols / n.group, n.group, cs, sn);
          }
        });
        break;
      }
      case Op::KvStore:
        kv.store(n.layer, x, ptr(n.inputs[1]), pos, g.tensors[n.inputs[0]].rows);
        break;
      case Op::Attention:
        attention(n, x, rows, y, pos, kv);
        break;
      case Op::Add: {
        const float* b = ptr(n.inputs[1]);
        for_elems(pool_, rows * cols,
                  [&](int64_t i0, int64_t i1) { add_f32(x + i0, b + i0, y + i0, i1 - i0); });
        break;
      }
      case Op::Scale:
        for_elems(pool_, rows * cols,
                  [&](int64_t i0, int64_t i1) { scale_f32(x + i0, n.f, y + i0, i1 - i0); });
        break;
      case Op::GeluGlu: {
        const float* up = ptr(n.inputs[1]);
        for_elems(pool_, rows * cols, [&](int64_t i0, int64_t i1) {
          geglu_tanh_f32(x + i0, up + i0, y + i0, i1 - i0);
        });
        break;
      }
      case Op::Softcap:
        for_elems(pool_, rows * cols,
                  [&](int64_t i0, int64_t i1) { softcap_f32(x + i0, y + i0, i1 - i0, n.f); });
        break;
      case Op::LastRows: {
        const int64_t in_rows = g.tensors[n.inputs[0]].rows;
        std::memcpy(y, x + (in_rows - rows) * cols, rows * cols * sizeof(float));
        break;
      }
    }
    if (profile_) {
      const double dt = std::chrono::duration<double>(Clock::now() - t_node).count();
      std::string key = op_name(n.op);
      if (n.op == Op::MatMul) {
        const std::string& nm = g.tensors[n.output].name;
        key = "MatMul " + nm.substr(nm.rfind('.') + 1);
      } else if (n.op == Op::RmsNorm && n.group != cols) {
        key = "RmsNorm heads";
      }
      auto& ops = prof_[g.n_tokens];
      ops[key].s += dt - prof_quant_s_;
      ops[key].calls += 1;
      if (n.op == Op::MatMul) ops[key].bytes += static_cast<double>(n.w->nbytes());
      if (prof_quant_s_ > 0) {
        ops["quantize acts"].s += prof_quant_s_;
        ops["quantize acts"].calls += 1;
      }
    }
  }
  if (profile_) {
    ProfileEntry& r = prof_runs_[g.n_tokens];
    r.s += std::chrono::duration<double>(Clock::now() - t_run).count();
    r.calls += 1;
  }
  return ptr(g.output);
}

}  // namespace qgemma
