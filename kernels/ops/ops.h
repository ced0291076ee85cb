// Element-wise and row-wise float ops of the transformer (norms, RoPE, GLU, softcap, softmax,
// add/mul/scale, embedding gather, argmax) and the activation quantizers that feed the int8
// matmuls. Every op works on one row (or a few contiguous rows) of float32; the caller splits
// rows across threads. Unless noted, y may alias x (in place) but not partially overlap it.
//
// The plain names (rmsnorm_f32, ...) dispatch on active_isa(); ops_kernels(isa) gives one ISA's
// variants directly (tests and benchmarks). Variants agree with the *_ref versions within float
// rounding (different summation order, polynomial tanh/exp/sin/cos); the quantizers agree
// bit-exactly with quantize_row_q8_0_ref / quantize_row_q8_K_ref.
#pragma once

#include <cstdint>

#include "kernels/cpu.h"
#include "kernels/quant/formats.h"

namespace qgemma {

// ---------------------------------------------------------------------------------- norms --

// y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]; x, y, w: [n]. w == nullptr: no weight (x * 1).
void rmsnorm_f32(const float* x, const float* w, float* y, int64_t n, float eps);

// RMSNorm of each head on its own: x, y: [n_heads x head_dim] (contiguous rows), w: [head_dim]
// shared by every head, or nullptr for no weight (Gemma 4's V norm).
void rmsnorm_heads_f32(const float* x, const float* w, float* y, int64_t n_heads, int64_t head_dim,
                       float eps);

// y[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i]; x, y, w, b: [n]; var is the biased
// (1/n) variance. w == nullptr: no scale; b == nullptr: no bias.
void layernorm_f32(const float* x, const float* w, const float* b, float* y, int64_t n, float eps);

// ----------------------------------------------------------------------------------- RoPE --

// Fills inv_freq: [n_pairs] with the frequency of each rotated pair:
//   inv_freq[i] = theta^(-2i / dim) / (freq_divisors ? freq_divisors[i] : 1)   for i < n_rot
//   inv_freq[i] = 0 (angle 0: the pair is left as is)                          for i >= n_rot
// Standard RoPE over a head of d dims: n_pairs = n_rot = d / 2, dim = d.
// Gemma 4 global layers ("proportional"): d = 512, n_pairs = 256, dim = 512, n_rot = 64.
// freq_divisors: llama.cpp's `rope_freqs` tensor (one factor per pair), or nullptr.
void rope_inv_freq(float* inv_freq, int64_t n_pairs, float theta, int64_t dim, int64_t n_rot,
                   const float* freq_divisors);

// cos/sin of one position's angles: angle[i] = pos * inv_freq[i] (float32 product, as HF);
// inv_freq, cos_out, sin_out: [n_pairs]. Compute once per token, apply to every head.
void rope_angles_f32(const float* inv_freq, int64_t n_pairs, float pos, float* cos_out,
                     float* sin_out);

// NeoX-style RoPE (rotate halves) in place: x: [n_heads x head_dim]; dimension i pairs with
// i + head_dim/2 for i < head_dim/2:
//   x'[i]       = x[i] * cos[i] - x[i + h] * sin[i]
//   x'[i + h]   = x[i] * sin[i] + x[i + h] * cos[i]          (h = head_dim / 2)
// cos, sin: [head_dim / 2] from rope_angles_f32 (pairs with angle 0 come back unchanged).
void rope_neox_f32(float* x, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin);

// GPT-J / llama "normal" RoPE: adjacent dimensions (2i, 2i+1) form pair i; same cos/sin tables.
void rope_interleaved_f32(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                          const float* sin);

// ---------------------------------------------------------------------------- activations --

// y = gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); x, y: [n].
void gelu_tanh_f32(const float* x, float* y, int64_t n);

// GeGLU: y[i] = gelu_tanh(gate[i]) * up[i]; gate, up, y: [n] (y may alias gate or up).
void geglu_tanh_f32(const float* gate, const float* up, float* y, int64_t n);

// y = cap * tanh(x / cap); x, y: [n] (Gemma 4 final logits: cap = 30).
void softcap_f32(const float* x, float* y, int64_t n, float cap);

// y = exp(x - max(x)) / sum(exp(x - max(x))); x, y: [n], n >= 1.
void softmax_f32(const float* x, float* y, int64_t n);

// ---------------------------------------------------------------------------- arithmetic --

void add_f32(const float* a, const float* b, float* y, int64_t n);  // y = a + b
void mul_f32(const float* a, const float* b, float* y, int64_t n);  // y = a * b
void scale_f32(const float* x, float s, float* y, int64_t n);       // y = s * x
void add_scaled_f32(const float* x, float s, float* y, int64_t n);  // y += s * x

// -------------------------------------------------------------------------------- lookups --

// Embedding gather: y = multiplier * dequantize(row `row` of table); table: [n_rows x n_cols]
// in format t (any type_traits(t).supported format), n_cols a multiple of its block size.
// Gemma 4 input embeddings: multiplier = sqrt(3840).
void get_row_f32(TensorType t, const void* table, int64_t row, int64_t n_cols, float* y,
                 float multiplier);

// Index of the largest element (the first one on ties; NaN never wins unless all are NaN, then
// 0); x: [n], n >= 1.
int64_t argmax_f32(const float* x, int64_t n);

// ----------------------------------------------------------------- activation quantizers --

// Same output, bit for bit, as quantize_row_q8_0_ref / quantize_row_q8_K_ref (kernels/quant),
// vectorized. n: a multiple of 32 (q8_0) or 256 (q8_K); y: n / block_size blocks.
void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n);
void quantize_row_q8_K(const float* x, block_q8_K* y, int64_t n);

