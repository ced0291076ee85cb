// AVX2 Q4_Kx8 / Q6_Kx8 x Q8_K matmul (repacked K-quants; layouts in matmul.h, pack/unpack in
// kquant.h). One 32-byte load of an x8 block holds the same 4 code bytes of each of the 8 rows
// (dword lane j = row j), so one broadcast activation dword (vpbroadcastd from memory) serves all
// 8 rows: vpmaddubsw (u8 codes x s8 activations) gives int16 pairs per row, and the 8 output rows
// come out in the 8 lanes of one accumulator - no horizontal sums, no per-row scale shuffles.
//   Q4_Kx8: the 8 chunks of one 32-element sub-block are summed in int16 (|8 x 2 x 15 x 128| =
//           30720 < 32767, exact), then one vpmaddwd with the rows' 6-bit scales (each in both
//           int16 halves of its dword) moves them to int32. The min term comes from Q8_K's bsums
//           (as in the plain kernels): 4 vpmaddwd per block with (min 2p, min 2p+1) pairs per row.
//   Q6_Kx8: 6-bit codes (0..63) cannot be summed over a 16-element sub-block in int16, so each
//           vpmaddubsw goes straight through vpmaddwd with the sub-block scale; the -32 offset is
//           -32 * sum_g scale_g * bsum_g (8 vpmaddwd per block with the rows' scale pairs).
// Driver as the AVX-512 x8 kernels: groups in ~512 KiB panels (L2); R = 1 one pass over the
// weights; R > 1 the weights of a group are decoded once per tile of up to 4 activation rows.
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "matmul_kx8_avx2.cpp needs -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include <cstring>

#include "kernels/matmul/kquant.h"
#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kRowTile = 4;  // activation rows per pass over a group's block (R > 1)

// The dword at p broadcast to all 8 lanes.
inline __m256i bcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline __m256 f16x8(const f16_bits* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Software prefetch of block blk + kPrefetchBlocks, part `part` of `parts` of its lines (spread
// over the block's loop, as the AVX-512 kernels do).
constexpr int kPrefetchBlocks = 2;
template <typename X>
inline void prefetch_part(const X* blk, int part, int parts) {
  const char* p = reinterpret_cast<const char*>(blk + kPrefetchBlocks);
  constexpr int kLines = static_cast<int>((sizeof(X) + 63) / 64);
  const int l0 = kLines * part / parts, l1 = kLines * (part + 1) / parts;
  for (int l = l0; l < l1; ++l) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
}

// One group (8 weight rows) of Q4_Kx8 x RB Q8_K rows; y[r * ldy + j] = row j's output.
template <int RB>
void q4_kx8_rows(const block_q4_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                 int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i m30 = _mm256_set1_epi8(0x30);
  const __m256i m3f = _mm256_set1_epi32(0x3f);
  const __m128i ones = _mm_set1_epi16(1);
  __m256 acc[RB], accm[RB];
  for (int r = 0; r < RB; ++r) acc[r] = accm[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const block_q4_Kx8* blk = w + b;
    __m256i isum[RB];
    for (int r = 0; r < RB; ++r) isum[r] = _mm256_setzero_si256();
    for (int p = 0; p < 4; ++p) {
      // Sub-blocks 2p (low nibbles of row bytes 32p..32p+31) and 2p + 1 (high nibbles).
      prefetch_part(blk, p, 4);
      __m256i slo[RB], shi[RB];
      for (int r = 0; r < RB; ++r) slo[r] = shi[r] = _mm256_setzero_si256();
      for (int u = 0; u < 8; ++u) {
        const __m256i v =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs + 32 * (8 * p + u)));
        const __m256i lo = _mm256_and_si256(v, m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        for (int r = 0; r < RB; ++r) {
          const int8_t* xq = xr[r][b].qs + 64 * p + 4 * u;
          slo[r] = _mm256_add_epi16(slo[r], _mm256_maddubs_epi16(lo, bcast32(xq)));
          shi[r] = _mm256_add_epi16(shi[r], _mm256_maddubs_epi16(hi, bcast32(xq + 32)));
        }
      }
      // Rows' scales of sub-blocks 2p, 2p + 1 (bits 0..5), each in both int16 halves.
      __m256i sl = _mm256_and_si256(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                                        reinterpret_cast<const __m128i*>(blk->scales + 16 * p))),
                                    m3f);
      __m256i sh = _mm256_and_si256(
          _mm256_cvtepu8_epi32(
              _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk->scales + 16 * p + 8))),
          m3f);
      sl = _mm256_or_si256(sl, _mm256_slli_epi32(sl, 16));
      sh = _mm256_or_si256(sh, _mm256_slli_epi32(sh, 16));
      for (int r = 0; r < RB; ++r) {
        isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(_mm256_madd_epi16(slo[r], sl),
                                                             _mm256_madd_epi16(shi[r], sh)));
      }
    }
    // Mins #0..31 (bytes of ma) and #32..63 (mb): low 4 bits from mins[], bits 4..5 from the
    // scale bytes' top bits. Zero-extended, int16 lanes 2j, 2j + 1 of mq[p] = row j's mins of
    // sub-blocks 2p, 2p + 1 (q4_kx8_min_index).
    const __m256i mn = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->mins));
    const __m256i sa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->scales));
    const __m256i sb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->scales + 32));
    const __m256i ma =
        _mm256_or_si256(_mm256_and_si256(mn, m4), _mm256_and_si256(_mm256_srli_epi16(sa, 2), m30));
    const __m256i mb = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(mn, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(sb, 2), m30));
    const __m256i mq0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(ma));
    const __m256i mq1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(ma, 1));
    const __m256i mq2 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(mb));
    const __m256i mq3 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(mb, 1));
    const __m256 d = f16x8(blk->d);
    const __m256 dmin = f16x8(blk->dmin);
    for (int r = 0; r < RB; ++r) {
      const block_q8_K& xb = xr[r][b];
      // Sub-block sums xsum_s = bsum 2s + bsum 2s + 1 as int16 (|.| <= 32 x 128); dword p of xs
      // = (xsum 2p, xsum 2p + 1).
      const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb.bsums));
      const __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb.bsums + 8));
      const __m256i xs = _mm256_castsi128_si256(
          _mm_packs_epi32(_mm_madd_epi16(b0, ones), _mm_madd_epi16(b1, ones)));
      const __m256i m01 =
          _mm256_madd_epi16(mq0, _mm256_permutevar8x32_epi32(xs, _mm256_set1_epi32(0)));
      const __m256i m23 =
          _mm256_madd_epi16(mq1, _mm256_permutevar8x32_epi32(xs, _mm256_set1_epi32(1)));
      const __m256i m45 =
          _mm256_madd_epi16(mq2, _mm256_permutevar8x32_epi32(xs, _mm256_set1_epi32(2)));
      const __m256i m67 =
          _mm256_madd_epi16(mq3, _mm256_permutevar8x32_epi32(xs, _mm256_set1_epi32(3)));
      const __m256i msum = _mm256_add_epi32(_mm256_add_epi32(m01, m23), _mm256_add_epi32(m45, m67));
      const __m256 xd = _mm256_set1_ps(xb.d);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_mul_ps(d, xd), acc[r]);
      accm[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(dmin, xd), accm[r]);
    }
  }
  for (int r = 0; r < RB; ++r) _mm256_storeu_ps(y + r * ldy, _mm256_sub_ps(acc[r], accm[r]));
}

