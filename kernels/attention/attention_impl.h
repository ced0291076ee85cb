// Shared body of the SIMD flash-attention variants. Included only by attention_avx2.cpp,
// attention_avx512.cpp and attention_neon.cpp, each compiled with its own flags; everything here
// has internal linkage, so the per-ISA copies never mix at link time.
//
// Each includer defines a traits struct T:
//   using arch = xsimd::<arch>;                  // float math through xsimd::batch<float, arch>
//   static constexpr int kQkRows, kQkSlots;      // register tile of the q.k scores
//   static constexpr int kPvRows, kPvVecs;       // register tile of acc += p * v
//   static void q8_0_to_f32(const block_q8_0* x, float* y, int n);  // n % 32 == 0
//   static void hsums(const batch* x, float* y);  // y[i] = sum of the lanes of x[i], i < W
//   static batch load_f16(const f16_bits* x);     // W f16 values -> f32
//
// Algorithm. The (query, head) pairs that share a KV head are "rows"; up to kRows of them are
// processed together (the 16 heads of an MQA group, or queries x heads of a GQA pair), so each
// K/V row is read from memory once for all of them. The slots the rows can see are gathered
// kBlock at a time (masked and empty slots are skipped before any arithmetic), then: scores
// S = Q K^T (register tiles), online softmax per row (running max m, sum l; the accumulator is
// rescaled only when the max grows), acc += P V (register tiles). F16 rows are converted in
// registers inside the tiles (each conversion serves a whole tile of rows); Q8_0 rows are
// dequantized to f32 once per block into scratch. The next block's rows are prefetched a few
// cache lines per tile, so memory streams while the block computes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <xsimd/xsimd.hpp>

#include "kernels/attention/attention.h"

namespace qgemma {
namespace {

constexpr int kRows = 16;   // rows (query, head) per chunk
constexpr int kBlock = 16;  // visible slots per block
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

template <class T>
struct FlashAttnSimd {
  using B = xsimd::batch<float, typename T::arch>;
  static constexpr int W = B::size;
  static_assert(T::kQkSlots <= kBlock && kBlock % T::kQkSlots == 0);
  static_assert((32 % (T::kPvVecs * W)) == 0, "head_dim % 32 == 0 must cover the PV tile");

  // The rows of one chunk and their running softmax state.
  struct Chunk {
    int n = 0;                 // rows
    int nq = 0;                // distinct queries among them
    const float* q[kRows];     // query vector of each row
    int qu[kRows];             // distinct-query index of each row
    int qabs[kRows];           // query index of each distinct query
    int qi[kRows], h[kRows];   // query index and head of each row
    float m[kRows], l[kRows];  // running max and sum of exponentials
  };

  // Per-thread scratch on the stack (the kernel contract forbids allocation).
  struct Scratch {
    alignas(64) float acc[kRows * kFlashAttnMaxHeadDim];  // [row][head_dim]
    alignas(64) float kt[kBlock * kFlashAttnMaxHeadDim];  // Q8_0 K rows of the block, f32
    alignas(64) float vt[kBlock * kFlashAttnMaxHeadDim];  // Q8_0 V rows of the block, f32
    alignas(64) float sc[kRows * kBlock];                 // scores, then probabilities
    alignas(64) float bias[kRows * kBlock];               // 0 or -inf per (distinct query, slot)
    alignas(64) float msub[kRows * kBlock];               // row max broadcast per score
    int64_t slot[kBlock];
  };

  // W elements of a K/V row as f32: straight loads from an f32 row, conversion from f16.
  template <class E>
  static B ld(const E* p) {
    if constexpr (std::is_same_v<E, float>) {
      return B::load_unaligned(p);
    } else {
      return T::load_f16(p);
    }
  }

  static size_t row_bytes(TensorType t, int d) {
    return t == TensorType::F16 ? 2 * (size_t)d : (size_t)d / QK8_0 * sizeof(block_q8_0);
  }

  // Prefetches the next block's K and V rows a few cache lines per register tile of this block,
  // so memory streams while the block computes and the requests never pile up (a burst of
  // hundreds of prefetches stalls on the line-fill buffers).
  struct Prefetcher {
    const char* row[2 * kBlock];
    size_t bytes[2 * kBlock];
    int n = 0, cur = 0, per_tile = 0;
    size_t off = 0;
    void add(const char* p, size_t b) {
      row[n] = p;
      bytes[n++] = b;
    }
    void issue(int lines) {
      while (lines > 0 && cur < n) {
        const size_t end = std::min(bytes[cur], off + 64 * (size_t)lines);
        lines -= (int)((end - off + 63) / 64);
        for (; off < end; off += 64) __builtin_prefetch(row[cur] + off, 0, 3);
        if (off >= bytes[cur]) {
          off = 0;
          ++cur;
        }
      }
    }
    void tile() { issue(per_tile); }
  };

