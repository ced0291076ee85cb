// Gemma 4 weights as views into the mapped GGUF file (no copies of matrices). Every tensor is
// checked for presence, shape and a supported type; errors name the tensor, expected vs found.
// 1-D tensors (norm multipliers, the layer scalar) are small and converted to f32 copies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/quant/formats.h"
#include "runtime/model_config.h"

namespace qgemma {

class GgufFile;

// A weight matrix W [out x in] stored row-major as `out` rows of `in` elements of `type`
// (ggml shape {in, out}). y = x W^T.
struct Matrix {
  std::string name;
  TensorType type = TensorType::F32;
  int64_t in = 0;
  int64_t out = 0;
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
  size_t nbytes() const { return row_bytes * static_cast<size_t>(out); }
};

struct LayerWeights {
  std::vector<float> attn_norm;       // [n_embd]
  Matrix wq, wk, wv;                  // wv.data == nullptr when v_from_k
  std::vector<float> q_norm, k_norm;  // [head_dim]
  Matrix wo;
  std::vector<float> post_attn_norm;  // [n_embd]
  std::vector<float> ffn_norm;        // [n_embd]
  Matrix ffn_gate, ffn_up, ffn_down;
  std::vector<float> post_ffn_norm;  // [n_embd]
  float out_scale = 1.0f;            // layer_output_scale, 1 when absent
};

struct ModelWeights {
  Matrix token_embd;  // [n_vocab x n_embd], also the output head when tied
  Matrix output;      // == token_embd when tied
  std::vector<float> output_norm;
  std::vector<LayerWeights> layers;
  uint64_t nbytes = 0;  // bytes of all weights in the file

  static ModelWeights load(const GgufFile& f, const ModelConfig& c);
};

// Weight types the matmul kernels take.
bool is_supported_weight_type(TensorType t);

// A matrix tensor of ggml shape {in, out} with a supported type; errors name the tensor.
Matrix load_matrix(const GgufFile& f, const std::string& name, int64_t in, int64_t out);
// A 1-D f32/f16/bf16 tensor of n elements, converted to f32.
std::vector<float> load_vector_f32(const GgufFile& f, const std::string& name, int64_t n);
// Row `row` of an embedding table times `scale` into y[table.in]; a repacked table (Q4_0x8 /
// Q8_0x8) has the row's group of 8 unpacked into `scratch` first.
void embedding_row(const Matrix& table, int64_t row, float* y, float scale,
                   std::vector<uint8_t>& scratch);

}  // namespace qgemma
