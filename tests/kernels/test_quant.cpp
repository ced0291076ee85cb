// Block formats (kernels/quant): type traits against llama.cpp's table, f16/bf16 conversions,
// hand-built known-answer blocks for every dequantizer, and quantize -> dequantize error bounds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/quant/formats.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

// ------------------------------------------------------------------------- type traits --

TEST(TypeTraits, MatchLlamaCpp) {
  struct Want {
    TensorType t;
    const char* name;
    int64_t block;
    size_t bytes;
    bool supported;
  };
  // ggml-common.h / ggml.c type_traits: elements per block and bytes per block.
  const Want want[] = {
      {TensorType::F32, "f32", 1, 4, true},
      {TensorType::F16, "f16", 1, 2, true},
      {TensorType::Q4_0, "q4_0", 32, 18, true},
      {TensorType::Q4_1, "q4_1", 32, 20, false},
      {TensorType::Q5_0, "q5_0", 32, 22, false},
      {TensorType::Q5_1, "q5_1", 32, 24, false},
      {TensorType::Q8_0, "q8_0", 32, 34, true},
      {TensorType::Q8_1, "q8_1", 32, 36, false},
      {TensorType::Q2_K, "q2_K", 256, 84, false},
      {TensorType::Q3_K, "q3_K", 256, 110, false},
      {TensorType::Q4_K, "q4_K", 256, 144, true},
      {TensorType::Q5_K, "q5_K", 256, 176, true},
      {TensorType::Q6_K, "q6_K", 256, 210, true},
      {TensorType::Q8_K, "q8_K", 256, 292, true},
      {TensorType::I8, "i8", 1, 1, false},
      {TensorType::I16, "i16", 1, 2, false},
      {TensorType::I32, "i32", 1, 4, false},
      {TensorType::I64, "i64", 1, 8, false},
      {TensorType::F64, "f64", 1, 8, false},
      {TensorType::BF16, "bf16", 1, 2, true},
      {TensorType::Q4_0x8, "q4_0x8", 32, 144, false},
      {TensorType::Q8_0x8, "q8_0x8", 32, 272, false},
      {TensorType::Q4_Kx8, "q4_Kx8", 256, 1152, false},
      {TensorType::Q5_Kx8, "q5_Kx8", 256, 1408, false},
      {TensorType::Q6_Kx8, "q6_Kx8", 256, 1680, false},
  };
  for (const Want& w : want) {
    const TypeTraits& tr = type_traits(w.t);
    EXPECT_EQ(tr.name, w.name);
    EXPECT_EQ(tr.block_size, w.block) << w.name;
    EXPECT_EQ(tr.type_size, w.bytes) << w.name;
    EXPECT_EQ(tr.supported, w.supported) << w.name;
  }
  // GGML ids that are removed (4, 5) or never stored, and out-of-range ids.
  for (uint32_t id :
       {4u, 5u, 16u, 29u, 31u, 39u, 999u, 1000u, 1001u, 1002u, 1003u, 1004u, 0xFFFFFFFFu}) {
    EXPECT_FALSE(is_known_type(id)) << id;
  }
  EXPECT_EQ(type_traits(static_cast<TensorType>(4)).name, "unknown");
  EXPECT_EQ(type_traits(static_cast<TensorType>(4)).block_size, 0);
  for (uint32_t id : {0u, 1u, 2u, 8u, 12u, 13u, 14u, 15u, 24u, 28u, 30u}) {
    EXPECT_TRUE(is_known_type(id)) << id;
  }
  EXPECT_EQ(row_size(TensorType::Q4_K, 3840), 15u * 144);
  EXPECT_EQ(row_size(TensorType::Q4_0, 15360), 480u * 18);
  EXPECT_EQ(row_size(TensorType::Q6_K, 256), 210u);
  EXPECT_EQ(row_size(TensorType::Q5_K, 3840), 15u * 176);
  EXPECT_EQ(static_cast<uint32_t>(TensorType::Q5_K), 13u);  // GGML_TYPE_Q5_K
  EXPECT_EQ(row_size(TensorType::BF16, 3840), 7680u);
  EXPECT_EQ(row_size(static_cast<TensorType>(4), 32), 0u);
}

