// Gemma 4 text-decoder configuration: a plain struct where every quirk of the model is a field.
// Read from GGUF metadata with llama.cpp's keys (architecture "gemma4"); see docs/model.md for
// the key and tensor names. Features of other Gemma 4 sizes (per-layer embeddings, KV sharing,
// double-wide MLP, MoE) are read and refused with "not supported yet" rather than ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qgemma {

class GgufFile;
class GgufWriter;

struct LayerConfig {
  bool sliding = true;  // sliding-window (local) attention, else global
  int n_head = 0;       // query heads
  int n_head_kv = 0;    // key/value heads
  int head_dim = 0;     // per head, same for K, V and Q
  int n_ff = 0;         // FFN intermediate size
  float rope_base = 0;  // RoPE theta
  int n_rot = 0;        // RoPE dims (NeoX pairs i, i + n_rot/2); rope_freq_factors narrow it
  bool use_freq_factors = false;  // global layers: divide frequencies by rope_freq_factors
  bool v_from_k = false;          // no attn_v: V is the K projection (before k_norm and RoPE)
  bool has_out_scale = false;     // blk.N.layer_output_scale present
};

struct ModelConfig {
  std::string name;  // general.name, for display
  int64_t n_vocab = 0;
  int n_embd = 0;  // hidden size
  int n_layer = 0;
  int64_t n_ctx_train = 0;  // trained context length
  float rms_eps = 1e-6f;
  int sliding_window = 0;    // window of sliding layers, in positions (causal, includes self)
  float final_softcap = 0;   // logits = c * tanh(z / c); 0 = none
  float attn_scale = 1.0f;   // QK^T scale (Gemma 4: 1.0, QK-norm does the job)
  float embed_scale = 1.0f;  // input embedding multiplier, sqrt(n_embd)
  bool tied_output = true;   // lm_head = token_embd (no output.weight)
  // Proportional RoPE of global layers: llama.cpp's rope_freqs tensor (n_rot/2 factors that
  // divide the frequencies; 1e30 switches a pair off). Empty when the file has none.
  std::vector<float> rope_freq_factors;
  std::vector<LayerConfig> layers;

  // Features of other Gemma 4 sizes; nonzero values are refused by validate().
  int n_embd_per_layer = 0;    // per-layer embeddings (E2B/E4B)
  int n_shared_kv_layers = 0;  // layers reusing an earlier layer's KV
  int n_expert = 0;            // MoE (26B-A4B)

  // Throws Error naming the key when the metadata is missing, inconsistent or unsupported.
  // Reads tensor presence too (attn_v, layer_output_scale, output.weight, rope_freqs).
  static ModelConfig from_gguf(const GgufFile& f);
  // Writes the metadata keys from_gguf reads (used by synth).
  void to_gguf(GgufWriter& w) const;
  // Refuses unsupported features and inconsistent shapes with a clear message.
  void validate() const;

  int64_t n_params() const;  // parameters of the text decoder (embedding counted once)
  int max_head_dim() const;
  int max_q_dim() const;   // max over layers of n_head * head_dim
  int max_kv_dim() const;  // max over layers of n_head_kv * head_dim
  int max_ff() const;
};

// The layer configs of the 12B pattern: 5 sliding + 1 global, repeated.
std::vector<bool> gemma4_sliding_pattern(int n_layer, int period);
// Metadata helpers shared by the target and drafter loaders (errors name the file and key):
// key `k` as a per-layer bool array (true = sliding) or an integer period (every p-th global).
std::vector<bool> read_sliding_pattern(const GgufFile& f, const std::string& k, int n_layer);
// llama.cpp's rope_freqs.weight factors; empty when the file has none.
std::vector<float> read_rope_freq_factors(const GgufFile& f);
// A non-negative metadata integer that must fit an int; `what` names it in the error.
int config_int(int64_t x, const std::string& what);

}  // namespace qgemma
