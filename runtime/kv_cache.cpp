#include "runtime/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/ops/ops.h"
#include "kernels/quant/quant.h"
#include "loader/error.h"

namespace qgemma {
namespace {

void check_type(TensorType t) {
  if (t != TensorType::F16 && t != TensorType::Q8_0) {
    throw Error("KV cache: type " + std::string(type_traits(t).name) +
                " is not supported (f16 or q8_0)");
  }
}

// Slots of a layer: sliding layers keep window + batch positions, unless the context is smaller.
int64_t capacity_of(const ModelConfig& c, const LayerConfig& l, int64_t n_ctx, int64_t n_batch,
                    bool* ring) {
  const int64_t ring_cap = c.sliding_window + n_batch;
  *ring = l.sliding && ring_cap < n_ctx;
  return *ring ? ring_cap : n_ctx;
}

}  // namespace

KvCache::KvCache(const ModelConfig& c, int64_t n_ctx, int64_t n_batch, TensorType type)
    : n_ctx_(n_ctx), n_batch_(n_batch), type_(type) {
  check_type(type);
  if (n_ctx <= 0 || n_batch <= 0) throw Error("KV cache: context and batch must be > 0");
  layers_.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    Layer& l = layers_[i];
    l.capacity = capacity_of(c, c.layers[i], n_ctx, n_batch, &l.ring);
    l.n_kv_head = c.layers[i].n_head_kv;
    l.head_dim = c.layers[i].head_dim;
    l.row_bytes = row_size(type, l.head_dim);
    const size_t n = l.row_bytes * l.n_kv_head * static_cast<size_t>(l.capacity);
    // Not initialized (pages are committed when written); huge pages for the large ones (every
    // decoding step reads the whole visible cache).
    l.k = alloc_huge(n);
    l.v = alloc_huge(n);
    if (!l.k || !l.v) throw Error("KV cache: out of memory for layer " + std::to_string(i));
    l.pos.assign(l.capacity, -1);
  }
}

uint64_t KvCache::bytes_needed(const ModelConfig& c, int64_t n_ctx, int64_t n_batch,
                               TensorType type) {
  check_type(type);
  uint64_t total = 0;
  for (const LayerConfig& l : c.layers) {
    bool ring = false;
    const int64_t cap = capacity_of(c, l, n_ctx, n_batch, &ring);
    total += 2 * row_size(type, l.head_dim) * l.n_head_kv * static_cast<uint64_t>(cap) + 4 * cap;
  }
  return total;
}

uint64_t KvCache::bytes_reserved() const {
  uint64_t total = 0;
  for (const Layer& l : layers_)
    total += 2 * l.row_bytes * l.n_kv_head * l.capacity + 4 * l.capacity;
  return total;
}

void KvCache::store(int layer, const float* k, const float* v, const int32_t* pos, int64_t n) {
  Layer& l = layers_[layer];
  if (n > n_batch_) {
    throw Error("KV cache: " + std::to_string(n) + " tokens in one call, batch is " +
                std::to_string(n_batch_));
  }
  const int64_t kv_dim = int64_t{l.n_kv_head} * l.head_dim;
  for (int64_t t = 0; t < n; ++t) {
    const int32_t p = pos[t];
    if (p < 0 || p >= n_ctx_) {
      throw Error("KV cache: position " + std::to_string(p) + " is outside the context of " +
                  std::to_string(n_ctx_) + " (raise --ctx)");
    }
    const int64_t slot = slot_of(l, p);
    for (int h = 0; h < l.n_kv_head; ++h) {
      const size_t at = (static_cast<size_t>(h) * l.capacity + slot) * l.row_bytes;
      const float* ks = k + t * kv_dim + int64_t{h} * l.head_dim;
      const float* vs = v + t * kv_dim + int64_t{h} * l.head_dim;
      if (type_ == TensorType::Q8_0) {
        quantize_row_q8_0(ks, reinterpret_cast<block_q8_0*>(l.k.get() + at), l.head_dim);
        quantize_row_q8_0(vs, reinterpret_cast<block_q8_0*>(l.v.get() + at), l.head_dim);
      } else {
        f32_to_f16_row(ks, reinterpret_cast<f16_bits*>(l.k.get() + at), l.head_dim);
        f32_to_f16_row(vs, reinterpret_cast<f16_bits*>(l.v.get() + at), l.head_dim);
      }
    }
    l.pos[slot] = p;
    l.used = std::max(l.used, slot + 1);
    l.newest = std::max(l.newest, p);
  }
}

void KvCache::attention_args(int layer, FlashAttnArgs* a) const {
  const Layer& l = layers_[layer];
  a->k_type = a->v_type = type_;
  a->k = l.k.get();
  a->v = l.v.get();
  a->k_stride_slot = a->v_stride_slot = l.row_bytes;
  a->k_stride_head = a->v_stride_head = l.row_bytes * l.capacity;
  a->kv_pos = l.pos.data();
  a->kv_group = nullptr;
  a->n_kv = l.used;
  a->n_kv_head = l.n_kv_head;
  a->head_dim = l.head_dim;
}

void KvCache::crop(int64_t n) {
  // Check every layer before changing any, so that a refused crop leaves the cache as it was.
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    if (l.newest >= n && l.ring && l.newest - n > n_batch_) {
      throw Error("KV cache: cannot crop layer " + std::to_string(i) + " from position " +
                  std::to_string(l.newest + 1) + " back to " + std::to_string(n) +
                  ": its ring of " + std::to_string(l.capacity) + " slots keeps only the last " +
                  std::to_string(n_batch_) + " positions beyond the window");
    }
  }
  for (Layer& l : layers_) {
    if (l.newest < n) continue;
    for (int64_t s = 0; s < l.capacity; ++s) {
      if (l.pos[s] >= n) l.pos[s] = -1;
    }
    l.newest = static_cast<int32_t>(n) - 1;
    // used = one past the last non-empty slot, as if positions < n had just been stored (a ring
    // that had not wrapped shrinks too), so that later steps see what a run without the cropped
    // positions would see (slots_at).
    while (l.used > 0 && l.pos[l.used - 1] < 0) --l.used;
  }
}

uint64_t KvCache::bytes_in_use() const {
  uint64_t total = 0;
  for (const Layer& l : layers_) total += 2 * l.row_bytes * l.n_kv_head * uint64_t(l.used);
  return total;
}

void KvCache::clear() {
  for (Layer& l : layers_) {
    std::fill(l.pos.begin(), l.pos.end(), -1);
    l.used = 0;
    l.newest = -1;
  }
}

}  // namespace qgemma
