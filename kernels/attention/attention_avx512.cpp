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
    __m512 v[16];
    for (int i = 0; i < 16; ++i) v[i] = x[i];
    hsums(v, y);
  }

  static void hsums(const __m512* x, float* y) {
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

// Wide chunks (many query heads on one KV head: MQA decoding, prefill batches) spend most of
// their time in FMAs, not in reading the cache: 16 heads x 512 dims are 16 flops per F16 cache
// byte. This path puts the chunk's rows in the 16 lanes of a vector wherever it can, so each
// K/V element is loaded (and converted) once for all rows and the online softmax runs on whole
// vectors:
//   q   [head_dim / 16][row][16]   the chunk's queries, interleaved: the 16 row vectors of one
//                                  dimension block are 1 KiB apart, contiguous
//   acc [head_dim / 16][row][16]   the f32 accumulators, same layout
//   p   [slot][row]                scores, then probabilities: one vector per slot
// F32Math: S = Q K^T per slot, 16 accumulators (one per row) over the dimensions, each K vector
// loaded once for the 16 rows, then 16 horizontal sums in one transpose-and-add (hsums). Softmax:
// vertical, one vector per slot; the accumulators are rescaled (inside the PV pass) only when a
// row's max grows. acc += P V: per dimension block, 16 accumulators in registers over the
// block's slots, each V vector loaded once for the 16 rows, p broadcast from memory.
// Rows past c.n (a chunk of fewer than 16 rows) compute zeros that are dropped.
//
// Two arithmetics share that structure (the Math policies below):
//  - F32Math: f32 FMAs, F16 rows converted with vcvtph2ps, Q8_0 rows dequantized per block.
//    Same rounding as the reference up to summation order.
//  - F16Math (F16 K and V, CPUs with AVX512-FP16, calls for one query token, i.e. decoding,
//    unless FlashAttnArgs::f32_math): vfmadd231ph, 32 fp16 products per instruction (twice the
//    f32 rate, no conversion of the cache), blocks of up to 64 slots. q and p are rounded to fp16.
//    Scores in register tiles of 4 slots x 4 rows (8 loads per 16 FMAs); each lane sums at most
//    16 products, then three pairwise levels in fp16 and the rest in f32 (reduce16: ~60 uops
//    per 16 scores instead of ~140 for widening every accumulator first). p.v: 16 rows x 32
//    dimensions in registers over the block's slots, p broadcast by the FMA's {1to32} memory
//    operand (no shuffle uop; measured at the FMA peak), each lane summing <= kHalfBlock
//    products in fp16 before the f32 accumulators (the error analysis is in
//    tests/kernels/test_attention.cpp). Memory: per-thread bandwidth here is bounded by the
//    line-fill buffers, so the next block's K and V rows are prefetched (to L2) one line per
//    16 FMAs, alternating K and V, evenly over the block's work (RunCursor when the next block
//    is a full run of contiguous rows, the usual case; LineCursor otherwise); the next 4 K rows
//    and the next line of each V row go to L1 one step ahead. A non-finite score (fp16
//    overflow, |partial sums| > 65504) is recomputed in f32 for its 4 slots; a chunk whose f32
//    accumulators end non-finite is rerun with F32Math. A score depends only on its own row's
//    q and the slot's K row (plus, on overflow, the f32 redo), never on other queries.
constexpr int kLanes = 16;  // rows per wide chunk (= f32 lanes of a zmm)
constexpr int kWideBlockMax = 64;
// Chunks of at least this many rows take the wide path: below it the 16-lane work is mostly
// padding and the row-tiled body is cheaper.
constexpr int kWideMinRows = 9;
// q.k: scores are summed per span of head_dim 512 (16 fp16 products per lane, reduce16), spans
// add in f32. p.v: each lane sums the slots of a block (<= kHalfBlock) in fp16.
constexpr int kHalfQkSpan = 512;
constexpr int kHalfBlock = 64;

using Simd = FlashAttnSimd<Avx512>;

struct Work {
  Simd::Scratch s;  // the row-tiled body's scratch; the wide path reuses acc, kt and vt
  alignas(64) float q[kLanes * kFlashAttnMaxHeadDim];
  alignas(64) f16_bits q16[kLanes * kFlashAttnMaxHeadDim];  // [head_dim / 32][row][32]
  alignas(64) float p[kWideBlockMax * kLanes];
  alignas(64) float bq[kWideBlockMax * kLanes];  // bias per (slot, distinct query)
  alignas(64) float fac[kLanes];                 // rescale factor per row
  int64_t slot[kWideBlockMax];
};

// e^x for x <= 0 (or -inf), 0 below -87 (no subnormal results). Cody-Waite reduction
// x = n ln2 + r, |r| <= ln2 / 2, degree-7 Taylor polynomial (relative error < 1e-8 + rounding).
inline __m512 exp_nonpos(__m512 x) {
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
  x = _mm512_max_ps(x, _mm512_set1_ps(-88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.0f / 5040);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 720));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 120));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 24));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 6));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(keep, y, n);
}

