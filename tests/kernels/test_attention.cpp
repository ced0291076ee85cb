// Flash attention: the scalar reference against a naive softmax(QK^T)V in double, and every SIMD
// variant this machine (or qemu) runs against the reference, on random data: causal, sliding
// window, bidirectional groups, GQA, MQA, head_dim 256 / 512, F16 / Q8_0 K and V, ragged n_kv and
// n_q, empty slots, ring-buffer slot order, slot-major and head-major cache layouts, split-K with
// combine, and work split by query and head ranges.
//
// Tolerances. Data: q, k, v uniform in [-1, 1]; scores q.k have |s| <= head_dim but typically
// ~sqrt(head_dim / 9); outputs are convex combinations of v rows, so |out| <= 1.
//  - ref vs double: f32 dot products of head_dim terms carry an error of about
//    sqrt(head_dim) * 2^-24 * |q||k| ~ 1e-6, and the online softmax rescales l and acc a few
//    times (each a relative 2^-24); 2e-5 absolute covers both with margin.
//  - SIMD vs ref with f32_math (and every variant without fp16 arithmetic): the same f32
//    arithmetic in a different order (lane-wise partial sums, another exp implementation of
//    ~1 ulp): same bound, 2e-5 absolute.
//  - split-K combine vs one pass: one more rescale per split: 2e-5 absolute.
//  - avx512 with fp16 arithmetic (default f32_math = false, CPUs with AVX512-FP16, F16 K/V, calls
//    for one query with >= 9 heads on a KV head, e.g. MQA decoding): u = 2^-11 (fp16 unit
//    roundoff), rounding errors modelled as independent, uniform, variance u^2 x^2 / 3; E[(q_e
//    k_e)^2] = 1/9. Scores: q is rounded to fp16 (d terms q_e k_e d_e, |d_e| <= u; K is exact);
//    each of the 32 lanes sums n = min(d, 512) / 32 <= 16 products in fp16, rounding after every
//    step (partial sum P_t of t products, E[P_t^2] = t / 9); then three pairwise levels in fp16
//    add lanes (16 sums of 2n products, 8 of 4n, 4 of 8n: each level 32n / 9 in E[P^2] summed
//    over its roundings) and the last 4 partial sums per row add in f32:
//      Var(ds) = u^2/3 * (d/9 + 32 * sum_{t<=n} t/9 + 3 * 32n/9)
//              = u^2/27 * (d + 16 n (n + 1) + 96 n)
//      d = 512, n = 16: sigma_s = 15.4 u = 7.5e-3  (13.4 u without the fp16 levels).
//    Output: out = sum_j w_j v_j, w = softmax(s), so dout = sum_j w_j ds_j (v_j - out) and
//    sigma_out <= sigma_s * max|v_j - out| * sqrt(sum w_j^2) <= 2 sigma_s = 1.5e-2.
//    P V: p in (0, 1] rounded to fp16 (|dout| <= 2u = 1e-3), and each lane sums the products of
//    one block (<= 64 slots) in fp16 before adding them to the f32 accumulators: relative to
//    sum_j w_j |v_j| <= 1 that is <= sqrt(64/3) u = 2.3e-3 (1 sigma), 64u = 3.1e-2 worst case.
//    Tolerance 3.5e-2: the score term at 2 sigma with the worst-case weighting (3.0e-2), plus the
//    P V terms at 1 sigma. Observed worst: ~7e-3 (printed by the tests; sqrt(sum w^2) * |v - out|
//    is ~0.3 on this data, not 2).
//    For scale: bf16 inputs (u = 2^-8 on q, k, p, v, f32 sums) would give sigma_s = 2^-8 *
//    sqrt(2 d / 27) = 2.4e-2, 3.1x the fp16 scheme's.
// Observed worst on x86 (AVX-512 machine): 6e-6 ref vs double, 7e-6 SIMD vs ref (f32 math).
// K/V quantization is not part of the error: every side reads the same F16 / Q8_0 bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/cpu.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

constexpr float kTolRef = 2e-5f;
constexpr float kTolSimd = 2e-5f;
constexpr float kTolFp16 = 3.5e-2f;

