// Op launchers of the Vulkan backend: each records one (or two) dispatches of a shader from
// shaders/ into a Recorder. Shapes are in elements; every buffer is a View (buffer + byte
// offset, offsets a multiple of the device's storage alignment). Semantics are those of the
// CPU kernels named beside each launcher, which the tests in tests/vulkan compare against.
// An optional buffer is a default-constructed View (no buffer).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/quant/formats.h"
#include "runtime/vulkan/device.h"

namespace qgemma::vk {

// ---- matrix multiplication (kernels/matmul/matmul.h, float activations) ------------------
// W: M rows of K elements of `wtype` (ggml row layout, row_size(wtype, K) bytes per row).
// x: N activation rows of K floats, x_stride floats apart (0: K).
// y: N output rows of M floats, y_stride floats apart (0: M): y[n][m] = sum_k W[m][k] x[n][k].

// Weight formats the matrix shaders read: Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16.
bool matmul_supported_on_gpu(TensorType wtype);
// Matrix x vectors, N in [1, 8] (decode), float path.
void mul_mat_vec(Recorder& rec, TensorType wtype, View w, View x, View y, uint32_t M, uint32_t K,
                 uint32_t N, uint32_t x_stride = 0, uint32_t y_stride = 0);
// Tiled matrix x matrix, any N (prefill).
void mul_mm(Recorder& rec, TensorType wtype, View w, View x, View y, uint32_t M, uint32_t K,
            uint32_t N, uint32_t x_stride = 0, uint32_t y_stride = 0);

// Integer-dot path (devices with DeviceInfo::int_dot; Q4_0 and Q8_0 weights, K % 32 == 0):
// x is quantized to Q8 blocks (d rounded to f16 like quantize_row_q8_0_ref) into xq, then the
// dot products run on packed int8.
bool int_dot_supported(const Device& dev, TensorType wtype);
size_t q8_activation_bytes(uint32_t K, uint32_t N);  // size of xq
void quantize_q8(Recorder& rec, View x, View xq, uint32_t K, uint32_t N, uint32_t x_stride = 0);
void mul_mat_vec_q8(Recorder& rec, TensorType wtype, View w, View xq, View y, uint32_t M,
                    uint32_t K, uint32_t N, uint32_t y_stride = 0);
// Tiled matrix x matrix on the quantized activations (shaders/mul_mm_q8.comp; prefill, any N):
// y[n][m] (y_stride floats apart, 0: M) from xq (quantize_q8's layout, N rows of K).
void mul_mm_q8(Recorder& rec, TensorType wtype, View w, View xq, View y, uint32_t M, uint32_t K,
               uint32_t N, uint32_t y_stride = 0);
// Whether prefill matmuls (N > 8) of `wtype` take mul_mm_q8: int_dot_supported and not
// disabled by the environment (QGEMMA_VK_MM_FLOAT=1 forces the float mul_mm, for A/B).
bool mm_int_dot_enabled(const Device& dev, TensorType wtype);
// Several matrices of one input in one dispatch (Q/K/V, gate/up): n_seg in [1, 3] weights
// w[i] (all of `wtype`, M[i] rows of K) into y[i] (N columns of M[i] floats, packed). glu
// (n_seg = 2, M[0] = M[1]): y[0] = gelu_tanh(w[0] x) * (w[1] x) (geglu), y[1] unused.
// Weight rows per workgroup of mul_mat_vec_q8 (default 2, environment QGEMMA_VK_MV_ROWS).
uint32_t matvec_rows();
void set_matvec_rows(uint32_t rows);  // 1..16 (tests, measurements)
// Threads per workgroup of the matrix-vector shaders (QGEMMA_VK_MV_WG: 32, 64, 128, 256;
// default 64).
uint32_t matvec_wg();
void set_matvec_wg(uint32_t wg);  // tests, measurements
// Whether the shaders with workgroup reductions (matrix-vector, norms, softmax) use their
// subgroup modules (subgroupAdd/Max, then one pass over the subgroups; <name>_sg): when the
// device has subgroup arithmetic in compute shaders, unless QGEMMA_VK_SUBGROUP=0.
// set_subgroup_reduce(0 / 1) forces the shared-memory / subgroup modules (1 still needs the
// device's support), -1 restores the automatic choice (tests, measurements).
bool subgroup_reduce_enabled(const Device& dev);
void set_subgroup_reduce(int mode);
void mul_mat_vec_q8_multi(Recorder& rec, TensorType wtype, uint32_t n_seg, const View* w,
                          const uint32_t* M, const View* y, View xq, uint32_t K, uint32_t N,
                          bool glu = false);

// The matmul the graph runtime calls: mul_mat_vec for N <= 8, mul_mm otherwise; through the
// integer paths (quantize_q8 + mul_mat_vec_q8 / mul_mm_q8) when the device has them, the format
// allows it and `q8_scratch` (q8_activation_bytes) is given.
void matmul(Recorder& rec, TensorType wtype, View w, View x, View y, uint32_t M, uint32_t K,
            uint32_t N, View q8_scratch = {});

// ---- attention (kernels/attention/attention.h; same visibility rule and strides) ---------
struct FlashAttnParams {
  View q;                                          // f32
  uint32_t q_stride_token = 0, q_stride_head = 0;  // floats
  View q_pos;                                      // int32 [n_q]
  View q_group;                                    // int32 [n_q] or none
  uint32_t n_q = 0, n_head = 0, n_kv_head = 0, head_dim = 0;
  TensorType kv_type = TensorType::F16;  // F16 or Q8_0, for both K and V
  View k, v;
  uint32_t k_stride_slot = 0, k_stride_head = 0, v_stride_slot = 0, v_stride_head = 0;  // bytes
  View kv_pos;    // int32 [n_kv], -1 = empty slot
  View kv_group;  // int32 [n_kv] or none (both groups or neither)
  uint32_t n_kv = 0;
  int32_t window = 0;
  float scale = 1.0f;
  View out;                                            // f32
  uint32_t out_stride_token = 0, out_stride_head = 0;  // floats
  // Optional: the output also as Q8 blocks (quantize_q8's layout, rows of out_stride_token
  // values) for the integer-dot output projection; needs out_stride_head == head_dim and
  // out_stride_token % 32 == 0.
  View out_q8;
  // Split-KV (decoding): the cache is walked in n_split parts by n_split workgroups per (query,
  // head) whose partial states (flash_attn_partial_bytes in `partials`) a second dispatch
  // (fa_combine) merges. n_split 0: flash_attn_splits(); without `partials` no split.
  uint32_t n_split = 0;
  View partials;
};
void flash_attn(Recorder& rec, const FlashAttnParams& a);
// The parts flash_attn splits n_kv slots into for n_q queries of n_head heads when not told:
// 1 unless there are few (query, head) pairs and a long cache; at most QGEMMA_VK_FA_SPLIT
// (default 64; 1 turns split-KV off) or set_flash_attn_max_splits (tests, measurements).
uint32_t flash_attn_splits(uint32_t n_q, uint32_t n_head, uint32_t n_kv);
void set_flash_attn_max_splits(uint32_t n);
// Scratch bytes of the partial states of n_split parts.
size_t flash_attn_partial_bytes(uint32_t n_q, uint32_t n_head, uint32_t head_dim, uint32_t n_split);

// Stores src [tokens][n_kv_head * head_dim] (f32, src_stride floats per token; 0: packed) into
// the cache rows of slots[t] (int32 [tokens]): F16, or Q8_0 exactly as quantize_row_q8_0_ref.
// Row starts (slot * stride_slot + head * stride_head) must be multiples of 4 bytes.
// src1 / cache1 given: a second tensor of the same shape (V) stored in the same dispatch.
void kv_store(Recorder& rec, TensorType kv_type, View src, View slots, View cache, uint32_t tokens,
              uint32_t n_kv_head, uint32_t head_dim, uint32_t stride_slot, uint32_t stride_head,
              uint32_t src_stride = 0, View src1 = {}, View cache1 = {});

// ---- row ops (kernels/ops/ops.h) ----------------------------------------------------------
// rows x n floats, contiguous; w: [n] or none. Per-head norms: n = head_dim, rows = heads.
void rms_norm(Recorder& rec, View x, View w, View y, uint32_t n, uint32_t rows, float eps);
// The decoder's norm chain in one dispatch (shaders/norm_chain.comp), per row of n floats
// (n % 4 == 0; with xq, n % 32 == 0):
//   v = x; if norm1: v = rmsnorm(v, eps1) * w1 (w1 optional); if res: v = res + v; v *= s;
//   h = v; if norm2: a = v = rmsnorm(v, eps2) * w2 (w2 optional); if xq: xq = Q8 blocks of v
// (the layout of quantize_q8). h, a and xq must not overlap any input.
struct NormChain {
  View x;
  bool norm1 = true;
  View w1;
  float eps1 = 1e-6f;
  View res;  // residual added after norm1, or none
  float s = 1.0f;
  View h;  // required
  bool norm2 = false;
  View w2;
  float eps2 = 1e-6f;
  View a;   // required when norm2
  View xq;  // optional
  uint32_t n = 0, rows = 0;
};
bool norm_chain_supported(const Device& dev, uint32_t n);
void norm_chain(Recorder& rec, const NormChain& c);

// Per-head RmsNorm (+ RoPE) of Q, K and V in one dispatch (shaders/head_norm_rope.comp):
//   q_out = rope(rmsnorm(q) * wq), k_out = rope(rmsnorm(k) * wk), v_out = rmsnorm(v) * wv
// each [tokens][heads][head_dim] (packed); weights optional, n_v_head = 0 for no V, RoPE
// (NeoX pairing, rope()'s table) only where rope_q / rope_k. Outputs may alias their input.
// kv_type F16 / Q8_0: k_out and v_out rows are also stored into k_cache / v_cache as kv_store
// does (slots int32 [tokens], strides in bytes); F32: no store.
struct HeadNormRope {
  View q, k, v, wq, wk, wv, pos, inv_freq, q_out, k_out, v_out;
  uint32_t tokens = 0, head_dim = 0, n_q_head = 0, n_k_head = 0, n_v_head = 0;
  bool rope_q = true, rope_k = true;
  float eps = 1e-6f;
  TensorType kv_type = TensorType::F32;
  View slots, k_cache, v_cache;
  uint32_t stride_slot = 0, stride_head = 0;
};
void head_norm_rope(Recorder& rec, const HeadNormRope& h);

void layer_norm(Recorder& rec, View x, View w, View b, View y, uint32_t n, uint32_t rows,
                float eps);
void softmax(Recorder& rec, View x, View y, uint32_t n, uint32_t rows);
// y: int32 [rows]
void argmax(Recorder& rec, View x, View y, uint32_t n, uint32_t rows);

// x, y: [tokens][heads][head_dim] with token strides (floats; 0: heads * head_dim);
// pos: int32 [tokens]; inv_freq: [head_dim / 2] from rope_inv_freq. neox: rope_neox_f32
// pairing, else rope_interleaved_f32.
void rope(Recorder& rec, View x, View pos, View inv_freq, View y, uint32_t tokens, uint32_t heads,
          uint32_t head_dim, bool neox = true, uint32_t x_stride_token = 0,
          uint32_t y_stride_token = 0);

// y[r][i] = gelu_tanh(gate[r][i]) * up[r][i]; strides in floats (0: n).
void geglu(Recorder& rec, View gate, View up, View y, uint32_t n, uint32_t rows,
           uint32_t gate_stride = 0, uint32_t up_stride = 0, uint32_t y_stride = 0);
void softcap(Recorder& rec, View x, View y, uint32_t n, float cap);
// y = a + b / a * b with b[i % nb] (nb = 0: n); y = s * a.
void add(Recorder& rec, View a, View b, View y, uint32_t n, uint32_t nb = 0);
void mul(Recorder& rec, View a, View b, View y, uint32_t n, uint32_t nb = 0);
void scale(Recorder& rec, View a, View y, uint32_t n, float s);

// Embedding gather (get_row_f32): y[t] = multiplier * row ids[t] of table; ids int32 [tokens].
// Formats: Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16, F32.
void get_rows(Recorder& rec, TensorType t, View table, View ids, View y, uint32_t n_cols,
              uint32_t tokens, float multiplier);

// ---- measurement --------------------------------------------------------------------------
// Device memory read bandwidth in GB/s (10^9 bytes/s): best of `reps` passes over a
// device-local buffer of `bytes` (wall time of submit + wait, so use >= 256 MiB).
double read_bandwidth_gbs(Device& dev, size_t bytes, int reps);

}  // namespace qgemma::vk