// ------------------------------------------------------------------------- f16 / bf16 --

float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(F16, EdgeCases) {
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);  // largest finite
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);  // below the halfway point
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);  // halfway to 65536: even is inf
  EXPECT_EQ(f32_to_f16(1e10f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-INFINITY), 0xFC00);
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3C00);             // tie -> even mantissa (0)
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);         // tie -> even mantissa (2)
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);  // just above the tie
  EXPECT_EQ(f32_to_f16(0x1p-14f), 0x0400);                    // smallest normal
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);                    // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);                    // tie between 0 and 2^-24 -> 0
  EXPECT_EQ(f32_to_f16(0x1p-25f * 1.0001f), 0x0001);
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);        // 1.5 ulp -> even (2)
  EXPECT_EQ(f32_to_f16(1023 * 0x1p-24f), 0x03FF);     // largest subnormal
  EXPECT_EQ(f32_to_f16(1023.5f * 0x1p-24f), 0x0400);  // rounds up into the normals
  EXPECT_EQ(f32_to_f16(-0x1p-24f), 0x8001);
  EXPECT_EQ(f32_to_f16(1e-30f), 0x0000);
  const f16_bits qnan = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(qnan & 0x7C00, 0x7C00);
  EXPECT_NE(qnan & 0x03FF, 0);
  const f16_bits snan = f32_to_f16(bits_to_float(0x7F800001));  // signalling, low payload
  EXPECT_EQ(snan & 0x7E00, 0x7E00) << "NaN must stay a (quiet) NaN";

  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x03FF), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x7C00), INFINITY);
  EXPECT_EQ(f16_to_f32(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
}

TEST(F16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<f16_bits>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
    } else {
      ASSERT_EQ(f32_to_f16(f), h) << std::hex << h;
    }
  }
}

// Every float in the f16 range rounds to the nearest half (ties to even): checked against the
// neighbours of the result on random bit patterns.
TEST(F16, RoundsToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits(0, 0x477FEFFF);  // |x| < 65520
  for (int i = 0; i < 200000; ++i) {
    const float x = bits_to_float(bits(rng));
    const f16_bits h = f32_to_f16(x);
    const double err = std::fabs(double(f16_to_f32(h)) - x);
    for (int delta : {-1, 1}) {
      const int nb = static_cast<int>(h & 0x7FFF) + delta;
      if (nb < 0 || nb > 0x7BFF) continue;
      const double nerr = std::fabs(double(f16_to_f32(static_cast<f16_bits>(nb))) - std::fabs(x));
      ASSERT_TRUE(err < nerr || (err == nerr && (h & 1) == 0))
          << "x=" << x << " h=" << h << " neighbour=" << nb;
    }
  }
}

TEST(BF16, EdgeCases) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(-1.0f), 0xBF80);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);      // tie -> even
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7F80);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds past max
  EXPECT_EQ(f32_to_bf16(bits_to_float(0x00000001)), 0x0000);          // tiny subnormal
  EXPECT_EQ(f32_to_bf16(bits_to_float(0x00018000)), 0x0002);          // subnormal tie -> even
  EXPECT_EQ(f32_to_bf16(bits_to_float(0x7F800001)), 0x7FC0);          // sNaN -> quiet NaN
  EXPECT_EQ(f32_to_bf16(bits_to_float(0xFFC00000)), 0xFFC0);
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(float_to_bits(bf16_to_f32(0x7FC0)), 0x7FC00000u);
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_f32(static_cast<bf16_bits>(h));
    if (!std::isnan(f)) {
      ASSERT_EQ(f32_to_bf16(f), h);
    }
  }
}

// --------------------------------------------------------------- known-answer blocks --
// Bytes are written out by hand from the layouts in ggml-common.h; the expected floats come
// from the intended (scale, quant) values, not from running any encoder.

