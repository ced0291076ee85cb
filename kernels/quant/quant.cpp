// Scalar quantize / dequantize of every supported block format, and f16/bf16 conversions.
// Dequantization follows llama.cpp's ggml-quants.c arithmetic (same operations in the same
// order), so it reproduces llama.cpp's floats bit for bit. Quantization of Q4_0, Q8_0 and Q8_K
// matches llama.cpp's reference quantizers; Q4_K, Q5_K and Q6_K use a simpler scale search of
// their own (see quantize_q4_K_block / quantize_q5_K_block / quantize_q6_K_block).
#include "kernels/quant/quant.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace qgemma {
namespace {

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round half to even, as llama.cpp's nearest_int() does for the magnitudes quantizers see.
int nearest_int(float v) { return static_cast<int>(std::nearbyint(v)); }

[[noreturn]] void unsupported(const char* what, TensorType t) {
  std::fprintf(stderr, "qgemma: %s: type %s (%u) is not supported\n", what,
               std::string(type_traits(t).name).c_str(), static_cast<unsigned>(t));
  std::abort();
}

// Q4_K packs 8 six-bit scales and 8 six-bit mins into 12 bytes: sub-blocks 0-3 keep theirs in the
// low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 keep their low 4 bits in the
// nibbles of bytes 8-11 (scale low, min high) and their top 2 bits in the top bits of bytes 0-7.
void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void set_scale_min_k4(int j, uint8_t* q, int sc, int m) {
  if (j < 4) {
    q[j] = static_cast<uint8_t>((q[j] & 0xC0) | sc);
    q[j + 4] = static_cast<uint8_t>((q[j + 4] & 0xC0) | m);
  } else {
    q[j + 4] = static_cast<uint8_t>((sc & 0xF) | ((m & 0xF) << 4));
    q[j - 4] = static_cast<uint8_t>((q[j - 4] & 0x3F) | ((sc >> 4) << 6));
    q[j] = static_cast<uint8_t>((q[j] & 0x3F) | ((m >> 4) << 6));
  }
}

// Fits x ~= scale * L - min with L in [0, nmax] and min >= 0 for one sub-block. Starts from the
// range (min..max) and tries a few stretched grids, refitting scale and min by least squares
// for each candidate assignment; keeps the one with the smallest squared error.
void fit_scale_min(const float* x, int n, int nmax, float* scale_out, float* min_out) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  lo = std::min(lo, 0.0f);  // the offset can only be subtracted: -min <= 0
  if (hi <= lo) {
    *scale_out = 0;
    *min_out = -lo;
    return;
  }
  float best_scale = (hi - lo) / nmax, best_min = -lo;
  float best_err = INFINITY;
  int L[QK_K];
  for (int step = -4; step <= 8; ++step) {
    const float iscale = (nmax + 0.1f * step) / (hi - lo);
    float sl = 0, sl2 = 0, sx = 0, sxl = 0;
    for (int i = 0; i < n; ++i) {
      L[i] = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      sl += L[i];
      sl2 += float(L[i]) * L[i];
      sx += x[i];
      sxl += x[i] * L[i];
    }
    // Least squares for x ~= a*L + b.
    const float det = n * sl2 - sl * sl;
    if (det <= 0) continue;
    float a = (n * sxl - sl * sx) / det;
    float b = (sl2 * sx - sl * sxl) / det;
    if (b > 0) {  // offset must be <= 0: refit the scale alone with b = 0
      b = 0;
      a = sl2 > 0 ? sxl / sl2 : 0;
    }
    if (a <= 0) continue;
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const int q = std::clamp(nearest_int((x[i] - b) / a), 0, nmax);
      const float e = a * q + b - x[i];
      err += e * e;
    }
    if (err < best_err) {
      best_err = err;
      best_scale = a;
      best_min = -b;
    }
  }
  *scale_out = best_scale;
  *min_out = best_min;
}

