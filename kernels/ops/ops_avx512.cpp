// AVX-512 (F/BW/DQ, 16 floats a vector) instantiation of the float ops (kernels/ops/ops_simd.h).
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512DQ__)
#error "ops_avx512.cpp must be compiled with -mavx512f -mavx512bw -mavx512dq"
#endif

// GCC 12's avx512fintrin.h trips -W(maybe-)uninitialized on _mm512_undefined_*() inside xsimd.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernels/ops/ops_internal.h"
#include "kernels/ops/ops_simd.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

// Q8_0 activations, the bytes of quantize_row_q8_0_ref: the block's |x| maximum by an in-register
// reduction and the int32 -> int8 narrowing by vpmovdb (the portable template spills both to the
// stack and finishes them lane by lane, ~4x the time of the arithmetic on a 3840-float row).
void quantize_q8_0_avx512(const float* x, block_q8_0* y, int64_t n) {
  using V = xsimd::batch<float, xsimd::avx512bw>;
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    const __m512 vid = _mm512_set1_ps(id);
    const __m512 q0 = round_half_away<xsimd::avx512bw>(V(_mm512_mul_ps(v0, vid)));
    const __m512 q1 = round_half_away<xsimd::avx512bw>(V(_mm512_mul_ps(v1, vid)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs),
                     _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(q0)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16),
                     _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(q1)));
  }
}

// Q8_K activations (K-quant weights), the bytes of quantize_row_q8_K_ref: 16 floats per vector
// are exactly one 16-element group of the block, so each group's bsum is one in-register sum;
// the element of largest magnitude (the first one, as the reference picks it) is found by a
// compare mask per vector instead of a scalar scan.
void quantize_q8_K_avx512(const float* x, block_q8_K* y, int64_t n) {
  constexpr int kVecs = QK_K / 16;
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    __m512 m = _mm512_setzero_ps();
    for (int i = 0; i < kVecs; ++i)
      m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)));
    const float amax = _mm512_reduce_max_ps(m);
    if (amax == 0) {
      y[b] = block_q8_K{};
      continue;
    }
    float vmax = 0;
    const __m512 va = _mm512_set1_ps(amax);
    for (int i = 0; i < kVecs; ++i) {
      const __mmask16 hit =
          _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * i)), va, _CMP_EQ_OQ);
      if (hit) {
        vmax = x[16 * i + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / vmax;
    const __m512 vs = _mm512_set1_ps(iscale), cap = _mm512_set1_ps(127.0f);
    for (int i = 0; i < kVecs; ++i) {
      const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * i), vs),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512i q = _mm512_cvttps_epi32(_mm512_min_ps(r, cap));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16 * i), _mm512_cvtepi32_epi8(q));
      y[b].bsums[i] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
    y[b].d = 1 / iscale;
  }
}

// vcvtps2ph, 16 floats at a time (rounding and special values as the reference).
void to_f16_avx512(const float* x, f16_bits* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  if (i < n) f32_to_f16_row_ref(x + i, y + i, n - i);
}

}  // namespace

const OpsKernels* ops_kernels_avx512() {
  static const OpsKernels k = [] {
    OpsKernels t = make_ops_kernels<xsimd::avx512bw>();
    t.quantize_q8_0 = quantize_q8_0_avx512;
    t.quantize_q8_K = quantize_q8_K_avx512;
    t.to_f16 = to_f16_avx512;
    return t;
  }();
  return &k;
}

}  // namespace qgemma
