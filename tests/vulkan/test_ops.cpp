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

// The reduction modules a test runs under: 0 (shared memory) always, 1 (subgroup) where the
// device has subgroup arithmetic.
std::vector<int> reduction_modes(const Device& dev) {
  return dev.info().subgroup_arithmetic ? std::vector<int>{0, 1} : std::vector<int>{0};
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

// The row shaders' two reduction modules (reduce.glsl: shared-memory tree; subgroupAdd/Max then
// one pass over the subgroups) against the references: rms_norm over 300 (64 threads) and 3840
// (512 threads) floats, layer_norm, softmax over a row with a clear maximum.
TEST(VulkanOps, RowReductionModulesAgreeWithReferences) {
  Device& dev = test_device();
  for (int mode : {0, 1}) {
    if (mode == 1 && !dev.info().subgroup_arithmetic) continue;
    set_subgroup_reduce(mode);
    EXPECT_EQ(subgroup_reduce_enabled(dev), mode == 1);
    const std::string what = mode ? " (subgroup)" : " (shared memory)";
    for (uint32_t n : {300u, 3840u}) {
      const uint32_t rows = 3;
      const std::vector<float> x = random_floats((size_t)n * rows, 40 + n, -3, 3),
                               w = random_floats(n, 41), b = random_floats(n, 42);
      Buffer xb = to_gpu(x), wb = to_gpu(w), bb = to_gpu(b), yr = gpu_zeros(x.size() * 4),
             yl = gpu_zeros(x.size() * 4), ys = gpu_zeros(x.size() * 4);
      Recorder rec(dev);
      rms_norm(rec, xb, wb, yr, n, rows, 1e-6f);
      layer_norm(rec, xb, wb, bb, yl, n, rows, 1e-5f);
      softmax(rec, xb, ys, n, rows);
      rec.submit_and_wait();
      std::vector<float> wr(x.size()), wl(x.size()), wsm(x.size());
      for (uint32_t r = 0; r < rows; ++r) {
        rmsnorm_f32_ref(x.data() + r * n, w.data(), wr.data() + r * n, n, 1e-6f);
        layernorm_f32_ref(x.data() + r * n, w.data(), b.data(), wl.data() + r * n, n, 1e-5f);
        softmax_f32_ref(x.data() + r * n, wsm.data() + r * n, n);
      }
      const std::string len = " n=" + std::to_string(n) + what;
      expect_near_all(from_gpu<float>(yr, x.size()), wr, 1e-5f, 1e-5f, "rms_norm" + len);
      expect_near_all(from_gpu<float>(yl, x.size()), wl, 1e-5f, 1e-4f, "layer_norm" + len);
      expect_near_all(from_gpu<float>(ys, x.size()), wsm, 1e-7f, 1e-5f, "softmax" + len);
    }
  }
  set_subgroup_reduce(-1);
}

TEST(VulkanOps, GetRowsAllFormats) {
  Device& dev = test_device();
  const std::vector<int32_t> ids = {3, 0, 9, 3, 5};
  const uint32_t n_rows = 10;
  for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K,
                       TensorType::F16, TensorType::BF16, TensorType::F32, TensorType::Q5_K}) {
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
    // The same rows, reversed, as the second tensor (V) of a two-tensor store.
    std::vector<float> src_v(src.rbegin(), src.rend());
    std::vector<uint8_t> want_v(bytes, 0);
    for (uint32_t tok = 0; tok < tokens; ++tok) {
      for (uint32_t g = 0; g < n_kv_head; ++g) {
        const float* s = src_v.data() + ((size_t)tok * n_kv_head + g) * head_dim;
        uint8_t* d = want_v.data() + ((size_t)g * capacity + slots[tok]) * row;
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
    Buffer svb = to_gpu(src_v), cache_k = gpu_zeros(bytes), cache_v = gpu_zeros(bytes);
    Recorder rec(dev);
    kv_store(rec, t, sb, slb, cache, tokens, n_kv_head, head_dim, (uint32_t)row,
             (uint32_t)(row * capacity));
    kv_store(rec, t, sb, slb, cache_k, tokens, n_kv_head, head_dim, (uint32_t)row,
             (uint32_t)(row * capacity), 0, svb, cache_v);  // K and V in one dispatch
    rec.submit_and_wait();
    EXPECT_EQ(rec.dispatches(), 2u);
    auto compare = [&](const Buffer& b, const std::vector<uint8_t>& w, const char* what) {
      const std::vector<uint8_t> got = from_gpu<uint8_t>(b, bytes);
      int bad = 0;
      for (size_t i = 0; i < bytes && bad < 5; ++i) {
        if (got[i] != w[i]) {
          ADD_FAILURE() << type_traits(t).name << " " << what << " byte " << i << " got "
                        << int(got[i]) << " want " << int(w[i]);
          ++bad;
        }
      }
    };
    compare(cache, want, "single");
    compare(cache_k, want, "pair K");
    compare(cache_v, want_v, "pair V");
  }
}

// The fused norm chain against rmsnorm_f32_ref / add / scale / quantize_row_q8_0_ref applied
// one after the other: the decoder's mid-layer (norm, add, norm, Q8), end of layer (norm, add,
// scale, norm, Q8), a plain norm + Q8, and prefill-like rows without Q8 or weights (ragged
// row lengths, rows of several workgroups' worth of elements).
void norm_chain_matches_separate_ops(Device& dev) {
  struct Case {
    uint32_t n, rows;
    bool norm1, w1, add, norm2, w2, q8;
    float s;
  } cases[] = {
      {3840, 1, true, true, true, true, true, true, 1.0f},    // 12B mid-layer
      {512, 2, true, true, true, true, true, true, 0.7f},     // end of layer, 2 columns
      {544, 3, true, true, false, false, false, true, 1.0f},  // plain norm + Q8
      {300, 5, true, false, true, true, true, false, 1.5f},   // no w1, no Q8
      {4100, 2, true, true, true, true, false, false, 1.0f},  // > 2 vec4 per thread, no w2
      {96, 4, false, false, true, true, true, true, 0.5f},    // add + scale + norm, no norm1
  };
  uint32_t seed = 300;
  for (const Case& c : cases) {
    const size_t total = (size_t)c.n * c.rows;
    const std::vector<float> x = random_floats(total, seed++, -3, 3),
                             r = random_floats(total, seed++, -2, 2),
                             w1 = random_floats(c.n, seed++, 0.5f, 1.5f),
                             w2 = random_floats(c.n, seed++, 0.5f, 1.5f);
    // Reference: the separate CPU ops.
    std::vector<float> h(total), a(total);
    for (uint32_t row = 0; row < c.rows; ++row) {
      const float* xr = x.data() + (size_t)row * c.n;
      float* hr = h.data() + (size_t)row * c.n;
      if (c.norm1) {
        rmsnorm_f32_ref(xr, c.w1 ? w1.data() : nullptr, hr, c.n, 1e-6f);
      } else {
        std::copy(xr, xr + c.n, hr);
      }
      for (uint32_t i = 0; i < c.n; ++i) {
        if (c.add) hr[i] = r[(size_t)row * c.n + i] + hr[i];
        hr[i] = c.s * hr[i];
      }
      if (c.norm2)
        rmsnorm_f32_ref(hr, c.w2 ? w2.data() : nullptr, a.data() + (size_t)row * c.n, c.n, 1e-5f);
    }
    const std::vector<float>& last = c.norm2 ? a : h;
    Buffer xb = to_gpu(x), rb = to_gpu(r), w1b = to_gpu(w1), w2b = to_gpu(w2);
    Buffer hb = gpu_zeros(total * 4), ab = gpu_zeros(total * 4);
    Buffer qb = gpu_zeros(c.q8 ? q8_activation_bytes(c.n, c.rows) : 16);
    NormChain nc;
    nc.x = xb;
    nc.norm1 = c.norm1;
    if (c.w1) nc.w1 = w1b;
    if (c.add) nc.res = rb;
    nc.s = c.s;
    nc.h = hb;
    nc.norm2 = c.norm2;
    if (c.w2) nc.w2 = w2b;
    nc.eps2 = 1e-5f;
    if (c.norm2) nc.a = ab;
    if (c.q8) nc.xq = qb;
    nc.n = c.n;
    nc.rows = c.rows;
    Recorder rec(dev);
    norm_chain(rec, nc);
    rec.submit_and_wait();
    EXPECT_EQ(rec.dispatches(), 1u);
    const std::string what = "norm_chain n=" + std::to_string(c.n);
    expect_near_all(from_gpu<float>(hb, total), h, 1e-5f, 1e-5f, what + " h");
    if (c.norm2) expect_near_all(from_gpu<float>(ab, total), a, 1e-5f, 1e-5f, what + " a");
    if (c.q8) {
      // Q8 blocks of the GPU's own float result must be exactly what quantize_q8 makes of it
      // (the same rounding rule as quantize_row_q8_0_ref); compare with a separate quantize_q8
      // dispatch over the chain's float output, word for word.
      Buffer qref = gpu_zeros(q8_activation_bytes(c.n, c.rows));
      Recorder rec2(dev);
      quantize_q8(rec2, c.norm2 ? ab : hb, qref, c.n, c.rows);
      rec2.submit_and_wait();
      const size_t words = q8_activation_bytes(c.n, c.rows) / 4;
      const std::vector<uint32_t> got = from_gpu<uint32_t>(qb, words),
                                  want = from_gpu<uint32_t>(qref, words);
      int bad = 0;
      for (size_t i = 0; i < words && bad < 5; ++i) {
        if (got[i] != want[i]) {
          ADD_FAILURE() << what << " q8 word " << i << " got " << got[i] << " want " << want[i];
          ++bad;
        }
      }
      // And the scales against the CPU's quantization of the reference floats.
      std::vector<block_q8_0> cpu(total / 32);
      for (uint32_t row = 0; row < c.rows; ++row)
        quantize_row_q8_0_ref(last.data() + (size_t)row * c.n, cpu.data() + (size_t)row * c.n / 32,
                              c.n);
      for (size_t b = 0; b < cpu.size(); ++b) {
        const float d = f16_to_f32(cpu[b].d);
        float gd;
        std::memcpy(&gd, &got[b * 10], 4);
        EXPECT_NEAR(gd, d, 1e-3f * d + 1e-7f) << what << " block " << b;
      }
    }
  }
}

// Under both reduction modules (the fused and the separate shaders switch together).
TEST(VulkanOps, NormChainMatchesSeparateOps) {
  Device& dev = test_device();
  for (int mode : reduction_modes(dev)) {
    SCOPED_TRACE(mode ? "subgroup reductions" : "shared-memory reductions");
    set_subgroup_reduce(mode);
    norm_chain_matches_separate_ops(dev);
  }
  set_subgroup_reduce(-1);
}

// Per-head norm + RoPE of Q and K and norm of V in one dispatch against rmsnorm_heads_f32_ref
// followed by rope_neox_f32_ref: Gemma 4's sliding layers (head 256, separate V) and global
// layers (head 512, proportional table, V = the K projection, no V weight), a small head of
// 64 with two tokens, and a Q-only case; outputs in place and out of place.
void head_norm_rope_matches_separate_ops(Device& dev) {
  struct Case {
    uint32_t head_dim, nq, nk, nv, tokens, n_rot;
    float theta;
    bool v_is_k, in_place;
  } cases[] = {
      {256, 4, 2, 2, 1, 256, 1e4f, false, false},
      {512, 3, 1, 1, 2, 128, 1e6f, true, false},
      {64, 5, 3, 3, 3, 64, 1e4f, false, true},
      {128, 2, 0, 0, 2, 128, 1e4f, false, false},
  };
  const std::vector<int32_t> pos = {5, 1023, 131071};
  uint32_t seed = 400;
  for (const Case& c : cases) {
    const uint32_t hd = c.head_dim, pairs = hd / 2, T = c.tokens;
    std::vector<float> inv(pairs);
    rope_inv_freq(inv.data(), pairs, c.theta, hd, c.n_rot, nullptr);
    const std::vector<float> q = random_floats((size_t)T * c.nq * hd, seed++, -3, 3),
                             k = random_floats((size_t)T * c.nk * hd, seed++, -3, 3),
                             vsep = random_floats((size_t)T * c.nv * hd, seed++, -3, 3),
                             wq = random_floats(hd, seed++, 0.5f, 1.5f),
                             wk = random_floats(hd, seed++, 0.5f, 1.5f);
    const std::vector<float>& v = c.v_is_k ? k : vsep;
    std::vector<float> qw(q.size()), kw(k.size()), vw(v.size()), cs(pairs), sn(pairs);
    for (uint32_t t = 0; t < T; ++t) {
      rmsnorm_heads_f32_ref(q.data() + (size_t)t * c.nq * hd, wq.data(),
                            qw.data() + (size_t)t * c.nq * hd, c.nq, hd, 1e-6f);
      rmsnorm_heads_f32_ref(k.data() + (size_t)t * c.nk * hd, wk.data(),
                            kw.data() + (size_t)t * c.nk * hd, c.nk, hd, 1e-6f);
      rmsnorm_heads_f32_ref(v.data() + (size_t)t * c.nv * hd, nullptr,
                            vw.data() + (size_t)t * c.nv * hd, c.nv, hd, 1e-6f);
      rope_angles_f32_ref(inv.data(), pairs, (float)pos[t], cs.data(), sn.data());
      rope_neox_f32_ref(qw.data() + (size_t)t * c.nq * hd, c.nq, hd, cs.data(), sn.data());
      rope_neox_f32_ref(kw.data() + (size_t)t * c.nk * hd, c.nk, hd, cs.data(), sn.data());
    }
    Buffer qb = to_gpu(q), kb = to_gpu(k.empty() ? std::vector<float>(4) : k),
           vb = to_gpu(vsep.empty() ? std::vector<float>(4) : vsep), wqb = to_gpu(wq),
           wkb = to_gpu(wk), pb = to_gpu(std::vector<int32_t>(pos.begin(), pos.begin() + T)),
           fb = to_gpu(inv);
    Buffer qo = gpu_zeros(q.size() * 4 + 16), ko = gpu_zeros(k.size() * 4 + 16),
           vo = gpu_zeros(v.size() * 4 + 16);
    HeadNormRope h;
    h.q = qb;
    h.k = kb;
    h.v = c.v_is_k ? kb : vb;
    h.wq = wqb;
    h.wk = wkb;
    h.pos = pb;
    h.inv_freq = fb;
    h.q_out = c.in_place ? qb : qo;
    h.k_out = c.in_place ? kb : ko;
    h.v_out = c.in_place && !c.v_is_k ? vb : vo;
    h.tokens = T;
    h.head_dim = hd;
    h.n_q_head = c.nq;
    h.n_k_head = c.nk;
    h.n_v_head = c.nv;
    const std::string what = "head_norm_rope hd=" + std::to_string(hd);
    {
      Recorder rec(dev);
      head_norm_rope(rec, h);
      rec.submit_and_wait();
      EXPECT_EQ(rec.dispatches(), 1u);
    }
    expect_near_all(from_gpu<float>(*h.q_out.buffer, q.size()), qw, 5e-5f, 1e-5f, what + " q");
    if (c.nk) {
      expect_near_all(from_gpu<float>(*h.k_out.buffer, k.size()), kw, 5e-5f, 1e-5f, what + " k");
      expect_near_all(from_gpu<float>(*h.v_out.buffer, v.size()), vw, 1e-5f, 1e-5f, what + " v");
    }
    if (!c.nk || c.in_place) continue;
    // With the K/V cache store (F16 and Q8_0; slots out of order, a ring of T + 2): the cache
    // bytes must equal kv_store's of the floats the same dispatch wrote (which are the CPU's
    // conversions, see KvStoreBytesMatchCpu).
    const std::vector<int32_t> slots = {2, 0, 4};
    Buffer slb = to_gpu(std::vector<int32_t>(slots.begin(), slots.begin() + T));
    const uint32_t cap = T + 2;
    for (TensorType kt : {TensorType::F16, TensorType::Q8_0}) {
      const size_t row = row_size(kt, hd), bytes = row * cap * c.nk;
      Buffer kc = gpu_zeros(bytes), vc = gpu_zeros(bytes), kr = gpu_zeros(bytes),
             vr = gpu_zeros(bytes), q2 = gpu_zeros(q.size() * 4), k2 = gpu_zeros(k.size() * 4),
             v2 = gpu_zeros(v.size() * 4);
      HeadNormRope hs = h;
      hs.q_out = q2;
      hs.k_out = k2;
      hs.v_out = v2;
      hs.kv_type = kt;
      hs.slots = slb;
      hs.k_cache = kc;
      hs.v_cache = vc;
      hs.stride_slot = (uint32_t)row;
      hs.stride_head = (uint32_t)(row * cap);
      Recorder rec(dev);
      head_norm_rope(rec, hs);
      kv_store(rec, kt, k2, slb, kr, T, c.nk, hd, (uint32_t)row, (uint32_t)(row * cap), 0, v2, vr);
      rec.submit_and_wait();
      expect_near_all(from_gpu<float>(k2, k.size()), kw, 5e-5f, 1e-5f, what + " k (store)");
      for (int which = 0; which < 2; ++which) {
        const std::vector<uint8_t> got = from_gpu<uint8_t>(which ? vc : kc, bytes),
                                   want = from_gpu<uint8_t>(which ? vr : kr, bytes);
        int bad = 0;
        for (size_t i = 0; i < bytes && bad < 5; ++i) {
          if (got[i] != want[i]) {
            ADD_FAILURE() << what << " " << type_traits(kt).name << (which ? " V" : " K")
                          << " cache byte " << i << " got " << int(got[i]) << " want "
                          << int(want[i]);
            ++bad;
          }
        }
      }
    }
  }
}

// Under both reduction modules (the fused and the separate shaders switch together).
TEST(VulkanOps, HeadNormRopeMatchesSeparateOps) {
  Device& dev = test_device();
  for (int mode : reduction_modes(dev)) {
    SCOPED_TRACE(mode ? "subgroup reductions" : "shared-memory reductions");
    set_subgroup_reduce(mode);
    head_norm_rope_matches_separate_ops(dev);
  }
  set_subgroup_reduce(-1);
}

}  // namespace
}  // namespace qgemma::vk
