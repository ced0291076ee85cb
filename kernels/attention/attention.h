// Flash attention for one query batch against a KV cache: online softmax over the cache slots,
// no score matrix, f32 accumulation. K and V in F16 or Q8_0 (llama.cpp block_q8_0 rows).
//
//   out[i, h, :] = sum_j softmax_j(scale * q[i, h, :] . k[j, g(h), :]) * v[j, g(h), :]
//
// over the visible slots j, with g(h) = h / (n_head / n_kv_head) the KV head of query head h
// (GQA: 16 query / 8 KV heads share a KV head by pairs; MQA: all 16 share KV head 0).
//
// Masks come from positions, so the runtime may keep a sliding layer's cache as a ring buffer
// (slots in any order). Slot j is visible to query i when
//   kv_pos[j] >= 0                                        (-1 = empty slot), and either
//   (a) kv_pos[j] <= q_pos[i]  and  (window <= 0 or q_pos[i] - kv_pos[j] < window), or
//   (b) q_group != nullptr, kv_group != nullptr, q_group[i] >= 0 and kv_group[j] == q_group[i]
//       (bidirectional block, e.g. the soft tokens of one image; overrides causality and window).
// `window` follows llama.cpp / transformers: a query sees itself and the window - 1 positions
// before it (Gemma 4 sliding layers: window 1024).
// A query with no visible slot gets an output of zeros.
//
// Layouts (all strides explicit, so the runtime and the Vulkan shader can agree on any layout):
//   q   f32: q[i * q_stride_token + h * q_stride_head + d]                        (floats)
//   out f32: out[i * out_stride_token + h * out_stride_head + d]                  (floats)
//   K row of slot j, KV head g: (const char*)k + j * k_stride_slot + g * k_stride_head  (bytes)
//   V row likewise with v_stride_slot / v_stride_head. A row holds head_dim elements:
//   head_dim f16 values (2 * head_dim bytes) or head_dim / 32 block_q8_0 (34 bytes each).
// Recommended cache layout: per KV head, slots contiguous ([kv_head][slot][head_dim]):
//   k_stride_slot = row bytes, k_stride_head = capacity * row bytes; slot-major
//   ([slot][kv_head][head_dim]) works as well.
//
// The SIMD kernels keep their state on the stack (about 200 KiB per call, 300 KiB for avx512:
// the accumulators of 16 rows, two blocks of dequantized Q8_0 rows and the queries at head_dim
// 1024); default thread stacks (8 MiB) are plenty.
//
// Work splitting (the caller's threads): flash_attn() computes queries [q0, q1) x query heads
// [h0, h1). Reading the cache is the cost, so give one thread all the query heads of a KV head
// (the kernels process the heads of one group together and read each K/V row once for them).
// For one query over a long cache with few KV heads (MQA decoding), split the slot range
// instead: each thread runs flash_attn_partial() on [kv0, kv1) into its own partial buffer, then
// flash_attn_combine() merges the partials into out.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu.h"
#include "kernels/quant/formats.h"

namespace qgemma {

// Largest head_dim the kernels accept (their per-thread state lives on the stack).
constexpr int kFlashAttnMaxHeadDim = 1024;

struct FlashAttnArgs {
  // Queries: n_q tokens x n_head heads x head_dim, f32.
  const float* q = nullptr;
  int64_t q_stride_token = 0;        // floats between tokens (usually n_head * head_dim)
  int64_t q_stride_head = 0;         // floats between heads (usually head_dim)
  const int32_t* q_pos = nullptr;    // [n_q] position of each query token
  const int32_t* q_group = nullptr;  // [n_q] bidirectional group id or -1; nullptr = none
  int n_q = 0;
  int n_head = 0;     // query heads
  int n_kv_head = 0;  // KV heads; n_head % n_kv_head == 0
  int head_dim = 0;   // multiple of 32, <= kFlashAttnMaxHeadDim; Gemma 4: 256 or 512

  // KV cache: n_kv slots.
  TensorType k_type = TensorType::F16;  // F16 or Q8_0
  TensorType v_type = TensorType::F16;  // F16 or Q8_0
  const void* k = nullptr;
  const void* v = nullptr;
  size_t k_stride_slot = 0, k_stride_head = 0;  // bytes
  size_t v_stride_slot = 0, v_stride_head = 0;  // bytes
  const int32_t* kv_pos = nullptr;              // [n_kv] position held by each slot, -1 = empty
  const int32_t* kv_group = nullptr;  // [n_kv] bidirectional group id or -1; nullptr = none
  int64_t n_kv = 0;

