#include "runtime/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/quant/quant.h"
#include "loader/error.h"
#include "loader/gguf.h"

namespace qgemma {
namespace {

constexpr const char* kArch = "gemma4";

std::string key(const char* suffix) { return std::string(kArch) + "." + suffix; }

}  // namespace

// attention.sliding_window_pattern: a per-layer bool array (true = sliding), as llama.cpp's
// converter writes for Gemma 4; an integer period p (every p-th layer global) is accepted too.
std::vector<bool> read_sliding_pattern(const GgufFile& f, const std::string& k, int n_layer) {
  const GgufValue* v = f.find(k);
  if (!v) throw Error(f.path() + ": metadata key '" + k + "' is missing");
  if (v->type == GgufValueType::ARRAY) {
    const auto& arr = std::get<GgufValue::Array>(v->v);
    if (arr.items.size() != static_cast<size_t>(n_layer)) {
      throw Error(f.path() + ": metadata key '" + k + "': expected " + std::to_string(n_layer) +
                  " entries (block_count), found " + std::to_string(arr.items.size()));
    }
    std::vector<bool> out;
    for (const auto& it : arr.items) {
      if (const bool* b = std::get_if<bool>(&it.v)) {
        out.push_back(*b);
      } else if (const uint64_t* u = std::get_if<uint64_t>(&it.v)) {
        out.push_back(*u != 0);
      } else if (const int64_t* i = std::get_if<int64_t>(&it.v)) {
        out.push_back(*i != 0);
      } else {
        throw Error(f.path() + ": metadata key '" + k + "': expected bool array, found " +
                    std::string(gguf_type_name(arr.elem_type)) + " array");
      }
    }
    return out;
  }
  const int64_t period = f.get_int(k);
  if (period <= 0) throw Error(f.path() + ": metadata key '" + k + "': period must be > 0");
  return gemma4_sliding_pattern(n_layer, static_cast<int>(period));
}

int config_int(int64_t x, const std::string& what) {
  if (x < 0 || x > (int64_t{1} << 30))
    throw Error(what + ": value " + std::to_string(x) + " out of range");
  return static_cast<int>(x);
}

std::vector<float> read_rope_freq_factors(const GgufFile& f) {
  const GgufTensor* rf = f.find_tensor("rope_freqs.weight");
  if (!rf) return {};
  if (rf->type != TensorType::F32 || rf->shape.size() != 1) {
    throw Error(f.path() + ": tensor 'rope_freqs.weight': expected a 1-D f32 tensor");
  }
  // memcpy: with general.alignment < 4 the tensor data need not be float-aligned.
  std::vector<float> out(rf->shape[0]);
  std::memcpy(out.data(), rf->data, out.size() * sizeof(float));
  return out;
}

std::vector<bool> gemma4_sliding_pattern(int n_layer, int period) {
  std::vector<bool> out(n_layer);
  for (int i = 0; i < n_layer; ++i) out[i] = (i + 1) % period != 0;
  return out;
}

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  if (arch != kArch) {
    throw Error(f.path() + ": general.architecture: expected 'gemma4', found '" + arch + "'" +
                (arch == "gemma4-assistant" ? " (the MTP drafter is not a standalone model)" : ""));
  }
  ModelConfig c;
  if (f.has("general.name")) c.name = f.get_string("general.name");
  const std::string p = f.path() + ": ";
  c.n_embd = config_int(f.get_int(key("embedding_length")), p + key("embedding_length"));
  c.n_layer = config_int(f.get_int(key("block_count")), p + key("block_count"));
  if (c.n_layer <= 0) throw Error(p + key("block_count") + " must be > 0");
  c.n_ctx_train = f.get_int_opt(key("context_length")).value_or(131072);
  c.rms_eps = f.get_f32_opt(key("attention.layer_norm_rms_epsilon")).value_or(1e-6f);
  c.sliding_window = config_int(f.get_int(key("attention.sliding_window")), p + "sliding_window");
  c.final_softcap = f.get_f32_opt(key("final_logit_softcapping")).value_or(0.0f);
  c.embed_scale = std::sqrt(static_cast<float>(c.n_embd));
  c.n_embd_per_layer =
      config_int(f.get_int_opt(key("embedding_length_per_layer_input")).value_or(0),
                 p + "embedding_length_per_layer_input");
  c.n_shared_kv_layers = config_int(f.get_int_opt(key("attention.shared_kv_layers")).value_or(0),
                                    p + "attention.shared_kv_layers");
  c.n_expert = config_int(f.get_int_opt(key("expert_count")).value_or(0), p + "expert_count");

