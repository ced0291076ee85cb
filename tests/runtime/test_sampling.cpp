#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "runtime/sampling.h"

namespace qgemma {
namespace {

constexpr size_t kVocab = 262144;

std::vector<float> random_logits(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Logits whose softmax is exactly `probs` (up to rounding).
std::vector<float> logits_for(const std::vector<double>& probs) {
  std::vector<float> v;
  for (const double p : probs) v.push_back(static_cast<float>(std::log(p)));
  return v;
}

std::set<int32_t> ids_of(const std::vector<TokenProb>& d) {
  std::set<int32_t> s;
  for (const auto& t : d) s.insert(t.id);
  return s;
}

TEST(Sampling, GreedyIsArgmax) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    const auto logits = random_logits(kVocab, seed);
    const int32_t expect =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    SamplingParams p;
    p.temperature = 0.0f;
    Sampler s(p);
    EXPECT_EQ(s.sample(logits), expect);
    EXPECT_EQ(argmax(logits), expect);
  }
  std::vector<float> tie = random_logits(kVocab, 9);
  tie[70001] = tie[300] = tie[301] = 100.0f;  // ties: the lowest index
  EXPECT_EQ(argmax(tie), 300);
  tie.resize(70);  // a row shorter than a block, with the maximum last
  tie[69] = 200.0f;
  EXPECT_EQ(argmax(tie), 69);
}

TEST(Sampling, TopK1IsGreedy) {
  for (uint64_t seed = 10; seed <= 13; ++seed) {
    const auto logits = random_logits(kVocab, seed);
    SamplingParams p;
    p.top_k = 1;
    p.temperature = 1.5f;
    Sampler s(p);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(logits), argmax(logits));
  }
}

// The optimized top-k (k-sized heap) keeps exactly the k largest logits of a full sort, in
// order, with softmax probabilities over them.
TEST(Sampling, TopKMatchesFullSortReference) {
  for (const int k : {1, 2, 7, 64, 1000}) {
    std::vector<float> logits = random_logits(kVocab, 100 + k);
    logits[5] = logits[77] = 50.0f;  // a tie at the top: lower id first
    SamplingParams p;
    p.top_k = k;
    p.top_p = 1.0f;
    p.temperature = 0.8f;
    const auto dist = Sampler(p).distribution(logits);

    std::vector<int32_t> order(kVocab);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    ASSERT_EQ(dist.size(), static_cast<size_t>(k));
    double z = 0.0;
    for (int i = 0; i < k; ++i) z += std::exp((logits[order[i]] - logits[order[0]]) / 0.8);
    for (int i = 0; i < k; ++i) {
      EXPECT_EQ(dist[i].id, order[i]) << "k=" << k << " i=" << i;
      const double ref = std::exp((logits[order[i]] - logits[order[0]]) / 0.8) / z;
      EXPECT_NEAR(dist[i].p, ref, 1e-6 + 1e-5 * ref);
    }
  }
}

// Chi-square goodness of fit of sampled frequencies against softmax(logits / T).
TEST(Sampling, FrequenciesMatchSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f, 2.5f, -0.5f};
  for (const float temp : {1.0f, 0.7f, 1.6f}) {
    SamplingParams p;
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.seed = 1234;
    Sampler s(p);
    const int draws = 200000;
    std::vector<int> count(logits.size(), 0);
    for (int i = 0; i < draws; ++i) ++count[s.sample(logits)];

    double z = 0.0;
    for (const float l : logits) z += std::exp(l / temp);
    double chi2 = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double expected = draws * std::exp(logits[i] / temp) / z;
      chi2 += (count[i] - expected) * (count[i] - expected) / expected;
    }
    // 7 degrees of freedom: P(chi2 > 40) ~ 1e-6. Fixed seed, so this is deterministic.
    EXPECT_LT(chi2, 40.0) << "temperature " << temp;
  }
}

TEST(Sampling, TopPKeepsSmallestPrefixReachingP) {
  const auto logits = logits_for({0.05, 0.5, 0.15, 0.25, 0.03, 0.02});
  SamplingParams p;
  p.top_k = 0;
  p.temperature = 1.0f;
  p.top_p = 0.8f;  // 0.5 + 0.25 = 0.75 < 0.8 -> also 0.15
  auto d = Sampler(p).distribution(logits);
  EXPECT_EQ(ids_of(d), (std::set<int32_t>{1, 3, 2}));
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].id, 1);
  EXPECT_NEAR(d[0].p, 0.5 / 0.9, 1e-5);
  p.top_p = 0.7f;  // 0.5 < 0.7, 0.75 >= 0.7
  EXPECT_EQ(ids_of(Sampler(p).distribution(logits)), (std::set<int32_t>{1, 3}));
  p.top_p = 0.4f;
  EXPECT_EQ(ids_of(Sampler(p).distribution(logits)), (std::set<int32_t>{1}));
  p.top_p = 0.96f;  // all but the 0.02 and 0.03? 0.95 < 0.96 -> adds 0.03
  EXPECT_EQ(ids_of(Sampler(p).distribution(logits)), (std::set<int32_t>{0, 1, 2, 3, 4}));
}

