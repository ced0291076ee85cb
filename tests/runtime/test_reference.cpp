// End to end: the C++ engine against an independent NumPy forward pass
// (scripts/reference/gemma4_ref.py, written from the spec) on synthetic Gemma 4 files with every
// layer type (5 sliding + 1 global, K=V, proportional RoPE, layer scalars, softcap).
//
// Tolerances (relative error = max |c++ - ref| / max |ref| per position, over every position):
//   - F32 weights: the reference rounds K and V to f16 like the engine's cache, so what remains
//     is float32 vs float64 arithmetic, plus values that sit on an f16 rounding boundary and round
//     the other way in one of them (a 1-ulp f16 difference: 2^-11). Bound: 2e-4.
//   - F16 / BF16 weights: the same arithmetic as F32 (activations stay f32). Bound: 2e-4.
//   - Q8_0 / Q4_0 / Q4_K / Q5_K weights: the engine also quantizes activations to 8 bits before
//     each int8 matmul (the reference keeps them f64): Q8_0 blocks of 32 for Q4_0/Q8_0, Q8_K blocks
//     of 256 for the K-quants. Rounding to a step of max|x|/127 gives a relative RMS error of about
//     (max/rms) / (127 sqrt(12)) per element: ~0.5% for blocks of 32 (max/rms ~ 2.5), ~0.8% for
//     blocks of 256 (max/rms ~ 3.5). Seven matmuls a layer over six layers, partly averaged by
//     the norms, measured 2.4% (Q8_0 activations) and 3.8% (Q8_K; Q5_K 3.6%) relative L2 on
//     the logits.
//     Bounds: 3.5% and 5.5% (relative L2 per position), and the top token agrees at >= 80% of
//     the positions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "loader/gguf.h"
#include "runtime/session.h"
#include "runtime/synth.h"

namespace qgemma {
namespace {

const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_reference_tmp";
const std::string kScript = std::string(QGEMMA_SOURCE_DIR) + "/scripts/reference/gemma4_ref.py";
const std::vector<int32_t> kPrompt = {2,   105, 300, 417, 512, 640, 700, 801, 900, 1000, 1, 5,
                                      106, 222, 333, 444, 555, 666, 777, 888, 999, 123,  7};

bool have_numpy() {
  return std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") == 0;
}

std::string make_model(const std::string& type_name) {
  std::system(("mkdir -p " + kDir).c_str());
  const std::string path = kDir + "/tiny_" + type_name + ".gguf";
  SynthOptions o;
  o.preset = "tiny";
  EXPECT_TRUE(parse_weight_type(type_name, &o.type));
  synth_write(path, o);
  return path;
}

std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

// Runs the NumPy reference; returns its logits [tokens x vocab] and the printed token ids.
std::vector<float> run_reference(const std::string& model, const std::vector<int32_t>& tokens,
                                 int generate, std::vector<int32_t>* printed) {
  const std::string out = model + ".ref.f32", ids = model + ".ref.txt";
  const std::string cmd = "/usr/bin/python3 " + kScript + " " + model + " --kv-f16 --tokens " +
                          join(tokens) + " --out " + out + " --generate " +
                          std::to_string(generate) + " > " + ids;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream f(out, std::ios::binary | std::ios::ate);
  std::vector<float> v(static_cast<size_t>(f.tellg()) / sizeof(float));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  if (printed) {
    std::ifstream t(ids);
    std::string line;
    std::getline(t, line);
    size_t at = 0;
    while (at < line.size()) {
      const size_t comma = line.find(',', at);
      printed->push_back(std::stoi(line.substr(at, comma - at)));
      at = comma == std::string::npos ? line.size() : comma + 1;
    }
  }
  return v;
}

struct Errors {
  double max_rel = 0;     // max over positions of max|a-b| / max|b|
  double max_rel_l2 = 0;  // max over positions of ||a-b|| / ||b||
  int argmax_agree = 0;
  int64_t non_finite = 0;  // engine logits that are NaN or inf
};

Errors compare(const std::vector<float>& a, const std::vector<float>& b, int64_t vocab) {
  Errors e;
  EXPECT_EQ(a.size(), b.size());
  const int64_t n = static_cast<int64_t>(std::min(a.size(), b.size())) / vocab;
  for (int64_t t = 0; t < n; ++t) {
    double max_d = 0, max_b = 0, d2 = 0, b2 = 0;
    int64_t ia = 0, ib = 0;
    for (int64_t j = 0; j < vocab; ++j) {
      const double x = a[t * vocab + j], y = b[t * vocab + j];
      e.non_finite += !std::isfinite(x);
      max_d = std::max(max_d, std::fabs(x - y));
      max_b = std::max(max_b, std::fabs(y));
      d2 += (x - y) * (x - y);
      b2 += y * y;
      if (x > a[t * vocab + ia]) ia = j;
      if (y > b[t * vocab + ib]) ib = j;
    }
    e.max_rel = std::max(e.max_rel, max_d / max_b);
    e.max_rel_l2 = std::max(e.max_rel_l2, std::sqrt(d2 / b2));
    e.argmax_agree += ia == ib;
  }
  EXPECT_EQ(e.non_finite, 0);
  return e;
}

std::vector<float> engine_logits(const std::string& path, const std::vector<int32_t>& tokens,
                                 int64_t batch) {
  auto m = Model::load(path);
  SessionOptions so;
  so.n_ctx = 256;
  so.n_batch = batch;
  so.n_threads = 2;
  Session s(*m, so);
  return s.eval_all(tokens);
}

class ReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy is needed (python3-numpy)";
  }
};