// Tolerance of a variant against ref for a call over n_q queries: only avx512 without f32_math
// may use fp16 arithmetic, and only in calls for one query.
float tol_for(Isa isa, bool f32_math, int n_q) {
  return isa == Isa::avx512 && !f32_math && n_q == 1 ? kTolFp16 : kTolSimd;
}

struct Case {
  int n_q = 1, n_head = 16, n_kv_head = 1, head_dim = 256;
  int64_t n_kv = 17;
  TensorType k_type = TensorType::F16, v_type = TensorType::F16;
  int32_t window = 0;
  bool groups = false;      // bidirectional groups over two position ranges
  bool ring = false;        // slots hold positions in a shuffled order
  bool head_major = false;  // cache layout [kv_head][slot] instead of [slot][kv_head]
  double empty = 0.0;       // fraction of empty slots (-1)
  float scale = 1.0f;
  uint32_t seed = 1;
};

std::string describe(const Case& c) {
  return "n_q=" + std::to_string(c.n_q) + " heads=" + std::to_string(c.n_head) + "/" +
         std::to_string(c.n_kv_head) + " d=" + std::to_string(c.head_dim) +
         " n_kv=" + std::to_string(c.n_kv) + " k=" + std::to_string((int)c.k_type) +
         " v=" + std::to_string((int)c.v_type) + " window=" + std::to_string(c.window) +
         " groups=" + std::to_string(c.groups) + " ring=" + std::to_string(c.ring) +
         " head_major=" + std::to_string(c.head_major) + " empty=" + std::to_string(c.empty) +
         " scale=" + std::to_string(c.scale);
}

size_t kv_row_bytes(TensorType t, int head_dim) {
  return t == TensorType::F16 ? 2 * (size_t)head_dim
                              : (size_t)head_dim / QK8_0 * sizeof(block_q8_0);
}

// Owns the buffers of one random problem and the args pointing at them.
struct Problem {
  Case c;
  std::vector<float> q;
  std::vector<uint8_t> k, v;
  std::vector<int32_t> q_pos, kv_pos, q_group, kv_group;
  std::vector<float> out;
  FlashAttnArgs a;

