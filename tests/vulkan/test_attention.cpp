// flash_attn shader against flash_attn_ref (kernels/attention): sliding window, causal,
// bidirectional groups, GQA and MQA, head 256 and 512, F16 and Q8_0 KV, ring-ordered slots with
// empty ones, and a query that sees nothing (zeros); whole and split-KV (parts merged by
// fa_combine, a ragged last part, parts that see nothing).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
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

struct Config {
  const char* name;
  int head_dim, n_head, n_kv_head, n_q, n_kv;
  TensorType kv;
  int32_t window;
  float scale;
  bool groups;
  bool slot_major;  // [slot][kv_head][d] instead of [kv_head][slot][d]
};

void run(const Config& c, uint32_t seed, uint32_t n_split = 1) {
  Device& dev = test_device();
  std::mt19937 rng(seed);
  const size_t row = row_size(c.kv, c.head_dim);
  // Cache: positions 0..n_kv-1 placed in shuffled slots (a ring), a few slots empty (-1).
  std::vector<int32_t> kv_pos(c.n_kv);
  std::iota(kv_pos.begin(), kv_pos.end(), 0);
  std::shuffle(kv_pos.begin(), kv_pos.end(), rng);
  for (int j = 0; j < c.n_kv; j += 17) kv_pos[j] = -1;
  // Queries: the last n_q positions, plus one placed before every cached position (sees none).
  std::vector<int32_t> q_pos(c.n_q);
  for (int i = 0; i < c.n_q; ++i) q_pos[i] = c.n_kv - c.n_q + i;
  if (!c.groups && c.n_q > 2) q_pos[1] = -5;
  // Groups: queries 0 and 2 in group 7 with some slots (incl. later positions); others -1.
  std::vector<int32_t> q_group(c.n_q, -1), kv_group(c.n_kv, -1);
  if (c.groups) {
    q_group[0] = 7;
    if (c.n_q > 2) q_group[2] = 7;
    for (int j = 0; j < c.n_kv; ++j)
      if (kv_pos[j] >= c.n_kv - 20) kv_group[j] = 7;
    q_pos[0] = c.n_kv - 20;  // earlier than most group members: only the group makes them visible
  }

  const std::vector<float> q = random_floats((size_t)c.n_q * c.n_head * c.head_dim, seed + 1);
  // K, V rows (random floats converted to the cache type), both layouts via strides.
  const size_t k_stride_slot = c.slot_major ? row * c.n_kv_head : row;
  const size_t k_stride_head = c.slot_major ? row : row * c.n_kv;
  std::vector<uint8_t> k(row * c.n_kv * c.n_kv_head), v(k.size());
  for (auto* buf : {&k, &v}) {
    const std::vector<float> src = random_floats((size_t)c.n_kv * c.n_kv_head * c.head_dim,
                                                 seed + (buf == &k ? 2 : 3), -2.0f, 2.0f);
    for (int j = 0; j < c.n_kv; ++j)
      for (int g = 0; g < c.n_kv_head; ++g)
        quantize_row(c.kv, src.data() + ((size_t)j * c.n_kv_head + g) * c.head_dim,
                     buf->data() + j * k_stride_slot + g * k_stride_head, c.head_dim);
  }

  FlashAttnArgs a;
  a.q = q.data();
  a.q_stride_token = (int64_t)c.n_head * c.head_dim;
  a.q_stride_head = c.head_dim;
  a.q_pos = q_pos.data();
  a.q_group = c.groups ? q_group.data() : nullptr;
  a.n_q = c.n_q;
  a.n_head = c.n_head;
  a.n_kv_head = c.n_kv_head;
  a.head_dim = c.head_dim;
  a.k_type = a.v_type = c.kv;
  a.k = k.data();
  a.v = v.data();
  a.k_stride_slot = a.v_stride_slot = k_stride_slot;
  a.k_stride_head = a.v_stride_head = k_stride_head;
  a.kv_pos = kv_pos.data();
  a.kv_group = c.groups ? kv_group.data() : nullptr;
  a.n_kv = c.n_kv;
  a.window = c.window;
  a.scale = c.scale;
  std::vector<float> want(q.size(), 1234.0f);
  a.out = want.data();
  a.out_stride_token = a.q_stride_token;
  a.out_stride_head = a.q_stride_head;
  ASSERT_TRUE(flash_attn_args_valid(a));
  flash_attn_ref(a, 0, c.n_q, 0, c.n_head);

  Buffer qb = to_gpu(q), kb = to_gpu(k), vb = to_gpu(v), qpb = to_gpu(q_pos), kpb = to_gpu(kv_pos),
         qgb = to_gpu(q_group), kgb = to_gpu(kv_group);
  Buffer ob = gpu_zeros(q.size() * 4);
  FlashAttnParams p;
  p.q = qb;
  p.q_stride_token = a.q_stride_token;
  p.q_stride_head = a.q_stride_head;
  p.q_pos = qpb;
  if (c.groups) p.q_group = qgb, p.kv_group = kgb;
  p.n_q = c.n_q;
  p.n_head = c.n_head;
  p.n_kv_head = c.n_kv_head;
  p.head_dim = c.head_dim;
  p.kv_type = c.kv;
  p.k = kb;
  p.v = vb;
  p.k_stride_slot = p.v_stride_slot = k_stride_slot;
  p.k_stride_head = p.v_stride_head = k_stride_head;
  p.kv_pos = kpb;
  p.n_kv = c.n_kv;
  p.window = c.window;
  p.scale = c.scale;
  p.out = ob;
  p.out_stride_token = a.out_stride_token;
  p.out_stride_head = a.out_stride_head;
  p.n_split = n_split;
  Buffer part1, part2;
  if (n_split > 1) {
    part1 = gpu_zeros(flash_attn_partial_bytes(c.n_q, c.n_head, c.head_dim, n_split));
    part2 = gpu_zeros(flash_attn_partial_bytes(c.n_q, c.n_head, c.head_dim, n_split));
    p.partials = part1;
  }
  Recorder rec(dev);
  flash_attn(rec, p);
  // The same with the Q8 copy of the output (the decoder's fused quantization for the output
  // projection): its words must be quantize_q8's of the float output it wrote.
  const uint32_t K = (uint32_t)a.out_stride_token;
  Buffer ob2 = gpu_zeros(q.size() * 4), xq = gpu_zeros(q8_activation_bytes(K, c.n_q)),
         xq_ref = gpu_zeros(q8_activation_bytes(K, c.n_q));
  FlashAttnParams p2 = p;
  p2.out = ob2;
  p2.out_q8 = xq;
  if (n_split > 1) p2.partials = part2;
  flash_attn(rec, p2);
  quantize_q8(rec, ob2, xq_ref, K, c.n_q);
  rec.submit_and_wait();
  // Split: flash_attn + fa_combine per call; else one dispatch per call.
  EXPECT_EQ(rec.dispatches(), n_split > 1 ? 5u : 3u) << c.name;
  const std::vector<float> got = from_gpu<float>(ob, q.size());
  {
    const size_t words = q8_activation_bytes(K, c.n_q) / 4;
    const std::vector<uint32_t> gq = from_gpu<uint32_t>(xq, words),
                                wq = from_gpu<uint32_t>(xq_ref, words);
    int bad = 0;
    for (size_t i = 0; i < words && bad < 5; ++i) {
      if (gq[i] != wq[i]) {
        ADD_FAILURE() << c.name << ": q8 word " << i << " got " << gq[i] << " want " << wq[i];
        ++bad;
      }
    }
    const std::vector<float> got2 = from_gpu<float>(ob2, q.size());
    for (size_t i = 0; i < got2.size() && bad < 5; ++i) {
      if (!(std::fabs(got2[i] - want[i]) <= 2e-4f)) {
        ADD_FAILURE() << c.name << " (q8 out): element " << i << " got " << got2[i] << " want "
                      << want[i];
        ++bad;
      }
    }
  }

  // Outputs are convex combinations of V values in [-2, 2]; f32 rounding of long dot
  // products and exponentials: 2e-4 absolute.
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i) {
    if (!(std::fabs(got[i] - want[i]) <= 2e-4f)) {
      ADD_FAILURE() << c.name << ": element " << i << " (query " << i / a.q_stride_token << ") got "
                    << got[i] << " want " << want[i];
      ++bad;
    }
  }
  if (!c.groups && c.n_q > 2) {  // query 1 sees nothing
    for (int d = 0; d < c.n_head * c.head_dim; ++d) ASSERT_EQ(got[a.q_stride_token + d], 0.0f);
  }
}