// 16 elements of a K/V row: converted from f16, or f32 (dequantized Q8_0, 64-byte aligned).
inline __m512 ld16(const f16_bits* x) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
}
inline __m512 ld16(const float* x) { return _mm512_load_ps(x); }

// p[r] = q_r . k for the 16 rows (q interleaved as above), f32.
template <class E>
inline void qk_slot(const float* q, const E* k, int d, float* p) {
  __m512 acc[kLanes];
  for (int r = 0; r < kLanes; ++r) acc[r] = _mm512_setzero_ps();
  for (int e = 0; e < d; e += 16) {
    const __m512 kv = ld16(k + e);
    const float* qe = q + e * kLanes;
#pragma GCC unroll 16
    for (int r = 0; r < kLanes; ++r) {
      acc[r] = _mm512_fmadd_ps(_mm512_load_ps(qe + r * 16), kv, acc[r]);
    }
  }
  Avx512::hsums(acc, p);
}

// Prefetches rows a few cache lines per step of work, into L2: a whole block of K and V rows
// (64 KiB at 32 slots x 2 x 1 KiB) does not fit next to q and acc in L1.
struct RowPrefetcher {
  const char* row[kWideBlockMax];
  size_t bytes = 0;  // per row
  int n = 0, cur = 0, per_tile = 0;
  size_t off = 0;
  void add(const char* p) { row[n++] = p; }
  void tile() {
    for (int lines = per_tile; lines > 0 && cur < n; --lines) {
      _mm_prefetch(row[cur] + off, _MM_HINT_T1);
      off += 64;
      if (off >= bytes) {
        off = 0;
        ++cur;
      }
    }
  }
};

// The next block's K and V rows, prefetched a few lines per step of this block's work.
// F16Math: one line per call (one call per 16 FMAs), alternating between the K and the V rows
// of the next block (equal row sizes), so both streams advance evenly through the block's work.
// The cursor is small and copied into the hot loops (kept in registers there).
struct LineCursor {
  const char* const* k = nullptr;
  const char* const* v = nullptr;
  int n = 0, row = 0;
  size_t bytes = 0, off = 0;
  bool odd = false;
  void one() {
    if (row >= n) return;
    _mm_prefetch((odd ? v[row] : k[row]) + off, _MM_HINT_T1);
    if (odd) {
      off += 64;
      if (off >= bytes) {
        off = 0;
        ++row;
      }
    }
    odd = !odd;
  }
  void rest() {
    while (row < n) one();
  }
};

// The same order when the next block's K rows, and its V rows, are each one contiguous run
// (row stride = row bytes, a full block: MQA decoding over a dense cache): two pointers that
// swap, no branches and no row table in the hot loops. `extra` calls finish the run when the
// current block has fewer slots (fewer calls) than the next.
struct RunCursor {
  const char* p;  // next line to prefetch
  const char* q;  // the one after it (the other stream)
  size_t inc;     // 64
  int extra;
  void one() {
    _mm_prefetch(p, _MM_HINT_T1);
    const char* t = q;
    q = p + inc;
    p = t;
  }
  void rest() {
    for (int i = 0; i < extra; ++i) one();
  }
};