// Q4_K / Q5_K: per sub-block of 32 a scale and min (codes 0..nmax), both as 6-bit multiples of
// the super-block's d and dmin (written to d, dmin, scales); L: the codes of the 256 values,
// quantized against the scales as they will be decoded.
void quantize_k4_scales(const float* x, int nmax, f16_bits* d_out, f16_bits* dmin_out,
                        uint8_t* scales12, uint8_t* L) {
  float scales[8], mins[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    fit_scale_min(x + 32 * j, 32, nmax, &scales[j], &mins[j]);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  // Super-block scales: the 6-bit sub-block scales and mins are multiples of d and dmin.
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  std::memset(scales12, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const int ls = std::min(63, nearest_int(inv_scale * scales[j]));
    const int lm = std::min(63, nearest_int(inv_min * mins[j]));
    set_scale_min_k4(j, scales12, ls, lm);
  }
  *d_out = f32_to_f16(max_scale / 63.0f);
  *dmin_out = f32_to_f16(max_min / 63.0f);
  const float d = f16_to_f32(*d_out), dmin = f16_to_f32(*dmin_out);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, scales12, &sc, &m);
    const float ds = d * sc, dm = dmin * m;
    for (int i = 0; i < 32; ++i) {
      L[32 * j + i] =
          ds > 0 ? static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + i] + dm) / ds), 0, nmax))
                 : 0;
    }
  }
}

void quantize_q4_K_block(const float* x, block_q4_K* y) {
  uint8_t L[QK_K];
  quantize_k4_scales(x, 15, &y->d, &y->dmin, y->scales, L);
  // Each group of 64 values shares 32 bytes: the first 32 in the low nibbles, the next 32 high.
  for (int j = 0; j < QK_K; j += 64) {
    for (int l = 0; l < 32; ++l) {
      y->qs[j / 2 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

// Q5_K: Q4_K's scale search with codes 0..31; the low 4 bits go to qs as in Q4_K, bit 4 of the
// code of element 32j + l to bit j of qh[l].
void quantize_q5_K_block(const float* x, block_q5_K* y) {
  uint8_t L[QK_K];
  quantize_k4_scales(x, 31, &y->d, &y->dmin, y->scales, L);
  std::memset(y->qh, 0, sizeof(y->qh));
  for (int j = 0; j < QK_K; j += 64) {
    for (int l = 0; l < 32; ++l) {
      const int a = L[j + l], b = L[j + l + 32];
      y->qs[j / 2 + l] = static_cast<uint8_t>((a & 15) | (b & 15) << 4);
      y->qh[l] |= static_cast<uint8_t>((a >> 4) << (j / 32) | (b >> 4) << (j / 32 + 1));
    }
  }
}

// Symmetric fit x ~= s * L, L in [-32, 31], for a sub-block of 16: the largest magnitude maps to
// -32 (as llama.cpp does, using the one extra negative level); a few slightly larger grids are
// tried with a least-squares refit of s, keeping the best.
float fit_scale_q6(const float* x, int n) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
  }
  if (amax == 0) return 0;
  float best_s = vmax / -32.0f, best_err = INFINITY;
  for (int step = -2; step <= 4; ++step) {
    const float iscale = -(32.0f + 0.25f * step) / vmax;
    float sxl = 0, sl2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -32, 31);
      sxl += x[i] * l;
      sl2 += float(l) * l;
    }
    if (sl2 <= 0) continue;
    const float s = sxl / sl2;
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(x[i] / s), -32, 31);
      const float e = s * l - x[i];
      err += e * e;
    }
    if (err < best_err) {
      best_err = err;
      best_s = s;
    }
  }
  return best_s;
}