  explicit Problem(const Case& cs) : c(cs) {
    std::mt19937 rng(c.seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const int d = c.head_dim;
    q.resize((size_t)c.n_q * c.n_head * d);
    for (float& x : q) x = u(rng);

    // Positions: the cache holds positions 0 .. n_kv-1 (some slots empty), queries are the last
    // n_q positions of the sequence (in the cache, as after appending the batch).
    std::vector<int32_t> pos(c.n_kv);
    std::iota(pos.begin(), pos.end(), 0);
    if (c.ring) {
      // A ring buffer: rotated, then a few swaps so the order is not even a rotation.
      std::rotate(pos.begin(), pos.begin() + (c.n_kv * 3) / 7, pos.end());
      for (int64_t s = 0; s < c.n_kv / 4; ++s) std::swap(pos[rng() % c.n_kv], pos[rng() % c.n_kv]);
    }
    std::bernoulli_distribution emp(c.empty);
    kv_pos = pos;
    for (auto& p : kv_pos) {
      if (emp(rng)) p = -1;
    }
    q_pos.resize(c.n_q);
    for (int i = 0; i < c.n_q; ++i) q_pos[i] = (int32_t)c.n_kv - c.n_q + i;
    if (c.groups) {
      // Group 0 covers positions in the first third, group 1 a range ending after the queries
      // start, so some queries see later positions of their own group.
      auto group_of = [&](int32_t p) {
        if (p < 0) return -1;
        const int32_t n = (int32_t)c.n_kv;
        if (p >= n / 6 && p < n / 3) return 0;
        if (p >= n - c.n_q - 3 && p < n - c.n_q / 2) return 1;
        return -1;
      };
      q_group.resize(c.n_q);
      kv_group.resize(c.n_kv);
      for (int i = 0; i < c.n_q; ++i) q_group[i] = group_of(q_pos[i]);
      for (int64_t j = 0; j < c.n_kv; ++j) kv_group[j] = group_of(kv_pos[j]);
    }

    const size_t kb = kv_row_bytes(c.k_type, d), vb = kv_row_bytes(c.v_type, d);
    k.resize(kb * c.n_kv * c.n_kv_head);
    v.resize(vb * c.n_kv * c.n_kv_head);
    std::vector<float> row(d);
    auto fill = [&](TensorType t, uint8_t* dst) {
      for (float& x : row) x = u(rng);
      if (t == TensorType::F16) {
        for (int e = 0; e < d; ++e) reinterpret_cast<f16_bits*>(dst)[e] = f32_to_f16(row[e]);
      } else {
        quantize_row_q8_0_ref(row.data(), reinterpret_cast<block_q8_0*>(dst), d);
      }
    };
    for (int64_t j = 0; j < c.n_kv; ++j) {
      for (int g = 0; g < c.n_kv_head; ++g) {
        const int64_t slot_k = c.head_major ? g * c.n_kv + j : j * c.n_kv_head + g;
        fill(c.k_type, k.data() + slot_k * kb);
        fill(c.v_type, v.data() + slot_k * vb);
      }
    }

    a.q = q.data();
    a.q_stride_token = (int64_t)c.n_head * d;
    a.q_stride_head = d;
    a.q_pos = q_pos.data();
    a.q_group = c.groups ? q_group.data() : nullptr;
    a.n_q = c.n_q;
    a.n_head = c.n_head;
    a.n_kv_head = c.n_kv_head;
    a.head_dim = d;
    a.k_type = c.k_type;
    a.v_type = c.v_type;
    a.k = k.data();
    a.v = v.data();
    a.k_stride_slot = c.head_major ? kb : kb * c.n_kv_head;
    a.k_stride_head = c.head_major ? kb * c.n_kv : kb;
    a.v_stride_slot = c.head_major ? vb : vb * c.n_kv_head;
    a.v_stride_head = c.head_major ? vb * c.n_kv : vb;
    a.kv_pos = kv_pos.data();
    a.kv_group = c.groups ? kv_group.data() : nullptr;
    a.n_kv = c.n_kv;
    a.window = c.window;
    a.scale = c.scale;
    out.resize(out_size());
    a.out = out.data();
    a.out_stride_token = (int64_t)c.n_head * d;
    a.out_stride_head = d;
  }

  size_t out_size() const { return (size_t)c.n_q * c.n_head * c.head_dim; }
};

std::vector<float> dequant_row(TensorType t, const uint8_t* src, int d) {
  std::vector<float> y(d);
  if (t == TensorType::F16) {
    for (int e = 0; e < d; ++e) y[e] = f16_to_f32(reinterpret_cast<const f16_bits*>(src)[e]);
  } else {
    dequantize_row_q8_0(reinterpret_cast<const block_q8_0*>(src), y.data(), d);
  }
  return y;
}

// All K (or V) rows of KV head g, dequantized: [slot][head_dim].
std::vector<double> dequant_cache(const FlashAttnArgs& a, TensorType t, const void* base,
                                  size_t stride_slot, size_t stride_head, int g) {
  std::vector<double> y((size_t)a.n_kv * a.head_dim);
  for (int64_t j = 0; j < a.n_kv; ++j) {
    const auto row = dequant_row(
        t, static_cast<const uint8_t*>(base) + j * stride_slot + g * stride_head, a.head_dim);
    std::copy(row.begin(), row.end(), y.begin() + j * a.head_dim);
  }
  return y;
}

// softmax(scale * Q K^T + mask) V in double, from the visibility rule written out again here.
std::vector<float> naive(const Problem& p) {
  const FlashAttnArgs& a = p.a;
  const int d = a.head_dim, group = a.n_head / a.n_kv_head;
  std::vector<float> out(p.out_size(), 0.0f);
  for (int g = 0; g < a.n_kv_head; ++g) {
    const auto kd = dequant_cache(a, a.k_type, a.k, a.k_stride_slot, a.k_stride_head, g);
    const auto vd = dequant_cache(a, a.v_type, a.v, a.v_stride_slot, a.v_stride_head, g);
    for (int i = 0; i < a.n_q; ++i) {
      for (int h = g * group; h < (g + 1) * group; ++h) {
        const float* q = a.q + i * a.q_stride_token + h * a.q_stride_head;
        std::vector<double> s;
        std::vector<int64_t> js;
        for (int64_t j = 0; j < a.n_kv; ++j) {
          const int32_t kp = a.kv_pos[j], qp = a.q_pos[i];
          bool vis = kp >= 0 && kp <= qp && (a.window <= 0 || qp - kp < a.window);
          if (kp >= 0 && a.q_group && a.q_group[i] >= 0 && a.kv_group[j] == a.q_group[i]) {
            vis = true;
          }
          if (!vis) continue;
          double dot = 0.0;
          for (int e = 0; e < d; ++e) dot += (double)q[e] * kd[j * d + e];
          s.push_back(dot * a.scale);
          js.push_back(j);
        }
        if (s.empty()) continue;
        const double m = *std::max_element(s.begin(), s.end());
        double l = 0.0;
        std::vector<double> acc(d, 0.0);
        for (size_t t = 0; t < s.size(); ++t) {
          const double e = std::exp(s[t] - m);
          l += e;
          for (int x = 0; x < d; ++x) acc[x] += e * vd[js[t] * d + x];
        }
        float* o = out.data() + (size_t)(i * a.n_head + h) * d;
        for (int x = 0; x < d; ++x) o[x] = (float)(acc[x] / l);
      }
    }
  }
  return out;
}

// Worst error of the fp16 path in check() since the last reset (Fp16PathRaggedBlocks prints it).
float g_worst_fp16 = 0.0f;

float max_abs_err(const std::vector<float>& got, const std::vector<float>& want) {
  float worst = 0.0f;
  for (size_t x = 0; x < got.size(); ++x) {
    const float e = std::fabs(got[x] - want[x]);
    if (!(e <= worst)) worst = std::isnan(e) ? std::numeric_limits<float>::infinity() : e;
  }
  return worst;
}

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want, float tol,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  float worst = 0.0f;
  size_t at = 0;
  for (size_t x = 0; x < got.size(); ++x) {
    const float e = std::fabs(got[x] - want[x]);
    if (!(e <= worst)) {  // also catches NaN
      worst = std::isnan(e) ? std::numeric_limits<float>::infinity() : e;
      at = x;
    }
  }
  EXPECT_LE(worst, tol) << what << ": worst abs error at " << at << " got " << got[at] << " want "
                        << want[at];
}

