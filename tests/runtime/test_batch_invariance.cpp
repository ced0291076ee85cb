// Batch invariance (Session::set_batch_invariant, the speculative verification mode "exact"):
// a multi-token eval gives every row the logits a decoding step at that position gives, bit for
// bit, on quantized weights (repacked Q4_0 on CPUs that have the layout) and both KV types:
//  - chunks of 2..9 tokens against single-token steps over the same token sequence;
//  - across the wrap of the sliding layers' ring and the start of the split of a long cache
//    between threads
//    (one KV head, 16 query heads: the MQA path, fp16 arithmetic on CPUs with AVX512-FP16);
//  - after crops that drop verified tokens, as speculative rejections do;
//  - greedy speculative decoding in exact mode equals plain greedy on such a model, with an
//    oracle drafter that is accepted, rejected, and accepted again.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loader/gguf.h"
#include "runtime/session.h"
#include "runtime/speculative.h"
#include "runtime/synth.h"

namespace qgemma {
namespace {

const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_batch_invariance_tmp";
constexpr int kWindow = 300;

// The tiny preset with 16 query heads (one KV head on the global layer: the wide MQA path) and
// a window of 300, so that a 512-token context wraps the sliding layers' ring (300 + batch 16).
const Model& target(TensorType type) {
  static std::map<TensorType, std::unique_ptr<Model>> models;
  auto& m = models[type];
  if (!m) {
    std::system(("mkdir -p " + kDir).c_str());
    ModelConfig c = synth_preset("tiny");
    c.sliding_window = kWindow;
    for (LayerConfig& l : c.layers) l.n_head = 16;
    SynthOptions o;
    o.type = type;
    GgufWriter w;
    synth_model(c, o, w);
    const std::string p = kDir + "/tiny16_" + std::string(type_traits(type).name) + ".gguf";
    w.write(p);
    m = Model::load(p);
  }
  return *m;
}

Session make_session(const Model& m, TensorType kv, int threads) {
  SessionOptions o;
  o.n_ctx = 512;
  o.n_batch = 16;
  o.n_threads = threads;
  o.kv_type = kv;
  return Session(m, o);
}

std::vector<int32_t> tokens(int n, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((53 * i + 7 + 131 * salt) % 1000 + 2);
  return ids;
}

struct Case {
  TensorType weights, kv;
  int threads;
};

class BatchInvariance : public ::testing::TestWithParam<Case> {};

// The logits of tokens prompt.size() .. prompt.size() + seq.size() - 1, decoded one at a time.
std::vector<std::vector<float>> decode_steps(Session& s, const std::vector<int32_t>& prompt,
                                             const std::vector<int32_t>& seq) {
  std::vector<std::vector<float>> rows;
  s.eval(prompt, 1);
  for (int32_t t : seq) {
    const std::span<const float> l = s.eval(std::span<const int32_t>(&t, 1), 1);
    rows.emplace_back(l.begin(), l.end());
  }
  return rows;
}

TEST_P(BatchInvariance, ChunksAndCropsGiveTheDecodingStepsLogitsBitForBit) {
  const Case c = GetParam();
  const Model& m = target(c.weights);
  const int64_t V = m.config().n_vocab;
  // 250 prompt tokens, then 70 more: positions 250..319 cross the point where a single token's
  // pass starts splitting the global layer's cache between threads (256 slots) and the wrap of
  // the sliding layers' ring (316 slots).
  const std::vector<int32_t> prompt = tokens(250, 1), seq = tokens(70, 2);
  Session plain = make_session(m, c.kv, c.threads);
  const auto ref = decode_steps(plain, prompt, seq);

  Session s = make_session(m, c.kv, c.threads);
  s.eval(prompt, 1);
  s.set_batch_invariant(true);
  size_t at = 0;  // seq[at] is the next token to feed
  int round = 0, compared = 0;
  while (at < seq.size()) {
    const size_t n = std::min<size_t>(2 + round % 8, seq.size() - at);  // 2..9 tokens
    const std::span<const int32_t> chunk(seq.data() + at, n);
    const std::span<const float> logits = s.eval(chunk, static_cast<int64_t>(n));
    for (size_t r = 0; r < n; ++r) {
      ASSERT_EQ(0, std::memcmp(logits.data() + r * V, ref[at + r].data(), V * sizeof(float)))
          << "round " << round << ": row " << r << " of " << n << " (position "
          << prompt.size() + at + r << ") differs from the decoding step";
      ++compared;
    }
    // Keep a round-dependent prefix, as a speculative rejection does (at least one token).
    const size_t keep = n == 1 ? 1 : 1 + (round * 5) % n;
    s.crop(static_cast<int64_t>(prompt.size() + at + keep));
    at += keep;
    ++round;
  }
  EXPECT_GE(compared, 100);
  // Single tokens in invariant mode are plain decoding steps.
  const int64_t last = static_cast<int64_t>(seq.size()) - 1;
  s.crop(static_cast<int64_t>(prompt.size()) + last);
  const std::span<const float> one = s.eval(std::span<const int32_t>(seq.data() + last, 1), 1);
  EXPECT_EQ(0, std::memcmp(one.data(), ref[last].data(), V * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(Types, BatchInvariance,
                         ::testing::Values(Case{TensorType::Q4_0, TensorType::F16, 2},
                                           Case{TensorType::Q8_0, TensorType::Q8_0, 2},
                                           Case{TensorType::Q4_0, TensorType::F16, 4},
                                           Case{TensorType::Q4_K, TensorType::F16, 2},
                                           Case{TensorType::BF16, TensorType::F16, 2},
                                           Case{TensorType::F16, TensorType::F16, 2}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return std::string(type_traits(i.param.weights).name) + "_kv_" +
                                  std::string(type_traits(i.param.kv).name) + "_threads" +
                                  std::to_string(i.param.threads);
                         });

// Proposes the plain run's own continuation with a wrong token at draft index round % (k + 1).
class OracleDraft : public DraftSource {
 public:
  OracleDraft(std::vector<int32_t> full, int64_t first_pos, int64_t vocab)
      : full_(std::move(full)), first_pos_(first_pos), vocab_(vocab) {}
  void draft(const Session&, int32_t, std::span<const float>, int64_t pos, int k, Sampler*,
             std::vector<int32_t>* out, std::vector<std::vector<TokenProb>>*) override {
    out->clear();
    const int64_t i0 = pos - first_pos_;
    const int wrong = round_++ % (k + 1);
    for (int j = 0; j < k && i0 + 1 + j < static_cast<int64_t>(full_.size()); ++j) {
      int32_t t = full_[i0 + 1 + j];
      if (j == wrong) t = static_cast<int32_t>((t + 1) % vocab_);
      out->push_back(t);
    }
  }

 private:
  std::vector<int32_t> full_;
  int64_t first_pos_, vocab_;
  int round_ = 0;
};

TEST(BatchInvariance, ExactSpeculativeGreedyEqualsPlainGreedyOnQuantizedWeights) {
  const Model& m = target(TensorType::Q4_0);
  const std::vector<int32_t> prompt = tokens(260, 3);
  Session plain = make_session(m, TensorType::F16, 2);
  std::vector<int32_t> ref;
  std::span<const float> l = plain.eval(prompt, 1);
  for (int i = 0; i < 64; ++i) {
    ref.push_back(argmax(l));
    l = plain.eval(std::span<const int32_t>(&ref.back(), 1), 1);
  }
  for (int k : {3, 8}) {
    Session s = make_session(m, TensorType::F16, 2);
    OracleDraft draft(ref, static_cast<int64_t>(prompt.size()), m.config().n_vocab);
    SpeculativeOptions o;
    o.draft_max = k;
    o.adaptive = false;
    o.verify = VerifyMode::exact;
    SamplingParams sp;
    sp.temperature = 0.0f;
    SpeculativeDecoder dec(s, draft, o, sp);
    const std::vector<int32_t> out = dec.generate(prompt, 64);
    EXPECT_EQ(out, ref) << "k = " << k;
    EXPECT_EQ(dec.stats().exact_rounds, dec.stats().rounds);
    EXPECT_GT(dec.stats().accepted, 0);
    EXPECT_LT(dec.stats().accepted, dec.stats().drafted);
  }
}

}  // namespace
}  // namespace qgemma
