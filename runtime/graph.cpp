#include "runtime/graph.h"

#include <string>
#include <vector>

#include "loader/error.h"
#include "runtime/weights.h"

namespace qgemma {

const char* op_name(Op op) {
  switch (op) {
    case Op::Embed:
      return "embed";
    case Op::RmsNorm:
      return "rmsnorm";
    case Op::MatMul:
      return "matmul";
    case Op::Rope:
      return "rope";
    case Op::KvStore:
      return "kv_store";
    case Op::Attention:
      return "attention";
    case Op::Add:
      return "add";
    case Op::Scale:
      return "scale";
    case Op::GeluGlu:
      return "gelu_glu";
    case Op::Softcap:
      return "softcap";
    case Op::LastRows:
      return "last_rows";
  }
  return "?";
}

int Graph::add_tensor(int64_t rows, int64_t cols, std::string name) {
  tensors.push_back({rows, cols, std::move(name)});
  return static_cast<int>(tensors.size()) - 1;
}

int Graph::add_node(Node n, int64_t rows, int64_t cols, std::string name) {
  n.output = n.op == Op::KvStore ? -1 : add_tensor(rows, cols, std::move(name));
  nodes.push_back(n);
  return n.output;
}

void Graph::validate() const {
  std::vector<bool> written(tensors.size(), false);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& n = nodes[i];
    const std::string at = "graph node " + std::to_string(i) + " (" + op_name(n.op) + "): ";
    for (int in : n.inputs) {
      if (in < 0 || in >= static_cast<int>(tensors.size()) || !written[in]) {
        throw Error(at + "reads tensor " + std::to_string(in) + " before it is written");
      }
    }
    auto same_shape = [&](int a, int b) {
      if (tensors[a].rows != tensors[b].rows || tensors[a].cols != tensors[b].cols) {
        throw Error(at + "shape mismatch between '" + tensors[a].name + "' and '" +
                    tensors[b].name + "'");
      }
    };
    if (n.op == Op::Add || n.op == Op::GeluGlu) same_shape(n.inputs[0], n.inputs[1]);
    if (n.op == Op::MatMul && tensors[n.inputs[0]].cols != n.w->in) {
      throw Error(at + "'" + tensors[n.inputs[0]].name + "' has " +
                  std::to_string(tensors[n.inputs[0]].cols) + " columns, weights '" + n.w->name +
                  "' expect " + std::to_string(n.w->in));
    }
    if (n.output >= 0) {
      if (written[n.output])
        throw Error(at + "writes tensor '" + tensors[n.output].name + "' twice");
      written[n.output] = true;
    }
  }
  if (output < 0 || !written[output]) throw Error("graph: output tensor is never written");
}

}  // namespace qgemma