TEST(KnownAnswer, Q4_0) {
  block_q4_0 b;
  b.d = 0x3800;  // 0.5
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float y[32];
  dequantize_row_q4_0(&b, y, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 0.5f) << j;            // low nibbles: elements 0..15
    EXPECT_EQ(y[j + 16], (7 - j) * 0.5f) << j + 16;  // high nibbles: elements 16..31
  }
}

TEST(KnownAnswer, Q4_0QuantizeLikeLlamaCpp) {
  // x[j] = j - 16: the largest magnitude is x[0] = -16, so d = -16 / -8 = 2 and
  // q = (int)(x / 2 + 8.5) = floor((j + 1) / 2), the top value 16 clamped to 15.
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  block_q4_0 b;
  quantize_row_q4_0_ref(x, &b, 32);
  EXPECT_EQ(b.d, 0x4000);  // 2.0
  for (int j = 0; j < 16; ++j) {
    const int lo = (j + 1) / 2, hi = std::min(15, (j + 16 + 1) / 2);
    EXPECT_EQ(b.qs[j], lo | (hi << 4)) << j;
  }
}

TEST(KnownAnswer, Q8_0) {
  block_q8_0 b;
  b.d = 0x3400;  // 0.25
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(4 * j - 64);
  float y[32];
  dequantize_row_q8_0(&b, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], (4 * j - 64) * 0.25f);
}

TEST(KnownAnswer, Q4_K) {
  // Eight sub-blocks of 32 with 6-bit scale sc[s] and min m[s]; x = d*sc*q - dmin*m.
  const int sc[8] = {1, 2, 3, 4, 17, 33, 50, 63};
  const int m[8] = {5, 6, 7, 8, 20, 40, 63, 1};
  block_q4_K b;
  b.d = 0x3C00;     // 1.0
  b.dmin = 0x3800;  // 0.5
  // Bytes 0-3: sc[0..3] | top two bits of sc[4..7] << 6.
  // Bytes 4-7: m[0..3]  | top two bits of m[4..7] << 6.
  // Bytes 8-11: low 4 bits of sc[4..7] | low 4 bits of m[4..7] << 4.
  const uint8_t scales[12] = {0x41, 0x82, 0xC3, 0xC4, 0x45, 0x86,
                              0xC7, 0x08, 0x41, 0x81, 0xF2, 0x1F};
  std::memcpy(b.scales, scales, 12);
  // 32 bytes per 64 values: low nibbles -> sub-block 2g, high nibbles -> sub-block 2g+1.
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l)
      b.qs[32 * g + l] = static_cast<uint8_t>((l & 15) | ((15 - (l & 15)) << 4));
  }
  float y[256];
  dequantize_row_q4_K(&b, y, 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32, l = e % 32;
    const int q = (s % 2 == 0) ? (l & 15) : 15 - (l & 15);
    EXPECT_EQ(y[e], 1.0f * sc[s] * q - 0.5f * m[s]) << "element " << e;
  }
}

// Q5_K: the Q4_K scale bytes above, codes 0..31 written straight into the layout (element
// 32j + l: low 4 bits in the nibble j % 2 of qs[32 * (j / 2) + l], bit 4 in bit j of qh[l]).
TEST(KnownAnswer, Q5_K) {
  const int sc[8] = {1, 2, 3, 4, 17, 33, 50, 63};
  const int m[8] = {5, 6, 7, 8, 20, 40, 63, 1};
  block_q5_K b{};
  b.d = 0x3C00;     // 1.0
  b.dmin = 0x3800;  // 0.5
  const uint8_t scales[12] = {0x41, 0x82, 0xC3, 0xC4, 0x45, 0x86,
                              0xC7, 0x08, 0x41, 0x81, 0xF2, 0x1F};
  std::memcpy(b.scales, scales, 12);
  auto code = [](int e) { return (7 * e + 3 * (e / 32)) % 32; };
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32, l = e % 32;
    b.qs[32 * (j / 2) + l] |= static_cast<uint8_t>((code(e) & 15) << (4 * (j % 2)));
    b.qh[l] |= static_cast<uint8_t>((code(e) >> 4) << j);
  }
  float y[256];
  dequantize_row_q5_K(&b, y, 256);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    EXPECT_EQ(y[e], 1.0f * sc[s] * code(e) - 0.5f * m[s]) << "element " << e;
  }
}

