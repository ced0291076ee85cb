#include "runtime/synth.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/quant/quant.h"
#include "loader/error.h"
#include "loader/gguf.h"
#include "loader/tokenizer.h"
#include "runtime/threadpool.h"

namespace qgemma {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// Deterministic uniform values in [center - half, center + half], a function of (seed, name, row).
void fill_row(uint64_t seed, const std::string& name, int64_t row, float center, float half,
              float* out, int64_t n) {
  uint64_t s = splitmix64(seed ^ hash_name(name)) ^ splitmix64(static_cast<uint64_t>(row) + 1);
  for (int64_t i = 0; i < n; ++i) {
    s = splitmix64(s);
    const float u = static_cast<float>(s >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    out[i] = center + half * (2.0f * u - 1.0f);
  }
}

int64_t block_of(TensorType t) { return type_traits(t).block_size; }

// Weight type of one matrix, following llama.cpp's Q4_K_M / Q5_K_M idea for "q4_k" / "q5_k":
// more bits (Q6_K) for the embedding / output and for ffn_down (and attn_v) of the first and last
// eighth and every third layer in between; K-quants fall back to Q8_0 where the row is not a
// multiple of 256.
TensorType matrix_type(TensorType base, const std::string& name, int layer, int n_layer,
                       int64_t in) {
  TensorType t = base;
  if (base == TensorType::Q4_K || base == TensorType::Q5_K) {
    const bool more_bits = layer >= 0 && (layer < n_layer / 8 || layer >= 7 * n_layer / 8 ||
                                          (layer - n_layer / 8) % 3 == 2);
    const bool sensitive =
        name.find("ffn_down") != std::string::npos || name.find("attn_v") != std::string::npos;
    if (name == "token_embd.weight" || (sensitive && more_bits)) t = TensorType::Q6_K;
  }
  if (in % block_of(t) != 0) t = TensorType::Q8_0;
  if (in % block_of(t) != 0) t = TensorType::F16;
  return t;
}

struct Adder {
  GgufWriter& w;
  uint64_t seed;
  void matrix(const std::string& name, TensorType base, int layer, int n_layer, int64_t in,
              int64_t out, float half) {
    const TensorType t = matrix_type(base, name, layer, n_layer, in);
    const uint64_t sd = seed;
    w.add_tensor(name, t, {in, out}, [=](std::span<uint8_t> dst) {
      // Rows are independent functions of (seed, name, row): fill them on every core.
      const size_t rb = row_size(t, in);
      ThreadPool::global().parallel_range(out, 64, [&](int64_t r0, int64_t r1, int) {
        std::vector<float> row(in);
        for (int64_t r = r0; r < r1; ++r) {
          fill_row(sd, name, r, 0.0f, half, row.data(), in);
          quantize_row(t, row.data(), dst.data() + r * rb, in);
        }
      });
    });
  }
  void vec(const std::string& name, int64_t n, float center, float half) {
    const uint64_t sd = seed;
    w.add_tensor(name, TensorType::F32, {n}, [=](std::span<uint8_t> dst) {
      std::vector<float> v(n);
      fill_row(sd, name, 0, center, half, v.data(), n);
      std::memcpy(dst.data(), v.data(), n * sizeof(float));
    });
  }
  void vec_values(const std::string& name, std::vector<float> v) {
    const int64_t n = static_cast<int64_t>(v.size());
    w.add_tensor(name, TensorType::F32, {n}, [v](std::span<uint8_t> dst) {
      std::memcpy(dst.data(), v.data(), v.size() * sizeof(float));
    });
  }
};

uint32_t llama_file_type(TensorType t) {
  switch (t) {
    case TensorType::F16:
      return 1;
    case TensorType::Q4_0:
      return 2;
    case TensorType::Q8_0:
      return 7;
    case TensorType::Q4_K:
      return 15;  // synth's q4_k is a Q4_K_M-like mix
    case TensorType::Q5_K:
      return 17;  // LLAMA_FTYPE_MOSTLY_Q5_K_M: synth's q5_k is a Q5_K_M-like mix
    case TensorType::Q6_K:
      return 18;
    case TensorType::BF16:
      return 32;
    default:
      return 0;  // F32
  }
}

LayerConfig layer(bool sliding, int n_head, int kv, int hd, int ff, float base, bool v_from_k) {
  LayerConfig l;
  l.sliding = sliding;
  l.n_head = n_head;
  l.n_head_kv = kv;
  l.head_dim = hd;
  l.n_ff = ff;
  l.rope_base = base;
  l.n_rot = hd;
  l.use_freq_factors = !sliding;
  l.v_from_k = v_from_k;
  l.has_out_scale = true;
  return l;
}

struct Dims {
  int64_t vocab;
  int embd, layers, heads, kv_swa, hd_swa, kv_full, hd_full, ff, window;
  int64_t ctx;
};

ModelConfig make_config(const std::string& name, const Dims& d) {
  ModelConfig c;
  c.name = "gemma4-synth-" + name;
  c.n_vocab = d.vocab;
  c.n_embd = d.embd;
  c.n_layer = d.layers;
  c.n_ctx_train = d.ctx;
  c.rms_eps = 1e-6f;
  c.sliding_window = d.window;
  c.final_softcap = 30.0f;
  c.embed_scale = std::sqrt(static_cast<float>(d.embd));
  const auto pattern = gemma4_sliding_pattern(d.layers, 6);
  for (int i = 0; i < d.layers; ++i) {
    c.layers.push_back(pattern[i]
                           ? layer(true, d.heads, d.kv_swa, d.hd_swa, d.ff, 10000.0f, false)
                           : layer(false, d.heads, d.kv_full, d.hd_full, d.ff, 1000000.0f, true));
  }
  // Proportional RoPE: the first quarter of the global layers' frequency pairs rotate.
  const int pairs = d.hd_full / 2;
  c.rope_freq_factors.assign(pairs, 1e30f);
  for (int i = 0; i < pairs / 4; ++i) c.rope_freq_factors[i] = 1.0f;
  return c;
}

}  // namespace

ModelConfig synth_preset(const std::string& name) {
  if (name == "tiny") return make_config(name, {1024, 256, 6, 4, 2, 64, 1, 128, 512, 8, 4096});
  if (name == "small") return make_config(name, {4096, 512, 12, 8, 4, 64, 1, 128, 1536, 32, 8192});
  if (name == "12b") {
    return make_config(name, {262144, 3840, 48, 16, 8, 256, 1, 512, 15360, 1024, 262144});
  }
  throw Error("synth: unknown preset '" + name + "' (expected tiny, small or 12b)");
}

bool parse_weight_type(const std::string& s, TensorType* out) {
  static const struct {
    const char* name;
    TensorType t;
  } kTypes[] = {{"f32", TensorType::F32},     {"f16", TensorType::F16},
                {"bf16", TensorType::BF16},   {"q8_0", TensorType::Q8_0},
                {"q4_0", TensorType::Q4_0},   {"q4_k", TensorType::Q4_K},
                {"q4_k_m", TensorType::Q4_K}, {"q6_k", TensorType::Q6_K},
                {"q5_k", TensorType::Q5_K},   {"q5_k_m", TensorType::Q5_K}};
  std::string lower;
  for (char ch : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& e : kTypes) {
    if (lower == e.name) {
      *out = e.t;
      return true;
    }
  }
  return false;
}

void synth_fallback_tokenizer(int64_t n_vocab, GgufWriter& w) {
  enum : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUnused = 5, kByte = 6 };
  if (n_vocab < 512) throw Error("synth: the fallback vocabulary needs at least 512 tokens");
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  auto add = [&](std::string s, int32_t type) {
    tokens.push_back(std::move(s));
    types.push_back(type);
  };
  add("<pad>", kControl);
  add("<eos>", kControl);
  add("<bos>", kControl);
  add("<unk>", kUnknown);
  while (tokens.size() < 105) add("<unused" + std::to_string(tokens.size()) + ">", kUnused);
  add("<|turn>", kControl);
  add("<turn|>", kControl);
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    add(buf, kByte);
  }
  const std::string space = "\xe2\x96\x81";  // U+2581, SentencePiece's space
  auto piece = [&](char ch) { return ch == ' ' ? space : std::string(1, ch); };
  for (char ch = ' '; ch <= '~'; ++ch) add(piece(ch), kNormal);
  // Merges that build a few common words letter by letter ("▁t h" -> "▁th", "▁th e" -> "▁the").
  std::vector<std::string> merges;
  static const char* kWords[] = {" the", " and", " of",    " to",    " in",    " is",   " that",
                                 " it",  " for", " on",    " with",  " as",    " was",  "ing",
                                 "er",   "ed",   " hello", " world", " model", " Gemma"};
  for (const char* word : kWords) {
    std::string prefix = piece(word[0]);
    for (size_t k = 1; word[k] && static_cast<int64_t>(tokens.size()) < n_vocab; ++k) {
      const std::string next = prefix + piece(word[k]);
      bool exists = false;
      for (const auto& t : tokens) exists = exists || t == next;
      if (!exists) {
        merges.push_back(prefix + " " + piece(word[k]));
        add(next, kNormal);
      }
      prefix = next;
    }
  }
  while (static_cast<int64_t>(tokens.size()) < n_vocab) {
    add("<unused" + std::to_string(tokens.size()) + ">", kUnused);
  }
  std::vector<GgufValue> scores, ttypes;
  for (size_t i = 0; i < tokens.size(); ++i) {
    scores.push_back(GgufValue::f32(-static_cast<float>(i)));
    ttypes.push_back(GgufValue::i32(types[i]));
  }
  w.set("tokenizer.ggml.model", GgufValue::str("gemma4"));
  w.set("tokenizer.ggml.tokens", GgufValue::str_array(tokens));
  w.set("tokenizer.ggml.scores", GgufValue::array(GgufValueType::FLOAT32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", GgufValue::array(GgufValueType::INT32, std::move(ttypes)));
  w.set("tokenizer.ggml.merges", GgufValue::str_array(merges));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(2));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(1));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(3));
  w.set("tokenizer.ggml.padding_token_id", GgufValue::u32(0));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
  w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(false));
}

