// Scalar references for Q4_K / Q5_K / Q6_K weights x Q8_K activations: the ground truth the SIMD
// variants are tested against. Written from the block layouts (kernels/quant/formats.h), not
// from the SIMD code: every sum inside a 256-block is exact in int32, then one float step per
// block, which is dequant(W) . dequant(X) up to float rounding of the block totals.
#include <cassert>

#include "kernels/matmul/kquant.h"
#include "kernels/matmul/matmul_variants.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

// Scale and min of Q4_K sub-block j (0..7) from the 12 packed bytes.
void q4_k_scale_min(const uint8_t* s, int j, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K: sub-block j covers elements 32j..32j+31; its codes are the low nibbles (j even) or high
// nibbles (j odd) of qs[32 * (j / 2) ..+32]. x = d * scale * q - dmin * min.
// Q5_K: the same, plus bit j of qh[l] as bit 4 of the code of element 32j + l.
template <typename Block, bool kHighBit>
float dot_k4_q8_k_ref(const Block* w, const block_q8_K* x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int32_t scaled = 0;  // sum_j scale_j * sum_l q * xq
    int32_t mins = 0;    // sum_j min_j * sum_l xq
    for (int j = 0; j < 8; ++j) {
      int scale, min;
      q4_k_scale_min(w[b].scales, j, &scale, &min);
      const uint8_t* q = w[b].qs + 32 * (j / 2);
      const int shift = (j % 2) * 4;
      const int8_t* xq = x[b].qs + 32 * j;
      int32_t dot = 0, xsum = 0;
      for (int l = 0; l < 32; ++l) {
        int code = (q[l] >> shift) & 0x0f;
        if constexpr (kHighBit) code |= ((w[b].qh[l] >> j) & 1) << 4;
        dot += code * xq[l];
        xsum += xq[l];
      }
      scaled += scale * dot;
      mins += min * xsum;
    }
    sum += x[b].d * (f16_to_f32(w[b].d) * static_cast<float>(scaled) -
                     f16_to_f32(w[b].dmin) * static_cast<float>(mins));
  }
  return sum;
}

float dot_q4_k_q8_k_ref(const block_q4_K* w, const block_q8_K* x, int64_t nb) {
  return dot_k4_q8_k_ref<block_q4_K, false>(w, x, nb);
}
float dot_q5_k_q8_k_ref(const block_q5_K* w, const block_q8_K* x, int64_t nb) {
  return dot_k4_q8_k_ref<block_q5_K, true>(w, x, nb);
}

// Q6_K values (code - 32, in -32..31) of one block, in element order. Each half h of 128
// elements uses ql[64h..], qh[32h..]; within it, element 32t + i (t = 0..3) takes the low (t < 2)
// or high (t >= 2) nibble of ql[64h + 32 * (t % 2) + i] and bits 2t..2t+1 of qh[32h + i].
void q6_k_values(const block_q6_K& w, int* v) {
  for (int h = 0; h < 2; ++h) {
    for (int t = 0; t < 4; ++t) {
      for (int i = 0; i < 32; ++i) {
        const uint8_t lo = w.ql[64 * h + 32 * (t % 2) + i];
        const int low4 = t < 2 ? (lo & 0x0f) : (lo >> 4);
        const int high2 = (w.qh[32 * h + i] >> (2 * t)) & 3;
        v[128 * h + 32 * t + i] = (low4 | (high2 << 4)) - 32;
      }
    }
  }
}

// x = d * scale[e / 16] * value.
float dot_q6_k_q8_k_ref(const block_q6_K* w, const block_q8_K* x, int64_t nb) {
  float sum = 0.0f;
  int v[QK_K];
  for (int64_t b = 0; b < nb; ++b) {
    q6_k_values(w[b], v);
    int32_t scaled = 0;
    for (int g = 0; g < 16; ++g) {
      int32_t dot = 0;
      for (int l = 16 * g; l < 16 * g + 16; ++l) dot += v[l] * x[b].qs[l];
      scaled += w[b].scales[g] * dot;
    }
    sum += x[b].d * f16_to_f32(w[b].d) * static_cast<float>(scaled);
  }
  return sum;
}

template <typename Block, float (*dot)(const Block*, const block_q8_K*, int64_t)>
void matmul_rows_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  assert(a.K % QK_K == 0);
  const int64_t nb = a.K / QK_K;
  const Block* w = static_cast<const Block*>(a.w);
  for (int64_t r = 0; r < a.R; ++r) {
    const auto* x =
        reinterpret_cast<const block_q8_K*>(static_cast<const uint8_t*>(a.x) + r * a.ldx);
    for (int64_t n = n0; n < n1; ++n) a.y[r * a.ldy + n] = dot(w + n * nb, x, nb);
  }
}

// The repacked layouts: each block of row 8g + j is unpacked (kquant.h) and dotted as above.
template <typename X, typename Block, void (*unpack)(const X&, int, Block*),
          float (*dot)(const Block*, const block_q8_K*, int64_t)>
void matmul_x8_rows_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  assert(a.K % QK_K == 0 && n0 % 8 == 0 && n1 % 8 == 0);
  const int64_t nb = a.K / QK_K;
  const X* w = static_cast<const X*>(a.w);
  for (int64_t r = 0; r < a.R; ++r) {
    const auto* x =
        reinterpret_cast<const block_q8_K*>(static_cast<const uint8_t*>(a.x) + r * a.ldx);
    for (int64_t n = n0; n < n1; ++n) {
      const X* group = w + (n / 8) * nb;
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        Block blk;
        unpack(group[b], static_cast<int>(n % 8), &blk);
        sum += dot(&blk, x + b, 1);
      }
      a.y[r * a.ldy + n] = sum;
    }
  }
}

}  // namespace

void matmul_q4_kx8_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8_rows_ref<block_q4_Kx8, block_q4_K, kquant_detail::q4_kx8_unpack, dot_q4_k_q8_k_ref>(
      a, n0, n1);
}

void matmul_q5_kx8_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8_rows_ref<block_q5_Kx8, block_q5_K, kquant_detail::q5_kx8_unpack, dot_q5_k_q8_k_ref>(
      a, n0, n1);
}

void matmul_q6_kx8_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8_rows_ref<block_q6_Kx8, block_q6_K, kquant_detail::q6_kx8_unpack, dot_q6_k_q8_k_ref>(
      a, n0, n1);
}

void matmul_q4_k_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_rows_ref<block_q4_K, dot_q4_k_q8_k_ref>(a, n0, n1);
}

void matmul_q5_k_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_rows_ref<block_q5_K, dot_q5_k_q8_k_ref>(a, n0, n1);
}

void matmul_q6_k_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_rows_ref<block_q6_K, dot_q6_k_q8_k_ref>(a, n0, n1);
}

}  // namespace qgemma
