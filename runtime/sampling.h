// Token sampling on one row of logits: a fixed chain
//   repetition penalty -> temperature -> top-k -> softmax -> top-p -> min-p -> draw
// with a seeded RNG, deterministic for a given seed on every platform. Greedy (argmax) when
// temperature <= 0. Gemma 4's recommended settings are the defaults: temperature 1.0, top-k 64,
// top-p 0.95.
//
// Cost on a 262,144-entry vocabulary: one pass over the row (a k-sized heap for top-k); only the
// kept candidates are sorted. Without top-k (top_k <= 0) the whole row is sorted.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <vector>

namespace qgemma {

struct SamplingParams {
  float temperature = 1.0f;     // <= 0: greedy
  int32_t top_k = 64;           // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.0f;           // <= 0: off; keeps p >= min_p * p_max
  float repeat_penalty = 1.0f;  // 1: off; > 1 discourages tokens seen in the last repeat_last_n
  int32_t repeat_last_n = 64;
  uint64_t seed = 0x5eed;
};

// One candidate of the final distribution.
struct TokenProb {
  int32_t id;
  float p;  // probabilities of a distribution sum to 1
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Samples the next token from `logits` (one row, n_vocab floats). Does not record it: call
  // accept() with the token that is actually fed to the model.
  int32_t sample(std::span<const float> logits);
  // Records a token for the repetition penalty (prompt tokens too, if they should count).
  void accept(int32_t token);
  // Forgets the history and reseeds the RNG.
  void reset();
  void reset(uint64_t seed);

  // The distribution the chain leaves (after penalty, temperature, top-k, top-p and min-p),
  // sorted by decreasing probability (ties: lower id first). Greedy: the argmax with p = 1.
  // Speculative sampling uses it to compare target and draft distributions.
  std::vector<TokenProb> distribution(std::span<const float> logits) const;
  // Draws from a distribution with this sampler's RNG.
  int32_t draw(std::span<const TokenProb> dist);

  const SamplingParams& params() const { return params_; }

 private:
  // The logits after the repetition penalty, for the few penalized ids; others unchanged.
  float penalized(std::span<const float> logits, int32_t id) const;
  std::vector<int32_t> penalized_ids() const;  // distinct ids of the last repeat_last_n tokens
  double uniform();                            // [0, 1), 53 random bits

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::deque<int32_t> history_;
};

// Index of the largest value; the lowest index on ties. Empty input: -1.
int32_t argmax(std::span<const float> values);

}  // namespace qgemma
