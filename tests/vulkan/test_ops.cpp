// Row and element-wise shaders against the scalar references of kernels/ops/ops.h: rms_norm
// (weight / no weight / per head), layer_norm, rope (standard and proportional tables, NeoX and
// interleaved), GeGLU, softcap, add/mul/scale, softmax, argmax, get_rows (every table format).
// Ragged sizes: rows not a multiple of the workgroup, odd lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/ops/ops.h"
#include "kernels/quant/quant.h"
#include "runtime/vulkan/ops.h"
#include "vulkan/vk_fixture.h"

namespace qgemma::vk {
namespace {

using testing::from_gpu;
using testing::gpu_zeros;
using testing::random_floats;
using testing::test_device;
using testing::to_gpu;

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want, float abs_tol,
                     float rel_tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i) {
    const float bound = abs_tol + rel_tol * std::fabs(want[i]);
    if (!(std::fabs(got[i] - want[i]) <= bound)) {
      ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << want[i];
      ++bad;
    }
  }
}

TEST(VulkanOps, RmsNorm) {
  Device& dev = test_device();
  const uint32_t n = 300, rows = 5, head_dim = 96, heads = 7;
  const std::vector<float> x = random_floats(n * rows, 1, -3, 3), w = random_floats(n, 2);
  Buffer xb = to_gpu(x), wb = to_gpu(w), yb = gpu_zeros(x.size() * 4), y2 = gpu_zeros(x.size() * 4);
  // Per head (shared weight of head_dim) and no weight, on a [heads x head_dim] input.
  const std::vector<float> xh = random_floats(heads * head_dim, 3, -3, 3),
                           wh = random_floats(head_dim, 4);
  Buffer xhb = to_gpu(xh), whb = to_gpu(wh), yhb = gpu_zeros(xh.size() * 4),
         ynb = gpu_zeros(xh.size() * 4);
  Recorder rec(dev);
  rms_norm(rec, xb, wb, yb, n, rows, 1e-6f);
  rms_norm(rec, xhb, whb, yhb, head_dim, heads, 1e-6f);
  rms_norm(rec, xhb, View{}, ynb, head_dim, heads, 1e-6f);
  rms_norm(rec, xb, wb, y2, n, rows, 1e-6f);
  rms_norm(rec, y2, wb, y2, n, rows, 1e-6f);  // in place, after the write above: a barrier
  rec.submit_and_wait();
  std::vector<float> want(x.size()), want2(x.size()), wh_ref(xh.size()), wn_ref(xh.size());
  for (uint32_t r = 0; r < rows; ++r) {
    rmsnorm_f32_ref(x.data() + r * n, w.data(), want.data() + r * n, n, 1e-6f);
    rmsnorm_f32_ref(want.data() + r * n, w.data(), want2.data() + r * n, n, 1e-6f);
  }
  rmsnorm_heads_f32_ref(xh.data(), wh.data(), wh_ref.data(), heads, head_dim, 1e-6f);
  rmsnorm_heads_f32_ref(xh.data(), nullptr, wn_ref.data(), heads, head_dim, 1e-6f);
  expect_near_all(from_gpu<float>(yb, x.size()), want, 1e-5f, 1e-5f, "rms_norm");
  expect_near_all(from_gpu<float>(yhb, xh.size()), wh_ref, 1e-5f, 1e-5f, "rms_norm per head");
  expect_near_all(from_gpu<float>(ynb, xh.size()), wn_ref, 1e-5f, 1e-5f, "rms_norm no weight");
  expect_near_all(from_gpu<float>(y2, x.size()), want2, 1e-5f, 1e-5f, "rms_norm in place");
}