// Row j's scales of sub-blocks 2p, 2p + 1 (int16 lanes 2j, 2j + 1) -> sub-block 2p + odd's scale
// in both int16 halves of dword j.
template <int odd>
inline __m256i dup_scale(__m256i pair) {
  constexpr int imm = odd ? _MM_SHUFFLE(3, 3, 1, 1) : _MM_SHUFFLE(2, 2, 0, 0);
  return _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(pair, imm), imm);
}

// One group of Q6_Kx8 x RB Q8_K rows.
template <int RB>
void q6_kx8_rows(const block_q6_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                 int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i m30 = _mm256_set1_epi8(0x30);
  __m256 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const block_q6_Kx8* blk = w + b;
    // sp[p]: dword j = (row j's scale of sub-block 2p, of 2p + 1) as int16.
    __m256i sp[8];
    for (int p = 0; p < 8; ++p) {
      sp[p] = _mm256_cvtepi8_epi16(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->scales + 16 * p)));
    }
    __m256i isum[RB];
    for (int r = 0; r < RB; ++r) {
      // -32 * sum_g scale_g * bsum_g: the offset of every code.
      const int16_t* bs = xr[r][b].bsums;
      __m256i off = _mm256_madd_epi16(sp[0], bcast32(bs));
      for (int p = 1; p < 8; ++p)
        off = _mm256_add_epi32(off, _mm256_madd_epi16(sp[p], bcast32(bs + 2 * p)));
      isum[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
    }
    for (int h = 0; h < 2; ++h) {
      for (int half = 0; half < 2; ++half) {
        prefetch_part(blk, 2 * h + half, 4);
        // Element quarter t (elements 128h + 32t ..) of positions 16 half .. + 15: sub-block
        // 8h + 2t + half, whose scale pair is sp[4h + t].
        __m256i s[4];
        for (int t = 0; t < 4; ++t) {
          s[t] = half ? dup_scale<1>(sp[4 * h + t]) : dup_scale<0>(sp[4 * h + t]);
        }
        // Two chunks (row bytes 4u.. and 4u + 4..) per step: their vpmaddubsw pairs are summed
        // in int16 (|2 x 2 x 63 x 128| = 32256 < 32767, exact) before one vpmaddwd.
        for (int uu = 0; uu < 4; uu += 2) {
          const int u = 4 * half + uu;  // row bytes 4u..4u+7 of this half's ql / qh runs
          __m256i qh[2], la[2], lb[2];
          for (int k = 0; k < 2; ++k) {
            qh[k] = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(blk->qh + 32 * (8 * h + u + k)));
            la[k] = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(blk->ql + 32 * (16 * h + u + k)));
            lb[k] = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(blk->ql + 32 * (16 * h + 8 + u + k)));
          }
          for (int t = 0; t < 4; ++t) {
            __m256i q[2];
            for (int k = 0; k < 2; ++k) {
              switch (t) {
                case 0:
                  q[k] = _mm256_or_si256(_mm256_and_si256(la[k], m4),
                                         _mm256_and_si256(_mm256_slli_epi16(qh[k], 4), m30));
                  break;
                case 1:
                  q[k] = _mm256_or_si256(_mm256_and_si256(lb[k], m4),
                                         _mm256_and_si256(_mm256_slli_epi16(qh[k], 2), m30));
                  break;
                case 2:
                  q[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la[k], 4), m4),
                                         _mm256_and_si256(qh[k], m30));
                  break;
                default:
                  q[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb[k], 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(qh[k], 2), m30));
                  break;
              }
            }
            for (int r = 0; r < RB; ++r) {
              const int8_t* xq = xr[r][b].qs + 128 * h + 32 * t + 4 * u;
              const __m256i pr = _mm256_add_epi16(_mm256_maddubs_epi16(q[0], bcast32(xq)),
                                                  _mm256_maddubs_epi16(q[1], bcast32(xq + 4)));
              isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(pr, s[t]));
            }
          }
        }
      }
    }
    const __m256 d = f16x8(blk->d);
    for (int r = 0; r < RB; ++r) {
      const __m256 dx = _mm256_mul_ps(d, _mm256_set1_ps(xr[r][b].d));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), dx, acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) _mm256_storeu_ps(y + r * ldy, acc[r]);
}

