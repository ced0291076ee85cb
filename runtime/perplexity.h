// Perplexity and KL divergence of a model on a text, with llama-perplexity's method so the
// numbers compare with llama.cpp's: the text's tokens are cut into chunks of n_ctx tokens, the
// first token of every chunk becomes <bos>, each chunk is evaluated from an empty cache, and
// only the second half of a chunk is scored (every scored token sees at least n_ctx / 2 tokens
// of context).
//
// KL divergence needs the reference model's whole distribution at every scored position. The
// base run writes it to a file (KlBaseWriter: the evaluated token ids, then per position the
// log-probabilities of the vocabulary quantized to 16 bits over [max(min, lp_max - 80), lp_max],
// about 6e-4 nats per step at a 40-nat range, plus the exact log-probability of the next token
// and the top token); the run of the model under test reads it back (KlBaseReader) and compares.
#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace qgemma {

// lp[i] = logits[i] - log(sum_j exp(logits[j])) for i < n (sums in double); returns the
// log-sum-exp.
double log_softmax(const float* logits, int64_t n, float* lp);

// Mean of per-token values with the standard error of the mean.
struct MeanStat {
  double sum = 0, sum2 = 0;
  int64_t n = 0;
  void add(double v) {
    sum += v;
    sum2 += v * v;
    ++n;
  }
  double mean() const { return n ? sum / n : 0.0; }
  // Standard error of the mean (0 below 2 samples).
  double error() const;
};

// Where llama-perplexity scores: positions [first, n_ctx - 1) of a chunk predict the next token.
inline int64_t perplexity_first_scored(int64_t n_ctx) { return n_ctx / 2; }

// One scored position of a base file.
struct KlBaseRow {
  float lp_target = 0;    // exact log-probability of the next token
  int32_t top = 0;        // argmax of the distribution
  std::vector<float> lp;  // dequantized log-probabilities, n_vocab
};

class KlBaseWriter {
 public:
  // Creates `path` (refuses to overwrite an existing file: it may be the user's) and writes the
  // header and the token ids of all chunks.
  KlBaseWriter(const std::string& path, int64_t n_vocab, int64_t n_ctx,
               std::span<const int32_t> tokens);
  ~KlBaseWriter();
  KlBaseWriter(const KlBaseWriter&) = delete;
  KlBaseWriter& operator=(const KlBaseWriter&) = delete;
  // One scored position: the log-probabilities (n_vocab) and the next token.
  void add(std::span<const float> lp, int32_t target);
  // Flushes and closes; throws Error when a write failed.
  void close();

 private:
  std::string path_;
  FILE* f_ = nullptr;
  int64_t n_vocab_ = 0;
  std::vector<uint16_t> q_;
};

class KlBaseReader {
 public:
  // Opens and checks the header (magic, version, sizes); throws Error naming the file.
  explicit KlBaseReader(const std::string& path);
  ~KlBaseReader();
  KlBaseReader(const KlBaseReader&) = delete;
  KlBaseReader& operator=(const KlBaseReader&) = delete;

  int64_t n_vocab() const { return n_vocab_; }
  int64_t n_ctx() const { return n_ctx_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // The next scored position; throws Error at the end of the file or on a short read.
  void next(KlBaseRow& row);

 private:
  std::string path_;
  FILE* f_ = nullptr;
  int64_t n_vocab_ = 0, n_ctx_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<uint16_t> q_;
};

// Comparison of one position: KL(base || model) in nats, and the probabilities of the next token.
struct KlPosition {
  double kld = 0;
  double p_base = 0, p_model = 0;  // of the next token
  bool same_top = false;
};
// lp_model: the model's log-probabilities (log_softmax output).
KlPosition compare_position(const KlBaseRow& base, std::span<const float> lp_model, int32_t target);

}  // namespace qgemma
