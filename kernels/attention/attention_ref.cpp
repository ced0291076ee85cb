// Scalar flash attention: the ground truth of every optimized variant, plus the split-K combine
// and the argument check shared by all variants.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/attention/attention.h"
#include "kernels/quant/quant.h"

namespace qgemma {

namespace {

// Element d of a K or V row (head_dim values of `type`).
float row_elem(TensorType type, const char* row, int d) {
  if (type == TensorType::F16) return f16_to_f32(reinterpret_cast<const f16_bits*>(row)[d]);
  const block_q8_0& b = reinterpret_cast<const block_q8_0*>(row)[d / QK8_0];
  return f16_to_f32(b.d) * (float)b.qs[d % QK8_0];
}

// Online softmax of query i, head h over slots [kv0, kv1): state (m, l, acc[head_dim]).
void attend_one(const FlashAttnArgs& a, int i, int h, int64_t kv0, int64_t kv1, float* m_out,
                float* l_out, float* acc) {
  const int g = h / (a.n_head / a.n_kv_head);
  const float* q = a.q + i * a.q_stride_token + h * a.q_stride_head;
  const char* kbase = static_cast<const char*>(a.k) + g * a.k_stride_head;
  const char* vbase = static_cast<const char*>(a.v) + g * a.v_stride_head;
  float m = -std::numeric_limits<float>::infinity();
  float l = 0.0f;
  for (int d = 0; d < a.head_dim; ++d) acc[d] = 0.0f;
  for (int64_t j = kv0; j < kv1; ++j) {
    if (!flash_attn_visible(a, i, j)) continue;
    const char* krow = kbase + j * a.k_stride_slot;
    const char* vrow = vbase + j * a.v_stride_slot;
    float s = 0.0f;
    for (int d = 0; d < a.head_dim; ++d) s += q[d] * row_elem(a.k_type, krow, d);
    s *= a.scale;
    // Rescale the running state when the max grows, so every exponent is <= 0.
    float p = 1.0f;
    if (s > m) {
      const float c = std::exp(m - s);
      l *= c;
      for (int d = 0; d < a.head_dim; ++d) acc[d] *= c;
      m = s;
    } else {
      p = std::exp(s - m);
    }
    l += p;
    for (int d = 0; d < a.head_dim; ++d) acc[d] += p * row_elem(a.v_type, vrow, d);
  }
  *m_out = m;
  *l_out = l;
}

}  // namespace

bool flash_attn_args_valid(const FlashAttnArgs& a) {
  auto kv_ok = [](TensorType t) { return t == TensorType::F16 || t == TensorType::Q8_0; };
  return a.q && a.q_pos && a.kv_pos && a.k && a.v && a.out && a.n_q >= 0 && a.n_kv >= 0 &&
         a.n_head > 0 && a.n_kv_head > 0 && a.n_head % a.n_kv_head == 0 && a.head_dim > 0 &&
         a.head_dim % QK8_0 == 0 && a.head_dim <= kFlashAttnMaxHeadDim && kv_ok(a.k_type) &&
         kv_ok(a.v_type);
}

void flash_attn_partial_ref(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                            int64_t kv1, float* partial) {
  const int64_t stride = flash_attn_partial_stride(a.head_dim);
  for (int i = q0; i < q1; ++i) {
    for (int h = h0; h < h1; ++h) {
      float* p = partial + ((int64_t)i * a.n_head + h) * stride;
      attend_one(a, i, h, kv0, kv1, &p[0], &p[1], p + 2);
    }
  }
}

void flash_attn_ref(const FlashAttnArgs& a, int q0, int q1, int h0, int h1) {
  for (int i = q0; i < q1; ++i) {
    for (int h = h0; h < h1; ++h) {
      float* o = a.out + i * a.out_stride_token + h * a.out_stride_head;
      float m, l;
      attend_one(a, i, h, 0, a.n_kv, &m, &l, o);
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      for (int d = 0; d < a.head_dim; ++d) o[d] *= inv;
    }
  }
}

void flash_attn_combine(const FlashAttnArgs& a, int q0, int q1, int h0, int h1,
                        const float* const* partials, int n_split) {
  const int64_t stride = flash_attn_partial_stride(a.head_dim);
  for (int i = q0; i < q1; ++i) {
    for (int h = h0; h < h1; ++h) {
      const int64_t off = ((int64_t)i * a.n_head + h) * stride;
      float* o = a.out + i * a.out_stride_token + h * a.out_stride_head;
      float m = -std::numeric_limits<float>::infinity();
      for (int s = 0; s < n_split; ++s) m = std::max(m, partials[s][off]);
      for (int d = 0; d < a.head_dim; ++d) o[d] = 0.0f;
      if (m == -std::numeric_limits<float>::infinity()) continue;  // nothing visible
      float l = 0.0f;
      for (int s = 0; s < n_split; ++s) {
        const float* p = partials[s] + off;
        if (p[0] == -std::numeric_limits<float>::infinity()) continue;
        const float c = std::exp(p[0] - m);
        l += c * p[1];
        for (int d = 0; d < a.head_dim; ++d) o[d] += c * p[2 + d];
      }
      const float inv = 1.0f / l;
      for (int d = 0; d < a.head_dim; ++d) o[d] *= inv;
    }
  }
}

}  // namespace qgemma
