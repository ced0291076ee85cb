// The Gemma 4 text decoder as a graph (shared/spec/gemma4-12b.md, section 1).
#pragma once

#include <cstdint>

#include "runtime/graph.h"
#include "runtime/model_config.h"
#include "runtime/weights.h"

namespace qgemma {

// A forward pass over n_tokens tokens (at the positions the run provides) that writes their
// K/V into the cache and returns logits [n_outputs x n_vocab] for the last n_outputs tokens
// (n_outputs = 0: no output head; the graph's output is the last token's hidden state).
Graph build_gemma4(const ModelConfig& c, const ModelWeights& w, int64_t n_tokens,
                   int64_t n_outputs);

}  // namespace qgemma
