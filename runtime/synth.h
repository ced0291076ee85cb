// Synthetic Gemma 4 GGUF files: the real layer structure (sliding + global layers, K=V global
// attention, proportional RoPE, per-layer output scale) with deterministic random weights in
// llama.cpp's naming. Used by tests, benchmarks and `qgemma synth`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "kernels/quant/formats.h"
#include "runtime/model_config.h"

namespace qgemma {

class GgufWriter;

// "tiny" (a few MB, 6 layers: 5 sliding + 1 global), "small" (tens of MB, 12 layers),
// "12b" (the real Gemma 4 12B shapes). Throws Error for an unknown name.
ModelConfig synth_preset(const std::string& name);

struct SynthOptions {
  std::string preset = "tiny";
  // Weight type of the matrices. Q4_K / Q5_K write llama.cpp's Q4_K_M / Q5_K_M mix (token_embd,
  // and ffn_down / attn_v of some layers, in Q6_K). Norms, the layer scalar and rope_freqs stay
  // F32.
  TensorType type = TensorType::F32;
  std::string tokenizer_json;  // when set, the real tokenizer's metadata; else a byte-level vocab
  uint64_t seed = 1;
};

// Parses "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k" (also "q4_k_m"), "q5_k" (also "q5_k_m"),
// "q6_k".
bool parse_weight_type(const std::string& s, TensorType* out);

// Adds the config, the tokenizer and every tensor (filled lazily, row by row) to `w`.
void synth_model(const ModelConfig& c, const SynthOptions& o, GgufWriter& w);
// synth_preset + synth_model + write to `path`.
void synth_write(const std::string& path, const SynthOptions& o);

// The byte-level fallback vocabulary's metadata (tokenizer.ggml.*) for n_vocab tokens:
// <pad> 0, <eos> 1, <bos> 2, <unk> 3, <|turn> 105, <turn|> 106 (when n_vocab allows), 256 byte
// tokens <0x00>..<0xFF>, printable ASCII, a few merges, unused tokens to fill.
void synth_fallback_tokenizer(int64_t n_vocab, GgufWriter& w);

}  // namespace qgemma