  // sc[(r + i) * kBlock + s + j] = q_(r+i) . k_(s+j) for i < RT, j < ST.
  template <int RT, int ST, class E>
  static void qk_tile(const Chunk& c, int r, const E* const* krow, int s, int d, float* sc) {
    B acc[RT * ST];
    for (int i = 0; i < RT * ST; ++i) acc[i] = B(0.0f);
    for (int k = 0; k < d; k += W) {
      B kv[ST];
      for (int j = 0; j < ST; ++j) kv[j] = ld(krow[s + j] + k);
      for (int i = 0; i < RT; ++i) {
        const B qv = B::load_unaligned(c.q[r + i] + k);
        for (int j = 0; j < ST; ++j) acc[i * ST + j] = xsimd::fma(qv, kv[j], acc[i * ST + j]);
      }
    }
    alignas(64) float sums[RT * ST];
    if constexpr ((RT * ST) % W == 0) {
      for (int g = 0; g < RT * ST; g += W) T::hsums(acc + g, sums + g);
    } else {
      for (int i = 0; i < RT * ST; ++i) sums[i] = xsimd::hadd(acc[i]);
    }
    for (int i = 0; i < RT; ++i) {
      for (int j = 0; j < ST; ++j) sc[(r + i) * kBlock + s + j] = sums[i * ST + j];
    }
  }

  template <int RT, class E>
  static void qk_rows(const Chunk& c, int r, const E* const* krow, int d, float* sc,
                      Prefetcher& pf) {
    for (int s = 0; s < kBlock; s += T::kQkSlots) {
      qk_tile<RT, T::kQkSlots>(c, r, krow, s, d, sc);
      pf.tile();
    }
  }

  // acc_(r+i)[d0 .. d0 + kPvVecs * W) += sum_j p_(r+i),j * v_j[...] for i < RT, j < nb.
  template <int RT, class E>
  static void pv_tile(int r, const E* const* vrow, int nb, int d0, int d, const float* p,
                      float* acc) {
    constexpr int V = T::kPvVecs;
    B a[RT][V];
    for (int i = 0; i < RT; ++i) {
      for (int v = 0; v < V; ++v) a[i][v] = B::load_aligned(acc + (r + i) * d + d0 + v * W);
    }
    for (int j = 0; j < nb; ++j) {
      B vv[V];
      for (int v = 0; v < V; ++v) vv[v] = ld(vrow[j] + d0 + v * W);
      for (int i = 0; i < RT; ++i) {
        const B pp(p[(r + i) * kBlock + j]);
        for (int v = 0; v < V; ++v) a[i][v] = xsimd::fma(pp, vv[v], a[i][v]);
      }
    }
    for (int i = 0; i < RT; ++i) {
      for (int v = 0; v < V; ++v) a[i][v].store_aligned(acc + (r + i) * d + d0 + v * W);
    }
  }

  template <int RT, class E>
  static void pv_rows(int r, const E* const* vrow, int nb, int d, const float* p, float* acc,
                      Prefetcher& pf) {
    for (int d0 = 0; d0 < d; d0 += T::kPvVecs * W) {
      pv_tile<RT>(r, vrow, nb, d0, d, p, acc);
      pf.tile();
    }
  }

  // All rows of the chunk in register tiles of kQkRows (kPvRows), then 4, 2 and 1 rows.
  template <class E>
  static void qk_all(const Chunk& c, const E* const* krow, int d, float* sc, Prefetcher& pf) {
    int r = 0;
    for (; r + T::kQkRows <= c.n; r += T::kQkRows) qk_rows<T::kQkRows>(c, r, krow, d, sc, pf);
    if constexpr (T::kQkRows > 4) {
      if (r + 4 <= c.n) {
        qk_rows<4>(c, r, krow, d, sc, pf);
        r += 4;
      }
    }
    if constexpr (T::kQkRows > 2) {
      if (r + 2 <= c.n) {
        qk_rows<2>(c, r, krow, d, sc, pf);
        r += 2;
      }
    }
    for (; r < c.n; ++r) qk_rows<1>(c, r, krow, d, sc, pf);
  }

