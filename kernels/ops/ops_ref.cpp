// Scalar references of the float ops (kernels/ops/ops.h): the ground truth the vectorized
// variants are tested against. Sums are accumulated in double so the reference is as close to
// the exact result as float inputs allow.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/ops/ops.h"
#include "kernels/ops/ops_internal.h"
#include "kernels/quant/quant.h"

namespace qgemma {

void rmsnorm_f32_ref(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float r = static_cast<float>(1.0 / std::sqrt(ss / double(n) + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = w ? x[i] * r * w[i] : x[i] * r;
}

void rmsnorm_heads_f32_ref(const float* x, const float* w, float* y, int64_t n_heads,
                           int64_t head_dim, float eps) {
  for (int64_t h = 0; h < n_heads; ++h) {
    rmsnorm_f32_ref(x + h * head_dim, w, y + h * head_dim, head_dim, eps);
  }
}

void layernorm_f32_ref(const float* x, const float* w, const float* b, float* y, int64_t n,
                       float eps) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / double(n);
  double var = 0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  const double r = 1.0 / std::sqrt(var / double(n) + eps);
  for (int64_t i = 0; i < n; ++i) {
    float v = static_cast<float>((x[i] - mean) * r);
    if (w) v *= w[i];
    if (b) v += b[i];
    y[i] = v;
  }
}

void rope_angles_f32_ref(const float* inv_freq, int64_t n_pairs, float pos, float* cos_out,
                         float* sin_out) {
  for (int64_t i = 0; i < n_pairs; ++i) {
    const float angle = pos * inv_freq[i];
    cos_out[i] = static_cast<float>(std::cos(double(angle)));
    sin_out[i] = static_cast<float>(std::sin(double(angle)));
  }
}

void rope_neox_f32_ref(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                       const float* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = a * sin[i] + b * cos[i];
    }
  }
}

void rope_interleaved_f32_ref(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                              const float* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * cos[i] - b * sin[i];
      v[2 * i + 1] = a * sin[i] + b * cos[i];
    }
  }
}

namespace {
float gelu_tanh_one(float x) {
  const double k = 0.7978845608028654;  // sqrt(2 / pi)
  const double u = k * (double(x) + 0.044715 * double(x) * x * x);
  return static_cast<float>(0.5 * x * (1.0 + std::tanh(u)));
}
}  // namespace

void gelu_tanh_f32_ref(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh_one(x[i]);
}

void geglu_tanh_f32_ref(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh_one(gate[i]) * up[i];
}

void softcap_f32_ref(const float* x, float* y, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] = static_cast<float>(cap * std::tanh(double(x[i]) / cap));
  }
}

void softmax_f32_ref(const float* x, float* y, int64_t n) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = std::exp(double(x[i]) - mx);
    y[i] = static_cast<float>(e);
    sum += e;
  }
  const double inv = 1.0 / sum;
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(y[i] * inv);
}

void add_f32_ref(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void mul_f32_ref(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void scale_f32_ref(const float* x, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = s * x[i];
}

void add_scaled_f32_ref(const float* x, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += s * x[i];
}

int64_t argmax_f32_ref(const float* x, int64_t n) {
  int64_t best = 0;
  while (best < n && std::isnan(x[best])) ++best;
  if (best == n) return 0;
  for (int64_t i = best + 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}

// f32 -> f16 of a row, bit for bit what f32_to_f16 gives (round to nearest even): a branch-free
// pass for values in the normal f16 range, which the compiler vectorizes, then f32_to_f16 for
// the rare others (zeros, subnormals, overflow, inf, NaN).
void f32_to_f16_row_ref(const float* x, f16_bits* y, int64_t n) {
  uint32_t special = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    const uint32_t a = b & 0x7FFFFFFFu;
    const uint32_t r = a - 0x38000000u;  // rebias the exponent (127 - 15) << 23
    y[i] = static_cast<f16_bits>(((b >> 16) & 0x8000u) | ((r + 0xFFFu + ((r >> 13) & 1u)) >> 13));
    special |= static_cast<uint32_t>(a - 0x38800000u >= 0x477FF000u - 0x38800000u);
  }
  if (!special) return;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, 4);
    const uint32_t a = b & 0x7FFFFFFFu;
    if (a - 0x38800000u >= 0x477FF000u - 0x38800000u) y[i] = f32_to_f16(x[i]);
  }
}

const OpsKernels* ops_kernels_ref() {
  static const OpsKernels k = {
      rmsnorm_f32_ref,       rmsnorm_heads_f32_ref,    layernorm_f32_ref, rope_angles_f32_ref,
      rope_neox_f32_ref,     rope_interleaved_f32_ref, gelu_tanh_f32_ref, geglu_tanh_f32_ref,
      softcap_f32_ref,       softmax_f32_ref,          add_f32_ref,       mul_f32_ref,
      scale_f32_ref,         add_scaled_f32_ref,       argmax_f32_ref,    quantize_row_q8_0_ref,
      quantize_row_q8_K_ref, f32_to_f16_row_ref,
  };
  return &k;
}

}  // namespace qgemma