template <int RB>
struct Q4KX8Rows {
  static void run(const block_q4_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                  int64_t ldy) {
    q4_kx8_rows<RB>(w, nb, x, ldx, y, ldy);
  }
};
template <int RB>
struct Q6KX8Rows {
  static void run(const block_q6_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                  int64_t ldy) {
    q6_kx8_rows<RB>(w, nb, x, ldx, y, ldy);
  }
};

// Groups [n0 / 8, n1 / 8) in panels of ~512 KiB (L2); each group against tiles of up to
// kRowTile activation rows, the panel reused from L2 by every row tile (R = 1: one pass).
template <typename X, template <int> class Rows>
void kx8_matmul(const MatmulArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.K / QK_K;
  const X* w = static_cast<const X*>(a.w);
  const int64_t g0 = n0 / 8, g1 = n1 / 8;
  const int64_t group_bytes = nb * static_cast<int64_t>(sizeof(X));
  int64_t panel = (512 * 1024) / (group_bytes > 0 ? group_bytes : 1);
  if (panel < 1) panel = 1;
  const uint8_t* x = static_cast<const uint8_t*>(a.x);
  for (int64_t p0 = g0; p0 < g1; p0 += panel) {
    const int64_t p1 = p0 + panel < g1 ? p0 + panel : g1;
    for (int64_t r0 = 0; r0 < a.R; r0 += kRowTile) {
      const int64_t rb = a.R - r0 < kRowTile ? a.R - r0 : kRowTile;
      for (int64_t g = p0; g < p1; ++g) {
        kquant_detail::run_rows<Rows, kRowTile>(rb, w + g * nb, nb, x + r0 * a.ldx, a.ldx,
                                                a.y + r0 * a.ldy + 8 * g, a.ldy);
      }
    }
  }
}

}  // namespace

// One body serves as both the gemv and the gemm entry of the table.
void matmul_q4_kx8_q8_k_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kx8_matmul<block_q4_Kx8, Q4KX8Rows>(a, n0, n1);
}

void matmul_q6_kx8_q8_k_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kx8_matmul<block_q6_Kx8, Q6KX8Rows>(a, n0, n1);
}

}  // namespace qgemma
