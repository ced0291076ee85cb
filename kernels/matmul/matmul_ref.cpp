// Scalar references of the matmul for Q4_0, Q8_0 (plain and 8-row repacked), F32, F16 and BF16
// weights (the K-quant references are in matmul_kquant_ref.cpp).
// The int8 references sum each block's integer dot product exactly and accumulate
// d_w * d_x * isum in float, block by block (llama.cpp's vec_dot semantics).
#include "kernels/matmul/matmul_variants.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

const uint8_t* bytes(const void* p) { return static_cast<const uint8_t*>(p); }

const block_q8_0* act_row_q8_0(const MatmulArgs& a, int64_t r) {
  return reinterpret_cast<const block_q8_0*>(bytes(a.x) + r * a.ldx);
}

// Dot product of one Q4_0 block (scale d, packed nibbles qs) with one Q8_0 activation block.
float dot_block_q4_0(f16_bits d, const uint8_t* qs, const block_q8_0& x) {
  int32_t isum = 0;
  for (int i = 0; i < QK4_0 / 2; ++i) {
    isum += ((qs[i] & 0x0F) - 8) * x.qs[i];
    isum += ((qs[i] >> 4) - 8) * x.qs[i + QK4_0 / 2];
  }
  return static_cast<float>(isum) * (f16_to_f32(d) * f16_to_f32(x.d));
}

float dot_block_q8_0(f16_bits d, const int8_t* qs, const block_q8_0& x) {
  int32_t isum = 0;
  for (int i = 0; i < QK8_0; ++i) isum += qs[i] * x.qs[i];
  return static_cast<float>(isum) * (f16_to_f32(d) * f16_to_f32(x.d));
}

}  // namespace

void matmul_q4_0_q8_0_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.K / QK4_0;
  const size_t wrow = row_size(TensorType::Q4_0, a.K);
  for (int64_t r = 0; r < a.R; ++r) {
    const block_q8_0* x = act_row_q8_0(a, r);
    for (int64_t n = n0; n < n1; ++n) {
      const auto* w = reinterpret_cast<const block_q4_0*>(bytes(a.w) + n * wrow);
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; ++b) sum += dot_block_q4_0(w[b].d, w[b].qs, x[b]);
      a.y[r * a.ldy + n] = sum;
    }
  }
}

void matmul_q8_0_q8_0_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.K / QK8_0;
  const size_t wrow = row_size(TensorType::Q8_0, a.K);
  for (int64_t r = 0; r < a.R; ++r) {
    const block_q8_0* x = act_row_q8_0(a, r);
    for (int64_t n = n0; n < n1; ++n) {
      const auto* w = reinterpret_cast<const block_q8_0*>(bytes(a.w) + n * wrow);
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; ++b) sum += dot_block_q8_0(w[b].d, w[b].qs, x[b]);
      a.y[r * a.ldy + n] = sum;
    }
  }
}

void matmul_q4_0x8_q8_0_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.K / QK4_0;
  const size_t group = row_size(TensorType::Q4_0x8, a.K);
  for (int64_t r = 0; r < a.R; ++r) {
    const block_q8_0* x = act_row_q8_0(a, r);
    for (int64_t n = n0; n < n1; ++n) {
      const auto* w = reinterpret_cast<const block_q4_0x8*>(bytes(a.w) + (n / 8) * group);
      const int j = static_cast<int>(n % 8);
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t qs[QK4_0 / 2];
        for (int i = 0; i < QK4_0 / 2; ++i) qs[i] = w[b].qs[x8_qs_offset(j, i)];
        sum += dot_block_q4_0(w[b].d[j], qs, x[b]);
      }
      a.y[r * a.ldy + n] = sum;
    }
  }
}

void matmul_q8_0x8_q8_0_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.K / QK8_0;
  const size_t group = row_size(TensorType::Q8_0x8, a.K);
  for (int64_t r = 0; r < a.R; ++r) {
    const block_q8_0* x = act_row_q8_0(a, r);
    for (int64_t n = n0; n < n1; ++n) {
      const auto* w = reinterpret_cast<const block_q8_0x8*>(bytes(a.w) + (n / 8) * group);
      const int j = static_cast<int>(n % 8);
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int8_t qs[QK8_0];
        for (int i = 0; i < QK8_0; ++i) qs[i] = w[b].qs[x8_qs_offset(j, i)];
        sum += dot_block_q8_0(w[b].d[j], qs, x[b]);
      }
      a.y[r * a.ldy + n] = sum;
    }
  }
}

namespace {

// Float weights against F32 activations; accumulates in double so the reference is more
// accurate than any optimized variant (tests bound the variants' float rounding against it).
template <typename W, float (*to_f32)(uint16_t)>
void matmul_half_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  for (int64_t r = 0; r < a.R; ++r) {
    const auto* x = reinterpret_cast<const float*>(bytes(a.x) + r * a.ldx);
    for (int64_t n = n0; n < n1; ++n) {
      const auto* w = reinterpret_cast<const W*>(a.w) + n * a.K;
      double sum = 0.0;
      for (int64_t k = 0; k < a.K; ++k) sum += static_cast<double>(to_f32(w[k])) * x[k];
      a.y[r * a.ldy + n] = static_cast<float>(sum);
    }
  }
}

}  // namespace

void matmul_f32_f32_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  for (int64_t r = 0; r < a.R; ++r) {
    const auto* x = reinterpret_cast<const float*>(bytes(a.x) + r * a.ldx);
    for (int64_t n = n0; n < n1; ++n) {
      const float* w = static_cast<const float*>(a.w) + n * a.K;
      double sum = 0.0;
      for (int64_t k = 0; k < a.K; ++k) sum += static_cast<double>(w[k]) * x[k];
      a.y[r * a.ldy + n] = static_cast<float>(sum);
    }
  }
}

void matmul_f16_f32_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_half_ref<f16_bits, f16_to_f32>(a, n0, n1);
}

void matmul_bf16_f32_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_half_ref<bf16_bits, bf16_to_f32>(a, n0, n1);
}

}  // namespace qgemma