void synth_model(const ModelConfig& config, const SynthOptions& o, GgufWriter& w) {
  ModelConfig c = config;
  if (o.tokenizer_json.empty()) {
    synth_fallback_tokenizer(c.n_vocab, w);
  } else {
    const Tokenizer tok = Tokenizer::from_tokenizer_json(o.tokenizer_json);
    tok.write_gguf_metadata(w);
    c.n_vocab = tok.n_tokens();  // one embedding row per token of the real vocabulary
  }
  c.to_gguf(w);
  // llama.cpp's llama_ftype of the mix (ALL_F32 0, MOSTLY_F16 1, Q4_0 2, Q8_0 7, Q4_K_M 15,
  // Q5_K_M 17, Q6_K 18, BF16 32): without it llama.cpp labels every file "(guessed) all F32".
  w.set("general.file_type", GgufValue::u32(llama_file_type(o.type)));
  Adder a{w, o.seed};
  const int64_t E = c.n_embd;
  const int L = c.n_layer;
  // Scales keep activations finite through every layer: matrices ~ U(+-sqrt(3/in)) (unit gain),
  // norm multipliers near 1, QK-norm multipliers ~ head_dim^-1/4 so q.k has unit variance,
  // embedding rows of rms 2/sqrt(E) (x sqrt(E) in the model: rms 2; logits of std ~2).
  a.matrix("token_embd.weight", o.type, -1, L, E, c.n_vocab, 2.0f * std::sqrt(3.0f / E));
  a.vec("output_norm.weight", E, 1.0f, 0.2f);
  if (!c.rope_freq_factors.empty()) a.vec_values("rope_freqs.weight", c.rope_freq_factors);
  for (int i = 0; i < L; ++i) {
    const LayerConfig& l = c.layers[i];
    const std::string b = "blk." + std::to_string(i) + ".";
    const int64_t q = int64_t{l.n_head} * l.head_dim, kv = int64_t{l.n_head_kv} * l.head_dim;
    const float u_e = std::sqrt(3.0f / E), u_q = std::sqrt(3.0f / q),
                u_f = std::sqrt(3.0f / l.n_ff);
    const float qk = std::pow(static_cast<float>(l.head_dim), -0.25f);
    a.vec(b + "attn_norm.weight", E, 1.0f, 0.2f);
    a.matrix(b + "attn_q.weight", o.type, i, L, E, q, u_e);
    a.matrix(b + "attn_k.weight", o.type, i, L, E, kv, u_e);
    if (!l.v_from_k) a.matrix(b + "attn_v.weight", o.type, i, L, E, kv, u_e);
    a.vec(b + "attn_q_norm.weight", l.head_dim, qk, 0.2f * qk);
    a.vec(b + "attn_k_norm.weight", l.head_dim, qk, 0.2f * qk);
    a.matrix(b + "attn_output.weight", o.type, i, L, q, E, u_q);
    a.vec(b + "post_attention_norm.weight", E, 1.0f, 0.2f);
    a.vec(b + "ffn_norm.weight", E, 1.0f, 0.2f);
    a.matrix(b + "ffn_gate.weight", o.type, i, L, E, l.n_ff, u_e);
    a.matrix(b + "ffn_up.weight", o.type, i, L, E, l.n_ff, u_e);
    a.matrix(b + "ffn_down.weight", o.type, i, L, l.n_ff, E, u_f);
    a.vec(b + "post_ffw_norm.weight", E, 1.0f, 0.2f);
    a.vec(b + "layer_output_scale.weight", 1, 0.8f, 0.2f);
  }
}

void synth_write(const std::string& path, const SynthOptions& o) {
  const ModelConfig c = synth_preset(o.preset);
  GgufWriter w;
  synth_model(c, o, w);
  w.write(path);
}

}  // namespace qgemma
