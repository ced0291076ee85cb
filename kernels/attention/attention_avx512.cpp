// Flash attention, AVX-512: the shared SIMD body (attention_impl.h) on 16-lane f32 vectors,
// F16C-style vcvtph2ps for F16 K/V rows.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__F16C__)
#error "attention_avx512.cpp needs -mavx512f -mavx512bw -mf16c"
#endif

// GCC 12 reports the _mm512_undefined_*() operands inside its own intrinsic headers as
// uninitialized (GCC bug 105593, fixed in GCC 13): silence that false positive for this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include "kernels/attention/attention_impl.h"

namespace qgemma {
namespace {

struct Avx512 {
  using arch = xsimd::avx512bw;
  static constexpr int kQkRows = 4, kQkSlots = 4;  // 16 zmm accumulators
  static constexpr int kPvRows = 8, kPvVecs = 2;   // 8 rows x 32 floats

  static xsimd::batch<float, arch> load_f16(const f16_bits* x) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
  }

  static void hsums(const xsimd::batch<float, arch>* x, float* y) {
    __m512 s[8], t[4];
    for (int i = 0; i < 8; ++i) {  // 256-bit halves: [x_i lo+hi | x_(i+8) lo+hi]
      const __m512 a = x[i], b = x[i + 8];
      s[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
    for (int i = 0; i < 4; ++i) {  // 128-bit blocks: [x_i | x_(i+8) | x_(i+4) | x_(i+12)]
      t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(s[i], s[i + 4], 0x88),
                           _mm512_shuffle_f32x4(s[i], s[i + 4], 0xDD));
    }
    const __m512 u0 = _mm512_add_ps(_mm512_unpacklo_ps(t[0], t[1]), _mm512_unpackhi_ps(t[0], t[1]));
    const __m512 u1 = _mm512_add_ps(_mm512_unpacklo_ps(t[2], t[3]), _mm512_unpackhi_ps(t[2], t[3]));
    const __m512 v =
        _mm512_add_ps(_mm512_shuffle_ps(u0, u1, 0x44), _mm512_shuffle_ps(u0, u1, 0xEE));
    // Lane 4k + i of v holds the sum of x_(i + {0, 8, 4, 12}[k]); put sum j in lane j.
    const __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15);
    _mm512_storeu_ps(y, _mm512_permutexvar_ps(idx, v));
  }

  static void q8_0_to_f32(const block_q8_0* x, float* y, int n) {
    for (int b = 0; b < n / QK8_0; ++b) {
      const __m512 d = _mm512_set1_ps(_cvtsh_ss(x[b].d));
      for (int k = 0; k < QK8_0; k += 16) {
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs + k));
        const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
        _mm512_store_ps(y + b * QK8_0 + k, _mm512_mul_ps(f, d));
      }
    }
  }
};

}  // namespace

void flash_attn_avx512(const FlashAttnArgs& a, int q0, int q1, int h0, int h1) {
  FlashAttnSimd<Avx512>::full(a, q0, q1, h0, h1);
}

void flash_attn_partial_avx512(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                               int64_t kv1, float* partial) {
  FlashAttnSimd<Avx512>::partial(a, q0, q1, h0, h1, kv0, kv1, partial);
}

}  // namespace qgemma