  template <class E>
  static void pv_all(const Chunk& c, const E* const* vrow, int nb, int d, Scratch& w,
                     Prefetcher& pf) {
    int r = 0;
    for (; r + T::kPvRows <= c.n; r += T::kPvRows) {
      pv_rows<T::kPvRows>(r, vrow, nb, d, w.sc, w.acc, pf);
    }
    if constexpr (T::kPvRows > 4) {
      if (r + 4 <= c.n) {
        pv_rows<4>(r, vrow, nb, d, w.sc, w.acc, pf);
        r += 4;
      }
    }
    if constexpr (T::kPvRows > 2) {
      if (r + 2 <= c.n) {
        pv_rows<2>(r, vrow, nb, d, w.sc, w.acc, pf);
        r += 2;
      }
    }
    for (; r < c.n; ++r) pv_rows<1>(r, vrow, nb, d, w.sc, w.acc, pf);
  }

  // Row pointers of the block's K (or V) rows: the f16 rows themselves, or Q8_0 rows dequantized
  // into buf. Rows past nb repeat row 0 (finite values; their scores are masked to -inf).
  static void block_rows(TensorType t, const char* base, size_t stride, const Scratch& w, int nb,
                         int d, float* buf, const f16_bits** h, const float** f) {
    for (int s = 0; s < nb; ++s) {
      const char* src = base + w.slot[s] * stride;
      if (t == TensorType::F16) {
        h[s] = reinterpret_cast<const f16_bits*>(src);
      } else {
        T::q8_0_to_f32(reinterpret_cast<const block_q8_0*>(src), buf + s * d, d);
        f[s] = buf + s * d;
      }
    }
    for (int s = nb; s < kBlock; ++s) {
      h[s] = h[0];
      f[s] = f[0];
    }
  }

  // Gathers the next visible slots from *j (up to kBlock), setting the bias of each
  // (distinct query, slot). Returns how many.
  static int gather(const FlashAttnArgs& a, const Chunk& c, int64_t* j, int64_t kv1, Scratch& w) {
    int nb = 0;
    while (nb < kBlock && *j < kv1) {
      bool any = false;
      for (int u = 0; u < c.nq; ++u) {
        const bool vis = flash_attn_visible(a, c.qabs[u], *j);
        w.bias[u * kBlock + nb] = vis ? 0.0f : kNegInf;
        any |= vis;
      }
      if (any) w.slot[nb++] = *j;
      ++*j;
    }
    for (int u = 0; u < c.nq; ++u) {
      for (int s = nb; s < kBlock; ++s) w.bias[u * kBlock + s] = kNegInf;
    }
    return nb;
  }

  // Scores -> probabilities with the online-softmax update of m, l and acc.
  static void softmax_block(const FlashAttnArgs& a, Chunk& c, int d, Scratch& w) {
    for (int r = 0; r < c.n; ++r) {
      float* s = w.sc + r * kBlock;
      const float* bias = w.bias + c.qu[r] * kBlock;
      float mb = kNegInf;
      for (int j = 0; j < kBlock; ++j) {
        s[j] = s[j] * a.scale + bias[j];
        mb = std::max(mb, s[j]);
      }
      const float mnew = std::max(c.m[r], mb);
      // A row that has seen nothing yet keeps m = -inf; its scores are all -inf and exp(-inf -
      // 0) = 0 leaves it untouched.
      const float sub = mnew == kNegInf ? 0.0f : mnew;
      for (int j = 0; j < kBlock; ++j) w.msub[r * kBlock + j] = sub;
      if (mnew > c.m[r]) {
        const float f = std::exp(c.m[r] - mnew);  // 0 when m was -inf
        c.l[r] *= f;
        const B fv(f);
        float* acc = w.acc + r * d;
        for (int k = 0; k < d; k += W) (B::load_aligned(acc + k) * fv).store_aligned(acc + k);
        c.m[r] = mnew;
      }
    }
    const int n = c.n * kBlock;
    int i = 0;
    for (; i + W <= n; i += W) {
      const B x = B::load_aligned(w.sc + i) - B::load_aligned(w.msub + i);
      xsimd::exp(x).store_aligned(w.sc + i);
    }
    for (; i < n; ++i) w.sc[i] = std::exp(w.sc[i] - w.msub[i]);
    for (int r = 0; r < c.n; ++r) {
      float sum = 0.0f;
      for (int j = 0; j < kBlock; ++j) sum += w.sc[r * kBlock + j];
      c.l[r] += sum;
    }
  }

