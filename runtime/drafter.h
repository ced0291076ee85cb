// Gemma 4's MTP drafter ("assistant", llama.cpp architecture `gemma4-assistant`): a small
// 4-layer transformer whose layers have only query projections and attend to the TARGET's KV
// cache (its last sliding layer / last global layer), at a position fixed for a whole drafting
// round, writing no cache of its own. Input: [target_embed(token) * sqrt(E_target) ; h] through
// nextn.pre_projection; output: logits from its own tied embedding (after output_norm, no
// softcap) and the next step's h = nextn.post_projection(normed). See docs/speculative.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/cluster_head.h"
#include "runtime/model_config.h"
#include "runtime/weights.h"

namespace qgemma {

class GgufFile;
class GgufWriter;
class KvCache;
class ThreadPool;

struct DrafterLayerConfig {
  bool sliding = true;
  int n_head = 0;
  int head_dim = 0;
  int n_ff = 0;
  float rope_base = 0;
  bool use_freq_factors = false;  // global layers: proportional RoPE via rope_freqs
};

struct DrafterConfig {
  std::string name;
  int64_t n_vocab = 0;
  int n_embd = 0;           // drafter width (12B assistant: 1024)
  int n_embd_backbone = 0;  // target width (12B: 3840), `embedding_length_out`
  int n_layer = 0;
  float rms_eps = 1e-6f;
  int sliding_window = 0;
  // `context_length` (the target's trained context): llama.cpp requires the key in every model
  // file; qgemma reads it when present and does not need it.
  int64_t n_ctx_train = 0;
  std::vector<float> rope_freq_factors;  // rope_freqs tensor, empty when absent
  std::vector<DrafterLayerConfig> layers;

  // Reads llama.cpp's gemma4-assistant metadata (general.architecture must be
  // "gemma4-assistant"); throws Error naming the key.
  static DrafterConfig from_gguf(const GgufFile& f);
  void to_gguf(GgufWriter& w) const;
  // Checks that this drafter fits `target` (widths, vocabulary, head dims of the source layers);
  // throws Error naming both values.
  void check_target(const ModelConfig& target) const;
  int64_t n_params() const;
};

struct DrafterLayerWeights {
  std::vector<float> attn_norm;
  Matrix wq;
  std::vector<float> q_norm;
  Matrix wo;
  std::vector<float> post_attn_norm, ffn_norm;
  Matrix ffn_gate, ffn_up, ffn_down;
  std::vector<float> post_ffn_norm;
  float out_scale = 1.0f;
};

struct DrafterWeights {
  Matrix token_embd;  // [n_vocab x n_embd], the tied output head
  std::vector<float> output_norm;
  Matrix pre_proj;   // nextn.pre_projection  [n_embd x 2 * n_embd_backbone]
  Matrix post_proj;  // nextn.post_projection [n_embd_backbone x n_embd]
  std::vector<DrafterLayerWeights> layers;
  // The optional clustered head (masked_embd_centroids / masked_embd_ordering); its `table` is
  // built by Drafter::load when the clustered head is used.
  ClusterHead cluster;
  uint64_t nbytes = 0;
  static DrafterWeights load(const GgufFile& f, const DrafterConfig& c);
};

// Which output head the drafter's steps use (runtime/cluster_head.h).
struct DraftHeadOptions {
  DraftHeadMode mode = DraftHeadMode::Auto;  // auto: clustered when the file has the head
  int top_k = 0;                             // clusters kept per step; 0: the file's (or 32)
};

class Drafter {
 public:
  // repack: Q4_0 / Q8_0 matrices into the interleaved layouts (as Model::load). head: Clustered
  // on a file without a clustered head throws Error naming the missing tensor.
  static std::unique_ptr<Drafter> load(const std::string& path, bool repack = true,
                                       const DraftHeadOptions& head = {});
  ~Drafter();
  const DrafterConfig& config() const { return config_; }
  const DrafterWeights& weights() const { return weights_; }
  const GgufFile& file() const { return *file_; }
  // Whether steps use the clustered head, and with how many clusters.
  bool clustered() const { return clustered_; }
  int cluster_top_k() const { return top_k_; }
  // "full (262144 rows)" / "clustered (top 32 of 2048 clusters x 128 tokens)".
  std::string head_summary() const;

 private:
  Drafter() = default;
  std::unique_ptr<GgufFile> file_;
  DrafterConfig config_;
  DrafterWeights weights_;
  bool clustered_ = false;
  int top_k_ = 0;
  std::vector<std::unique_ptr<uint8_t[], void (*)(void*)>> repacked_;  // owned, 64-aligned
};

// One drafter forward step against a target model's KV cache. Holds scratch buffers; not
// thread-safe (one per generation).
class DrafterRunner {
 public:
  DrafterRunner(const Drafter& d, const ModelConfig& target_config,
                const ModelWeights& target_weights, ThreadPool& pool);

  // token: the token at position `pos` (not yet in the target cache); h: [n_embd_backbone], the
  // target's final-norm hidden state of position pos - 1 (first step) or the previous step's
  // h_next. Queries attend to the target cache positions < pos (and <= pos if stored), RoPE at
  // pos. Writes logits [n_vocab] and h_next [n_embd_backbone]. With the clustered head only the
  // selected clusters' tokens get logits, every other token -inf (so argmax and softmax range
  // over the selected tokens).
  void step(const KvCache& kv, int32_t token, const float* h, int64_t pos, float* logits,
            float* h_next);

  // The target layer a drafter layer reads (last sliding / last global layer of the target).
  int source_layer(int drafter_layer) const { return source_[drafter_layer]; }

 private:
  void matmul(const Matrix& w, const float* x, float* y);
  void attention(int il, const KvCache& kv, const float* q, int64_t pos, float* out);

  const Drafter& d_;
  const ModelConfig& tc_;
  const ModelWeights& tw_;
  ThreadPool& pool_;
  std::vector<int> source_;
  std::vector<std::vector<float>> inv_freq_;
  std::vector<float> xh_, cur_, a_, q_, attn_, o_, h_, f_, gate_, up_, normed_, cs_;
  std::vector<uint8_t> act_, tmp_;
  std::vector<std::vector<float>> partials_;
  ClusterHeadScratch head_scratch_;
};

}  // namespace qgemma
