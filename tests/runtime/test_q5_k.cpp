// Q5_K weights end to end: `synth --type q5_k` writes llama.cpp's Q5_K_M-like mix (Q5_K matrices,
// Q6_K for token_embd and the "more bits" ffn_down / attn_v layers, general.file_type 17), the
// model loads and runs on the CPU backend, and its logits follow the F32 model of the same seed.
//
// Tolerance: synth weights are uniform in [-h, h] per row, so a 32-level grid over a sub-block's
// range has a step of ~2h/31 (Q4_K: 16 levels, ~2h/15), about half Q4_K's rounding error. The
// tiny random model amplifies weight errors into the logits (and the Q8_K activations add their
// own, see test_reference.cpp): measured relative L2 against the F32 model of the same seed,
// max over 23 positions, 0.136 for Q5_K and 0.250 for Q4_K. Bounds: Q5_K below 0.17 and below
// 0.7x Q4_K's error (the fifth bit has to matter: a kernel that dropped qh would be far off),
// top-1 token the same as F32's at >= 80% of the positions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "kernels/matmul/matmul.h"
#include "loader/gguf.h"
#include "runtime/session.h"
#include "runtime/synth.h"

namespace qgemma {
namespace {

const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_q5_k_tmp";
const std::vector<int32_t> kPrompt = {2,   105, 300, 417, 512, 640, 700, 801, 900, 1000, 1, 5,
                                      106, 222, 333, 444, 555, 666, 777, 888, 999, 123,  7};

std::string make_model(const std::string& type_name) {
  std::system(("mkdir -p " + kDir).c_str());
  const std::string path = kDir + "/tiny_" + type_name + ".gguf";
  SynthOptions o;
  o.preset = "tiny";
  o.seed = 7;
  EXPECT_TRUE(parse_weight_type(type_name, &o.type));
  synth_write(path, o);
  return path;
}

std::vector<float> logits(const std::string& path, int64_t batch, bool repack = true) {
  auto m = Model::load(path, {}, repack);
  SessionOptions so;
  so.n_ctx = 128;
  so.n_batch = batch;
  so.n_threads = 2;
  Session s(*m, so);
  return s.eval_all(kPrompt);
}

// Max over positions of ||a - b|| / ||b||, and how many positions agree on the top token.
struct Diff {
  double rel_l2 = 0;
  int top1 = 0;
};

Diff compare(const std::vector<float>& a, const std::vector<float>& b, int64_t vocab) {
  Diff d;
  EXPECT_EQ(a.size(), b.size());
  for (size_t t = 0; t < a.size() / vocab; ++t) {
    double d2 = 0, b2 = 0;
    size_t ia = 0, ib = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      const double x = a[t * vocab + j], y = b[t * vocab + j];
      EXPECT_TRUE(std::isfinite(x));
      d2 += (x - y) * (x - y);
      b2 += y * y;
      if (x > a[t * vocab + ia]) ia = j;
      if (y > b[t * vocab + ib]) ib = j;
    }
    d.rel_l2 = std::max(d.rel_l2, std::sqrt(d2 / b2));
    d.top1 += ia == ib;
  }
  return d;
}

TEST(Q5K, SynthWritesTheQ5KMMix) {
  const std::string path = make_model("q5_k");
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->get_u32("general.file_type"), 17u);  // LLAMA_FTYPE_MOSTLY_Q5_K_M
  std::map<TensorType, int> count;
  for (const GgufTensor& t : f->tensors()) {
    ++count[t.type];
    if (t.name == "token_embd.weight") {
      EXPECT_EQ(t.type, TensorType::Q6_K);
    }
    if (t.name.find("ffn_gate") != std::string::npos) {
      EXPECT_EQ(t.type, TensorType::Q5_K);
    }
    if (t.name == "blk.5.ffn_down.weight") {
      EXPECT_EQ(t.type, TensorType::Q6_K);  // last eighth
    }
    if (t.name == "blk.1.ffn_down.weight") {
      EXPECT_EQ(t.type, TensorType::Q5_K);
    }
  }
  EXPECT_GT(count[TensorType::Q5_K], 0);
  EXPECT_GT(count[TensorType::Q6_K], 0);
  EXPECT_EQ(count[TensorType::Q4_K], 0);
  SynthOptions o;
  EXPECT_TRUE(parse_weight_type("Q5_K_M", &o.type));
  EXPECT_EQ(o.type, TensorType::Q5_K);
}

