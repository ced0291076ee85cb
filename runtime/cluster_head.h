// The clustered ("centroid", "masked embedding") output head of Gemma 4's MTP drafters: the
// vocabulary is split into n_clusters clusters of equal size; a step scores the n_clusters
// centroids, keeps the top_k best clusters and computes the logits of their tokens only
// (2048 centroids, top 32, 128 tokens each: ~6K dot products instead of 262,144). The other
// tokens get -inf. Semantics of transformers' Gemma4AssistantMaskedEmbedder:
//
//   scores   = centroids . h                       centroids: [n_clusters x n_embd]
//   top      = the top_k clusters by score (ties: lower cluster index first)
//   slots    = ordering[c * cluster_size .. (c + 1) * cluster_size) for c in top (token ids)
//   logit[t] = token_embd[t] . h for t in slots, -inf for every other token
//
// (transformers fills the other tokens with min(selected) - 1 instead of -inf; the argmax is the
// same, and -inf makes the drafter's sampling distribution the softmax over the selected
// tokens, a proper distribution that is positive for every token it can draw.)
//
// GGUF (llama.cpp's names, written by the E2B/E4B assistant converters; llama.cpp itself loads
// and ignores them): `masked_embd_centroids.weight` of ggml shape {n_embd, n_clusters} (any
// matmul type) and `masked_embd_ordering` (no `.weight`), I32 or I64 of shape {n_vocab}, a
// permutation of the token ids. top_k: `gemma4-assistant.centroid_top_k` when present (written
// by `qgemma cluster-head`; no upstream key), else 32 (transformers' default).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/quant/formats.h"
#include "runtime/weights.h"

namespace qgemma {

class GgufFile;
class ThreadPool;

inline constexpr const char* kCentroidsTensor = "masked_embd_centroids.weight";
inline constexpr const char* kOrderingTensor = "masked_embd_ordering";
inline constexpr const char* kCentroidTopKKey = "gemma4-assistant.centroid_top_k";
inline constexpr int kDefaultClusterTopK = 32;

// Which output head a drafter step uses. Auto: the clustered head when the file has one (as
// transformers does for use_ordered_embeddings drafters), else the full head.
enum class DraftHeadMode { Auto, Full, Clustered };
// "auto" | "full" | "clustered"; throws Error otherwise.
DraftHeadMode parse_draft_head(const std::string& s);
const char* draft_head_name(DraftHeadMode m);

struct ClusterHead {
  int64_t n_vocab = 0, n_embd = 0;
  int64_t n_clusters = 0;    // 0: the file has no clustered head
  int64_t cluster_size = 0;  // n_vocab / n_clusters
  int top_k = 0;
  Matrix centroids;               // [n_clusters x n_embd] (may be repacked by the owner)
  std::vector<int32_t> ordering;  // slot (c * cluster_size + j) -> token id
  Matrix table;  // token_embd rows in slot order (built by the owner, e.g. Drafter::load)

  bool present() const { return n_clusters > 0; }
  // Reads the two tensors and the top-k key; an empty head when neither tensor is there. Throws
  // Error naming the tensor (or key) when one is missing, has the wrong shape or type, or the
  // ordering is not a permutation of [0, n_vocab).
  static ClusterHead load(const GgufFile& f, int64_t n_vocab, int64_t n_embd);
};

// The top_k clusters by score, best first (ties: lower index first). k <= scores.size().
void select_top_clusters(const std::vector<float>& scores, int k, std::vector<int32_t>* top);

struct ClusterHeadScratch {
  std::vector<float> scores, sel;
  std::vector<int32_t> top;
  std::vector<uint8_t> act_c, act_t;
};

// logits[n_vocab] of the clustered head for one hidden state x[n_embd] (h.table must be set):
// the top_k clusters' tokens get their logits, every other token -inf.
void cluster_head_logits(const ClusterHead& h, int top_k, const float* x, ThreadPool& pool,
                         ClusterHeadScratch& s, float* logits);

// Builds h.table: the rows of `token_embd` (canonical order, not repacked) in slot order, into
// `storage` (64-aligned, owned by the caller), repacked into the interleaved layout when the
// kernels prefer it and cluster_size is a multiple of 8. Returns the owned buffer.
using AlignedBuffer = std::unique_ptr<uint8_t[], void (*)(void*)>;
AlignedBuffer build_cluster_table(ClusterHead& h, const Matrix& token_embd, bool repack);

// ---- computing a clustered head from an embedding table (qgemma cluster-head) -------------

struct ClusteringOptions {
  int64_t n_clusters = 2048;
  int iters = 6;        // assignment + update rounds (stops early when nothing moves)
  int candidates = 16;  // nearest centroids kept per token for the balanced assignment
  uint64_t seed = 1;
};

struct Clustering {
  int64_t n_clusters = 0, cluster_size = 0;
  std::vector<int32_t> ordering;  // slot -> token id; each cluster's tokens ascending
  std::vector<float> centroids;   // [n_clusters x n_embd]: the mean of each cluster's rows
  std::vector<double> mse;        // mean squared distance to the own centroid, per round
  std::vector<int64_t> moved;     // tokens that changed cluster, per round
};

// Balanced k-means on the rows of `table` ([n_vocab x n_embd], any matmul type, canonical
// layout): every cluster gets exactly n_vocab / n_clusters tokens. Each round assigns by
// squared Euclidean distance (the distances from the int8 GEMM kernels), greedily over all
// (token, one of its `candidates` nearest centroids) pairs by increasing distance with a
// capacity of cluster_size per cluster (tokens left over go to the nearest clusters with room),
// then moves each centroid to the mean of its rows. `progress` (optional) is called after each
// round. Throws Error when n_vocab is not a multiple of n_clusters or n_embd of 32.
Clustering cluster_embeddings(
    const Matrix& table, const ClusteringOptions& o, ThreadPool& pool,
    const std::function<void(int round, const Clustering&)>& progress = {});

// Writes `out`: every tensor and metadata key of `in` (minus an existing clustered head) plus
// the clustered head of `c` (centroids in `centroid_type`) and gemma4-assistant.centroid_top_k.
// Refuses to write over `in` itself.
void write_with_cluster_head(const GgufFile& in, const std::string& out, const Clustering& c,
                             TensorType centroid_type, int top_k);

}  // namespace qgemma