// f32 -> f16 (IEEE round to nearest even, bit for bit f32_to_f16 of kernels/quant: subnormals,
// overflow to inf, NaN kept quiet with its top payload bits); x, y: [n]. The KV cache's stores.
void f32_to_f16_row(const float* x, f16_bits* y, int64_t n);

// --------------------------------------------------------------------- scalar references --

void rmsnorm_f32_ref(const float* x, const float* w, float* y, int64_t n, float eps);
void rmsnorm_heads_f32_ref(const float* x, const float* w, float* y, int64_t n_heads,
                           int64_t head_dim, float eps);
void layernorm_f32_ref(const float* x, const float* w, const float* b, float* y, int64_t n,
                       float eps);
void rope_angles_f32_ref(const float* inv_freq, int64_t n_pairs, float pos, float* cos_out,
                         float* sin_out);
void rope_neox_f32_ref(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                       const float* sin);
void rope_interleaved_f32_ref(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                              const float* sin);
void gelu_tanh_f32_ref(const float* x, float* y, int64_t n);
void geglu_tanh_f32_ref(const float* gate, const float* up, float* y, int64_t n);
void softcap_f32_ref(const float* x, float* y, int64_t n, float cap);
void softmax_f32_ref(const float* x, float* y, int64_t n);
void add_f32_ref(const float* a, const float* b, float* y, int64_t n);
void mul_f32_ref(const float* a, const float* b, float* y, int64_t n);
void scale_f32_ref(const float* x, float s, float* y, int64_t n);
void add_scaled_f32_ref(const float* x, float s, float* y, int64_t n);
int64_t argmax_f32_ref(const float* x, int64_t n);
void f32_to_f16_row_ref(const float* x, f16_bits* y, int64_t n);
// (The quantizers' references are quantize_row_q8_0_ref / quantize_row_q8_K_ref in quant.h.)

// -------------------------------------------------------------------- per-ISA variants --

// One ISA's implementation of every op above (the ones without an ISA-specific version point
// at the reference).
struct OpsKernels {
  void (*rmsnorm)(const float* x, const float* w, float* y, int64_t n, float eps);
  void (*rmsnorm_heads)(const float* x, const float* w, float* y, int64_t n_heads, int64_t head_dim,
                        float eps);
  void (*layernorm)(const float* x, const float* w, const float* b, float* y, int64_t n, float eps);
  void (*rope_angles)(const float* inv_freq, int64_t n_pairs, float pos, float* cos_out,
                      float* sin_out);
  void (*rope_neox)(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                    const float* sin);
  void (*rope_interleaved)(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                           const float* sin);
  void (*gelu_tanh)(const float* x, float* y, int64_t n);
  void (*geglu_tanh)(const float* gate, const float* up, float* y, int64_t n);
  void (*softcap)(const float* x, float* y, int64_t n, float cap);
  void (*softmax)(const float* x, float* y, int64_t n);
  void (*add)(const float* a, const float* b, float* y, int64_t n);
  void (*mul)(const float* a, const float* b, float* y, int64_t n);
  void (*scale)(const float* x, float s, float* y, int64_t n);
  void (*add_scaled)(const float* x, float s, float* y, int64_t n);
  int64_t (*argmax)(const float* x, int64_t n);
  void (*quantize_q8_0)(const float* x, block_q8_0* y, int64_t n);
  void (*quantize_q8_K)(const float* x, block_q8_K* y, int64_t n);
  void (*to_f16)(const float* x, f16_bits* y, int64_t n);
};

// The variants of `isa`, or nullptr when this build has none for it (e.g. neon on x86).
// Callers must still check isa_supported(isa) before running them.
const OpsKernels* ops_kernels(Isa isa);

}  // namespace qgemma
