// The float ops of ops.h written once over xsimd batches, instantiated per ISA by
// ops_avx2.cpp (fma3<avx2>), ops_avx512.cpp (avx512bw) and ops_neon.cpp (neon64). Include only
// from those files: everything here has internal linkage so that code compiled with one ISA's
// flags is never shared with another translation unit.
#pragma once

#include <cmath>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "kernels/ops/ops.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

template <class A>
using fvec = xsimd::batch<float, A>;

template <class A>
constexpr int64_t kLanes = static_cast<int64_t>(fvec<A>::size);

template <class A>
fvec<A> loadu(const float* p) {
  return fvec<A>::load_unaligned(p);
}

// Sum of squares with two accumulators (enough to hide the FMA latency at these row lengths).
template <class A>
float sum_squares(const float* x, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  fvec<A> acc0(0.0f), acc1(0.0f);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    const fvec<A> a = loadu<A>(x + i), b = loadu<A>(x + i + N);
    acc0 = xsimd::fma(a, a, acc0);
    acc1 = xsimd::fma(b, b, acc1);
  }
  for (; i + N <= n; i += N) {
    const fvec<A> a = loadu<A>(x + i);
    acc0 = xsimd::fma(a, a, acc0);
  }
  float s = xsimd::hadd(acc0 + acc1);
  for (; i < n; ++i) s += x[i] * x[i];
  return s;
}

template <class A>
void rmsnorm_simd(const float* x, const float* w, float* y, int64_t n, float eps) {
  constexpr int64_t N = kLanes<A>;
  const float r = 1.0f / std::sqrt(sum_squares<A>(x, n) / static_cast<float>(n) + eps);
  const fvec<A> vr(r);
  int64_t i = 0;
  if (w) {
    for (; i + N <= n; i += N) (loadu<A>(x + i) * vr * loadu<A>(w + i)).store_unaligned(y + i);
    for (; i < n; ++i) y[i] = x[i] * r * w[i];
  } else {
    for (; i + N <= n; i += N) (loadu<A>(x + i) * vr).store_unaligned(y + i);
    for (; i < n; ++i) y[i] = x[i] * r;
  }
}

template <class A>
void rmsnorm_heads_simd(const float* x, const float* w, float* y, int64_t n_heads, int64_t head_dim,
                        float eps) {
  for (int64_t h = 0; h < n_heads; ++h) {
    rmsnorm_simd<A>(x + h * head_dim, w, y + h * head_dim, head_dim, eps);
  }
}

template <class A>
void layernorm_simd(const float* x, const float* w, const float* b, float* y, int64_t n,
                    float eps) {
  constexpr int64_t N = kLanes<A>;
  fvec<A> acc(0.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) acc += loadu<A>(x + i);
  float sum = xsimd::hadd(acc);
  for (; i < n; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(n);
  const fvec<A> vmean(mean);
  acc = fvec<A>(0.0f);
  for (i = 0; i + N <= n; i += N) {
    const fvec<A> d = loadu<A>(x + i) - vmean;
    acc = xsimd::fma(d, d, acc);
  }
  float var = xsimd::hadd(acc);
  for (; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float r = 1.0f / std::sqrt(var / static_cast<float>(n) + eps);
  const fvec<A> vr(r);
  for (i = 0; i + N <= n; i += N) {
    fvec<A> v = (loadu<A>(x + i) - vmean) * vr;
    if (w) v *= loadu<A>(w + i);
    if (b) v += loadu<A>(b + i);
    v.store_unaligned(y + i);
  }
  for (; i < n; ++i) {
    float v = (x[i] - mean) * r;
    if (w) v *= w[i];
    if (b) v += b[i];
    y[i] = v;
  }
}

template <class A>
void rope_neox_simd(float* x, int64_t n_heads, int64_t head_dim, const float* cos,
                    const float* sin) {
  constexpr int64_t N = kLanes<A>;
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* lo = x + h * head_dim;
    float* hi = lo + half;
    int64_t i = 0;
    for (; i + N <= half; i += N) {
      const fvec<A> a = loadu<A>(lo + i), b = loadu<A>(hi + i);
      const fvec<A> c = loadu<A>(cos + i), s = loadu<A>(sin + i);
      xsimd::fms(a, c, b * s).store_unaligned(lo + i);
      xsimd::fma(a, s, b * c).store_unaligned(hi + i);
    }
    for (; i < half; ++i) {
      const float a = lo[i], b = hi[i];
      lo[i] = a * cos[i] - b * sin[i];
      hi[i] = a * sin[i] + b * cos[i];
    }
  }
}

// gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3):
// one exp instead of a tanh; exp overflowing to inf for very negative x gives the right -0.
template <class A>
fvec<A> gelu_tanh_vec(fvec<A> x) {
  const fvec<A> k2(-2.0f * 0.7978845608028654f), c(0.044715f), one(1.0f);
  const fvec<A> u2 = k2 * xsimd::fma(c * x, x * x, x);
  return x / (one + xsimd::exp(u2));
}

template <class A>
float gelu_tanh_scalar(float x) {
  const float u2 = -2.0f * 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + std::exp(u2));
}

