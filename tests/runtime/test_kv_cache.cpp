// KV cache: sliding layers as a ring of window + batch slots, global layers growing with the
// context, f16 / q8_0 storage, crop().
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <random>
#include <vector>

#include "kernels/quant/quant.h"
#include "loader/error.h"
#include "runtime/kv_cache.h"
#include "runtime/synth.h"

namespace qgemma {
namespace {

ModelConfig tiny() { return synth_preset("tiny"); }  // window 8; layer 5 is global

std::vector<float> rows(int64_t n, int64_t dim, float seed) {
  std::vector<float> v(n * dim);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(seed + 0.37f * static_cast<float>(i));
  return v;
}

void store_positions(KvCache& kv, int layer, int32_t p0, int32_t n, int64_t dim) {
  std::vector<int32_t> pos(n);
  for (int i = 0; i < n; ++i) pos[i] = p0 + i;
  const auto k = rows(n, dim, static_cast<float>(p0)), v = rows(n, dim, 1.0f + p0);
  kv.store(layer, k.data(), v.data(), pos.data(), n);
}

int64_t kv_dim(const ModelConfig& c, int layer) {
  return int64_t{c.layers[layer].n_head_kv} * c.layers[layer].head_dim;
}

TEST(KvCache, SlidingLayerIsARingOfWindowPlusBatch) {
  const ModelConfig c = tiny();
  const int64_t batch = 4;
  KvCache kv(c, /*n_ctx=*/1000, batch, TensorType::F16);
  EXPECT_EQ(kv.capacity(0), c.sliding_window + batch);
  EXPECT_EQ(kv.capacity(5), 1000);  // global layer: the whole context
  const int64_t cap = kv.capacity(0);
  for (int32_t p = 0; p < 40; p += 4) store_positions(kv, 0, p, 4, kv_dim(c, 0));
  // Positions 28..39 are held, each in slot p % capacity; older ones were overwritten.
  for (int64_t s = 0; s < cap; ++s) {
    const int32_t p = kv.slot_pos(0, s);
    EXPECT_GE(p, 40 - cap);
    EXPECT_EQ(p % cap, s);
  }
  FlashAttnArgs a;
  kv.attention_args(0, &a);
  EXPECT_EQ(a.n_kv, cap);
  EXPECT_EQ(a.k_stride_head, a.k_stride_slot * cap);
}

TEST(KvCache, StoresF16AndQ8_0Rows) {
  const ModelConfig c = tiny();
  for (TensorType t : {TensorType::F16, TensorType::Q8_0}) {
    KvCache kv(c, 64, 8, t);
    const int layer = 5, dim = static_cast<int>(kv_dim(c, layer));
    const auto k = rows(3, dim, 0.5f), v = rows(3, dim, 2.5f);
    const int32_t pos[3] = {10, 11, 12};
    kv.store(layer, k.data(), v.data(), pos, 3);
    FlashAttnArgs a;
    kv.attention_args(layer, &a);
    EXPECT_EQ(a.n_kv, 13);
    const int hd = c.layers[layer].head_dim;
    std::vector<float> back(hd);
    for (int t2 = 0; t2 < 3; ++t2) {
      for (int h = 0; h < c.layers[layer].n_head_kv; ++h) {
        const auto* row =
            static_cast<const uint8_t*>(a.v) + (pos[t2] * a.v_stride_slot + h * a.v_stride_head);
        dequantize_row(t, row, back.data(), hd);
        for (int d = 0; d < hd; ++d) {
          EXPECT_NEAR(back[d], v[t2 * dim + h * hd + d], t == TensorType::F16 ? 1e-3 : 1e-2);
        }
      }
    }
  }
}

// F16 rows hold exactly f32_to_f16 of the input (the cache converts with its own vectorizable
// loop): random values of every magnitude, ties, the normal range's edges, subnormals,
// zeros, overflow, inf and NaN, in rows that have none of the special values and rows that do.
TEST(KvCache, F16RowsAreBitExactConversions) {
  const ModelConfig c = tiny();
  const int layer = 5;
  const int dim = static_cast<int>(kv_dim(c, layer));
  const int hd = c.layers[layer].head_dim;
  const int n = 6;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> mag(-30.0f, 17.0f);
  std::vector<float> k(n * dim), v(n * dim);
  std::uniform_real_distribution<float> frac(1.0f, 2.0f);
  // k: magnitudes 2^-30 .. 2^17 (subnormal f16, normal, overflow); v: all in the normal range.
  for (float& x : k) x = frac(rng) * std::exp2(mag(rng)) * (rng() & 1 ? -1.0f : 1.0f);
  for (float& x : v) x = std::exp2(mag(rng) * 0.3f) * (rng() & 1 ? -1.0f : 1.0f);  // all normal
  auto from_bits = [](uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  };
  const float specials[] = {0.0f,
                            -0.0f,
                            from_bits(0x38800000u),  // smallest normal f16
                            from_bits(0x387FFFFFu),
                            from_bits(0x477FEFFFu),  // largest that stays finite
                            from_bits(0x477FF000u),  // rounds to inf
                            65504.0f,
                            1e6f,
                            -1e-6f,
                            1e-9f,
                            from_bits(0x3F801000u),  // ties: even stays, odd rounds up
                            from_bits(0x3F803000u),
                            INFINITY,
                            -INFINITY,
                            NAN};
  for (size_t i = 0; i < std::size(specials); ++i) k[(i * 7) % dim] = specials[i];  // row 0
  KvCache kv(c, 64, 8, TensorType::F16);
  std::vector<int32_t> pos(n);
  for (int i = 0; i < n; ++i) pos[i] = 3 + i;
  kv.store(layer, k.data(), v.data(), pos.data(), n);
  FlashAttnArgs a;
  kv.attention_args(layer, &a);
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < c.layers[layer].n_head_kv; ++h) {
      const size_t at = pos[t] * a.k_stride_slot + h * a.k_stride_head;
      const auto* kr = reinterpret_cast<const f16_bits*>(static_cast<const uint8_t*>(a.k) + at);
      const auto* vr = reinterpret_cast<const f16_bits*>(static_cast<const uint8_t*>(a.v) + at);
      for (int d = 0; d < hd; ++d) {
        const int64_t i = int64_t{t} * dim + int64_t{h} * hd + d;
        ASSERT_EQ(kr[d], f32_to_f16(k[i])) << "k " << k[i] << " token " << t << " at " << d;
        ASSERT_EQ(vr[d], f32_to_f16(v[i])) << "v " << v[i] << " token " << t << " at " << d;
      }
    }
  }
}

