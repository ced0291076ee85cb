// KV cache of the Gemma 4 decoder, one per layer. Sliding layers keep a ring of
// window + batch slots (a position p lives in slot p % capacity), so the cache of the 40
// sliding layers has a fixed size; global layers hold every position up to the context.
// Rows are stored per KV head ([kv_head][slot][head_dim]) in F16 or Q8_0 (llama.cpp blocks),
// the layouts kernels/attention reads. Each slot records the position it holds (-1 = empty);
// the attention masks come from those positions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/quant/formats.h"
#include "runtime/huge_pages.h"
#include "runtime/model_config.h"

namespace qgemma {

class KvCache {
 public:
  // n_ctx: positions a session can reach (global layers' capacity); n_batch: the most tokens
  // stored by one call. type: F16 or Q8_0. Memory of global layers is reserved, and only
  // touched (committed by the OS) as positions are written.
  KvCache(const ModelConfig& c, int64_t n_ctx, int64_t n_batch, TensorType type);

  // Bytes the cache of this config would reserve (for the memory budget).
  static uint64_t bytes_needed(const ModelConfig& c, int64_t n_ctx, int64_t n_batch,
                               TensorType type);

  // Stores K and V of n tokens at positions pos[0..n): k, v: [n x n_head_kv * head_dim] f32.
  // Positions must be < n_ctx and n <= n_batch.
  void store(int layer, const float* k, const float* v, const int32_t* pos, int64_t n);

  // Fills the cache part of flash-attention args (k, v, strides, kv_pos, n_kv) for a layer.
  void attention_args(int layer, FlashAttnArgs* a) const;

  // Drops every position >= n (speculative decoding rejects drafted tokens). A sliding layer can
  // go back at most n_batch positions from its newest one (older slots were overwritten): beyond
  // that this throws Error.
  void crop(int64_t n);
  void clear();

  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_batch() const { return n_batch_; }
  TensorType type() const { return type_; }
  int64_t capacity(int layer) const { return layers_[layer].capacity; }
  // The slot count attention_args gives right after position p was stored by a decoding step
  // (positions 0..p filled in order): p + 1, or the ring's capacity once it has wrapped.
  int64_t slots_at(int layer, int64_t p) const {
    const Layer& l = layers_[layer];
    return l.ring ? std::min<int64_t>(l.capacity, p + 1) : p + 1;
  }
  // Bytes of K and V one query token reads at the current fill (all layers).
  uint64_t bytes_in_use() const;
  // Position stored in a slot (-1 = empty), for tests.
  int32_t slot_pos(int layer, int64_t slot) const { return layers_[layer].pos[slot]; }
  uint64_t bytes_reserved() const;

 private:
  struct Layer {
    bool ring = false;
    int n_kv_head = 0;
    int head_dim = 0;
    int64_t capacity = 0;
    size_t row_bytes = 0;
    HugeBuffer k, v;           // [n_kv_head][capacity][row_bytes]
    std::vector<int32_t> pos;  // [capacity]
    int64_t used = 0;          // slots [0, used) may be non-empty
    int32_t newest = -1;       // largest position stored
  };
  int64_t slot_of(const Layer& l, int32_t p) const { return l.ring ? p % l.capacity : p; }

  int64_t n_ctx_, n_batch_;
  TensorType type_;
  std::vector<Layer> layers_;
};

}  // namespace qgemma
