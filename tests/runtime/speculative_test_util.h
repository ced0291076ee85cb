// Shared by the speculative-sampling distribution tests (test_speculative.cpp,
// test_cluster_head.cpp): the exact joint distribution of the first two sampled tokens, computed
// from the target, and the chi-square statistic of speculative runs against it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "runtime/sampling.h"
#include "runtime/session.h"
#include "runtime/speculative.h"

namespace qgemma::testing_util {

// Chi-square statistic of counts against probabilities (cells with expectation 0 skipped).
inline double chi2(const std::vector<double>& p, const std::vector<int64_t>& counts, int64_t n) {
  double x = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double e = p[i] * n;
    if (e > 0) x += (counts[i] - e) * (counts[i] - e) / e;
  }
  return x;
}

// The exact joint distribution of the two tokens the sampling chain `sp` draws after `prompt`
// on the session's model: cells (first, second) and their probabilities.
struct JointTwo {
  std::vector<std::pair<int32_t, int32_t>> cells;
  std::vector<double> probs;
  std::vector<TokenProb> first;  // the first token's distribution
};

inline JointTwo joint_first_two(Session& s, const std::vector<int32_t>& prompt,
                                const SamplingParams& sp) {
  Sampler exact(sp);
  std::map<std::pair<int32_t, int32_t>, double> joint;
  JointTwo j;
  s.reset();
  j.first = exact.distribution(s.eval(prompt, 1));
  for (const TokenProb& a : j.first) {
    s.reset();
    std::vector<int32_t> pa = prompt;
    pa.push_back(a.id);
    for (const TokenProb& b : exact.distribution(s.eval(pa, 1))) {
      joint[{a.id, b.id}] += static_cast<double>(a.p) * b.p;
    }
  }
  for (const auto& [k, v] : joint) {
    j.cells.push_back(k);
    j.probs.push_back(v);
  }
  return j;
}

// n speculative runs (seeds seed0 .., draft length 1: one verification round drafts the second
// token) of two tokens each; returns the chi-square statistic of their pairs against j. A pair
// outside j's support fails the test.
inline double speculative_chi2(Session& s, DraftSource& draft, const std::vector<int32_t>& prompt,
                               const SamplingParams& sp, const JointTwo& j, int n, uint64_t seed0) {
  std::vector<int64_t> counts(j.cells.size(), 0);
  for (int i = 0; i < n; ++i) {
    s.reset();
    SamplingParams si = sp;
    si.seed = seed0 + i;
    SpeculativeOptions o;
    o.draft_max = 1;
    SpeculativeDecoder dec(s, draft, o, si);
    const std::vector<int32_t> got = dec.generate(prompt, 2);
    EXPECT_EQ(got.size(), 2u);
    if (got.size() != 2) return 1e30;
    const auto it = std::find(j.cells.begin(), j.cells.end(), std::make_pair(got[0], got[1]));
    EXPECT_NE(it, j.cells.end()) << "token pair outside the target's support";
    if (it == j.cells.end()) return 1e30;
    counts[it - j.cells.begin()] += 1;
  }
  return chi2(j.probs, counts, n);
}

}  // namespace qgemma::testing_util
