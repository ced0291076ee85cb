// `qgemma perplexity` end to end on tiny synthetic models: the printed perplexity equals one
// computed here from the library's logits with llama-perplexity's chunking; KL divergence of a
// model against its own base file is zero, against another quantization it equals the KL
// computed here from both models' logits; the base-file round trip and its refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "loader/tokenizer.h"
#include "runtime/perplexity.h"
#include "runtime/session.h"
#include "tools/shell_util.h"

namespace qgemma {
namespace {

const std::string& kBin = testing_util::kQgemmaBin;
const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_perplexity_tmp";
constexpr int64_t kChunk = 64;
constexpr int kChunks = 3;

using Output = testing_util::ShellOutput;
using testing_util::sh;

// A number printed after `key` in `s` (NaN when absent).
double number_after(const std::string& s, const std::string& key) {
  const size_t p = s.find(key);
  if (p == std::string::npos) return std::nan("");
  return std::strtod(s.c_str() + p + key.size(), nullptr);
}

class Perplexity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::system(("rm -rf " + kDir + " && mkdir -p " + kDir).c_str());
    for (const char* t : {"f32", "q8_0"}) {
      const Output o =
          sh(kBin + " synth -o " + kDir + "/tiny_" + t + ".gguf --preset tiny --type " + t);
      synth_ok_ = synth_ok_ && o.status == 0;
    }
    // Text: several kinds of lines, long enough for kChunks chunks of the byte-level tokens.
    std::ofstream f(kDir + "/text.txt");
    std::mt19937 rng(5);
    const char* words[] = {"the",      "model", "reads",  "weights", "once", "per",
                           "token",    "and",   "writes", "logits",  "for",  "every",
                           "position", "of",    "a",      "chunk"};
    for (int i = 0; i < 400; ++i) f << words[rng() % 16] << (i % 11 == 10 ? ".\n" : " ");
  }
  void SetUp() override {
    if (!std::ifstream(kBin).good()) GTEST_SKIP() << kBin << " is not built";
    ASSERT_TRUE(synth_ok_);
  }
  static std::string model(const char* t) { return kDir + "/tiny_" + t + ".gguf"; }

  // The chunks' tokens as the command builds them (with <bos> first in each chunk).
  static std::vector<int32_t> chunk_tokens(const Model& m) {
    std::ifstream f(kDir + "/text.txt");
    std::stringstream ss;
    ss << f.rdbuf();
    const Tokenizer tok = Tokenizer::from_gguf(m.file());
    std::vector<int32_t> t = tok.encode(ss.str(), tok.add_bos(), false);
    EXPECT_GE(static_cast<int64_t>(t.size()), kChunk * kChunks);
    t.resize(kChunk * kChunks);
    for (int c = 0; c < kChunks; ++c) t[c * kChunk] = tok.bos_id();
    return t;
  }

  // Log-probabilities (double) of every position of every chunk, each chunk from an empty cache.
  static std::vector<std::vector<double>> log_probs(const Model& m,
                                                    const std::vector<int32_t>& tokens) {
    const int64_t V = m.config().n_vocab;
    SessionOptions so;
    so.n_ctx = kChunk;
    Session s(m, so);
    std::vector<std::vector<double>> out;
    for (int c = 0; c < kChunks; ++c) {
      s.reset();
      const std::vector<float> logits = s.eval_all(
          std::span<const int32_t>(tokens.data() + c * kChunk, static_cast<size_t>(kChunk)));
      for (int64_t p = 0; p < kChunk; ++p) {
        const float* z = logits.data() + p * V;
        double mx = z[0], sum = 0;
        for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(z[v]));
        for (int64_t v = 0; v < V; ++v) sum += std::exp(z[v] - mx);
        std::vector<double> lp(V);
        for (int64_t v = 0; v < V; ++v) lp[v] = z[v] - mx - std::log(sum);
        out.push_back(std::move(lp));
      }
    }
    return out;
  }

  static bool synth_ok_;
};
bool Perplexity::synth_ok_ = true;

const std::string kArgs = " -c " + std::to_string(kChunk) + " --chunks " + std::to_string(kChunks);