std::vector<float> run_full(Isa isa, Problem& p, bool f32_math = false) {
  std::vector<float> out(p.out_size(), std::nanf(""));
  p.a.out = out.data();
  p.a.f32_math = f32_math;
  flash_attn_isa(isa, p.a, 0, p.a.n_q, 0, p.a.n_head);
  p.a.f32_math = false;
  return out;
}

std::vector<Isa> simd_isas() {
  std::vector<Isa> v;
  for (Isa i : {Isa::avx2, Isa::avx512, Isa::neon}) {
    if (isa_supported(i)) v.push_back(i);
  }
  return v;
}

// Checks ref against double, every SIMD variant against ref (full and split-K).
void check(const Case& c) {
  SCOPED_TRACE(describe(c));
  Problem p(c);
  ASSERT_TRUE(flash_attn_args_valid(p.a));
  const std::vector<float> ref = run_full(Isa::ref, p);
  expect_near_all(ref, naive(p), kTolRef, "ref vs double");
  for (Isa isa : simd_isas()) {
    for (bool f32 : {true, false}) {
      const std::vector<float> got = run_full(isa, p, f32);
      const float tol = tol_for(isa, f32, c.n_q);
      if (tol == kTolFp16) g_worst_fp16 = std::max(g_worst_fp16, max_abs_err(got, ref));
      expect_near_all(got, ref, tol,
                      std::string(isa_name(isa)) + (f32 ? " f32_math" : "") + " vs ref");
    }
  }
}

// The production shapes: MQA global layers (16/1 x 512) and GQA sliding layers (16/8 x 256).
Case mqa(int n_q, int64_t n_kv) {
  Case c;
  c.n_q = n_q, c.n_kv = n_kv, c.n_kv_head = 1, c.head_dim = 512;
  return c;
}
Case gqa(int n_q, int64_t n_kv) {
  Case c;
  c.n_q = n_q, c.n_kv = n_kv, c.n_kv_head = 8, c.head_dim = 256;
  return c;
}

