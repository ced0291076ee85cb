// Dispatch of the float ops to the active ISA's variants, plus the ops that need no SIMD
// variant (RoPE frequency tables, embedding row gather).
#include "kernels/ops/ops.h"

#include <cmath>

#include "kernels/ops/ops_internal.h"
#include "kernels/quant/quant.h"

namespace qgemma {

const OpsKernels* ops_kernels(Isa isa) {
  switch (isa) {
    case Isa::ref:
      return ops_kernels_ref();
#if defined(__x86_64__)
    case Isa::avx2:
      return ops_kernels_avx2();
    case Isa::avx512:
      return ops_kernels_avx512();
#endif
#if defined(__aarch64__)
    case Isa::neon:
      return ops_kernels_neon();
#endif
    default:
      return nullptr;
  }
}

namespace {
// The active ISA's table; active_isa() only returns supported ISAs, all of which have a table.
const OpsKernels& active() {
  const OpsKernels* k = ops_kernels(active_isa());
  return k ? *k : *ops_kernels_ref();
}
}  // namespace

void rmsnorm_f32(const float* x, const float* w, float* y, int64_t n, float eps) {
  active().rmsnorm(x, w, y, n, eps);
}
void rmsnorm_heads_f32(const float* x, const float* w, float* y, int64_t n_heads, int64_t head_dim,
                       float eps) {
  active().rmsnorm_heads(x, w, y, n_heads, head_dim, eps);
}
void layernorm_f32(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
  active().layernorm(x, w, b, y, n, eps);
}
void rope_angles_f32(const float* inv_freq, int64_t n_pairs, float pos, float* cos_out,
                     float* sin_out) {
  active().rope_angles(inv_freq, n_pairs, pos, cos_out, sin_out);
}
void rope_neox_f32(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                   const float* sin) {
  active().rope_neox(x, n_heads, head_dim, cos, sin);
}
void rope_interleaved_f32(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                          const float* sin) {
  active().rope_interleaved(x, n_heads, head_dim, cos, sin);
}
void gelu_tanh_f32(const float* x, float* y, int64_t n) { active().gelu_tanh(x, y, n); }
void geglu_tanh_f32(const float* gate, const float* up, float* y, int64_t n) {
  active().geglu_tanh(gate, up, y, n);
}
void softcap_f32(const float* x, float* y, int64_t n, float cap) { active().softcap(x, y, n, cap); }
void softmax_f32(const float* x, float* y, int64_t n) { active().softmax(x, y, n); }
void add_f32(const float* a, const float* b, float* y, int64_t n) { active().add(a, b, y, n); }
void mul_f32(const float* a, const float* b, float* y, int64_t n) { active().mul(a, b, y, n); }
void scale_f32(const float* x, float s, float* y, int64_t n) { active().scale(x, s, y, n); }
void add_scaled_f32(const float* x, float s, float* y, int64_t n) {
  active().add_scaled(x, s, y, n);
}
int64_t argmax_f32(const float* x, int64_t n) { return active().argmax(x, n); }
void quantize_row_q8_0(const float* x, block_q8_0* y, int64_t n) {
  active().quantize_q8_0(x, y, n);
}
void quantize_row_q8_K(const float* x, block_q8_K* y, int64_t n) {
  active().quantize_q8_K(x, y, n);
}
void f32_to_f16_row(const float* x, f16_bits* y, int64_t n) { active().to_f16(x, y, n); }

void rope_inv_freq(float* inv_freq, int64_t n_pairs, float theta, int64_t dim, int64_t n_rot,
                   const float* freq_divisors) {
  for (int64_t i = 0; i < n_pairs; ++i) {
    if (i >= n_rot) {
      inv_freq[i] = 0.0f;
      continue;
    }
    // HF: 1 / theta^(arange(0, dim, 2) / dim), computed in float32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    float f = 1.0f / std::pow(theta, exponent);
    if (freq_divisors) f /= freq_divisors[i];
    inv_freq[i] = f;
  }
}

void get_row_f32(TensorType t, const void* table, int64_t row, int64_t n_cols, float* y,
                 float multiplier) {
  const auto* src = static_cast<const uint8_t*>(table) + row * row_size(t, n_cols);
  dequantize_row(t, src, y, n_cols);
  if (multiplier != 1.0f) scale_f32(y, multiplier, y, n_cols);
}

}  // namespace qgemma