TEST(VulkanFlashAttn, SlidingGqaF16Head256) {
  run({"sliding gqa f16 256", 256, 4, 2, 4, 150, TensorType::F16, 64, 0.0625f, false, false}, 1);
}

TEST(VulkanFlashAttn, GlobalMqaQ8Head512) {
  run({"global mqa q8_0 512", 512, 4, 1, 3, 90, TensorType::Q8_0, 0, 0.05f, false, false}, 2);
}

TEST(VulkanFlashAttn, CausalQ8Head256SlotMajor) {
  run({"causal q8_0 256 slot-major", 256, 2, 2, 5, 70, TensorType::Q8_0, 0, 0.0625f, false, true},
      3);
}

TEST(VulkanFlashAttn, BidirectionalGroupsF16Head512) {
  run({"groups f16 512", 512, 2, 1, 3, 80, TensorType::F16, 16, 0.05f, true, false}, 4);
}

TEST(VulkanFlashAttn, ScaleOneLikeGemma4) {
  // Gemma 4 uses scale 1.0 (QK-norm keeps scores small); random data gives peaky softmaxes.
  run({"scale 1", 256, 2, 1, 2, 40, TensorType::F16, 0, 1.0f, false, false}, 5);
}

// Split-KV: 64-slot tiles, so 150 slots in 3 parts (64, 64, 22) and 90 in 2; the sliding
// window (64) leaves the first parts without a visible slot for the later queries.
TEST(VulkanFlashAttn, SplitKvSlidingGqaF16Head256) {
  run({"split sliding gqa f16 256", 256, 4, 2, 4, 150, TensorType::F16, 64, 0.0625f, false, false},
      11, 3);
}