  const auto sliding = read_sliding_pattern(f, key("attention.sliding_window_pattern"), c.n_layer);
  const auto n_head = f.get_int_or_array(key("attention.head_count"), c.n_layer);
  const auto n_head_kv = f.get_int_or_array(key("attention.head_count_kv"), c.n_layer);
  const auto n_ff = f.get_int_or_array(key("feed_forward_length"), c.n_layer);
  const int hd_full = config_int(f.get_int(key("attention.key_length")), p + "key_length");
  const int hd_swa = config_int(f.get_int_opt(key("attention.key_length_swa")).value_or(hd_full),
                                p + "key_length_swa");
  const int hv_full = config_int(f.get_int_opt(key("attention.value_length")).value_or(hd_full),
                                 p + "value_length");
  const int hv_swa = config_int(f.get_int_opt(key("attention.value_length_swa")).value_or(hd_swa),
                                p + "value_length_swa");
  if (hd_full != hv_full || hd_swa != hv_swa) {
    throw Error(p + "key_length != value_length (" + std::to_string(hd_full) + "/" +
                std::to_string(hv_full) + ", swa " + std::to_string(hd_swa) + "/" +
                std::to_string(hv_swa) + "): Gemma 4 needs equal K and V head dims");
  }
  const float base_full = f.get_f32_opt(key("rope.freq_base")).value_or(1000000.0f);
  const float base_swa = f.get_f32_opt(key("rope.freq_base_swa")).value_or(10000.0f);
  const int rot_full = config_int(f.get_int_opt(key("rope.dimension_count")).value_or(hd_full),
                                  p + "rope.dimension_count");
  const int rot_swa = config_int(f.get_int_opt(key("rope.dimension_count_swa")).value_or(hd_swa),
                                 p + "rope.dimension_count_swa");

  const GgufTensor* emb = f.find_tensor("token_embd.weight");
  if (!emb) throw Error(p + "tensor 'token_embd.weight' is missing");
  if (emb->shape.size() != 2) throw Error(p + "tensor 'token_embd.weight': expected 2 dimensions");
  c.n_vocab = emb->shape[1];
  c.tied_output = f.find_tensor("output.weight") == nullptr;

  c.rope_freq_factors = read_rope_freq_factors(f);

  c.layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    LayerConfig& l = c.layers[i];
    const std::string blk = "blk." + std::to_string(i) + ".";
    l.sliding = sliding[i];
    l.n_head = config_int(n_head[i], p + "head_count");
    l.n_head_kv = config_int(n_head_kv[i], p + "head_count_kv");
    l.n_ff = config_int(n_ff[i], p + "feed_forward_length");
    l.head_dim = l.sliding ? hd_swa : hd_full;
    l.rope_base = l.sliding ? base_swa : base_full;
    l.n_rot = l.sliding ? rot_swa : rot_full;
    l.use_freq_factors = !l.sliding && !c.rope_freq_factors.empty();
    l.v_from_k = f.find_tensor(blk + "attn_v.weight") == nullptr;
    l.has_out_scale = f.find_tensor(blk + "layer_output_scale.weight") != nullptr;
  }
  c.validate();
  return c;
}

void ModelConfig::validate() const {
  auto refuse = [](const std::string& what) {
    throw Error(what + ": not supported yet (qgemma runs the Gemma 4 12B text decoder)");
  };
  if (n_embd_per_layer > 0) {
    refuse("per-layer embeddings (gemma4.embedding_length_per_layer_input = " +
           std::to_string(n_embd_per_layer) + ")");
  }
  if (n_shared_kv_layers > 0) {
    refuse("KV sharing between layers (gemma4.attention.shared_kv_layers = " +
           std::to_string(n_shared_kv_layers) + ")");
  }
  if (n_expert > 0)
    refuse("mixture of experts (gemma4.expert_count = " + std::to_string(n_expert) + ")");
  if (n_layer <= 0 || static_cast<int>(layers.size()) != n_layer)
    throw Error("config: bad layer count");
  if (n_embd <= 0 || n_embd % 32 != 0) {
    throw Error("config: embedding_length " + std::to_string(n_embd) +
                " must be a positive multiple of 32");
  }
  if (n_vocab <= 0) throw Error("config: empty vocabulary");
  if (sliding_window <= 0) throw Error("config: sliding_window must be > 0");
  const int ff0 = layers[0].n_ff;
  for (int i = 0; i < n_layer; ++i) {
    const LayerConfig& l = layers[i];
    const std::string at = "config: layer " + std::to_string(i) + ": ";
    if (l.n_ff != ff0) {
      refuse("double-wide MLP (feed_forward_length differs between layers: " + std::to_string(ff0) +
             " vs " + std::to_string(l.n_ff) + " at layer " + std::to_string(i) + ")");
    }
    if (l.n_head <= 0 || l.n_head_kv <= 0 || l.n_head % l.n_head_kv != 0) {
      throw Error(at + "head_count " + std::to_string(l.n_head) +
                  " must be a positive multiple of head_count_kv " + std::to_string(l.n_head_kv));
    }
    if (l.head_dim <= 0 || l.head_dim % 32 != 0) {
      throw Error(at + "head dim " + std::to_string(l.head_dim) +
                  " must be a positive multiple of 32");
    }
    if (l.n_rot <= 0 || l.n_rot > l.head_dim || l.n_rot % 2 != 0) {
      throw Error(at + "rope dimension count " + std::to_string(l.n_rot) +
                  " must be even and <= head dim " + std::to_string(l.head_dim));
    }
    if (l.use_freq_factors && static_cast<int>(rope_freq_factors.size()) != l.n_rot / 2) {
      throw Error(at + "rope_freqs.weight: expected " + std::to_string(l.n_rot / 2) +
                  " factors, found " + std::to_string(rope_freq_factors.size()));
    }
    if (l.n_ff <= 0 || l.n_ff % 32 != 0) {
      throw Error(at + "feed_forward_length " + std::to_string(l.n_ff) +
                  " must be a positive multiple of 32");
    }
  }
}