TEST(VulkanOps, LayerNorm) {
  Device& dev = test_device();
  const uint32_t n = 333, rows = 3;
  const std::vector<float> x = random_floats(n * rows, 5, -2, 4), w = random_floats(n, 6),
                           b = random_floats(n, 7);
  Buffer xb = to_gpu(x), wb = to_gpu(w), bb = to_gpu(b);
  Buffer y1 = gpu_zeros(x.size() * 4), y2 = gpu_zeros(x.size() * 4);
  Recorder rec(dev);
  layer_norm(rec, xb, wb, bb, y1, n, rows, 1e-5f);
  layer_norm(rec, xb, View{}, View{}, y2, n, rows, 1e-5f);
  rec.submit_and_wait();
  std::vector<float> w1(x.size()), w2(x.size());
  for (uint32_t r = 0; r < rows; ++r) {
    layernorm_f32_ref(x.data() + r * n, w.data(), b.data(), w1.data() + r * n, n, 1e-5f);
    layernorm_f32_ref(x.data() + r * n, nullptr, nullptr, w2.data() + r * n, n, 1e-5f);
  }
  expect_near_all(from_gpu<float>(y1, x.size()), w1, 2e-5f, 1e-5f, "layer_norm");
  expect_near_all(from_gpu<float>(y2, x.size()), w2, 2e-5f, 1e-5f, "layer_norm plain");
}

// Standard RoPE (head 256, theta 1e4) and Gemma 4's proportional global RoPE (head 512,
// theta 1e6, 64 of 256 pairs rotating), NeoX pairing; plus interleaved pairing.
TEST(VulkanOps, Rope) {
  Device& dev = test_device();
  struct Case {
    uint32_t head_dim, heads, n_rot;
    float theta;
    bool neox;
  } cases[] = {{256, 3, 256, 1e4f, true}, {512, 2, 64, 1e6f, true}, {64, 2, 64, 1e4f, false}};
  const std::vector<int32_t> pos = {0, 1, 7, 1023, 5000, 131071};
  const uint32_t tokens = (uint32_t)pos.size();
  for (const Case& c : cases) {
    const uint32_t pairs = c.head_dim / 2;
    std::vector<float> inv_freq(pairs);
    rope_inv_freq(inv_freq.data(), pairs, c.theta, c.head_dim, c.n_rot, nullptr);
    const std::vector<float> x = random_floats((size_t)tokens * c.heads * c.head_dim, c.head_dim);
    std::vector<float> want = x;
    std::vector<float> cs(pairs), sn(pairs);
    for (uint32_t t = 0; t < tokens; ++t) {
      rope_angles_f32_ref(inv_freq.data(), pairs, (float)pos[t], cs.data(), sn.data());
      float* xt = want.data() + (size_t)t * c.heads * c.head_dim;
      if (c.neox) {
        rope_neox_f32_ref(xt, c.heads, c.head_dim, cs.data(), sn.data());
      } else {
        rope_interleaved_f32_ref(xt, c.heads, c.head_dim, cs.data(), sn.data());
      }
    }
    Buffer xb = to_gpu(x), pb = to_gpu(pos), fb = to_gpu(inv_freq), yb = gpu_zeros(x.size() * 4);
    Recorder rec(dev);
    rope(rec, xb, pb, fb, yb, tokens, c.heads, c.head_dim, c.neox);
    rope(rec, xb, pb, fb, xb, tokens, c.heads, c.head_dim, c.neox);  // in place
    rec.submit_and_wait();
    // Angles up to 1.3e5 rad: the f32 angle is exact input; cos/sin after range reduction
    // agree to ~1e-5 (relative to the angle's ulp, 2^-7 at 1.3e5, both sides use the same f32).
    const std::string what =
        "rope " + std::to_string(c.head_dim) + (c.neox ? " neox" : " interleaved");
    expect_near_all(from_gpu<float>(yb, x.size()), want, 5e-5f, 0, what);
    expect_near_all(from_gpu<float>(xb, x.size()), want, 5e-5f, 0, what + " in place");
  }
}

