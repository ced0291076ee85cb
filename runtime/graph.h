// A computation graph: a topologically ordered list of nodes {op, inputs, output, params} over
// 2-D float32 activation tensors [rows x cols] (rows = tokens). Weights are not graph tensors:
// nodes point at them (they stay where the loader mapped them). Token ids and positions are
// the graph's inputs, set per run. Built by a model builder (runtime/gemma4.cpp), placed in
// memory by the planner (runtime/planner.h), run by a backend (runtime/cpu_backend.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qgemma {

struct Matrix;

enum class Op {
  Embed,      // out[t] = scale * token_embd[token[t]]                 (no tensor inputs)
  RmsNorm,    // out = rmsnorm of each group of `group` cols, times vec (nullptr: none)
  MatMul,     // out[T x w.out] = in[T x w.in] W^T
  Rope,       // out = NeoX RoPE of in (heads of `group` cols) at the token positions, layer's freqs
  KvStore,    // writes in0 (K) and in1 (V) [T x kv_dim] into the layer's cache (output: none)
  Attention,  // out[T x q_dim] = attention of in0 (Q) over the layer's cache
  Add,        // out = in0 + in1
  Scale,      // out = f * in0
  GeluGlu,    // out = gelu_tanh(in0) * in1
  Softcap,    // out = f * tanh(in0 / f)
  LastRows,   // out = the last `group` rows of in0
};
const char* op_name(Op op);

struct GraphTensor {
  int64_t rows = 0;
  int64_t cols = 0;
  std::string name;  // for debugging and error messages ("blk.3.q", "logits", ...)
  int64_t nfloats() const { return rows * cols; }
};

struct Node {
  Node() = default;
  explicit Node(Op o, std::vector<int> in = {}) : op(o), inputs(std::move(in)) {}

  Op op = Op::Embed;
  std::vector<int> inputs;  // tensor ids
  int output = -1;          // tensor id, -1 for KvStore
  // Parameters (which ones an op uses is listed above).
  const Matrix* w = nullptr;   // MatMul weights, Embed table
  const float* vec = nullptr;  // RmsNorm multiplier
  int64_t group = 0;           // RmsNorm / Rope group width, LastRows count
  float f = 0.0f;              // eps, scale, softcap, embed scale
  int layer = -1;              // Rope / KvStore / Attention
};

struct Graph {
  std::vector<GraphTensor> tensors;
  std::vector<Node> nodes;
  int output = -1;       // the tensor the caller reads after a run (logits)
  int64_t n_tokens = 0;  // rows of the token inputs
  // Optional: the final hidden state (after the final norm) of the output rows, kept live to the
  // end of a run like `output` (speculative decoding feeds it to the drafter). -1 = none.
  int hidden = -1;

  int add_tensor(int64_t rows, int64_t cols, std::string name);
  // Adds a node and returns its output tensor id (a new tensor of rows x cols).
  int add_node(Node n, int64_t rows, int64_t cols, std::string name);
  // Throws Error when a node reads a tensor that no earlier node wrote, or shapes disagree.
  void validate() const;
};

}  // namespace qgemma
