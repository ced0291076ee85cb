#include "runtime/synth_drafter.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "kernels/quant/quant.h"
#include "loader/error.h"
#include "loader/gguf.h"
#include "runtime/cluster_head.h"
#include "runtime/synth.h"

namespace qgemma {
namespace {

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

void random_row(uint64_t seed, const std::string& name, int64_t row, float center, float half,
                float* out, int64_t n) {
  uint64_t s = mix(seed ^ name_hash(name)) ^ mix(static_cast<uint64_t>(row) + 7);
  for (int64_t i = 0; i < n; ++i) {
    s = mix(s);
    out[i] = center + half * (2.0f * static_cast<float>(s >> 40) / 16777216.0f - 1.0f);
  }
}

// The type a matrix of row length `in` is written in: `type`, else Q8_0, else F32.
TensorType matrix_type(TensorType type, int64_t in) {
  TensorType t = type;
  if (in % type_traits(t).block_size != 0) t = TensorType::Q8_0;
  if (in % type_traits(t).block_size != 0) t = TensorType::F32;
  return t;
}

struct Writer {
  GgufWriter& w;
  uint64_t seed;
  TensorType type;
  void matrix(const std::string& name, int64_t in, int64_t out, float half) {
    const TensorType t = matrix_type(type, in);
    const uint64_t sd = seed;
    w.add_tensor(name, t, {in, out}, [=](std::span<uint8_t> dst) {
      std::vector<float> row(in);
      const size_t rb = row_size(t, in);
      for (int64_t r = 0; r < out; ++r) {
        random_row(sd, name, r, 0.0f, half, row.data(), in);
        quantize_row(t, row.data(), dst.data() + r * rb, in);
      }
    });
  }
  void vec(const std::string& name, int64_t n, float center, float half) {
    const uint64_t sd = seed;
    w.add_tensor(name, TensorType::F32, {n}, [=](std::span<uint8_t> dst) {
      std::vector<float> v(n);
      random_row(sd, name, 0, center, half, v.data(), n);
      std::memcpy(dst.data(), v.data(), n * sizeof(float));
    });
  }
};

DrafterConfig make(const std::string& name, int64_t vocab, int embd, int backbone, int heads,
                   int hd_swa, int hd_full, int ff, int window) {
  DrafterConfig c;
  c.name = "gemma4-assistant-synth-" + name;
  c.n_vocab = vocab;
  c.n_embd = embd;
  c.n_embd_backbone = backbone;
  c.n_layer = 4;
  c.sliding_window = window;
  for (int i = 0; i < 4; ++i) {
    DrafterLayerConfig l;
    l.sliding = i < 3;
    l.n_head = heads;
    l.head_dim = l.sliding ? hd_swa : hd_full;
    l.n_ff = ff;
    l.rope_base = l.sliding ? 10000.0f : 1000000.0f;
    l.use_freq_factors = !l.sliding;
    c.layers.push_back(l);
  }
  // Proportional RoPE as the target's global layers: the first quarter of the pairs rotate.
  c.rope_freq_factors.assign(hd_full / 2, 1e30f);
  for (int i = 0; i < hd_full / 8; ++i) c.rope_freq_factors[i] = 1.0f;
  return c;
}

}  // namespace

bool is_drafter_preset(const std::string& name) {
  return name == "tiny-assistant" || name == "small-assistant" || name == "12b-assistant";
}

DrafterConfig synth_drafter_preset(const std::string& name) {
  // Shapes follow the synth targets of runtime/synth.cpp (tiny / small / 12b), and so does the
  // context length.
  DrafterConfig c;
  if (name == "tiny-assistant") {
    c = make("tiny", 1024, 128, 256, 4, 64, 128, 256, 8);
  } else if (name == "small-assistant") {
    c = make("small", 4096, 256, 512, 8, 64, 128, 512, 32);
  } else if (name == "12b-assistant") {
    c = make("12b", 262144, 1024, 3840, 16, 256, 512, 8192, 1024);
  }
  if (c.n_layer > 0) {
    c.n_ctx_train = synth_preset(name.substr(0, name.find('-'))).n_ctx_train;
    return c;
  }
  throw Error("synth: unknown drafter preset '" + name +
              "' (expected tiny-assistant, small-assistant or 12b-assistant)");
}

void synth_drafter_write(const std::string& path, const DrafterConfig& c, TensorType type,
                         uint64_t seed, const SynthClusterHead* head) {
  GgufWriter w;
  c.to_gguf(w);
  // A tokenizer as the target's synth file has one without tokenizer.json (llama.cpp refuses a
  // model file without tokenizer.ggml.model; qgemma takes the target's tokenizer).
  synth_fallback_tokenizer(c.n_vocab, w);
  Writer a{w, seed, type};
  const int64_t E = c.n_embd, B = c.n_embd_backbone, V = c.n_vocab;
  const float embd_half = 2.0f * std::sqrt(3.0f / E);
  a.matrix("token_embd.weight", E, V, embd_half);
  if (head) {
    const int64_t C = head->n_clusters > 0 ? head->n_clusters : (V >= 65536 ? 2048 : V / 32);
    if (C < 1 || V % C != 0) {
      throw Error("synth: " + std::to_string(C) + " clusters do not divide the vocabulary of " +
                  std::to_string(V));
    }
    const int top = head->top_k > 0
                        ? head->top_k
                        : static_cast<int>(V >= 65536 ? 32 : std::max<int64_t>(1, C / 8));
    if (top > C)
      throw Error("synth: --top " + std::to_string(top) + " > clusters " + std::to_string(C));
    const int64_t cs = V / C;
    // A seeded random permutation: slot -> token id.
    auto ordering = std::make_shared<std::vector<int32_t>>(V);
    std::iota(ordering->begin(), ordering->end(), 0);
    uint64_t st = mix(seed ^ 0xc1057e2ull);
    for (int64_t i = V - 1; i > 0; --i) {
      st = mix(st);
      std::swap((*ordering)[i],
                (*ordering)[static_cast<int64_t>(st % static_cast<uint64_t>(i + 1))]);
    }
    const TensorType et = matrix_type(type, E);
    const TensorType ct = matrix_type(TensorType::Q8_0, E);
    const uint64_t sd = seed;
    w.add_tensor(kCentroidsTensor, ct, {E, C}, [=](std::span<uint8_t> dst) {
      // Each centroid: the mean of its tokens' rows as stored (quantized, then dequantized).
      std::vector<float> row(E), q(E), sum(E);
      std::vector<uint8_t> qb(row_size(et, E));
      const size_t rb = row_size(ct, E);
      for (int64_t k = 0; k < C; ++k) {
        std::fill(sum.begin(), sum.end(), 0.0f);
        for (int64_t j = 0; j < cs; ++j) {
          random_row(sd, "token_embd.weight", (*ordering)[k * cs + j], 0.0f, embd_half, row.data(),
                     E);
          quantize_row(et, row.data(), qb.data(), E);
          dequantize_row(et, qb.data(), q.data(), E);
          for (int64_t i = 0; i < E; ++i) sum[i] += q[i];
        }
        for (int64_t i = 0; i < E; ++i) sum[i] /= static_cast<float>(cs);
        quantize_row(ct, sum.data(), dst.data() + k * rb, E);
      }
    });
    w.add_tensor(kOrderingTensor, TensorType::I32, {V}, [ordering](std::span<uint8_t> dst) {
      std::memcpy(dst.data(), ordering->data(), ordering->size() * sizeof(int32_t));
    });
    w.set(kCentroidTopKKey, GgufValue::u32(static_cast<uint32_t>(top)));
  }
  a.vec("output_norm.weight", E, 1.0f, 0.2f);
  if (!c.rope_freq_factors.empty()) {
    const std::vector<float> f = c.rope_freq_factors;
    w.add_tensor("rope_freqs.weight", TensorType::F32, {static_cast<int64_t>(f.size())},
                 [f](std::span<uint8_t> dst) { std::memcpy(dst.data(), f.data(), f.size() * 4); });
  }
  a.matrix("nextn.pre_projection.weight", 2 * B, E, std::sqrt(3.0f / (2 * B)));
  a.matrix("nextn.post_projection.weight", E, B, std::sqrt(3.0f / E));
  for (int i = 0; i < c.n_layer; ++i) {
    const DrafterLayerConfig& l = c.layers[i];
    const std::string b = "blk." + std::to_string(i) + ".";
    const int64_t q = int64_t{l.n_head} * l.head_dim;
    const float qk = std::pow(static_cast<float>(l.head_dim), -0.25f);
    a.vec(b + "attn_norm.weight", E, 1.0f, 0.2f);
    a.matrix(b + "attn_q.weight", E, q, std::sqrt(3.0f / E));
    a.vec(b + "attn_q_norm.weight", l.head_dim, qk, 0.2f * qk);
    a.matrix(b + "attn_output.weight", q, E, std::sqrt(3.0f / q));
    a.vec(b + "post_attention_norm.weight", E, 1.0f, 0.2f);
    a.vec(b + "ffn_norm.weight", E, 1.0f, 0.2f);
    a.matrix(b + "ffn_gate.weight", E, l.n_ff, std::sqrt(3.0f / E));
    a.matrix(b + "ffn_up.weight", E, l.n_ff, std::sqrt(3.0f / E));
    a.matrix(b + "ffn_down.weight", l.n_ff, E, std::sqrt(3.0f / l.n_ff));
    a.vec(b + "post_ffw_norm.weight", E, 1.0f, 0.2f);
    a.vec(b + "layer_output_scale.weight", 1, 0.8f, 0.2f);
  }
  w.write(path);
}

}  // namespace qgemma
