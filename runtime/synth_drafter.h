// Synthetic gemma4-assistant (MTP drafter) GGUF files matching the synthetic / real targets:
// "tiny-assistant" (fits synth "tiny"), "small-assistant" (fits "small"), "12b-assistant" (the
// real 12B drafter's shapes: 1024 wide, 4 layers, 16 heads, head dims 256/512, FFN 8192).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/quant/formats.h"
#include "runtime/drafter.h"

namespace qgemma {

// Throws Error for an unknown name.
DrafterConfig synth_drafter_preset(const std::string& name);
bool is_drafter_preset(const std::string& name);

// A synthetic clustered head (runtime/cluster_head.h): a seeded random balanced partition of
// the vocabulary, each centroid the mean of its cluster's embedding rows (as `cluster-head`
// computes them, without the k-means). n_clusters / top_k 0: the preset's default (2048 / 32
// for a 262144-token vocabulary, else vocab / 32 clusters of 32 tokens and top clusters / 8).
struct SynthClusterHead {
  int64_t n_clusters = 0;
  int top_k = 0;
};

// Writes a drafter with deterministic random weights (matrices of `type`; norms f32), with a
// clustered head when `head` is non-null.
void synth_drafter_write(const std::string& path, const DrafterConfig& c, TensorType type,
                         uint64_t seed, const SynthClusterHead* head = nullptr);

}  // namespace qgemma