TEST(VulkanFlashAttn, SplitKvGlobalMqaQ8Head512) {
  run({"split global mqa q8_0 512", 512, 4, 1, 1, 90, TensorType::Q8_0, 0, 0.05f, false, false}, 12,
      2);
}

TEST(VulkanFlashAttn, SplitKvBidirectionalGroupsF16Head512) {
  run({"split groups f16 512", 512, 2, 1, 3, 200, TensorType::F16, 16, 0.05f, true, false}, 13, 4);
}

TEST(VulkanFlashAttn, SplitCountFollowsWork) {
  // Prefill-sized batches and short caches: one part; one decoding token over a long cache:
  // parts of at least 256 slots, about 256 workgroups, at most the configured maximum.
  EXPECT_EQ(flash_attn_splits(512, 16, 4096), 1u);
  EXPECT_EQ(flash_attn_splits(1, 16, 300), 1u);
  EXPECT_EQ(flash_attn_splits(1, 16, 600), 2u);
  EXPECT_EQ(flash_attn_splits(1, 16, 32768), 16u);
  EXPECT_EQ(flash_attn_splits(4, 16, 32768), 4u);
  set_flash_attn_max_splits(1);
  EXPECT_EQ(flash_attn_splits(1, 16, 32768), 1u);
  set_flash_attn_max_splits(64);
  EXPECT_EQ(flash_attn_partial_bytes(1, 16, 512, 16), 16u * 16 * 514 * 4);
}

}  // namespace
}  // namespace qgemma::vk