// Q5_K from random bytes (every code, scale, min and high-bit pattern) against a per-element
// decode of the layout written independently of the dequantizer's loop structure.
TEST(KnownAnswer, Q5_KRandomBlocks) {
  std::mt19937 rng(55);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<block_q5_K> blocks(6);
  for (block_q5_K& b : blocks) {
    auto* p = reinterpret_cast<uint8_t*>(&b);
    for (size_t i = 0; i < sizeof(b); ++i) p[i] = static_cast<uint8_t>(byte(rng));
    b.d = f32_to_f16(0.01f * (1 + byte(rng) % 7));
    b.dmin = f32_to_f16(0.003f * (1 + byte(rng) % 5));
  }
  std::vector<float> y(256 * blocks.size());
  dequantize_row(TensorType::Q5_K, blocks.data(), y.data(), static_cast<int64_t>(y.size()));
  for (size_t bi = 0; bi < blocks.size(); ++bi) {
    const block_q5_K& b = blocks[bi];
    const uint8_t* s = b.scales;
    for (int e = 0; e < 256; ++e) {
      const int j = e / 32, l = e % 32;
      // 6-bit scale / min of sub-block j: bytes 0-3 / 4-7 hold j < 4 (low 6 bits) and the top 2
      // bits of j + 4; bytes 8-11 hold the low 4 bits of j >= 4 (scale low nibble, min high).
      const int scale = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
      const int min = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | (s[j] >> 6) << 4;
      const int q = ((b.qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15) + 16 * ((b.qh[l] >> j) & 1);
      const float want = f16_to_f32(b.d) * scale * q - f16_to_f32(b.dmin) * min;
      ASSERT_EQ(y[256 * bi + e], want) << "block " << bi << " element " << e;
    }
  }
}

TEST(KnownAnswer, Q6_K) {
  block_q6_K b;
  std::memset(&b, 0, sizeof(b));
  b.d = 0x3800;  // 0.5
  for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<int8_t>(i % 2 == 0 ? i + 1 : -(i + 1));
  // First 128 values: ql[0] low/high nibbles -> elements 0 / 64, ql[32] -> 32 / 96;
  // qh[0] bit pairs 0-1, 2-3, 4-5, 6-7 -> top bits of elements 0, 32, 64, 96.
  b.ql[0] = 0x21;   // e0 low 1, e64 low 2
  b.ql[32] = 0x43;  // e32 low 3, e96 low 4
  b.qh[0] = 0xE4;   // e0: 0, e32: 1, e64: 2, e96: 3
  // Second 128 values (ql + 64, qh + 32): element 128 + 64 + 5 = 197 gets low 15, high 3.
  b.ql[64 + 5] = 0xF0;
  b.qh[32 + 5] = 0x30;
  float y[256];
  dequantize_row_q6_K(&b, y, 256);
  // q - 32 for each hand-set element; scales[e / 16].
  EXPECT_EQ(y[0], 0.5f * 1 * (1 - 32));
  EXPECT_EQ(y[32], 0.5f * 3 * (19 - 32));
  EXPECT_EQ(y[64], 0.5f * 5 * (34 - 32));
  EXPECT_EQ(y[96], 0.5f * 7 * (52 - 32));
  EXPECT_EQ(y[133], 0.5f * 9 * (0 - 32));
  EXPECT_EQ(y[197], 0.5f * 13 * (63 - 32));
  for (int e = 0; e < 256; ++e) {
    if (e == 0 || e == 32 || e == 64 || e == 96 || e == 197) continue;
    EXPECT_EQ(y[e], 0.5f * b.scales[e / 16] * -32) << "element " << e;
  }
}

TEST(KnownAnswer, Q8_K) {
  block_q8_K b;
  b.d = 0.125f;
  for (int j = 0; j < 256; ++j) b.qs[j] = static_cast<int8_t>(j - 128);
  float y[256];
  dequantize_row_q8_K(&b, y, 256);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(y[j], (j - 128) * 0.125f);

  // Quantize: the largest magnitude (+2) maps to -127, so d is negative; bsums sum 16 quants.
  float x[256];
  for (int j = 0; j < 256; ++j) x[j] = (j == 7) ? 2.0f : 0.5f * ((j % 5) - 2) / 2;
  block_q8_K q;
  quantize_row_q8_K_ref(x, &q, 256);
  EXPECT_FLOAT_EQ(q.d, -2.0f / 127);
  EXPECT_EQ(q.qs[7], -127);
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int i = 0; i < 16; ++i) sum += q.qs[16 * g + i];
    EXPECT_EQ(q.bsums[g], sum);
  }
}