TEST_F(Perplexity, MatchesLogProbsOfTheLibrary) {
  const Output o =
      sh(kBin + " perplexity -m " + model("q8_0") + " -f " + kDir + "/text.txt" + kArgs);
  ASSERT_EQ(o.status, 0) << o.out;
  const double got = number_after(o.out, "PPL = ");
  ASSERT_FALSE(std::isnan(got)) << o.out;

  auto m = Model::load(model("q8_0"));
  const std::vector<int32_t> t = chunk_tokens(*m);
  const auto lp = log_probs(*m, t);
  // llama-perplexity scores positions [n/2, n - 1) of each chunk (predicting the next token).
  double nll = 0;
  int n = 0;
  for (int c = 0; c < kChunks; ++c) {
    for (int64_t p = kChunk / 2; p < kChunk - 1; ++p) {
      nll -= lp[c * kChunk + p][t[c * kChunk + p + 1]];
      ++n;
    }
  }
  const double want = std::exp(nll / n);
  EXPECT_NEAR(got, want, 1e-3 * want) << o.out;
  EXPECT_EQ(static_cast<int>(number_after(o.out, "+/- ") >= 0), 1);
  EXPECT_NE(o.out.find("(" + std::to_string(n) + " scored tokens"), std::string::npos) << o.out;
}

TEST_F(Perplexity, KlDivergenceAgainstSelfAndAnotherQuantization) {
  const std::string base = kDir + "/base.kld";
  std::remove(base.c_str());
  const Output b = sh(kBin + " perplexity -m " + model("f32") + " -f " + kDir + "/text.txt" +
                      kArgs + " --kl-divergence-base " + base);
  ASSERT_EQ(b.status, 0) << b.out;

  // Same model: zero divergence, same top token everywhere, same perplexity.
  const Output self = sh(kBin + " perplexity -m " + model("f32") + " --kl-divergence-base " + base +
                         " --kl-divergence");
  ASSERT_EQ(self.status, 0) << self.out;
  EXPECT_LT(number_after(self.out, "Mean    KLD:"), 1e-5) << self.out;
  EXPECT_NEAR(number_after(self.out, "Same top p:"), 100.0, 1e-9) << self.out;
  EXPECT_NEAR(number_after(self.out, "Mean PPL(Q)/PPL(base)         :"), 1.0, 1e-6);

  // Q8_0 against the F32 base: the KL divergence computed here from both models' logits.
  const Output q = sh(kBin + " perplexity -m " + model("q8_0") + " --kl-divergence-base " + base +
                      " --kl-divergence");
  ASSERT_EQ(q.status, 0) << q.out;
  auto mf = Model::load(model("f32"));
  auto mq = Model::load(model("q8_0"));
  const std::vector<int32_t> t = chunk_tokens(*mf);
  const auto lf = log_probs(*mf, t), lq = log_probs(*mq, t);
  double kl = 0;
  int n = 0, same = 0;
  for (int c = 0; c < kChunks; ++c) {
    for (int64_t p = kChunk / 2; p < kChunk - 1; ++p) {
      const auto& a = lf[c * kChunk + p];
      const auto& z = lq[c * kChunk + p];
      double k = 0;
      for (size_t v = 0; v < a.size(); ++v) k += std::exp(a[v]) * (a[v] - z[v]);
      kl += k;
      ++n;
      same += std::max_element(a.begin(), a.end()) - a.begin() ==
              std::max_element(z.begin(), z.end()) - z.begin();
    }
  }
  const double want = kl / n;
  const double got = number_after(q.out, "Mean    KLD:");
  ASSERT_GT(want, 0.0);
  // The base file stores log-probabilities in 16-bit steps (~1e-3 nats here): a few 1e-6 of KL.
  EXPECT_NEAR(got, want, 1e-5 + 0.02 * want) << q.out;
  EXPECT_NEAR(number_after(q.out, "Same top p:"), 100.0 * same / n, 1e-3) << q.out;
}