TEST(Q5K, LogitsFollowTheF32Model) {
  const int64_t vocab = synth_preset("tiny").n_vocab;
  const std::vector<float> f32 = logits(make_model("f32"), 512);
  const std::string q5 = make_model("q5_k");
  const Diff d4 = compare(logits(make_model("q4_k"), 512), f32, vocab);
  // Prefill in one batch, and in batches of 3 (the GEMV path, the sliding ring across batches).
  for (int64_t batch : {int64_t{512}, int64_t{3}}) {
    const Diff d5 = compare(logits(q5, batch), f32, vocab);
    std::printf("batch %3lld vs f32: q5_k rel L2 %.4f (top-1 %d of %zu), q4_k rel L2 %.4f\n",
                static_cast<long long>(batch), d5.rel_l2, d5.top1, kPrompt.size(), d4.rel_l2);
    EXPECT_LT(d5.rel_l2, 0.17) << "batch " << batch;
    EXPECT_LT(d5.rel_l2, 0.7 * d4.rel_l2) << "batch " << batch;
    EXPECT_GE(d5.top1, static_cast<int>(kPrompt.size()) * 8 / 10) << "batch " << batch;
  }
}

// Where the CPU has the repacked Q5_Kx8 kernels (AVX-512), the loader repacks the Q5_K matrices
// (so LogitsFollowTheF32Model above already runs them); elsewhere they stay Q5_K. Both layouts
// compute the same integer sums per 256-block, each matmul output differs by float summation
// order only (~1e-7 relative), but the tiny random model re-quantizes its activations to Q8_K /
// Q8_0 at every matmul, and a 1e-7 change that moves a value across a rounding boundary changes
// it by a whole quantization step: measured relative L2 between the two layouts' logits 0.026
// for this Q5_K_M mix (Q6_K files: 0.003, Q4_0: 0.011, with the older Q6_Kx8 / Q4_0x8 kernels),
// against 0.136 for either vs the F32 model. Bound: 0.06 (a kernel that dropped half the fifth bits
// measured 1.5), the same top-1 token at >= 90% of the positions.
TEST(Q5K, RepackedLayoutMatchesFileLayout) {
  const int64_t vocab = synth_preset("tiny").n_vocab;
  const std::string q5 = make_model("q5_k");
  {
    auto m = Model::load(q5);
    const Matrix& gate = m->weights().layers[0].ffn_gate;
    const TensorType want =
        should_repack(TensorType::Q5_K, gate.out, gate.in) ? TensorType::Q5_Kx8 : TensorType::Q5_K;
    EXPECT_EQ(gate.type, want);
    std::printf("ffn_gate loads as %s\n", std::string(type_traits(gate.type).name).c_str());
  }
  for (int64_t batch : {int64_t{512}, int64_t{3}}) {
    const Diff d = compare(logits(q5, batch, true), logits(q5, batch, false), vocab);
    std::printf("batch %3lld: repacked vs file layout rel L2 %.4f (top-1 %d of %zu)\n",
                static_cast<long long>(batch), d.rel_l2, d.top1, kPrompt.size());
    EXPECT_LT(d.rel_l2, 0.06) << "batch " << batch;
    EXPECT_GE(d.top1, static_cast<int>(kPrompt.size()) * 9 / 10) << "batch " << batch;
  }
}

}  // namespace
}  // namespace qgemma