// ------------------------------------------------------------ quantize -> dequantize --

std::vector<float> gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct RoundTrip {
  std::vector<float> y;
  double rms_err = 0, rms_x = 0;
};

RoundTrip round_trip(TensorType t, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> buf(row_size(t, n));
  quantize_row(t, x.data(), buf.data(), n);
  RoundTrip r;
  r.y.resize(x.size());
  dequantize_row(t, buf.data(), r.y.data(), n);
  for (size_t i = 0; i < x.size(); ++i) {
    r.rms_err += double(r.y[i] - x[i]) * (r.y[i] - x[i]);
    r.rms_x += double(x[i]) * x[i];
  }
  r.rms_err = std::sqrt(r.rms_err / n);
  r.rms_x = std::sqrt(r.rms_x / n);
  return r;
}

// Ragged row lengths (in blocks) for each format, including a single block.
const int kBlockCounts[] = {1, 2, 3, 7, 15, 60};

TEST(RoundTrip, FloatFormats) {
  for (int nb : kBlockCounts) {
    std::vector<float> x = gaussian(nb * 37, nb, 3.0f);
    x[0] = 0.0f;
    EXPECT_EQ(round_trip(TensorType::F32, x).y, x);
    // f16 / bf16: round to nearest, so relative error <= half an ulp: 2^-11 and 2^-8.
    const RoundTrip h = round_trip(TensorType::F16, x), b = round_trip(TensorType::BF16, x);
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_LE(std::fabs(h.y[i] - x[i]), std::ldexp(std::fabs(x[i]), -11)) << i;
      EXPECT_LE(std::fabs(b.y[i] - x[i]), std::ldexp(std::fabs(x[i]), -8)) << i;
    }
  }
}

// Q8_0: q = round(x / d), d = amax / 127 stored as f16 (relative error <= 2^-11). So
// |x - q * d16| <= d/2 + |q| * |d - d16| <= d * (0.5 + 127 * 2^-11) < 0.563 d.
TEST(RoundTrip, Q8_0) {
  for (int nb : kBlockCounts) {
    const std::vector<float> x = gaussian(nb * 32, 100 + nb);
    const RoundTrip r = round_trip(TensorType::Q8_0, x);
    for (int b = 0; b < nb; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
      for (int j = 0; j < 32; ++j) {
        const int i = 32 * b + j;
        EXPECT_LE(std::fabs(r.y[i] - x[i]), 0.563f * amax / 127) << i;
      }
    }
  }
}

// Q4_0: d = vmax / -8 (vmax the signed value of largest magnitude), q = clamp(x/d + 8.5, 15).
// Values on vmax's side land on the grid (error <= |d|/2); the other side reaches x/d = +8,
// which clamps to 7: error up to |d|. With f16 d (error <= 8 * 2^-11 |d|): bound 1.004 |d|.
// For Gaussian data the error is the uniform rounding error, |d|/sqrt(12) ~ 0.29 |d| on
// average; the largest of 32 Gaussians is ~2.4 sigma, |d| ~ 0.3 sigma, so ~0.087 sigma (0.086
// measured over 100k values); 0.12 sigma leaves room for the few-block rows' fluctuation.
TEST(RoundTrip, Q4_0) {
  for (int nb : kBlockCounts) {
    const std::vector<float> x = gaussian(nb * 32, 200 + nb);
    const RoundTrip r = round_trip(TensorType::Q4_0, x);
    for (int b = 0; b < nb; ++b) {
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
      for (int j = 0; j < 32; ++j) {
        const int i = 32 * b + j;
        EXPECT_LE(std::fabs(r.y[i] - x[i]), 1.004f * amax / 8) << i;
      }
    }
    EXPECT_LE(r.rms_err, 0.12 * r.rms_x) << nb;
  }
}