TEST(FlashAttn, CausalMqaRaggedNkv) {
  for (int64_t n_kv : {1, 17, 300}) check(mqa(1, n_kv));
  check(mqa(5, 23));
}

TEST(FlashAttn, CausalMqaLongCache) { check(mqa(1, 1000)); }

TEST(FlashAttn, CausalGqaRagged) {
  for (int n_q : {1, 5}) {
    for (int64_t n_kv : {1, 17, 130}) {
      Case c = gqa(n_q, std::max<int64_t>(n_kv, n_q));
      c.seed = 7 + n_q;
      check(c);
    }
  }
}

TEST(FlashAttn, PrefillBatch64) {
  Case c = gqa(64, 72);
  check(c);
  Case m = mqa(64, 64);
  m.head_dim = 256;
  check(m);
}

TEST(FlashAttn, SlidingWindowRingBuffer) {
  for (int32_t window : {1, 16, 40}) {
    Case c = gqa(5, 100);
    c.window = window;
    c.ring = true;
    c.seed = 100 + window;
    check(c);
  }
  Case m = mqa(3, 77);
  m.window = 20;
  m.ring = true;
  m.empty = 0.3;
  check(m);
}

TEST(FlashAttn, EmptySlots) {
  Case c = gqa(5, 60);
  c.empty = 0.5;
  check(c);
  Case all = mqa(2, 33);
  all.empty = 1.0;  // nothing visible: outputs are zeros
  check(all);
}

TEST(FlashAttn, BidirectionalGroups) {
  Case c = gqa(24, 60);
  c.groups = true;
  c.ring = true;
  check(c);
  Case w = gqa(24, 60);
  w.groups = true;
  w.window = 8;  // the group overrides the window too
  check(w);
  Case m = mqa(9, 40);
  m.groups = true;
  m.head_dim = 256;
  check(m);
}

TEST(FlashAttn, Q8_0Cache) {
  for (auto [kt, vt] :
       {std::pair{TensorType::Q8_0, TensorType::Q8_0}, std::pair{TensorType::Q8_0, TensorType::F16},
        std::pair{TensorType::F16, TensorType::Q8_0}}) {
    Case c = mqa(2, 45);
    c.k_type = kt, c.v_type = vt;
    check(c);
    Case g = gqa(5, 31);
    g.k_type = kt, g.v_type = vt;
    g.window = 12;
    g.ring = true;
    check(g);
  }
}

TEST(FlashAttn, HeadMajorLayoutAndScale) {
  Case c = gqa(3, 50);
  c.head_major = true;
  c.scale = 0.0625f;
  check(c);
  Case m = mqa(2, 40);
  m.head_major = true;
  m.scale = 0.3f;
  m.k_type = TensorType::Q8_0;
  check(m);
}

TEST(FlashAttn, OddShapes) {
  // head_dim 32 and 96 (smallest and non-power-of-two), 6 heads over 3 and 2 KV heads.
  Case c;
  c.n_q = 3, c.n_head = 6, c.n_kv_head = 3, c.head_dim = 96, c.n_kv = 29;
  check(c);
  c.n_kv_head = 2, c.head_dim = 32, c.ring = true, c.window = 5;
  check(c);
}

// Work split: computing pieces [q0,q1) x [h0,h1) (not aligned to KV groups) gives the output of
// one call. Not bit for bit: the SIMD kernels gather the slots that any query of a chunk sees,
// so the online-softmax rescales fall elsewhere; same bound as SIMD vs ref.
TEST(FlashAttn, QueryAndHeadRanges) {
  Case c = gqa(5, 40);
  c.ring = true;
  Problem p(c);
  for (Isa isa : [] {
         auto v = simd_isas();
         v.insert(v.begin(), Isa::ref);
         return v;
       }()) {
    SCOPED_TRACE(std::string(isa_name(isa)));
    const std::vector<float> whole = run_full(isa, p);
    std::vector<float> pieces(p.out_size(), std::nanf(""));
    p.a.out = pieces.data();
    for (auto [q0, q1] : {std::pair{0, 2}, std::pair{2, 5}}) {
      for (auto [h0, h1] : {std::pair{0, 3}, std::pair{3, 10}, std::pair{10, 16}}) {
        flash_attn_isa(isa, p.a, q0, q1, h0, h1);
      }
    }
    expect_near_all(pieces, whole, kTolSimd, "pieces vs whole");
  }
}