TEST(Sampling, MinPKeepsTokensRelativeToBest) {
  const auto logits = logits_for({0.05, 0.5, 0.15, 0.25, 0.03, 0.02});
  SamplingParams p;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.2f;  // threshold 0.1
  EXPECT_EQ(ids_of(Sampler(p).distribution(logits)), (std::set<int32_t>{1, 2, 3}));
  p.min_p = 0.09f;  // threshold 0.045
  EXPECT_EQ(ids_of(Sampler(p).distribution(logits)), (std::set<int32_t>{0, 1, 2, 3}));
  p.min_p = 0.6f;  // threshold 0.3
  EXPECT_EQ(ids_of(Sampler(p).distribution(logits)), (std::set<int32_t>{1}));
}

// Without top-k the whole vocabulary is a candidate; top-p and min-p still keep exact sets.
TEST(Sampling, FullVocabularyTopPAndMinP) {
  std::vector<float> logits(kVocab, -30.0f);
  const std::vector<double> probs = {0.4, 0.3, 0.2, 0.1};
  const int32_t ids[] = {200000, 7, 131072, 99};
  for (int i = 0; i < 4; ++i) logits[ids[i]] = static_cast<float>(std::log(probs[i]));
  SamplingParams p;
  p.top_k = 0;
  p.top_p = 0.85f;  // 0.4 + 0.3 + 0.2 = 0.9 (the tail adds ~2.5e-9 in total)
  auto d = Sampler(p).distribution(logits);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].id, 200000);
  EXPECT_EQ(d[1].id, 7);
  EXPECT_EQ(d[2].id, 131072);
  EXPECT_NEAR(d[2].p, 0.2 / 0.9, 1e-5);
  p.top_p = 1.0f;
  p.min_p = 0.3f;  // >= 0.12
  EXPECT_EQ(ids_of(Sampler(p).distribution(logits)), (std::set<int32_t>{200000, 7, 131072}));
  p.min_p = 0.0f;  // everything, sorted by probability
  d = Sampler(p).distribution(logits);
  ASSERT_EQ(d.size(), kVocab);
  EXPECT_EQ(d[3].id, 99);
  EXPECT_EQ(d[4].id, 0);
  EXPECT_EQ(d.back().id, static_cast<int32_t>(kVocab - 1));
}

TEST(Sampling, TemperatureAppliesBeforeTopP) {
  // At T = 1 the top token has p = 0.5; at T = 0.5 it has 0.25 / (0.25 + 0.0625 + ...) > 0.7.
  const auto logits = logits_for({0.5, 0.25, 0.15, 0.1});
  SamplingParams p;
  p.top_k = 0;
  p.top_p = 0.7f;
  EXPECT_EQ(ids_of(Sampler(p).distribution(logits)), (std::set<int32_t>{0, 1}));
  p.temperature = 0.5f;
  EXPECT_EQ(ids_of(Sampler(p).distribution(logits)), (std::set<int32_t>{0}));
}

TEST(Sampling, RepetitionPenalty) {
  const std::vector<float> logits = {2.0f, 1.5f, -1.0f, -1.2f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s(p);
  EXPECT_EQ(s.sample(logits), 0);
  s.accept(0);  // 2.0 -> 1.0 < 1.5
  EXPECT_EQ(s.sample(logits), 1);
  s.accept(1);  // both penalized: 1.0 vs 0.75
  EXPECT_EQ(s.sample(logits), 0);
  s.accept(3);  // window of 2: {1, 3}; token 0 is free again
  EXPECT_EQ(s.sample(logits), 0);

  // Negative logits are multiplied: -1.0 -> -2.0 falls below -1.2.
  SamplingParams q = p;
  q.temperature = 1.0f;
  q.top_k = 0;
  q.top_p = 1.0f;
  Sampler t(q);
  t.accept(0);
  const std::vector<float> neg = {-1.0f, -1.2f, -5.0f};
  const auto d = t.distribution(neg);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].id, 1);
  EXPECT_EQ(d[1].id, 0);
  const double z = std::exp(-2.0) + std::exp(-1.2) + std::exp(-5.0);
  EXPECT_NEAR(d[1].p, std::exp(-2.0) / z, 1e-6);
  t.reset();  // history cleared: no penalty
  EXPECT_EQ(t.distribution(neg)[0].id, 0);
}

TEST(Sampling, SameSeedSameSequence) {
  const auto logits = random_logits(kVocab, 7);
  SamplingParams p;  // Gemma 4 defaults
  p.seed = 42;
  Sampler a(p), b(p);
  std::vector<int32_t> sa, sb;
  for (int i = 0; i < 200; ++i) {
    sa.push_back(a.sample(logits));
    sb.push_back(b.sample(logits));
  }
  EXPECT_EQ(sa, sb);
  p.seed = 43;
  Sampler c(p);
  std::vector<int32_t> sc;
  for (int i = 0; i < 200; ++i) sc.push_back(c.sample(logits));
  EXPECT_NE(sa, sc);
  a.reset();
  std::vector<int32_t> again;
  for (int i = 0; i < 200; ++i) again.push_back(a.sample(logits));
  EXPECT_EQ(sa, again);
}

TEST(Sampling, DefaultsAreGemma4s) {
  const SamplingParams p;
  EXPECT_EQ(p.temperature, 1.0f);
  EXPECT_EQ(p.top_k, 64);
  EXPECT_EQ(p.top_p, 0.95f);
}

}  // namespace
}  // namespace qgemma