// Q4_K: each sub-block of 32 gets a 16-level grid over [min(x, 0), max(x)], step ~ range/15;
// the uniform rounding error is step/sqrt(12). For 32 Gaussians the range is ~4.1 sigma, so
// ~0.08 sigma; the least-squares refit brings it to 0.072 (measured over 100k values), the
// 6-bit quantized scales and mins add a little: bound 0.09 sigma. Worst case
// per element: a grid step (a value clamped after the scale rounded down) of that sub-block.
TEST(RoundTrip, Q4_K) {
  for (int nb : kBlockCounts) {
    std::vector<float> x = gaussian(nb * 256, 300 + nb);
    // A sub-block of only positive values and one with a large outlier exercise the mins.
    for (int j = 0; j < 32; ++j) x[32 + j] = std::fabs(x[32 + j]) + 1.0f;
    x[100] = 9.0f;
    const RoundTrip r = round_trip(TensorType::Q4_K, x);
    EXPECT_LE(r.rms_err, 0.09 * r.rms_x) << nb;
    for (int s = 0; s < nb * 8; ++s) {
      float lo = 0, hi = 0;
      for (int j = 0; j < 32; ++j) {
        lo = std::min(lo, x[32 * s + j]);
        hi = std::max(hi, x[32 * s + j]);
      }
      for (int j = 0; j < 32; ++j) {
        const int i = 32 * s + j;
        EXPECT_LE(std::fabs(r.y[i] - x[i]), (hi - lo) / 15 + 1e-6f) << i;
      }
    }
  }
}

// Q5_K: Q4_K's search with a 32-level grid (step ~ range/31), so about half Q4_K's error:
// bound 0.05 sigma (measured: see the test's failure message). Worst case per element: a grid
// step of the sub-block plus the 6-bit rounding of its scale (up to half a step of d = the
// block's largest scale / 63, over 31 levels: 31 * d / 2).
TEST(RoundTrip, Q5_K) {
  for (int nb : kBlockCounts) {
    std::vector<float> x = gaussian(nb * 256, 350 + nb);
    for (int j = 0; j < 32; ++j) x[32 + j] = std::fabs(x[32 + j]) + 1.0f;
    x[100] = 9.0f;
    std::vector<block_q5_K> q(nb);
    quantize_row_q5_K_ref(x.data(), q.data(), nb * 256);
    const RoundTrip r = round_trip(TensorType::Q5_K, x);
    EXPECT_LE(r.rms_err, 0.05 * r.rms_x) << nb;
    for (int s = 0; s < nb * 8; ++s) {
      float lo = 0, hi = 0;
      for (int j = 0; j < 32; ++j) {
        lo = std::min(lo, x[32 * s + j]);
        hi = std::max(hi, x[32 * s + j]);
      }
      const float d = f16_to_f32(q[s / 8].d);
      for (int j = 0; j < 32; ++j) {
        const int i = 32 * s + j;
        EXPECT_LE(std::fabs(r.y[i] - x[i]), (hi - lo) / 31 + 15.5f * d + 1e-6f) << i;
      }
    }
  }
}