// The fp16 decoding path (one query, >= 9 heads on one KV head) works on blocks of up to 64
// visible slots and register tiles of 4 slots: slot counts around those sizes, 9 to 16 heads
// (rows past the heads are padding), head_dim 256, 512 and 1024 (two 512-dim spans per score),
// masks that leave ragged blocks, and a split of the slot range.
TEST(FlashAttn, Fp16PathRaggedBlocks) {
  g_worst_fp16 = 0.0f;
  uint32_t seed = 300;
  for (int heads : {9, 16}) {
    for (int d : {256, 512, 1024}) {
      for (int64_t n_kv : {2, 3, 5, 63, 64, 65, 131}) {
        if (d == 1024 && n_kv > 64) continue;
        Case c = mqa(1, n_kv);
        c.n_head = heads, c.head_dim = d, c.seed = ++seed;
        check(c);
      }
    }
  }
  Case w = mqa(1, 150);
  w.window = 37, w.ring = true, w.empty = 0.2, w.seed = 400;
  check(w);
  Case g = mqa(1, 140);
  g.groups = true, g.empty = 0.1, g.scale = 0.5f, g.seed = 401;
  check(g);
  std::printf("fp16 path: worst abs error vs ref %.2e (tolerance %.1e)\n", g_worst_fp16, kTolFp16);
}

// The fp16 path streams the next block with one of two prefetch cursors: a branch-free one when
// the next block is a full run of contiguous rows (MQA over a dense cache, [kv_head][slot] or one
// KV head), the row-table one otherwise (rows of several KV heads interleaved, the last block).
// Prefetches never change values: both layouts, over several blocks and with slot ranges that
// end mid-block, must match ref like any other fp16 call.
TEST(FlashAttn, Fp16PathPrefetchLayouts) {
  for (bool head_major : {false, true}) {
    Case c = mqa(1, 203);
    c.n_head = 32, c.n_kv_head = 2;  // 16 query heads per KV head: the fp16 path
    c.head_major = head_major, c.seed = 500 + head_major;
    check(c);
    Problem p(c);
    const std::vector<float> ref = run_full(Isa::ref, p);
    for (Isa isa : simd_isas()) {
      std::vector<std::vector<float>> bufs(2, std::vector<float>(flash_attn_partial_floats(p.a)));
      flash_attn_partial_isa(isa, p.a, 0, 1, 0, c.n_head, 0, 150, bufs[0].data());
      flash_attn_partial_isa(isa, p.a, 0, 1, 0, c.n_head, 150, c.n_kv, bufs[1].data());
      const float* ptrs[2] = {bufs[0].data(), bufs[1].data()};
      std::vector<float> out(p.out_size(), std::nanf(""));
      p.a.out = out.data();
      flash_attn_combine(p.a, 0, 1, 0, c.n_head, ptrs, 2);
      expect_near_all(out, ref, tol_for(isa, false, 1),
                      std::string(isa_name(isa)) + (head_major ? " head-major" : " slot-major"));
    }
  }
}