TEST_F(Perplexity, RefusesBadInputsWithoutTouchingFiles) {
  // An existing base file is never overwritten.
  const std::string keep = kDir + "/keep.kld";
  std::ofstream(keep) << "user data";
  Output o = sh(kBin + " perplexity -m " + model("q8_0") + " -f " + kDir + "/text.txt" + kArgs +
                " --kl-divergence-base " + keep);
  EXPECT_EQ(WEXITSTATUS(o.status), 1) << o.out;
  EXPECT_NE(o.out.find("already exists"), std::string::npos) << o.out;
  std::ifstream kf(keep);
  std::string content((std::istreambuf_iterator<char>(kf)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "user data");
  // Not a base file.
  o = sh(kBin + " perplexity -m " + model("q8_0") + " --kl-divergence-base " + keep +
         " --kl-divergence");
  EXPECT_EQ(WEXITSTATUS(o.status), 1) << o.out;
  EXPECT_NE(o.out.find("not a qgemma KL base file"), std::string::npos) << o.out;
  // A text shorter than one chunk names both numbers.
  std::ofstream(kDir + "/short.txt") << "too short";
  o = sh(kBin + " perplexity -m " + model("q8_0") + " -f " + kDir + "/short.txt -c 512");
  EXPECT_EQ(WEXITSTATUS(o.status), 1) << o.out;
  EXPECT_NE(o.out.find("fewer than one chunk of 512"), std::string::npos) << o.out;
  // A truncated base file: an error when the rows run out, not garbage.
  const std::string base = kDir + "/trunc.kld";
  std::remove(base.c_str());
  ASSERT_EQ(sh(kBin + " perplexity -m " + model("q8_0") + " -f " + kDir + "/text.txt" + kArgs +
               " --kl-divergence-base " + base)
                .status,
            0);
  std::ifstream in(base, std::ios::binary | std::ios::ate);
  const auto size = static_cast<size_t>(in.tellg());
  std::vector<char> bytes(size);
  in.seekg(0);
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  std::ofstream(base, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(size / 2));
  o = sh(kBin + " perplexity -m " + model("q8_0") + " --kl-divergence-base " + base +
         " --kl-divergence");
  EXPECT_EQ(WEXITSTATUS(o.status), 1) << o.out;
  EXPECT_NE(o.out.find("ends early"), std::string::npos) << o.out;
}

// The 16-bit storage of a row: within half a step of the original over the stored range, the
// floor below it, the exact target log-probability and the argmax kept.
TEST(PerplexityLib, BaseRowRoundTrip) {
  const std::string path = kDir + "_rows.kld";
  std::remove(path.c_str());
  std::mt19937 rng(11);
  std::normal_distribution<float> d(0.0f, 6.0f);
  const int64_t V = 5000;
  std::vector<float> logits(V), lp(V);
  for (float& x : logits) x = d(rng);
  logits[17] = 200.0f;  // one dominant token: the rest falls far below the top
  std::vector<std::vector<float>> rows;
  {
    const std::vector<int32_t> toks = {1, 2, 3, 4};
    KlBaseWriter w(path, V, 4, toks);
    for (int r = 0; r < 2; ++r) {
      if (r == 1) logits[17] = 0.0f;
      log_softmax(logits.data(), V, lp.data());
      rows.push_back(lp);
      w.add(lp, 42);
    }
    w.close();
  }
  KlBaseReader rd(path);
  EXPECT_EQ(rd.n_vocab(), V);
  EXPECT_EQ(rd.tokens(), (std::vector<int32_t>{1, 2, 3, 4}));
  KlBaseRow row;
  for (int r = 0; r < 2; ++r) {
    rd.next(row);
    const auto& want = rows[r];
    const float hi = *std::max_element(want.begin(), want.end());
    const float lo = std::max(*std::min_element(want.begin(), want.end()), hi - 80.0f);
    const float step = (hi - lo) / 65535.0f;
    EXPECT_EQ(row.lp_target, want[42]);
    EXPECT_EQ(row.top, std::max_element(want.begin(), want.end()) - want.begin());
    for (int64_t v = 0; v < V; ++v) {
      EXPECT_NEAR(row.lp[v], std::max(want[v], lo), 0.51f * step + 1e-5f) << r << " " << v;
    }
    // KL of a row against itself: ~0.
    EXPECT_LT(compare_position(row, want, 42).kld, 1e-6);
  }
  EXPECT_THROW(rd.next(row), Error);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace qgemma