TEST(VulkanOps, GegluSoftcapBinary) {
  Device& dev = test_device();
  const uint32_t n = 1000, rows = 3;
  // gate and up as the two halves of one [rows x 2n] buffer (a fused gate|up projection).
  const std::vector<float> gu = random_floats((size_t)rows * 2 * n, 11, -12, 12);
  const std::vector<float> a = random_floats(n * rows, 12, -100, 100),
                           b = random_floats(n * rows, 13);
  Buffer gub = to_gpu(gu), ab = to_gpu(a), bb = to_gpu(b);
  Buffer glu_y = gpu_zeros((size_t)n * rows * 4), cap_y = gpu_zeros(a.size() * 4),
         add_y = gpu_zeros(a.size() * 4), mul_y = gpu_zeros(a.size() * 4),
         bc_y = gpu_zeros(a.size() * 4), sc_y = gpu_zeros(a.size() * 4);
  Device& d = dev;
  Recorder rec(d);
  geglu(rec, View(gub), View(gub, (size_t)n * 4), glu_y, n, rows, 2 * n, 2 * n, n);
  softcap(rec, ab, cap_y, n * rows, 30.0f);
  add(rec, ab, bb, add_y, n * rows);
  mul(rec, ab, bb, mul_y, n * rows);
  mul(rec, ab, bb, bc_y, n * rows, n);  // b's first row broadcast over rows
  scale(rec, ab, sc_y, n * rows, 0.37f);
  rec.submit_and_wait();
  EXPECT_EQ(rec.barriers(), 0u) << "independent dispatches need no barrier";

  std::vector<float> g_ref((size_t)n * rows), cap_ref(a.size()), add_ref(a.size()),
      mul_ref(a.size()), bc_ref(a.size()), sc_ref(a.size());
  for (uint32_t r = 0; r < rows; ++r) {
    geglu_tanh_f32_ref(gu.data() + (size_t)r * 2 * n, gu.data() + (size_t)r * 2 * n + n,
                       g_ref.data() + (size_t)r * n, n);
    mul_f32_ref(a.data() + (size_t)r * n, b.data(), bc_ref.data() + (size_t)r * n, n);
  }
  softcap_f32_ref(a.data(), cap_ref.data(), a.size(), 30.0f);
  add_f32_ref(a.data(), b.data(), add_ref.data(), a.size());
  mul_f32_ref(a.data(), b.data(), mul_ref.data(), a.size());
  scale_f32_ref(a.data(), 0.37f, sc_ref.data(), a.size());
  expect_near_all(from_gpu<float>(glu_y, g_ref.size()), g_ref, 1e-5f, 1e-5f, "geglu");
  expect_near_all(from_gpu<float>(cap_y, a.size()), cap_ref, 1e-5f, 1e-5f, "softcap");
  expect_near_all(from_gpu<float>(add_y, a.size()), add_ref, 0, 0, "add");
  expect_near_all(from_gpu<float>(mul_y, a.size()), mul_ref, 0, 0, "mul");
  expect_near_all(from_gpu<float>(bc_y, a.size()), bc_ref, 0, 0, "mul broadcast");
  expect_near_all(from_gpu<float>(sc_y, a.size()), sc_ref, 0, 0, "scale");
}

TEST(VulkanOps, SoftmaxArgmax) {
  Device& dev = test_device();
  const uint32_t n = 2049, rows = 4;
  std::vector<float> x = random_floats((size_t)n * rows, 21, -8, 8);
  x[1 * n + 5] = 50.0f;                                   // row 1: a clear maximum
  x[2 * n + 100] = x[2 * n + 2000] = 60.0f;               // row 2: a tie, the first index wins
  for (uint32_t i = 0; i < n; ++i) x[3 * n + i] = -1.0f;  // row 3: all equal -> 0
  Buffer xb = to_gpu(x), yb = gpu_zeros(x.size() * 4), ib = gpu_zeros(rows * 4);
  Recorder rec(dev);
  softmax(rec, xb, yb, n, rows);
  argmax(rec, xb, ib, n, rows);
  rec.submit_and_wait();
  std::vector<float> want(x.size());
  for (uint32_t r = 0; r < rows; ++r) softmax_f32_ref(x.data() + r * n, want.data() + r * n, n);
  expect_near_all(from_gpu<float>(yb, x.size()), want, 1e-7f, 1e-5f, "softmax");
  const std::vector<int32_t> idx = from_gpu<int32_t>(ib, rows);
  for (uint32_t r = 0; r < rows; ++r) {
    EXPECT_EQ(idx[r], argmax_f32_ref(x.data() + r * n, n)) << "argmax row " << r;
  }
  EXPECT_EQ(idx[2], 100);
}