// Split-K: partial results over disjoint slot ranges, merged, match one pass. Includes ranges
// that see no slot at all (m = -inf).
TEST(FlashAttn, SplitKCombine) {
  for (Case c : {mqa(1, 301), gqa(3, 77)}) {
    c.ring = true;
    c.window = c.n_kv_head == 1 ? 0 : 30;
    SCOPED_TRACE(describe(c));
    Problem p(c);
    const std::vector<float> ref = run_full(Isa::ref, p);
    std::vector<Isa> isas = simd_isas();
    isas.insert(isas.begin(), Isa::ref);
    for (Isa isa : isas) {
      for (int n_split : {1, 2, 3, 5}) {
        SCOPED_TRACE(std::string(isa_name(isa)) + " splits=" + std::to_string(n_split));
        p.a.f32_math = n_split == 3;  // one split count with f32 math everywhere
        std::vector<std::vector<float>> bufs(n_split,
                                             std::vector<float>(flash_attn_partial_floats(p.a)));
        std::vector<const float*> ptrs;
        for (int s = 0; s < n_split; ++s) {
          const int64_t kv0 = c.n_kv * s / n_split, kv1 = c.n_kv * (s + 1) / n_split;
          flash_attn_partial_isa(isa, p.a, 0, c.n_q, 0, c.n_head, kv0, kv1, bufs[s].data());
          ptrs.push_back(bufs[s].data());
        }
        std::vector<float> out(p.out_size(), std::nanf(""));
        p.a.out = out.data();
        flash_attn_combine(p.a, 0, c.n_q, 0, c.n_head, ptrs.data(), n_split);
        expect_near_all(out, ref, tol_for(isa, p.a.f32_math, c.n_q), "split-K vs one pass");
        p.a.f32_math = false;
      }
    }
  }
}

// Values whose fp16 partial sums overflow (|sum| > 65504). Large positive q and k: every lane of
// every q.k overflows, so all scores are redone in f32. q = 0 (all p = 1) and large positive v:
// the p.v sums of a block overflow, so the chunk is redone in f32. Either way the result must
// match ref to f32 accuracy, relative to the size of the values.
TEST(FlashAttn, Fp16OverflowFallsBackToF32) {
  for (int which : {0, 1}) {
    Case c = mqa(1, 70);
    c.seed = 40 + which;
    Problem p(c);
    auto* k = reinterpret_cast<f16_bits*>(p.k.data());
    auto* v = reinterpret_cast<f16_bits*>(p.v.data());
    float vmax = 1.0f;
    if (which == 0) {
      for (float& x : p.q) x = 60000.0f * std::fabs(x);
      for (size_t e = 0; e < p.k.size() / 2; ++e) k[e] = f32_to_f16(std::fabs(f16_to_f32(k[e])));
    } else {
      vmax = 30000.0f;
      for (float& x : p.q) x = 0.0f;
      for (size_t e = 0; e < p.v.size() / 2; ++e) {
        v[e] = f32_to_f16(vmax * std::fabs(f16_to_f32(v[e])));
      }
    }
    SCOPED_TRACE(which == 0 ? "large q, k" : "large v");
    const std::vector<float> ref = run_full(Isa::ref, p);
    for (Isa isa : simd_isas()) {
      expect_near_all(run_full(isa, p), ref, kTolSimd * vmax, std::string(isa_name(isa)));
    }
  }
}

TEST(FlashAttn, VariantsUnderTest) {
  std::string names = "ref";
  for (Isa isa : simd_isas()) names += std::string(" ") + std::string(isa_name(isa));
  std::printf("flash attention variants checked against ref: %s\n", names.c_str());
#if defined(__x86_64__) || defined(__aarch64__)
  // Every x86-64 machine qgemma targets has AVX2 and every AArch64 one NEON: a build or
  // detection fault would otherwise skip all SIMD checks silently.
  EXPECT_FALSE(simd_isas().empty());
#endif
}

TEST(FlashAttn, DispatchedMatchesActiveIsa) {
  Problem p(gqa(2, 20));
  const std::vector<float> want = run_full(active_isa(), p);
  std::vector<float> got(p.out_size());
  p.a.out = got.data();
  flash_attn(p.a, 0, p.a.n_q, 0, p.a.n_head);
  expect_near_all(got, want, 0.0f, "flash_attn vs flash_attn_isa(active_isa())");
}

TEST(FlashAttn, ArgsValidation) {
  Problem p(gqa(1, 4));
  EXPECT_TRUE(flash_attn_args_valid(p.a));
  FlashAttnArgs b = p.a;
  b.head_dim = 100;
  EXPECT_FALSE(flash_attn_args_valid(b));
  b = p.a;
  b.n_kv_head = 3;
  EXPECT_FALSE(flash_attn_args_valid(b));
  b = p.a;
  b.k_type = TensorType::Q4_0;
  EXPECT_FALSE(flash_attn_args_valid(b));
}

}  // namespace
}  // namespace qgemma