  // Runs one chunk over slots [kv0, kv1) of KV head g.
  static void run_chunk(const FlashAttnArgs& a, Chunk& c, int g, int64_t kv0, int64_t kv1,
                        Scratch& w) {
    const int d = a.head_dim;
    const char* kbase = static_cast<const char*>(a.k) + g * a.k_stride_head;
    const char* vbase = static_cast<const char*>(a.v) + g * a.v_stride_head;
    const size_t krow_bytes = row_bytes(a.k_type, d), vrow_bytes = row_bytes(a.v_type, d);
    for (int r = 0; r < c.n; ++r) {
      c.m[r] = kNegInf;
      c.l[r] = 0.0f;
    }
    std::memset(w.acc, 0, sizeof(float) * c.n * d);
    int64_t j = kv0;
    while (j < kv1) {
      const int nb = gather(a, c, &j, kv1, w);
      if (nb == 0) break;
      // The next block usually holds the next slots: stream their rows in while this one
      // computes.
      Prefetcher pf;
      for (int64_t s = j; s < std::min(j + kBlock, kv1); ++s) {
        pf.add(kbase + s * a.k_stride_slot, krow_bytes);
        pf.add(vbase + s * a.v_stride_slot, vrow_bytes);
      }
      const int tiles = (c.n / T::kQkRows + c.n % T::kQkRows) * (kBlock / T::kQkSlots) +
                        (c.n + T::kPvRows - 1) / T::kPvRows * (d / (T::kPvVecs * W));
      pf.per_tile = (int)((krow_bytes + vrow_bytes) / 64 * kBlock / tiles) + 1;
      const f16_bits* kh[kBlock] = {};
      const f16_bits* vh[kBlock] = {};
      const float* kf[kBlock] = {};
      const float* vf[kBlock] = {};
      block_rows(a.k_type, kbase, a.k_stride_slot, w, nb, d, w.kt, kh, kf);
      block_rows(a.v_type, vbase, a.v_stride_slot, w, nb, d, w.vt, vh, vf);
      if (a.k_type == TensorType::F16) {
        qk_all(c, kh, d, w.sc, pf);
      } else {
        qk_all(c, kf, d, w.sc, pf);
      }
      softmax_block(a, c, d, w);
      if (a.v_type == TensorType::F16) {
        pv_all(c, vh, nb, d, w, pf);
      } else {
        pv_all(c, vf, nb, d, w, pf);
      }
      pf.issue(1 << 30);
    }
  }

  // Calls fn(chunk, g) for every chunk of rows of [q0,q1) x [h0,h1), grouped by KV head.
  template <class Fn>
  static void for_each_chunk(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, Fn&& fn) {
    const int group = a.n_head / a.n_kv_head;
    for (int g = h0 / group; g * group < h1; ++g) {
      const int hs = std::max(h0, g * group), he = std::min(h1, (g + 1) * group);
      const int nh = he - hs;
      const int64_t total = (int64_t)(q1 - q0) * nh;
      for (int64_t t0 = 0; t0 < total; t0 += kRows) {
        Chunk c;
        c.n = (int)std::min<int64_t>(kRows, total - t0);
        c.nq = 0;
        for (int r = 0; r < c.n; ++r) {
          const int i = q0 + (int)((t0 + r) / nh), h = hs + (int)((t0 + r) % nh);
          if (c.nq == 0 || c.qabs[c.nq - 1] != i) c.qabs[c.nq++] = i;
          c.qu[r] = c.nq - 1;
          c.qi[r] = i;
          c.h[r] = h;
          c.q[r] = a.q + i * a.q_stride_token + h * a.q_stride_head;
        }
        fn(c, g);
      }
    }
  }

  static void full(const FlashAttnArgs& a, int q0, int q1, int h0, int h1) {
    Scratch w;
    for_each_chunk(a, q0, q1, h0, h1, [&](Chunk& c, int g) {
      run_chunk(a, c, g, 0, a.n_kv, w);
      for (int r = 0; r < c.n; ++r) {
        float* o = a.out + c.qi[r] * a.out_stride_token + c.h[r] * a.out_stride_head;
        const B inv(c.l[r] > 0.0f ? 1.0f / c.l[r] : 0.0f);
        const float* acc = w.acc + r * a.head_dim;
        for (int k = 0; k < a.head_dim; k += W)
          (B::load_aligned(acc + k) * inv).store_unaligned(o + k);
      }
    });
  }

  static void partial(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                      int64_t kv1, float* part) {
    Scratch w;
    const int64_t stride = flash_attn_partial_stride(a.head_dim);
    for_each_chunk(a, q0, q1, h0, h1, [&](Chunk& c, int g) {
      run_chunk(a, c, g, kv0, kv1, w);
      for (int r = 0; r < c.n; ++r) {
        float* p = part + ((int64_t)c.qi[r] * a.n_head + c.h[r]) * stride;
        p[0] = c.m[r];
        p[1] = c.l[r];
        std::memcpy(p + 2, w.acc + r * a.head_dim, sizeof(float) * a.head_dim);
      }
    });
  }
};

}  // namespace
}  // namespace qgemma