TEST_F(ReferenceTest, F32LogitsMatchAtEveryPosition) {
  const std::string path = make_model("f32");
  const int64_t vocab = synth_preset("tiny").n_vocab;
  const auto ref = run_reference(path, kPrompt, 0, nullptr);
  // Batches of 5 exercise the sliding ring (window 8) across batch boundaries.
  for (int64_t batch : {int64_t{512}, int64_t{5}}) {
    const Errors e = compare(engine_logits(path, kPrompt, batch), ref, vocab);
    EXPECT_LT(e.max_rel, 2e-4) << "batch " << batch;
    EXPECT_EQ(e.argmax_agree, static_cast<int>(kPrompt.size())) << "batch " << batch;
  }
}

TEST_F(ReferenceTest, QuantizedLogitsWithinQuantizationTolerance) {
  const int64_t vocab = synth_preset("tiny").n_vocab;
  for (const char* type : {"q8_0", "q4_0", "q4_k", "q5_k", "bf16", "f16"}) {
    const std::string path = make_model(type);
    const auto ref = run_reference(path, kPrompt, 0, nullptr);
    const Errors e = compare(engine_logits(path, kPrompt, 512), ref, vocab);
    const bool float_weights = std::string(type) == "bf16" || std::string(type) == "f16";
    std::printf("%-5s max rel %.3g, rel L2 %.3g, top-1 agrees at %d of %zu positions\n", type,
                e.max_rel, e.max_rel_l2, e.argmax_agree, kPrompt.size());
    const bool q8_k_acts = std::string(type) == "q4_k" || std::string(type) == "q5_k";
    EXPECT_LT(e.max_rel_l2, float_weights ? 2e-4 : q8_k_acts ? 5.5e-2 : 3.5e-2) << type;
    EXPECT_GE(e.argmax_agree, static_cast<int>(kPrompt.size()) * 8 / 10) << type;
  }
}

// Greedy decoding one token at a time (the decode path: GEMV, KV cache growing past the sliding
// window) gives the same tokens as the reference's full recomputation.
TEST_F(ReferenceTest, GreedyGenerationGolden) {
  const std::string path = make_model("f32");
  const std::vector<int32_t> prompt(kPrompt.begin(), kPrompt.begin() + 6);
  const int n_gen = 16;
  std::vector<int32_t> ref_ids;
  run_reference(path, prompt, n_gen, &ref_ids);
  ASSERT_EQ(ref_ids.size(), prompt.size() + n_gen);

  auto m = Model::load(path);
  SessionOptions so;
  so.n_ctx = 64;
  so.n_batch = 4;
  so.n_threads = 2;
  Session s(*m, so);
  std::vector<int32_t> ids = prompt;
  auto logits = s.eval(prompt, 1);
  for (int i = 0; i < n_gen; ++i) {
    int32_t best = 0;
    for (int32_t j = 1; j < m->config().n_vocab; ++j) best = logits[j] > logits[best] ? j : best;
    ids.push_back(best);
    logits = s.eval(std::span<const int32_t>(&ids.back(), 1), 1);
  }
  EXPECT_EQ(ids, ref_ids);
}

}  // namespace
}  // namespace qgemma