TEST(KvCache, CropDropsPositionsAndRefusesWhatTheRingLost) {
  const ModelConfig c = tiny();
  const int64_t batch = 4;
  KvCache kv(c, 100, batch, TensorType::F16);
  for (int layer = 0; layer < c.n_layer; ++layer) {
    for (int32_t p = 0; p < 20; p += 4) store_positions(kv, layer, p, 4, kv_dim(c, layer));
  }
  kv.crop(17);  // back 3 positions: within the batch margin
  for (int layer = 0; layer < c.n_layer; ++layer) {
    for (int64_t s = 0; s < kv.capacity(layer); ++s) EXPECT_LT(kv.slot_pos(layer, s), 17);
  }
  FlashAttnArgs a;
  kv.attention_args(5, &a);
  EXPECT_EQ(a.n_kv, 17);
  // The sliding ring still holds the window before position 17.
  int held = 0;
  for (int64_t s = 0; s < kv.capacity(0); ++s) held += kv.slot_pos(0, s) >= 17 - c.sliding_window;
  EXPECT_EQ(held, c.sliding_window);
  std::vector<std::vector<int32_t>> before(c.n_layer);
  for (int layer = 0; layer < c.n_layer; ++layer) {
    for (int64_t s = 0; s < kv.capacity(layer); ++s) before[layer].push_back(kv.slot_pos(layer, s));
  }
  EXPECT_THROW(kv.crop(2), Error);  // 14 positions back: the ring overwrote them
  // A refused crop changes nothing, in any layer (the global layer 5 could be cropped alone).
  for (int layer = 0; layer < c.n_layer; ++layer) {
    for (int64_t s = 0; s < kv.capacity(layer); ++s)
      EXPECT_EQ(kv.slot_pos(layer, s), before[layer][s]) << "layer " << layer << " slot " << s;
  }
  kv.attention_args(5, &a);
  EXPECT_EQ(a.n_kv, 17);
  kv.clear();
  for (int64_t s = 0; s < kv.capacity(0); ++s) EXPECT_EQ(kv.slot_pos(0, s), -1);
}

TEST(KvCache, RejectsPositionsOutsideTheContextAndOversizeBatches) {
  const ModelConfig c = tiny();
  KvCache kv(c, 16, 4, TensorType::F16);
  const auto k = rows(5, kv_dim(c, 5), 0);
  const int32_t far[1] = {16};
  EXPECT_THROW(kv.store(5, k.data(), k.data(), far, 1), Error);
  const int32_t five[5] = {0, 1, 2, 3, 4};
  EXPECT_THROW(kv.store(5, k.data(), k.data(), five, 5), Error);
  EXPECT_THROW(KvCache(c, 16, 4, TensorType::F32), Error);
}

TEST(KvCache, BytesNeededMatchesTheAllocation) {
  const ModelConfig c = tiny();
  for (TensorType t : {TensorType::F16, TensorType::Q8_0}) {
    KvCache kv(c, 300, 16, t);
    EXPECT_EQ(KvCache::bytes_needed(c, 300, 16, t), kv.bytes_reserved());
  }
  // The 12B at 32K context in f16: 40 sliding layers x 8 heads x 256 x 2 x (1024 + 512) x 2 B
  // plus 8 global layers x 512 x 2 x 32768 x 2 B (spec section 2), plus the slot positions.
  const ModelConfig big = synth_preset("12b");
  const uint64_t want = 40ull * 8 * 256 * 2 * 1536 * 2 + 8ull * 512 * 2 * 32768 * 2;
  const uint64_t got = KvCache::bytes_needed(big, 32768, 512, TensorType::F16);
  EXPECT_GE(got, want);
  EXPECT_LT(got, want + (2ull << 20));
}

}  // namespace
}  // namespace qgemma