TEST(VulkanOps, GetRowsAllFormats) {
  Device& dev = test_device();
  const std::vector<int32_t> ids = {3, 0, 9, 3, 5};
  const uint32_t n_rows = 10;
  for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K,
                       TensorType::F16, TensorType::BF16, TensorType::F32}) {
    // Odd n_cols for the float types (tail path), one block or more for the quantized ones.
    const uint32_t n_cols =
        type_traits(t).block_size == 1 ? 203 : (uint32_t)type_traits(t).block_size * 3;
    const size_t rs = row_size(t, n_cols);
    const std::vector<float> src = random_floats((size_t)n_rows * n_cols, 31);
    std::vector<uint8_t> table(rs * n_rows);
    for (uint32_t r = 0; r < n_rows; ++r)
      quantize_row(t, src.data() + (size_t)r * n_cols, table.data() + r * rs, n_cols);
    Buffer tb = to_gpu(table), idb = to_gpu(ids), yb = gpu_zeros(ids.size() * n_cols * 4);
    Recorder rec(dev);
    get_rows(rec, t, tb, idb, yb, n_cols, (uint32_t)ids.size(), 61.96773f);
    rec.submit_and_wait();
    std::vector<float> want(ids.size() * n_cols);
    for (size_t i = 0; i < ids.size(); ++i)
      get_row_f32(t, table.data(), ids[i], n_cols, want.data() + i * n_cols, 61.96773f);
    expect_near_all(from_gpu<float>(yb, want.size()), want, 1e-5f, 1e-6f,
                    "get_rows " + std::string(type_traits(t).name));
  }
}

// kv_store writes exactly the bytes the CPU cache writes (f32_to_f16 with round-to-nearest-even,
// quantize_row_q8_0): ties, subnormals, overflow and random values. The rounding of the driver's
// packHalf2x16 is implementation-defined, so the shader must not depend on it.
TEST(VulkanOps, KvStoreBytesMatchCpu) {
  Device& dev = test_device();
  const uint32_t head_dim = 64, n_kv_head = 2, tokens = 3;
  std::vector<float> src = random_floats((size_t)tokens * n_kv_head * head_dim, 41);
  // Exact f16 ties (1 + k/2048 + 1/4096 lies halfway between two f16 values), values that round
  // up past a binade, subnormals, zero and the overflow edge.
  const float specials[] = {1.0f + 1.0f / 4096,
                            1.0f + 3.0f / 4096,
                            -1.0f - 5.0f / 4096,
                            2047.5f,
                            65519.0f,
                            65520.0f,
                            -7e-6f,
                            3e-8f,
                            0.0f,
                            1.99951171875f + 1.0f / 8192};
  for (size_t i = 0; i < sizeof specials / sizeof specials[0]; ++i) src[3 * i] = specials[i];
  const std::vector<int32_t> slots = {2, 0, 3};
  const uint32_t capacity = 4;
  for (TensorType t : {TensorType::F16, TensorType::Q8_0}) {
    const size_t row = row_size(t, head_dim);
    const size_t bytes = row * capacity * n_kv_head;
    std::vector<uint8_t> want(bytes, 0);
    for (uint32_t tok = 0; tok < tokens; ++tok) {
      for (uint32_t g = 0; g < n_kv_head; ++g) {
        const float* s = src.data() + ((size_t)tok * n_kv_head + g) * head_dim;
        uint8_t* d = want.data() + ((size_t)g * capacity + slots[tok]) * row;
        if (t == TensorType::F16) {
          for (uint32_t i = 0; i < head_dim; ++i) {
            const f16_bits h = f32_to_f16(s[i]);
            std::memcpy(d + 2 * i, &h, 2);
          }
        } else {
          quantize_row_q8_0_ref(s, reinterpret_cast<block_q8_0*>(d), head_dim);
        }
      }
    }
    Buffer sb = to_gpu(src), slb = to_gpu(slots), cache = gpu_zeros(bytes);
    Recorder rec(dev);
    kv_store(rec, t, sb, slb, cache, tokens, n_kv_head, head_dim, (uint32_t)row,
             (uint32_t)(row * capacity));
    rec.submit_and_wait();
    const std::vector<uint8_t> got = from_gpu<uint8_t>(cache, bytes);
    int bad = 0;
    for (size_t i = 0; i < bytes && bad < 5; ++i) {
      if (got[i] != want[i]) {
        ADD_FAILURE() << type_traits(t).name << " byte " << i << " got " << int(got[i]) << " want "
                      << int(want[i]);
        ++bad;
      }
    }
  }
}

}  // namespace
}  // namespace qgemma::vk