struct LinePrefetcher {
  const char* k[kWideBlockMax];
  const char* v[kWideBlockMax];
  LineCursor cur;
  RunCursor run;
  bool use_run = false;
};

struct BlockPrefetch {
  RowPrefetcher k, v;
  LinePrefetcher line;
};

struct F32Math {
  static constexpr int kBlock = 16;  // slots per block (the Q8_0 scratch holds 16 rows)

  static void prepare(const Simd::Chunk&, int, Work&) {}

  template <class E>
  static void qk(const Work& w, const E* const* krow, int nb, int d, float* p, BlockPrefetch& pf) {
    for (int s = 0; s < nb; ++s) {
      qk_slot(w.q, krow[s], d, p + s * kLanes);
      pf.k.tile();
    }
  }

  // acc_r[e] = acc_r[e] * fac_r + sum_s p[s][r] v_s[e] for the 16 rows, all e < d.
  template <class E>
  static void pv(const E* const* v, int nb, int d, const float* p, const float* fac, float* acc,
                 BlockPrefetch& pf, bool rescale) {
    if (rescale) {
      pv_tiles<true>(v, nb, d, p, fac, acc, pf);
    } else {
      pv_tiles<false>(v, nb, d, p, fac, acc, pf);
    }
  }
  template <bool Rescale, class E>
  static void pv_tiles(const E* const* v, int nb, int d, const float* p, const float* fac,
                       float* acc, BlockPrefetch& pf) {
    for (int e = 0; e < d; e += 16) {
      pf.v.tile();
      float* ae = acc + e * kLanes;
      __m512 a[kLanes];
#pragma GCC unroll 16
      for (int r = 0; r < kLanes; ++r) {
        a[r] = _mm512_load_ps(ae + r * 16);
        if constexpr (Rescale) a[r] = _mm512_mul_ps(a[r], _mm512_set1_ps(fac[r]));
      }
      for (int s = 0; s < nb; ++s) {
        const __m512 vv = ld16(v[s] + e);
        const float* ps = p + s * kLanes;
#pragma GCC unroll 16
        for (int r = 0; r < kLanes; ++r) a[r] = _mm512_fmadd_ps(_mm512_set1_ps(ps[r]), vv, a[r]);
      }
#pragma GCC unroll 16
      for (int r = 0; r < kLanes; ++r) _mm512_store_ps(ae + r * 16, a[r]);
    }
  }
  static int pv_steps(int d) { return d / 16; }
  static int qk_steps(int nb) { return nb; }
};

#define QGEMMA_FP16 __attribute__((target("avx512fp16,avx512bw,avx512vl,avx512dq,avx512f")))

struct F16Math {
  static constexpr int kBlock = kHalfBlock;

