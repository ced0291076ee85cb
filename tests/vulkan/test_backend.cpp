// End to end: the synthetic `tiny` and `small` Gemma 4 models (runtime/synth.h) run through the
// same graphs on the CPU backend and the Vulkan backend; logits must agree within a stated
// tolerance at every step and greedy tokens must match. Prefill is batched so that the
// sliding layers' ring cache wraps and the window masks are exercised.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kernels/ops/ops.h"
#include "runtime/cpu_backend.h"
#include "runtime/gemma4.h"
#include "runtime/kv_cache.h"
#include "runtime/planner.h"
#include "runtime/session.h"
#include "runtime/synth.h"
#include "runtime/threadpool.h"
#include "runtime/vulkan/backend.h"
#include "runtime/vulkan/ops.h"
#include "vulkan/vk_fixture.h"

namespace qgemma::vk {
namespace {

using testing::test_device;

struct Case {
  const char* preset;
  const char* type;
  float tol;  // max |cpu - gpu| over a step's logits, relative to max |logit|
  TensorType kv = TensorType::F16;
  int64_t n_batch = 4;     // > 8: prefill through mul_mm (fused norms without Q8)
  int64_t prompt_len = 0;  // 0: the 14 tokens below; else that many pseudo-random ones
  int64_t n_ctx = 64;
};

void run_case(const Case& cs) {
  Device& dev = test_device();
  const std::string path = (std::filesystem::temp_directory_path() /
                            (std::string("qgemma-vk-") + cs.preset + "-" + cs.type + "-" +
                             std::to_string(getpid()) + ".gguf"))
                               .string();
  SynthOptions so;
  so.preset = cs.preset;
  ASSERT_TRUE(parse_weight_type(cs.type, &so.type));
  synth_write(path, so);
  auto model = Model::load(path);
  std::filesystem::remove(path);
  const ModelConfig& c = model->config();
  const int64_t n_ctx = cs.n_ctx, n_batch = cs.n_batch;
  ThreadPool pool(2);
  CpuBackend cpu(c, pool);
  KvCache kv(c, n_ctx, n_batch, cs.kv);
  VulkanBackend gpu(dev, c, n_ctx, n_batch, cs.kv);

  std::vector<int32_t> tokens = {2, 105, 300, 17, 999, 42, 7, 512, 64, 3, 250, 811, 77, 5};
  if (cs.prompt_len > 0) {
    tokens.resize(cs.prompt_len);
    for (int64_t i = 14; i < cs.prompt_len; ++i)
      tokens[i] = static_cast<int32_t>((i * 7919) % 1000);
  }
  const int64_t prompt = static_cast<int64_t>(tokens.size());
  int64_t n_past = 0;
  float worst = 0;  // largest max|cpu - gpu| / max|logit| over the steps
  std::vector<float> arena;
  auto step = [&](const std::vector<int32_t>& toks) {
    const int64_t T = static_cast<int64_t>(toks.size());
    const Graph g = build_gemma4(c, model->weights(), T, 1);
    const MemoryPlan plan = plan_memory(g);
    arena.resize(plan.arena_floats);
    std::vector<int32_t> pos(T);
    for (int64_t i = 0; i < T; ++i) pos[i] = static_cast<int32_t>(n_past + i);
    const float* a = cpu.run(g, plan, arena.data(), toks.data(), pos.data(), kv);
    const std::vector<float> want(a, a + c.n_vocab);
    const float* b = gpu.run(g, plan, toks.data(), pos.data());
    const std::vector<float> got(b, b + c.n_vocab);
    n_past += T;
    float maxabs = 0, maxdiff = 0;
    for (int64_t i = 0; i < c.n_vocab; ++i) {
      maxabs = std::max(maxabs, std::fabs(want[i]));
      maxdiff = std::max(maxdiff, std::fabs(want[i] - got[i]));
    }
    worst = std::max(worst, maxdiff / maxabs);
    if (std::getenv("QGEMMA_VK_TEST_VERBOSE"))
      std::printf("step at %ld: %.2e\n", (long)n_past, maxdiff / maxabs);
    EXPECT_LE(maxdiff, cs.tol * maxabs) << cs.preset << " " << cs.type << " at position " << n_past;
    // Greedy tokens agree unless the CPU's top two are closer than the tolerance.
    const int64_t ta = argmax_f32_ref(want.data(), c.n_vocab);
    const int64_t tb = argmax_f32_ref(got.data(), c.n_vocab);
    if (ta != tb) {
      EXPECT_LE(std::fabs(want[ta] - want[tb]), 2 * cs.tol * maxabs)
          << cs.preset << " " << cs.type << ": greedy token " << tb << " instead of " << ta;
    }
    return static_cast<int32_t>(ta);
  };
  int32_t next = 0;
  for (int64_t done = 0; done < prompt; done += n_batch) {  // batched prefill
    const int64_t n = std::min(n_batch, prompt - done);
    next = step(std::vector<int32_t>(tokens.begin() + done, tokens.begin() + done + n));
  }
  for (int i = 0; i < 6; ++i) next = step({next});  // greedy decode
  EXPECT_GT(gpu.last_dispatches(), 0u);
  // Speculative-decoding style rollback: forget the last 3 positions on both, continue.
  n_past -= 3;
  kv.crop(n_past);
  gpu.crop(n_past);
  for (int i = 0; i < 2; ++i) next = step({next});
  if (cs.prompt_len >= 512) {
    // The global layers' attention over >= 512 slots runs split-KV: the same decoding step
    // unsplit has one dispatch fewer per global layer (fa_combine) and the same logits (step()
    // compares both with the CPU).
    int global = 0;
    for (const LayerConfig& l : c.layers) global += l.sliding ? 0 : 1;
    ASSERT_GT(flash_attn_splits(1, c.layers.back().n_head, static_cast<uint32_t>(n_past)), 1u);
    set_flash_attn_max_splits(1);
    const int32_t tok = next;
    next = step({tok});
    const uint32_t unsplit = gpu.last_dispatches();
    set_flash_attn_max_splits(64);
    n_past -= 1;
    kv.crop(n_past);
    gpu.crop(n_past);
    step({tok});
    EXPECT_EQ(gpu.last_dispatches(), unsplit + global);
  }
  std::printf("[ vulkan   ] %s %s kv %s: max |cpu - gpu| / max |logit| = %.2e\n", cs.preset,
              cs.type, std::string(type_traits(cs.kv).name).c_str(), worst);
}

// Fusion (VulkanBackend::fuse): the decode graph of `tiny` q4_0 (int-dot path) runs in far
// fewer dispatches and barriers than one per node, with the same logits as the unfused run up
// to rounding, and both match the CPU (run_case above runs fused).
TEST(VulkanBackend, FusedDecodeHasFewerDispatchesAndSameLogits) {
  Device& dev = test_device();
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("qgemma-vk-fuse-" + std::to_string(getpid()) + ".gguf"))
                               .string();
  SynthOptions so;
  so.preset = "tiny";
  so.type = TensorType::Q4_0;
  synth_write(path, so);
  auto model = Model::load(path);
  std::filesystem::remove(path);
  const ModelConfig& c = model->config();
  VulkanBackend fused(dev, c, 32, 4, TensorType::F16), plain(dev, c, 32, 4, TensorType::F16);
  plain.set_fusion(false);
  const std::vector<int32_t> prompt = {2, 105, 300, 17};
  std::vector<int32_t> pos = {0, 1, 2, 3};
  const Graph gp = build_gemma4(c, model->weights(), 4, 1);
  const MemoryPlan pp = plan_memory(gp);
  fused.run(gp, pp, prompt.data(), pos.data());
  plain.run(gp, pp, prompt.data(), pos.data());
  const Graph g = build_gemma4(c, model->weights(), 1, 1);
  const MemoryPlan plan = plan_memory(g);
  int32_t tok = 7;
  for (int step = 0; step < 3; ++step) {
    const int32_t p = 4 + step;
    const float* a = fused.run(g, plan, &tok, &p);
    const std::vector<float> fa(a, a + c.n_vocab);
    const float* b = plain.run(g, plan, &tok, &p);
    float maxabs = 0, maxdiff = 0;
    for (int64_t i = 0; i < c.n_vocab; ++i) {
      maxabs = std::max(maxabs, std::fabs(b[i]));
      maxdiff = std::max(maxdiff, std::fabs(fa[i] - b[i]));
    }
    EXPECT_LE(maxdiff, 5e-2f * maxabs) << "step " << step;
    tok = static_cast<int32_t>(argmax_f32_ref(fa.data(), c.n_vocab));
  }
  std::printf("[ vulkan   ] tiny q4_0 decode: %u dispatches / %u barriers fused, %u / %u plain\n",
              fused.last_dispatches(), fused.last_barriers(), plain.last_dispatches(),
              plain.last_barriers());
  // Per layer: Q/K/V, head norms + RoPE + K/V store, attention (+ Q8), O, norm chain, gate/up
  // + GeGLU, quantize, down, norm chain (with the next layer's norm) = 9, plus the embedding,
  // the first norm, the logits and the softcap.
  EXPECT_LE(fused.last_dispatches(), 9u * c.n_layer + 4);
  EXPECT_LT(2 * fused.last_dispatches(), plain.last_dispatches());
  EXPECT_LT(fused.last_barriers(), plain.last_barriers());
  // The groups: every node in exactly one, in order.
  const auto groups = fused.fuse(g);
  int next = 0;
  for (const auto& f : groups) {
    EXPECT_EQ(f.first, next);
    next += f.count;
  }
  EXPECT_EQ(next, static_cast<int>(g.nodes.size()));
}

// Float weights: the same arithmetic up to summation order.
TEST(VulkanBackend, TinyF32) { run_case({"tiny", "f32", 1e-4f}); }
// Quantized weights: both sides quantize activations to 8 bits (Q8_0 on both for Q4_0/Q8_0,
// with the same integer dot products; Q8_K on the CPU vs float on the GPU for K-quants).
// Attention's exp/dot rounding differs at ~1e-5 relative (see TinyF32); where that flips an
// activation's 8-bit rounding (a step of 1/127 of a block's range) random weights carry it
// through the layers: percent-level logit differences are expected (measured on lavapipe:
// tiny q8_0 3e-7, q4_0 1e-2, q4_k 2e-2; small q8_0 3e-2), greedy tokens still agree.
TEST(VulkanBackend, TinyQ8_0) { run_case({"tiny", "q8_0", 5e-2f}); }
TEST(VulkanBackend, TinyQ4_0) { run_case({"tiny", "q4_0", 5e-2f}); }
TEST(VulkanBackend, TinyQ4_K) { run_case({"tiny", "q4_k", 5e-2f}); }
TEST(VulkanBackend, SmallQ8_0) { run_case({"small", "q8_0", 5e-2f}); }
TEST(VulkanBackend, TinyQ4_0WithQ8_0Cache) { run_case({"tiny", "q4_0", 5e-2f, TensorType::Q8_0}); }
// Prefill batches of 12 tokens (the tiled matmul: mul_mm_q8 on integer-dot devices, mul_mm
// otherwise; norm chains and head norms + cache store fused over 12 rows), then decode.
TEST(VulkanBackend, TinyQ4_0Batch12) { run_case({"tiny", "q4_0", 5e-2f, TensorType::Q8_0, 12}); }

// Decoding over a 600-token cache: the global layers' attention runs split-KV (fa_combine).
TEST(VulkanBackend, TinyQ4_0LongCacheSplitKv) {
  run_case({"tiny", "q4_0", 5e-2f, TensorType::F16, 64, 600, 640});
}
TEST(VulkanBackend, TinyQ5_K) { run_case({"tiny", "q5_k", 5e-2f}); }

// A weight format no shader reads: the backend refuses the graph before recording anything,
// naming the tensor and its type (a tiny q5_k model whose blk.0.attn_q is relabelled Q3_K, which
// has the same block size, so only the type check can object).
TEST(VulkanBackend, RefusesAWeightTypeWithoutShader) {
  Device& dev = test_device();
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("qgemma-vk-q3k-" + std::to_string(getpid()) + ".gguf"))
                               .string();
  SynthOptions so;
  so.preset = "tiny";
  ASSERT_TRUE(parse_weight_type("q5_k", &so.type));
  synth_write(path, so);
  auto model = Model::load(path);
  std::filesystem::remove(path);
  const ModelConfig& c = model->config();
  ModelWeights w = model->weights();
  w.layers[0].wq.type = TensorType::Q3_K;
  VulkanBackend gpu(dev, c, 64, 4, TensorType::F16);
  const std::vector<int32_t> tokens = {2, 105, 300};
  const Graph g = build_gemma4(c, w, 3, 1);
  const std::vector<int32_t> pos = {0, 1, 2};
  try {
    gpu.run(g, plan_memory(g), tokens.data(), pos.data());
    ADD_FAILURE() << "Q3_K weights ran on Vulkan";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("blk.0.attn_q.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("q3_K"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace qgemma::vk