  int32_t window = 0;  // sliding window in positions; <= 0 = unlimited (global layer)
  float scale = 1.0f;  // multiplies q . k before the softmax (Gemma 4: 1.0)
  // false: an optimized variant may use fp16 arithmetic where the CPU has it (avx512 on CPUs
  // with AVX512-FP16, F16 K and V, a call for one query token [q1 - q0 == 1] with >= 9 query
  // heads on one KV head: MQA decoding): q and p rounded to fp16, short fp16 sums; about 1.5x
  // faster, error bound in tests/kernels/test_attention.cpp. Batches of queries (prefill,
  // verification) always use f32. true: f32 products and sums only (the reference's rounding).
  bool f32_math = false;

  float* out = nullptr;  // f32 [n_q x n_head x head_dim] through the strides below
  int64_t out_stride_token = 0;
  int64_t out_stride_head = 0;
};

// The visibility rule above for slot j and query i (kernels and tests share it).
inline bool flash_attn_visible(const FlashAttnArgs& a, int i, int64_t j) {
  const int32_t kp = a.kv_pos[j];
  if (kp < 0) return false;
  if (a.q_group && a.kv_group && a.q_group[i] >= 0 && a.kv_group[j] == a.q_group[i]) return true;
  const int32_t qp = a.q_pos[i];
  return kp <= qp && (a.window <= 0 || (int64_t)qp - kp < a.window);
}

// True when the args are consistent (types, divisibility, non-null pointers); kernels assume it.
bool flash_attn_args_valid(const FlashAttnArgs& a);

// Split-K partial results. One partial buffer holds, for every (query i, head h) of the args,
// the state of the online softmax over a slot range: running max m, sum of exponentials l and
// the unnormalised accumulator acc[head_dim], stored as floats at
//   partial + ((int64_t)i * n_head + h) * flash_attn_partial_stride(head_dim)
//   [0] = m (-inf when no slot of the range was visible), [1] = l, [2 .. 2 + head_dim) = acc.
// A buffer has flash_attn_partial_floats(a) floats; only the entries of [q0,q1) x [h0,h1) are
// written. Use 64-byte aligned buffers for speed (not required).
inline int64_t flash_attn_partial_stride(int head_dim) { return ((head_dim + 2) + 15) / 16 * 16; }
inline int64_t flash_attn_partial_floats(const FlashAttnArgs& a) {
  return (int64_t)a.n_q * a.n_head * flash_attn_partial_stride(a.head_dim);
}

// Dispatched on active_isa(): queries [q0, q1) x heads [h0, h1) over all n_kv slots -> out.
void flash_attn(const FlashAttnArgs& a, int q0, int q1, int h0, int h1);
// Dispatched: the same over slots [kv0, kv1) only -> partial (layout above).
void flash_attn_partial(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                        int64_t kv1, float* partial);
// Merges n_split partial buffers (partials[s], each written for the same [q0,q1) x [h0,h1)
// over disjoint slot ranges covering the cache) into out for [q0,q1) x [h0,h1).
void flash_attn_combine(const FlashAttnArgs& a, int q0, int q1, int h0, int h1,
                        const float* const* partials, int n_split);

// Variants (the dispatched functions above call one of these). Each computes the same thing;
// ref is the scalar ground truth. The optimized ones exist only where the build has the ISA.
void flash_attn_ref(const FlashAttnArgs& a, int q0, int q1, int h0, int h1);
void flash_attn_partial_ref(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                            int64_t kv1, float* partial);
void flash_attn_partial_avx2(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                             int64_t kv1, float* partial);
void flash_attn_partial_avx512(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                               int64_t kv1, float* partial);
void flash_attn_partial_neon(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                             int64_t kv1, float* partial);
// Full-range entry points of the optimized variants (out written directly, no partial buffer).
void flash_attn_avx2(const FlashAttnArgs& a, int q0, int q1, int h0, int h1);
void flash_attn_avx512(const FlashAttnArgs& a, int q0, int q1, int h0, int h1);
void flash_attn_neon(const FlashAttnArgs& a, int q0, int q1, int h0, int h1);

// The variant for an explicit ISA (tests and benchmarks); isa must be supported by the build.
void flash_attn_isa(Isa isa, const FlashAttnArgs& a, int q0, int q1, int h0, int h1);
void flash_attn_partial_isa(Isa isa, const FlashAttnArgs& a, int q0, int q1, int h0, int h1,
                            int64_t kv0, int64_t kv1, float* partial);

}  // namespace qgemma