  // q rounded to fp16, interleaved [head_dim / 32][row][32].
  QGEMMA_FP16 static void prepare(const Simd::Chunk&, int d, Work& w) {
    for (int e = 0; e < d; e += 16) {
      for (int r = 0; r < kLanes; ++r) {
        const __m512 x = _mm512_load_ps(w.q + e * kLanes + r * 16);
        _mm256_store_si256(
            reinterpret_cast<__m256i*>(w.q16 + (e / 32) * 32 * kLanes + r * 32 + e % 32),
            _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      }
    }
  }

  // Sums of 16 fp16 accumulators: lane L of the result (f32) is the sum of the 32 lanes of
  // x[kSigma[L]] (kSigma is its own inverse). Three pairwise levels in fp16 (256-, 128-, 64-bit
  // halves: the lanes then hold sums of 2, 4, 8 of the accumulators' lanes), then f32.
  static constexpr int kSigma[16] = {0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
  QGEMMA_FP16 static __m512 reduce16(const __m512h* x) {
    __m512i s[8], t[4], u[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const __m512i a = _mm512_castph_si512(x[i]), b = _mm512_castph_si512(x[i + 8]);
      s[i] =
          _mm512_castph_si512(_mm512_add_ph(_mm512_castsi512_ph(_mm512_shuffle_i64x2(a, b, 0x44)),
                                            _mm512_castsi512_ph(_mm512_shuffle_i64x2(a, b, 0xEE))));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      t[i] = _mm512_castph_si512(
          _mm512_add_ph(_mm512_castsi512_ph(_mm512_shuffle_i64x2(s[i], s[i + 4], 0x88)),
                        _mm512_castsi512_ph(_mm512_shuffle_i64x2(s[i], s[i + 4], 0xDD))));
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i) {
      u[i] = _mm512_castph_si512(
          _mm512_add_ph(_mm512_castsi512_ph(_mm512_unpacklo_epi64(t[i], t[i + 2])),
                        _mm512_castsi512_ph(_mm512_unpackhi_epi64(t[i], t[i + 2]))));
    }
    const __m512 v0 = _mm512_cvtph_ps(_mm512_castsi512_si256(u[0]));
    const __m512 v1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(u[0], 1));
    const __m512 v2 = _mm512_cvtph_ps(_mm512_castsi512_si256(u[1]));
    const __m512 v3 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(u[1], 1));
    const __m512 a0 = _mm512_add_ps(_mm512_unpacklo_ps(v0, v2), _mm512_unpackhi_ps(v0, v2));
    const __m512 a1 = _mm512_add_ps(_mm512_unpacklo_ps(v1, v3), _mm512_unpackhi_ps(v1, v3));
    return _mm512_add_ps(_mm512_shuffle_ps(a0, a1, 0x44), _mm512_shuffle_ps(a0, a1, 0xEE));
  }