void quantize_q6_K_block(const float* x, block_q6_K* y) {
  float scales[QK_K / 16];
  float max_scale = 0, amax_scale = 0;
  for (int j = 0; j < QK_K / 16; ++j) {
    scales[j] = fit_scale_q6(x + 16 * j, 16);
    if (std::fabs(scales[j]) > amax_scale) {
      amax_scale = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  std::memset(y, 0, sizeof(*y));
  if (amax_scale == 0) return;
  // int8 sub-block scales: the largest maps to -128 (d may be negative), as in llama.cpp.
  const float iscale = -128.0f / max_scale;
  y->d = f32_to_f16(1.0f / iscale);
  for (int j = 0; j < QK_K / 16; ++j) {
    y->scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
  }
  uint8_t L[QK_K];
  const float d = f16_to_f32(y->d);
  for (int j = 0; j < QK_K / 16; ++j) {
    const float s = d * y->scales[j];
    for (int i = 0; i < 16; ++i) {
      const int l = s != 0 ? std::clamp(nearest_int(x[16 * j + i] / s), -32, 31) : 0;
      L[16 * j + i] = static_cast<uint8_t>(l + 32);
    }
  }
  // Per 128 values: ql[0..31] low nibbles = values 0..31, high = 64..95; ql[32..63] low =
  // 32..63, high = 96..127; qh[l] holds the top 2 bits of values l, l+32, l+64, l+96.
  uint8_t* ql = y->ql;
  uint8_t* qh = y->qh;
  for (int j = 0; j < QK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t* v = L + j + l;
      ql[l] = static_cast<uint8_t>((v[0] & 0xF) | ((v[64] & 0xF) << 4));
      ql[l + 32] = static_cast<uint8_t>((v[32] & 0xF) | ((v[96] & 0xF) << 4));
      qh[l] = static_cast<uint8_t>((v[0] >> 4) | ((v[32] >> 4) << 2) | ((v[64] >> 4) << 4) |
                                   ((v[96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

}  // namespace

// ---------------------------------------------------------------- f16 / bf16 --

float f16_to_f32(f16_bits h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F;
  const uint32_t mant = h & 0x3FF;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in f32
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return bits_f32(sign | f32_bits(v));
  }
  if (exp == 31) return bits_f32(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

f16_bits f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  x &= 0x7FFFFFFF;
  if (x >= 0x7F800000) {  // inf, or NaN kept quiet with the top payload bits
    if (x == 0x7F800000) return static_cast<f16_bits>(sign | 0x7C00);
    return static_cast<f16_bits>(sign | 0x7E00 | ((x >> 13) & 0x3FF));
  }
  if (x >= 0x477FF000) return static_cast<f16_bits>(sign | 0x7C00);  // >= 65520 rounds to inf
  if (x >= 0x38800000) {  // normal f16 range: rebias the exponent, round 13 dropped bits
    const uint32_t r = x - 0x38000000;
    uint32_t h = r >> 13;
    const uint32_t rem = r & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
    return static_cast<f16_bits>(sign | h);
  }
  const uint32_t exp = x >> 23;
  if (exp < 102) return static_cast<f16_bits>(sign);  // below half the smallest subnormal
  // Subnormal f16: value / 2^-24 = mant * 2^(exp - 126), with mant including the hidden bit.
  const uint32_t mant = (x & 0x7FFFFF) | 0x800000;
  const uint32_t shift = 126 - exp;  // 14..24
  uint32_t h = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1))) ++h;
  return static_cast<f16_bits>(sign | h);
}

float bf16_to_f32(bf16_bits h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

bf16_bits f32_to_bf16(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<bf16_bits>((x >> 16) | 0x40);  // NaN
  return static_cast<bf16_bits>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

// ------------------------------------------------------------------- Q4_0 --

void quantize_row_q4_0_ref(const float* x, block_q4_0* y, int64_t n) {
  for (int64_t b = 0; b < n / QK4_0; ++b, x += QK4_0) {
    float amax = 0, vmax = 0;  // the value of largest magnitude, with its sign
    for (int j = 0; j < QK4_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        vmax = x[j];
      }
    }
    const float d = vmax / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      // x/d lies in [-8, 8]; +8.5 then truncation rounds half up into 0..16, clamped to 15.
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int q1 =
          std::min(15, static_cast<int>(static_cast<int8_t>(x[j + QK4_0 / 2] * id + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / QK4_0; ++b, y += QK4_0) {
    const float d = f16_to_f32(x[b].d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      y[j] = ((x[b].qs[j] & 0x0F) - 8) * d;
      y[j + QK4_0 / 2] = ((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

// ------------------------------------------------------------------- Q8_0 --

void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int j = 0; j < QK8_0; ++j) y[b].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / QK8_0; ++b, y += QK8_0) {
    const float d = f16_to_f32(x[b].d);
    for (int j = 0; j < QK8_0; ++j) y[j] = x[b].qs[j] * d;
  }
}

// ------------------------------------------------------------------- Q4_K --

void quantize_row_q4_K_ref(const float* x, block_q4_K* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b) quantize_q4_K_block(x + b * QK_K, y + b);
}

void dequantize_row_q4_K(const block_q4_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const uint8_t* q = x[b].qs;
    const float d = f16_to_f32(x[b].d);
    const float dmin = f16_to_f32(x[b].dmin);
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
      uint8_t sc, m;
      get_scale_min_k4(is, x[b].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      get_scale_min_k4(is + 1, x[b].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

// ------------------------------------------------------------------- Q5_K --

void quantize_row_q5_K_ref(const float* x, block_q5_K* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b) quantize_q5_K_block(x + b * QK_K, y + b);
}

void dequantize_row_q5_K(const block_q5_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const uint8_t* q = x[b].qs;
    const uint8_t* qh = x[b].qh;
    const float d = f16_to_f32(x[b].d);
    const float dmin = f16_to_f32(x[b].dmin);
    uint8_t bit1 = 1, bit2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32, bit1 <<= 2, bit2 <<= 2) {
      uint8_t sc, m;
      get_scale_min_k4(is, x[b].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      get_scale_min_k4(is + 1, x[b].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((q[l] & 0xF) + (qh[l] & bit1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((q[l] >> 4) + (qh[l] & bit2 ? 16 : 0)) - m2;
    }
  }
}

// ------------------------------------------------------------------- Q6_K --

void quantize_row_q6_K_ref(const float* x, block_q6_K* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b) quantize_q6_K_block(x + b * QK_K, y + b);
}

void dequantize_row_q6_K(const block_q6_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = f16_to_f32(x[b].d);
    const uint8_t* ql = x[b].ql;
    const uint8_t* qh = x[b].qh;
    const int8_t* sc = x[b].scales;
    for (int part = 0; part < QK_K; part += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

// ------------------------------------------------------------------- Q8_K --

void quantize_row_q8_K_ref(const float* x, block_q8_K* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    float amax = 0, vmax = 0;
    for (int j = 0; j < QK_K; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        vmax = x[j];
      }
    }
    if (amax == 0) {
      std::memset(&y[b], 0, sizeof(y[b]));
      continue;
    }
    // The largest magnitude maps to -127 (so d has the opposite sign of that value).
    const float iscale = -127.0f / vmax;
    for (int j = 0; j < QK_K; ++j) {
      y[b].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    }
    for (int g = 0; g < QK_K / 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += y[b].qs[16 * g + i];
      y[b].bsums[g] = static_cast<int16_t>(sum);
    }
    y[b].d = 1 / iscale;
  }
}

void dequantize_row_q8_K(const block_q8_K* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, y += QK_K) {
    for (int j = 0; j < QK_K; ++j) y[j] = x[b].d * x[b].qs[j];
  }
}

// ---------------------------------------------------------------- generic --

void quantize_row(TensorType t, const float* x, void* dst, int64_t n) {
  switch (t) {
    case TensorType::F32:
      std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::F16: {
      auto* y = static_cast<f16_bits*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(x[i]);
      return;
    }
    case TensorType::BF16: {
      auto* y = static_cast<bf16_bits*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
      return;
    }
    case TensorType::Q4_0:
      return quantize_row_q4_0_ref(x, static_cast<block_q4_0*>(dst), n);
    case TensorType::Q8_0:
      return quantize_row_q8_0_ref(x, static_cast<block_q8_0*>(dst), n);
    case TensorType::Q4_K:
      return quantize_row_q4_K_ref(x, static_cast<block_q4_K*>(dst), n);
    case TensorType::Q5_K:
      return quantize_row_q5_K_ref(x, static_cast<block_q5_K*>(dst), n);
    case TensorType::Q6_K:
      return quantize_row_q6_K_ref(x, static_cast<block_q6_K*>(dst), n);
    case TensorType::Q8_K:
      return quantize_row_q8_K_ref(x, static_cast<block_q8_K*>(dst), n);
    default:
      unsupported("quantize_row", t);
  }
}

void dequantize_row(TensorType t, const void* src, float* y, int64_t n) {
  switch (t) {
    case TensorType::F32:
      std::memcpy(y, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::F16: {
      const auto* x = static_cast<const f16_bits*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(x[i]);
      return;
    }
    case TensorType::BF16: {
      const auto* x = static_cast<const bf16_bits*>(src);
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
      return;
    }
    case TensorType::Q4_0:
      return dequantize_row_q4_0(static_cast<const block_q4_0*>(src), y, n);
    case TensorType::Q8_0:
      return dequantize_row_q8_0(static_cast<const block_q8_0*>(src), y, n);
    case TensorType::Q4_K:
      return dequantize_row_q4_K(static_cast<const block_q4_K*>(src), y, n);
    case TensorType::Q5_K:
      return dequantize_row_q5_K(static_cast<const block_q5_K*>(src), y, n);
    case TensorType::Q6_K:
      return dequantize_row_q6_K(static_cast<const block_q6_K*>(src), y, n);
    case TensorType::Q8_K:
      return dequantize_row_q8_K(static_cast<const block_q8_K*>(src), y, n);
    default:
      unsupported("dequantize_row", t);
  }
}

}  // namespace qgemma
