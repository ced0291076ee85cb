// Runs a graph on the CPU: node by node, each node's rows (or output columns, for matmuls)
// split across the thread pool, with the kernels of kernels/ (dispatched on the CPU's ISA).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/graph.h"
#include "runtime/kv_cache.h"
#include "runtime/model_config.h"
#include "runtime/planner.h"

namespace qgemma {

class ThreadPool;
struct Matrix;

// y[R x w.out] = x W^T, output rows split across the pool in two tasks per thread (claimed as
// threads free up: a thread slowed by another process takes fewer; each task re-derives its
// activation block sums, ~1% of a 512-row GEMM). x: R activation rows already in
// vec_dot_type(w.type), row stride ldx bytes.
void matmul_parallel(ThreadPool& pool, const Matrix& w, const void* x, size_t ldx, int64_t R,
                     float* y);

// The same for R <= kGemvMaxRows (decoding, speculative verification), which is memory-bound:
// the output rows go out in several tasks per thread (boundaries on multiples of 32 rows for the
// 8-row interleaved layouts, 16 otherwise), claimed as threads free up, so a thread slowed by
// another process or an interrupt delays one small task rather than half of the matrix.
void gemv_parallel(ThreadPool& pool, const Matrix& w, const void* x, size_t ldx, int64_t R,
                   float* y);

class CpuBackend {
 public:
  CpuBackend(const ModelConfig& c, ThreadPool& pool);
  // With QGEMMA_PROFILE=1 in the environment, prints the time spent per op kind (matmuls per
  // weight: q, k, v, attn_out, gate, up, ffn_out, logits_raw; activation quantization apart),
  // per graph size (tokens per run), to stderr when the backend is destroyed.
  ~CpuBackend();

  // Runs g with its activations at arena + plan.offset[t]. tokens, pos: [g.n_tokens] (ids
  // already checked < n_vocab). Returns a pointer to the output tensor inside the arena.
  const float* run(const Graph& g, const MemoryPlan& plan, float* arena, const int32_t* tokens,
                   const int32_t* pos, KvCache& kv);

  // Batch invariance (speculative verification): when on, attention runs each query token of a
  // multi-token run alone, as a decoding step at its position would, so that together with the
  // row-wise matmul kernels (bit-identical for any number of rows up to kGemvMaxRows) a run of
  // T tokens gives the logits T decoding steps would give, bit for bit. Costs T reads of the
  // cache instead of one.
  void set_invariant_attention(bool on) { invariant_ = on; }
  bool invariant_attention() const { return invariant_; }

 private:
  void embed(const Matrix& table, const int32_t* tokens, int64_t rows, float scale, float* y);
  void matmul(const Node& n, const float* x, int64_t rows, float* y, int x_id);
  void attention(const Node& n, const float* q, int64_t rows, float* out, const int32_t* pos,
                 const KvCache& kv);
  void attention_rows(const FlashAttnArgs& a, const LayerConfig& l);
  bool split_kv(const FlashAttnArgs& a, const LayerConfig& l) const;

  const ModelConfig& c_;
  ThreadPool& pool_;
  std::vector<std::vector<float>> inv_freq_;  // per layer [head_dim / 2]
  std::vector<uint8_t> group_;                // an unpacked 8-row group of a repacked table
  std::vector<uint8_t> act_;                  // activations converted for the matmul kernels
  int act_tensor_ = -1;                       // which tensor act_ holds, in which format
  int act_type_ = -1;
  bool invariant_ = false;                          // see set_invariant_attention
  std::vector<std::vector<float>> thread_scratch_;  // per thread: rope cos/sin
  std::vector<std::vector<float>> partials_;        // split-KV attention partials per thread

  // QGEMMA_PROFILE: seconds and calls per (tokens per run, op kind).
  struct ProfileEntry {
    double s = 0;
    int64_t calls = 0;
    double bytes = 0;  // weight bytes read (matmuls)
  };
  bool profile_ = false;
  std::map<int64_t, std::map<std::string, ProfileEntry>> prof_;
  std::map<int64_t, ProfileEntry> prof_runs_;  // whole runs per tokens per run
  double prof_quant_s_ = 0;                    // activation quantization inside the current node
};

}  // namespace qgemma