  // Scores of slots s0 .. s0 + 3 for the 16 rows, 4 rows at a time: register tile of 4 slots x 4
  // rows (8 loads per 16 FMAs; the 4 K rows stay in L1 across the row groups).
  template <class E, class Cursor>
  QGEMMA_FP16 static bool qk4(const Work& w, const E* const* k, const E* const* kn, int d, float* p,
                              Cursor& pfc) {
    Cursor pf = pfc;
    bool bad = false;
    for (int rg = 0; rg < kLanes; rg += 4) {
      __m512 tot = _mm512_setzero_ps();
      for (int e0 = 0; e0 < d; e0 += kHalfQkSpan) {
        const int e1 = std::min(d, e0 + kHalfQkSpan);
        __m512h acc[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ph();
        for (int e = e0; e < e1; e += 32) {
          __m512h kv[4];
#pragma GCC unroll 4
          for (int s = 0; s < 4; ++s) kv[s] = _mm512_loadu_ph(k[s] + e);
          const f16_bits* qe = w.q16 + e * kLanes + rg * 32;
          _mm_prefetch(reinterpret_cast<const char*>(kn[rg / 4] + e), _MM_HINT_T0);
          pf.one();
#pragma GCC unroll 4
          for (int r = 0; r < 4; ++r) {
            const __m512h qv = _mm512_load_ph(qe + r * 32);
#pragma GCC unroll 4
            for (int s = 0; s < 4; ++s) {
              acc[kSigma[s * 4 + r]] = _mm512_fmadd_ph(qv, kv[s], acc[kSigma[s * 4 + r]]);
            }
          }
        }
        tot = _mm512_add_ps(tot, reduce16(acc));
      }
      bad |= _mm512_fpclass_ps_mask(tot, 0x99) != 0;
      alignas(64) float y[16];
      _mm512_store_ps(y, tot);
#pragma GCC unroll 4
      for (int s = 0; s < 4; ++s) {
        _mm_store_ps(p + s * kLanes + rg, _mm_load_ps(y + s * 4));
      }
    }
    pfc = pf;
    return bad;
  }

  template <class E>
  QGEMMA_FP16 static void qk(const Work& w, const E* const* krow, int nb, int d, float* p,
                             BlockPrefetch& pf) {
    for (int s0 = 0; s0 < nb; s0 += 4) {
      const E* k[4];
      const E* kn[4];
      for (int s = 0; s < 4; ++s) {
        k[s] = krow[s0 + s < nb ? s0 + s : 0];
        kn[s] = krow[s0 + 4 + s < nb ? s0 + 4 + s : 0];
      }
      // fp16 overflow (or a non-finite input): redo these slots in f32.
      const bool bad = pf.line.use_run ? qk4(w, k, kn, d, p + s0 * kLanes, pf.line.run)
                                       : qk4(w, k, kn, d, p + s0 * kLanes, pf.line.cur);
      if (bad) {
        for (int s = s0; s < std::min(nb, s0 + 4); ++s) qk_slot(w.q, krow[s], d, p + s * kLanes);
      }
    }
  }

  // acc_r[e] = acc_r[e] * fac_r + sum_s p[s][r] v_s[e]: the block's products summed in fp16 per
  // 32 dimensions, then widened into the f32 accumulators. p[s][r] is broadcast by the FMA's
  // memory operand ({1to32}: a load, no shuffle uop). The next line of each V row is prefetched
  // into L1 one dimension step ahead.
  template <class E>
  QGEMMA_FP16 static void pv(const E* const* v, int nb, int d, const float* p, const float* fac,
                             float* acc, BlockPrefetch& pf, bool) {
    if (pf.line.use_run) {
      pv_c(v, nb, d, p, fac, acc, pf.line.run);
    } else {
      pv_c(v, nb, d, p, fac, acc, pf.line.cur);
    }
  }
  template <class E, class Cursor>
  QGEMMA_FP16 static void pv_c(const E* const* v, int nb, int d, const float* p, const float* fac,
                               float* acc, Cursor pfl) {
    alignas(64) f16_bits p16[kHalfBlock * kLanes];
    for (int s = 0; s < nb; ++s) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(p16 + s * kLanes),
                         _mm512_cvtps_ph(_mm512_load_ps(p + s * kLanes),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    const _Float16* ph = reinterpret_cast<const _Float16*>(p16);
    for (int e = 0; e < d; e += 32) {
      __m512h a[kLanes];
#pragma GCC unroll 16
      for (int r = 0; r < kLanes; ++r) a[r] = _mm512_setzero_ph();
      for (int s = 0; s < nb; ++s) {
        const __m512h vv = _mm512_loadu_ph(v[s] + e);
        _mm_prefetch(reinterpret_cast<const char*>(v[s] + e + 32), _MM_HINT_T0);
        pfl.one();
        const _Float16* ps = ph + s * kLanes;
#pragma GCC unroll 16
        for (int r = 0; r < kLanes; ++r) a[r] = _mm512_fmadd_ph(_mm512_set1_ph(ps[r]), vv, a[r]);
      }
      float* ae = acc + e * kLanes;
#pragma GCC unroll 16
      for (int r = 0; r < kLanes; ++r) {
        const __m512i b = _mm512_castph_si512(a[r]);
        const __m512 fr = _mm512_set1_ps(fac[r]);
        float* lo = ae + r * 16;
        float* hi = ae + 16 * kLanes + r * 16;
        _mm512_store_ps(lo, _mm512_fmadd_ps(_mm512_load_ps(lo), fr,
                                            _mm512_cvtph_ps(_mm512_castsi512_si256(b))));
        _mm512_store_ps(hi, _mm512_fmadd_ps(_mm512_load_ps(hi), fr,
                                            _mm512_cvtph_ps(_mm512_extracti64x4_epi64(b, 1))));
      }
    }
    pfl.rest();
  }
  static int pv_steps(int d) { return d / 32; }
  static int qk_steps(int nb) { return (nb + 3) / 4; }
};

// One chunk of rows (all on KV head g) over slots [kv0, kv1): leaves the running max and sum of
// every row in m, l (vectors over rows) and the accumulators in w.s.acc (interleaved layout).
struct WideState {
  __m512 m, l;
};

template <class M, class KE, class VE>
WideState wide_run(const FlashAttnArgs& a, const Simd::Chunk& c, int g, int64_t kv0, int64_t kv1,
                   Work& w) {
  constexpr int NB = M::kBlock;
  const int d = a.head_dim;
  const char* kbase = static_cast<const char*>(a.k) + g * a.k_stride_head;
  const char* vbase = static_cast<const char*>(a.v) + g * a.v_stride_head;
  const size_t kbytes = Simd::row_bytes(a.k_type, d), vbytes = Simd::row_bytes(a.v_type, d);
  for (int e = 0; e < d; e += 16) {
    for (int r = 0; r < kLanes; ++r) {
      const __m512 x = r < c.n ? _mm512_loadu_ps(c.q[r] + e) : _mm512_setzero_ps();
      _mm512_store_ps(w.q + e * kLanes + r * 16, x);
    }
  }
  M::prepare(c, d, w);
  std::memset(w.s.acc, 0, sizeof(float) * kLanes * d);
  alignas(64) int32_t qu[kLanes] = {};
  for (int r = 0; r < c.n; ++r) qu[r] = c.qu[r];
  const __m512i qu_idx = _mm512_load_si512(qu);
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
  const __m512 scale = _mm512_set1_ps(a.scale);
  WideState st{neg_inf, _mm512_setzero_ps()};
  _mm512_store_ps(w.fac, _mm512_set1_ps(1.0f));

  const KE* krow[NB];
  const VE* vrow[NB];
  int64_t j = kv0;
  while (j < kv1) {
    // Gather the next visible slots.
    int nb = 0;
    bool masked = false;
    while (nb < NB && j < kv1) {
      bool any = false, all = true;
      for (int u = 0; u < c.nq; ++u) {
        const bool vis = flash_attn_visible(a, c.qabs[u], j);
        w.bq[nb * kLanes + u] = vis ? 0.0f : kNegInf;
        any |= vis;
        all &= vis;
      }
      if (any) {
        w.slot[nb++] = j;
        masked |= !all;
      }
      ++j;
    }
    if (nb == 0) break;
    for (int s = 0; s < nb; ++s) {
      const char* kr = kbase + w.slot[s] * a.k_stride_slot;
      const char* vr = vbase + w.slot[s] * a.v_stride_slot;
      if constexpr (std::is_same_v<KE, float>) {
        Avx512::q8_0_to_f32(reinterpret_cast<const block_q8_0*>(kr), w.s.kt + s * d, d);
        krow[s] = w.s.kt + s * d;
      } else {
        krow[s] = reinterpret_cast<const f16_bits*>(kr);
      }
      if constexpr (std::is_same_v<VE, float>) {
        Avx512::q8_0_to_f32(reinterpret_cast<const block_q8_0*>(vr), w.s.vt + s * d, d);
        vrow[s] = w.s.vt + s * d;
      } else {
        vrow[s] = reinterpret_cast<const f16_bits*>(vr);
      }
    }
    // The next block usually holds the next slots: stream their K rows in during the scores
    // and their V rows during acc += P V, a few lines per step.
    BlockPrefetch pf;
    const int64_t next_end = std::min(j + NB, kv1);
    pf.k.bytes = kbytes;
    pf.v.bytes = vbytes;
    for (int64_t t = j; t < next_end; ++t) {
      pf.k.add(kbase + t * a.k_stride_slot);
      pf.v.add(vbase + t * a.v_stride_slot);
    }
    if constexpr (std::is_same_v<M, F16Math>) {
      // A full next block of contiguous rows (the usual case): the branch-free cursor.
      if (j + NB <= kv1 && a.k_stride_slot == kbytes && a.v_stride_slot == vbytes &&
          kbytes == vbytes) {
        pf.line.use_run = true;
        // Calls this block makes (qk4: d / 8 per 4 slots, pv: d / 32 per slot) vs lines to fetch.
        const int calls = (nb + 3) / 4 * (d / 8) + nb * (d / 32);
        const int lines = (int)(2 * (kbytes / 64)) * NB;
        pf.line.run = RunCursor{kbase + j * a.k_stride_slot, vbase + j * a.v_stride_slot, 64,
                                std::max(0, lines - calls)};
      }
      LineCursor& lc = pf.line.cur;
      lc.k = pf.line.k;
      lc.v = pf.line.v;
      lc.bytes = kbytes;
      for (int64_t t = j; t < next_end; ++t) {
        pf.line.k[lc.n] = kbase + t * a.k_stride_slot;
        pf.line.v[lc.n++] = vbase + t * a.v_stride_slot;
      }
    }
    pf.k.per_tile = (int)((kbytes + 63) / 64 * NB / M::qk_steps(nb)) + 1;
    pf.v.per_tile = (int)((vbytes + 63) / 64 * NB / M::pv_steps(d)) + 1;

    M::qk(w, krow, nb, d, w.p, pf);
    // Online softmax, one vector (all rows) per slot.
    __m512 mb = neg_inf;
    for (int s = 0; s < nb; ++s) {
      __m512 x = _mm512_mul_ps(_mm512_load_ps(w.p + s * kLanes), scale);
      if (masked) {
        x = _mm512_add_ps(x, _mm512_permutexvar_ps(qu_idx, _mm512_load_ps(w.bq + s * kLanes)));
      }
      _mm512_store_ps(w.p + s * kLanes, x);
      mb = _mm512_max_ps(mb, x);
    }
    const __m512 mnew = _mm512_max_ps(st.m, mb);
    // Rows that have seen nothing keep m = -inf; subtracting 0 keeps their exponentials at 0.
    const __m512 sub = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(mnew, neg_inf, _CMP_EQ_OQ), mnew,
                                            _mm512_setzero_ps());
    const __mmask16 grow = _mm512_cmp_ps_mask(mnew, st.m, _CMP_GT_OQ);
    __m512 f = _mm512_set1_ps(1.0f);
    if (grow) {
      f = _mm512_mask_blend_ps(grow, f, exp_nonpos(_mm512_sub_ps(st.m, sub)));
      st.l = _mm512_mul_ps(st.l, f);
      st.m = mnew;
    }
    _mm512_store_ps(w.fac, f);
    __m512 sum = _mm512_setzero_ps();
    for (int s = 0; s < nb; ++s) {
      const __m512 e = exp_nonpos(_mm512_sub_ps(_mm512_load_ps(w.p + s * kLanes), sub));
      _mm512_store_ps(w.p + s * kLanes, e);
      sum = _mm512_add_ps(sum, e);
    }
    st.l = _mm512_add_ps(st.l, sum);
    M::pv(vrow, nb, d, w.p, w.fac, w.s.acc, pf, grow != 0);
  }
  return st;
}

bool cpu_has_avx512fp16() {
  static const bool has = __builtin_cpu_supports("avx512fp16");
  return has;
}

// True when the state and the accumulators of the chunk's rows are finite (m may be -inf).
bool wide_finite(const WideState& st, int d, const float* acc) {
  __mmask16 bad = _mm512_fpclass_ps_mask(st.l, 0x99) | _mm512_fpclass_ps_mask(st.m, 0x89);
  for (int i = 0; i < kLanes * d; i += 16)
    bad |= _mm512_fpclass_ps_mask(_mm512_load_ps(acc + i), 0x99);
  return bad == 0;
}

// one_query: the call computes a single query token (decoding); only then may F16Math run, so
// prefill and verification batches keep f32 rounding whatever their split into calls.
WideState wide_dispatch(const FlashAttnArgs& a, const Simd::Chunk& c, int g, int64_t kv0,
                        int64_t kv1, bool one_query, Work& w) {
  const bool kf = a.k_type == TensorType::F16, vf = a.v_type == TensorType::F16;
  if (kf && vf && one_query && !a.f32_math && cpu_has_avx512fp16()) {
    const WideState st = wide_run<F16Math, f16_bits, f16_bits>(a, c, g, kv0, kv1, w);
    if (wide_finite(st, a.head_dim, w.s.acc)) return st;
  }
  if (kf && vf) return wide_run<F32Math, f16_bits, f16_bits>(a, c, g, kv0, kv1, w);
  if (kf) return wide_run<F32Math, f16_bits, float>(a, c, g, kv0, kv1, w);
  if (vf) return wide_run<F32Math, float, f16_bits>(a, c, g, kv0, kv1, w);
  return wide_run<F32Math, float, float>(a, c, g, kv0, kv1, w);
}

// Row r of the interleaved accumulators times s -> dst[0 .. d).
inline void wide_row_out(const float* acc, int r, int d, float s, float* dst) {
  const __m512 sv = _mm512_set1_ps(s);
  for (int e = 0; e < d; e += 16) {
    _mm512_storeu_ps(dst + e, _mm512_mul_ps(_mm512_load_ps(acc + e * kLanes + r * 16), sv));
  }
}

void full_avx512(const FlashAttnArgs& a, int q0, int q1, int h0, int h1) {
  Work w;
  Simd::for_each_chunk(a, q0, q1, h0, h1, [&](Simd::Chunk& c, int g) {
    const int d = a.head_dim;
    if (c.n >= kWideMinRows) {
      const WideState st = wide_dispatch(a, c, g, 0, a.n_kv, q1 - q0 == 1, w);
      alignas(64) float l[kLanes];
      _mm512_store_ps(l, st.l);
      for (int r = 0; r < c.n; ++r) {
        float* o = a.out + c.qi[r] * a.out_stride_token + c.h[r] * a.out_stride_head;
        wide_row_out(w.s.acc, r, d, l[r] > 0.0f ? 1.0f / l[r] : 0.0f, o);
      }
      return;
    }
    Simd::run_chunk(a, c, g, 0, a.n_kv, w.s);
    for (int r = 0; r < c.n; ++r) {
      float* o = a.out + c.qi[r] * a.out_stride_token + c.h[r] * a.out_stride_head;
      const __m512 inv = _mm512_set1_ps(c.l[r] > 0.0f ? 1.0f / c.l[r] : 0.0f);
      const float* acc = w.s.acc + r * d;
      for (int e = 0; e < d; e += 16)
        _mm512_storeu_ps(o + e, _mm512_mul_ps(_mm512_load_ps(acc + e), inv));
    }
  });
}

void partial_avx512(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                    int64_t kv1, float* part) {
  Work w;
  const int64_t stride = flash_attn_partial_stride(a.head_dim);
  Simd::for_each_chunk(a, q0, q1, h0, h1, [&](Simd::Chunk& c, int g) {
    const int d = a.head_dim;
    if (c.n >= kWideMinRows) {
      const WideState st = wide_dispatch(a, c, g, kv0, kv1, q1 - q0 == 1, w);
      alignas(64) float m[kLanes], l[kLanes];
      _mm512_store_ps(m, st.m);
      _mm512_store_ps(l, st.l);
      for (int r = 0; r < c.n; ++r) {
        float* p = part + ((int64_t)c.qi[r] * a.n_head + c.h[r]) * stride;
        p[0] = m[r];
        p[1] = l[r];
        wide_row_out(w.s.acc, r, d, 1.0f, p + 2);
      }
      return;
    }
    Simd::run_chunk(a, c, g, kv0, kv1, w.s);
    for (int r = 0; r < c.n; ++r) {
      float* p = part + ((int64_t)c.qi[r] * a.n_head + c.h[r]) * stride;
      p[0] = c.m[r];
      p[1] = c.l[r];
      std::memcpy(p + 2, w.s.acc + r * d, sizeof(float) * d);
    }
  });
}

}  // namespace

void flash_attn_avx512(const FlashAttnArgs& a, int q0, int q1, int h0, int h1) {
  full_avx512(a, q0, q1, h0, h1);
}

void flash_attn_partial_avx512(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                               int64_t kv1, float* partial) {
  partial_avx512(a, q0, q1, h0, h1, kv0, kv1, partial);
}

}  // namespace qgemma