void ModelConfig::to_gguf(GgufWriter& w) const {
  w.set("general.architecture", GgufValue::str(kArch));
  if (!name.empty()) w.set("general.name", GgufValue::str(name));
  w.set(key("context_length"), GgufValue::u32(static_cast<uint32_t>(n_ctx_train)));
  w.set(key("embedding_length"), GgufValue::u32(n_embd));
  w.set(key("block_count"), GgufValue::u32(n_layer));
  w.set(key("feed_forward_length"), GgufValue::u32(layers[0].n_ff));
  w.set(key("attention.head_count"), GgufValue::u32(layers[0].n_head));
  std::vector<int32_t> kv;
  std::vector<GgufValue> pattern;
  int hd_full = 0, hd_swa = 0, rot_full = 0, rot_swa = 0;
  float base_full = 1e6f, base_swa = 1e4f;
  for (const LayerConfig& l : layers) {
    kv.push_back(l.n_head_kv);
    pattern.push_back(GgufValue::boolean(l.sliding));
    (l.sliding ? hd_swa : hd_full) = l.head_dim;
    (l.sliding ? rot_swa : rot_full) = l.n_rot;
    (l.sliding ? base_swa : base_full) = l.rope_base;
  }
  if (hd_full == 0) hd_full = hd_swa, rot_full = rot_swa;
  if (hd_swa == 0) hd_swa = hd_full, rot_swa = rot_full;
  w.set(key("attention.head_count_kv"), GgufValue::i32_array(kv));
  w.set(key("attention.sliding_window_pattern"), GgufValue::array(GgufValueType::BOOL, pattern));
  w.set(key("attention.sliding_window"), GgufValue::u32(sliding_window));
  w.set(key("attention.key_length"), GgufValue::u32(hd_full));
  w.set(key("attention.value_length"), GgufValue::u32(hd_full));
  w.set(key("attention.key_length_swa"), GgufValue::u32(hd_swa));
  w.set(key("attention.value_length_swa"), GgufValue::u32(hd_swa));
  w.set(key("attention.layer_norm_rms_epsilon"), GgufValue::f32(rms_eps));
  w.set(key("attention.shared_kv_layers"), GgufValue::u32(n_shared_kv_layers));
  w.set(key("embedding_length_per_layer_input"), GgufValue::u32(n_embd_per_layer));
  w.set(key("rope.freq_base"), GgufValue::f32(base_full));
  w.set(key("rope.freq_base_swa"), GgufValue::f32(base_swa));
  w.set(key("rope.dimension_count"), GgufValue::u32(rot_full));
  w.set(key("rope.dimension_count_swa"), GgufValue::u32(rot_swa));
  if (final_softcap > 0) w.set(key("final_logit_softcapping"), GgufValue::f32(final_softcap));
}

int64_t ModelConfig::n_params() const {
  int64_t n = n_vocab * n_embd + n_embd;  // embedding (tied) + output_norm
  if (!tied_output) n += n_vocab * n_embd;
  for (const LayerConfig& l : layers) {
    const int64_t q = int64_t{l.n_head} * l.head_dim, kv = int64_t{l.n_head_kv} * l.head_dim;
    n += n_embd * q + n_embd * kv * (l.v_from_k ? 1 : 2) + q * n_embd;      // attention
    n += 3 * int64_t{n_embd} * l.n_ff;                                      // gate, up, down
    n += 4 * int64_t{n_embd} + l.head_dim * 2 + (l.has_out_scale ? 1 : 0);  // norms, scale
  }
  return n;
}

int ModelConfig::max_head_dim() const {
  int m = 0;
  for (const auto& l : layers) m = std::max(m, l.head_dim);
  return m;
}
int ModelConfig::max_q_dim() const {
  int m = 0;
  for (const auto& l : layers) m = std::max(m, l.n_head * l.head_dim);
  return m;
}
int ModelConfig::max_kv_dim() const {
  int m = 0;
  for (const auto& l : layers) m = std::max(m, l.n_head_kv * l.head_dim);
  return m;
}
int ModelConfig::max_ff() const {
  int m = 0;
  for (const auto& l : layers) m = std::max(m, l.n_ff);
  return m;
}

}  // namespace qgemma