template <class A>
void gelu_tanh_simd(const float* x, float* y, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  int64_t i = 0;
  for (; i + N <= n; i += N) gelu_tanh_vec<A>(loadu<A>(x + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = gelu_tanh_scalar<A>(x[i]);
}

template <class A>
void geglu_tanh_simd(const float* gate, const float* up, float* y, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    (gelu_tanh_vec<A>(loadu<A>(gate + i)) * loadu<A>(up + i)).store_unaligned(y + i);
  }
  for (; i < n; ++i) y[i] = gelu_tanh_scalar<A>(gate[i]) * up[i];
}

template <class A>
void softcap_simd(const float* x, float* y, int64_t n, float cap) {
  constexpr int64_t N = kLanes<A>;
  const fvec<A> vcap(cap), vinv(1.0f / cap);
  int64_t i = 0;
  for (; i + N <= n; i += N) (vcap * xsimd::tanh(loadu<A>(x + i) * vinv)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = cap * std::tanh(x[i] / cap);
}

template <class A>
float max_value(const float* x, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  int64_t i = 0;
  float m = x[0];
  if (n >= N) {
    fvec<A> vm = loadu<A>(x);
    for (i = N; i + N <= n; i += N) vm = xsimd::max(vm, loadu<A>(x + i));
    alignas(64) float lanes[N];
    vm.store_aligned(lanes);
    for (int64_t l = 0; l < N; ++l) m = m > lanes[l] ? m : lanes[l];
  }
  for (; i < n; ++i) m = m > x[i] ? m : x[i];
  return m;
}

template <class A>
void softmax_simd(const float* x, float* y, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  const float mx = max_value<A>(x, n);
  const fvec<A> vmx(mx);
  fvec<A> acc(0.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const fvec<A> e = xsimd::exp(loadu<A>(x + i) - vmx);
    e.store_unaligned(y + i);
    acc += e;
  }
  float sum = xsimd::hadd(acc);
  for (; i < n; ++i) {
    y[i] = std::exp(x[i] - mx);
    sum += y[i];
  }
  const float inv = 1.0f / sum;
  const fvec<A> vinv(inv);
  for (i = 0; i + N <= n; i += N) (loadu<A>(y + i) * vinv).store_unaligned(y + i);
  for (; i < n; ++i) y[i] *= inv;
}

template <class A>
void add_simd(const float* a, const float* b, float* y, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  int64_t i = 0;
  for (; i + N <= n; i += N) (loadu<A>(a + i) + loadu<A>(b + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = a[i] + b[i];
}

template <class A>
void mul_simd(const float* a, const float* b, float* y, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  int64_t i = 0;
  for (; i + N <= n; i += N) (loadu<A>(a + i) * loadu<A>(b + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = a[i] * b[i];
}

template <class A>
void scale_simd(const float* x, float s, float* y, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  const fvec<A> vs(s);
  int64_t i = 0;
  for (; i + N <= n; i += N) (vs * loadu<A>(x + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = s * x[i];
}

template <class A>
void add_scaled_simd(const float* x, float s, float* y, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  const fvec<A> vs(s);
  int64_t i = 0;
  for (; i + N <= n; i += N)
    xsimd::fma(vs, loadu<A>(x + i), loadu<A>(y + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] += s * x[i];
}

// Two passes: the maximum (bailing out to the reference when a NaN is present, whose rules
// the vector max does not follow), then the first index holding it.
template <class A>
int64_t argmax_simd(const float* x, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  int64_t i = 0;
  float m = x[0];
  bool nan = false;
  if (n >= N) {
    fvec<A> vm = loadu<A>(x);
    xsimd::batch_bool<float, A> vnan = xsimd::isnan(vm);
    for (i = N; i + N <= n; i += N) {
      const fvec<A> v = loadu<A>(x + i);
      vnan = vnan | xsimd::isnan(v);
      vm = xsimd::max(vm, v);
    }
    nan = xsimd::any(vnan);
    alignas(64) float lanes[N];
    vm.store_aligned(lanes);
    for (int64_t l = 0; l < N; ++l) m = m > lanes[l] ? m : lanes[l];
  }
  for (; i < n; ++i) {
    nan = nan || x[i] != x[i];
    m = m > x[i] ? m : x[i];
  }
  if (nan) return argmax_f32_ref(x, n);
  const fvec<A> vm(m);
  for (i = 0; i + N <= n; i += N) {
    if (xsimd::any(loadu<A>(x + i) == vm)) break;
  }
  for (; i < n; ++i) {
    if (x[i] == m) return i;
  }
  return 0;
}

// Largest |x| of one quantization block (kBlock a multiple of the vector width).
template <class A, int64_t kBlock>
float abs_max(const float* x) {
  constexpr int64_t N = kLanes<A>;
  static_assert(kBlock % N == 0);
  fvec<A> vm(0.0f);
  for (int64_t i = 0; i < kBlock; i += N) vm = xsimd::max(vm, xsimd::abs(loadu<A>(x + i)));
  alignas(64) float lanes[N];
  vm.store_aligned(lanes);
  float m = 0;
  for (int64_t l = 0; l < N; ++l) m = m > lanes[l] ? m : lanes[l];
  return m;
}

// roundf (half away from zero) on lanes: t + (|v - t| >= 0.5 ? sign(v) : 0), exact in float.
template <class A>
fvec<A> round_half_away(fvec<A> v) {
  const fvec<A> t = xsimd::trunc(v);
  const fvec<A> step = xsimd::copysign(fvec<A>(1.0f), v);
  return t + xsimd::select(xsimd::abs(v - t) >= fvec<A>(0.5f), step, fvec<A>(0.0f));
}

template <class A>
void quantize_q8_0_simd(const float* x, block_q8_0* y, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  static_assert(QK8_0 % N == 0);
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    const float amax = abs_max<A, QK8_0>(x);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    const fvec<A> vid(id);
    alignas(64) int32_t q[QK8_0];
    for (int64_t j = 0; j < QK8_0; j += N) {
      xsimd::to_int(round_half_away<A>(loadu<A>(x + j) * vid)).store_aligned(q + j);
    }
    for (int j = 0; j < QK8_0; ++j) y[b].qs[j] = static_cast<int8_t>(q[j]);
  }
}

template <class A>
void quantize_q8_K_simd(const float* x, block_q8_K* y, int64_t n) {
  constexpr int64_t N = kLanes<A>;
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    const float amax = abs_max<A, QK_K>(x);
    if (amax == 0) {
      y[b] = block_q8_K{};
      continue;
    }
    // The first element of largest magnitude, with its sign (as the reference picks it).
    float vmax = 0;
    for (int j = 0; j < QK_K; ++j) {
      if (std::fabs(x[j]) == amax) {
        vmax = x[j];
        break;
      }
    }
    const float iscale = -127.0f / vmax;
    const fvec<A> vs(iscale), cap(127.0f);
    alignas(64) int32_t q[QK_K];
    for (int64_t j = 0; j < QK_K; j += N) {
      const fvec<A> v = xsimd::min(xsimd::nearbyint(loadu<A>(x + j) * vs), cap);
      xsimd::to_int(v).store_aligned(q + j);
    }
    for (int g = 0; g < QK_K / 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) {
        y[b].qs[16 * g + i] = static_cast<int8_t>(q[16 * g + i]);
        sum += q[16 * g + i];
      }
      y[b].bsums[g] = static_cast<int16_t>(sum);
    }
    y[b].d = 1 / iscale;
  }
}

template <class A>
OpsKernels make_ops_kernels() {
  return OpsKernels{
      rmsnorm_simd<A>,       rmsnorm_heads_simd<A>,    layernorm_simd<A>,
      rope_angles_f32_ref,  // once per token: scalar sin/cos keep large angles exact
      rope_neox_simd<A>,     rope_interleaved_f32_ref, gelu_tanh_simd<A>, geglu_tanh_simd<A>,
      softcap_simd<A>,       softmax_simd<A>,          add_simd<A>,       mul_simd<A>,
      scale_simd<A>,         add_scaled_simd<A>,       argmax_simd<A>,    quantize_q8_0_simd<A>,
      quantize_q8_K_simd<A>, f32_to_f16_row_ref,  // the ISA files set F16C / NEON versions
  };
}

}  // namespace
}  // namespace qgemma
