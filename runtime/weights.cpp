#include "runtime/weights.h"

#include <string>

#include "kernels/matmul/matmul.h"
#include "kernels/ops/ops.h"
#include "kernels/quant/quant.h"
#include "loader/error.h"
#include "loader/gguf.h"

namespace qgemma {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "{";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "}";
}

const GgufTensor& require(const GgufFile& f, const std::string& name,
                          const std::vector<int64_t>& shape) {
  const GgufTensor* t = f.find_tensor(name);
  if (!t)
    throw Error(f.path() + ": tensor '" + name + "' is missing (expected shape " +
                shape_str(shape) + ")");
  if (t->shape != shape) {
    throw Error(f.path() + ": tensor '" + name + "': expected shape " + shape_str(shape) +
                ", found " + shape_str(t->shape));
  }
  return *t;
}

}  // namespace

Matrix load_matrix(const GgufFile& f, const std::string& name, int64_t in, int64_t out) {
  const GgufTensor& t = require(f, name, {in, out});
  if (!is_supported_weight_type(t.type)) {
    throw Error(f.path() + ": tensor '" + name + "': type " +
                std::string(type_traits(t.type).name) +
                " is not supported (expected f32, f16, bf16, q8_0, q4_0, q4_K, q5_K or q6_K)");
  }
  const int64_t bs = type_traits(t.type).block_size;
  if (in % bs != 0) {
    throw Error(f.path() + ": tensor '" + name + "': row length " + std::to_string(in) +
                " is not a multiple of the " + std::string(type_traits(t.type).name) +
                " block size " + std::to_string(bs));
  }
  Matrix m;
  m.name = name;
  m.type = t.type;
  m.in = in;
  m.out = out;
  m.data = t.data;
  m.row_bytes = row_size(t.type, in);
  return m;
}

std::vector<float> load_vector_f32(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensor& t = require(f, name, {n});
  if (t.type != TensorType::F32 && t.type != TensorType::F16 && t.type != TensorType::BF16) {
    throw Error(f.path() + ": tensor '" + name + "': expected type f32, f16 or bf16, found " +
                std::string(type_traits(t.type).name));
  }
  std::vector<float> out(n);
  dequantize_row(t.type, t.data, out.data(), n);
  return out;
}

void embedding_row(const Matrix& table, int64_t row, float* y, float scale,
                   std::vector<uint8_t>& scratch) {
  const TensorType plain = unpacked_type(table.type);
  if (plain == table.type) {
    get_row_f32(table.type, table.data, row, table.in, y, scale);
    return;
  }
  // Repacked table: unpack the row's group of 8 rows, then read its row.
  const size_t row_bytes = row_size(plain, table.in);
  if (scratch.size() < 8 * row_bytes) scratch.resize(8 * row_bytes);
  const int64_t g = row / 8 * 8;
  unpack_rows(table.type, table.data + static_cast<size_t>(g) * row_bytes, scratch.data(), table.in,
              0, 8);
  get_row_f32(plain, scratch.data(), row - g, table.in, y, scale);
}

bool is_supported_weight_type(TensorType t) {
  switch (t) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
    case TensorType::Q8_0:
    case TensorType::Q4_0:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
      return true;
    default:
      return false;
  }
}

ModelWeights ModelWeights::load(const GgufFile& f, const ModelConfig& c) {
  ModelWeights w;
  const int64_t E = c.n_embd;
  w.token_embd = load_matrix(f, "token_embd.weight", E, c.n_vocab);
  w.output = c.tied_output ? w.token_embd : load_matrix(f, "output.weight", E, c.n_vocab);
  w.output_norm = load_vector_f32(f, "output_norm.weight", E);
  w.layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const LayerConfig& l = c.layers[i];
    LayerWeights& lw = w.layers[i];
    const std::string b = "blk." + std::to_string(i) + ".";
    const int64_t q = int64_t{l.n_head} * l.head_dim, kv = int64_t{l.n_head_kv} * l.head_dim;
    lw.attn_norm = load_vector_f32(f, b + "attn_norm.weight", E);
    lw.wq = load_matrix(f, b + "attn_q.weight", E, q);
    lw.wk = load_matrix(f, b + "attn_k.weight", E, kv);
    if (!l.v_from_k) lw.wv = load_matrix(f, b + "attn_v.weight", E, kv);
    lw.q_norm = load_vector_f32(f, b + "attn_q_norm.weight", l.head_dim);
    lw.k_norm = load_vector_f32(f, b + "attn_k_norm.weight", l.head_dim);
    lw.wo = load_matrix(f, b + "attn_output.weight", q, E);
    lw.post_attn_norm = load_vector_f32(f, b + "post_attention_norm.weight", E);
    lw.ffn_norm = load_vector_f32(f, b + "ffn_norm.weight", E);
    lw.ffn_gate = load_matrix(f, b + "ffn_gate.weight", E, l.n_ff);
    lw.ffn_up = load_matrix(f, b + "ffn_up.weight", E, l.n_ff);
    lw.ffn_down = load_matrix(f, b + "ffn_down.weight", l.n_ff, E);
    lw.post_ffn_norm = load_vector_f32(f, b + "post_ffw_norm.weight", E);
    if (l.has_out_scale) lw.out_scale = load_vector_f32(f, b + "layer_output_scale.weight", 1)[0];
  }
  for (const GgufTensor& t : f.tensors()) w.nbytes += t.nbytes;
  return w;
}

}  // namespace qgemma