// Q6_K: 64 levels per sub-block of 16, symmetric, step = amax/32; for 16 Gaussians amax is
// ~1.8 sigma, so the rounding error is ~0.056 sigma / sqrt(12) = 0.016 sigma; the int8
// sub-block scales (relative error up to 1/2 in 128 for the smaller ones) push it to ~0.02.
// Worst case per element: one step (clamped) of the sub-block.
TEST(RoundTrip, Q6_K) {
  for (int nb : kBlockCounts) {
    std::vector<float> x = gaussian(nb * 256, 400 + nb);
    x[17] = -12.0f;  // an outlier that makes the super-block scale large
    const RoundTrip r = round_trip(TensorType::Q6_K, x);
    EXPECT_LE(r.rms_err, 0.025 * r.rms_x) << nb;
    for (int s = 0; s < nb * 16; ++s) {
      float amax = 0;
      for (int j = 0; j < 16; ++j) amax = std::max(amax, std::fabs(x[16 * s + j]));
      // The sub-block scale is an int8 multiple of d = smax/128: its rounding error adds up
      // to d/2 per level, i.e. 32 * (smax/128)/2 = smax/8 at the extremes.
      float smax = 0;
      for (int j = 0; j < 256; ++j) smax = std::max(smax, std::fabs(x[256 * (s / 16) + j]) / 32);
      for (int j = 0; j < 16; ++j) {
        const int i = 16 * s + j;
        EXPECT_LE(std::fabs(r.y[i] - x[i]), amax / 32 + smax / 8 + 1e-6f) << i;
      }
    }
  }
}

// Q8_K: float d = amax/127, q = round-to-nearest-even(x / d): error <= d/2 (+ float rounding).
TEST(RoundTrip, Q8_K) {
  for (int nb : kBlockCounts) {
    std::vector<float> x = gaussian(nb * 256, 500 + nb);
    if (nb == 2) std::fill(x.begin() + 256, x.end(), 0.0f);  // an all-zero block
    const int64_t n = static_cast<int64_t>(x.size());
    std::vector<block_q8_K> q(nb);
    quantize_row_q8_K_ref(x.data(), q.data(), n);
    std::vector<float> y(x.size());
    dequantize_row_q8_K(q.data(), y.data(), n);
    for (int b = 0; b < nb; ++b) {
      float amax = 0;
      for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[256 * b + j]));
      for (int j = 0; j < 256; ++j) {
        const int i = 256 * b + j;
        EXPECT_LE(std::fabs(y[i] - x[i]), 0.5001f * amax / 127 + 1e-30f) << i;
      }
      for (int g = 0; g < 16; ++g) {
        int sum = 0;
        for (int i = 0; i < 16; ++i) sum += q[b].qs[16 * g + i];
        EXPECT_EQ(q[b].bsums[g], sum);
      }
    }
  }
}

TEST(RoundTrip, GenericMatchesPerFormat) {
  const std::vector<float> x = gaussian(512, 7);
  std::vector<block_q4_K> a(2);
  std::vector<uint8_t> b(row_size(TensorType::Q4_K, 512));
  quantize_row_q4_K_ref(x.data(), a.data(), 512);
  quantize_row(TensorType::Q4_K, x.data(), b.data(), 512);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), b.size()), 0);
  std::vector<block_q6_K> c(2);
  std::vector<uint8_t> d(row_size(TensorType::Q6_K, 512));
  quantize_row_q6_K_ref(x.data(), c.data(), 512);
  quantize_row(TensorType::Q6_K, x.data(), d.data(), 512);
  EXPECT_EQ(std::memcmp(c.data(), d.data(), d.size()), 0);
  std::vector<block_q5_K> e(2);
  std::vector<uint8_t> f(row_size(TensorType::Q5_K, 512));
  quantize_row_q5_K_ref(x.data(), e.data(), 512);
  quantize_row(TensorType::Q5_K, x.data(), f.data(), 512);
  EXPECT_EQ(std::memcmp(e.data(), f.data(), f.size()), 0);
}

TEST(RoundTrip, ZerosStayZero) {
  const std::vector<float> x(512, 0.0f);
  for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q5_K,
                       TensorType::Q6_K, TensorType::Q8_K, TensorType::F16, TensorType::BF16}) {
    const RoundTrip r = round_trip(t, x);
    for (float v : r.y) ASSERT_EQ(v, 0.0f) << type_traits(t).name;
  }
}

}  // namespace
}  // namespace qgemma
