#include "runtime/gemma4.h"

#include <string>

namespace qgemma {
namespace {

// Thin helpers so the builder below reads like the spec's pseudo-code. T = tokens of the batch.
class Builder {
 public:
  Builder(Graph& g, int64_t T) : g_(g), T_(T) {}

  int embed(const Matrix& table, float scale) {
    Node n{Op::Embed};
    n.w = &table;
    n.f = scale;
    return g_.add_node(n, T_, table.in, "inp_embd");
  }
  // RMSNorm over groups of `group` columns (group = cols: the whole row; head_dim: per head).
  int rmsnorm(int x, const std::vector<float>* w, int64_t group, float eps,
              const std::string& name) {
    Node n{Op::RmsNorm, {x}};
    n.vec = w ? w->data() : nullptr;
    n.group = group;
    n.f = eps;
    return g_.add_node(n, rows(x), cols(x), name);
  }
  int matmul(int x, const Matrix& w, const std::string& name) {
    Node n{Op::MatMul, {x}};
    n.w = &w;
    return g_.add_node(n, rows(x), w.out, name);
  }
  int rope(int x, int64_t head_dim, int layer, const std::string& name) {
    Node n{Op::Rope, {x}};
    n.group = head_dim;
    n.layer = layer;
    return g_.add_node(n, rows(x), cols(x), name);
  }
  void kv_store(int k, int v, int layer) {
    Node n{Op::KvStore, {k, v}};
    n.layer = layer;
    g_.add_node(n, 0, 0, "");
  }
  int attention(int q, int layer, const std::string& name) {
    Node n{Op::Attention, {q}};
    n.layer = layer;
    return g_.add_node(n, rows(q), cols(q), name);
  }
  int add(int a, int b, const std::string& name) { return binary(Op::Add, a, b, name); }
  int gelu_glu(int gate, int up, const std::string& name) {
    return binary(Op::GeluGlu, gate, up, name);
  }
  int scale(int x, float s, const std::string& name) {
    Node n{Op::Scale, {x}};
    n.f = s;
    return g_.add_node(n, rows(x), cols(x), name);
  }
  int softcap(int x, float cap, const std::string& name) {
    Node n{Op::Softcap, {x}};
    n.f = cap;
    return g_.add_node(n, rows(x), cols(x), name);
  }
  int last_rows(int x, int64_t count, const std::string& name) {
    Node n{Op::LastRows, {x}};
    n.group = count;
    return g_.add_node(n, count, cols(x), name);
  }

 private:
  int binary(Op op, int a, int b, const std::string& name) {
    return g_.add_node(Node{op, {a, b}}, rows(a), cols(a), name);
  }
  int64_t rows(int t) const { return g_.tensors[t].rows; }
  int64_t cols(int t) const { return g_.tensors[t].cols; }
  Graph& g_;
  int64_t T_;
};

}  // namespace

Graph build_gemma4(const ModelConfig& c, const ModelWeights& w, int64_t T, int64_t n_outputs) {
  Graph graph;
  graph.n_tokens = T;
  Builder g(graph, T);
  const int64_t E = c.n_embd;
  const float eps = c.rms_eps;

  int x = g.embed(w.token_embd, c.embed_scale);  // [T, E], times sqrt(E)
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerConfig& l = c.layers[il];
    const LayerWeights& lw = w.layers[il];
    const std::string b = "blk." + std::to_string(il) + ".";
    const int64_t hd = l.head_dim;

    int a = g.rmsnorm(x, &lw.attn_norm, E, eps, b + "attn_norm");    // [T, E]
    int q = g.matmul(a, lw.wq, b + "q");                             // [T, n_head * hd]
    int k_proj = g.matmul(a, lw.wk, b + "k");                        // [T, n_kv * hd]
    int v_proj = l.v_from_k ? k_proj : g.matmul(a, lw.wv, b + "v");  // K = V on global layers
    q = g.rope(g.rmsnorm(q, &lw.q_norm, hd, eps, b + "q_norm"), hd, il, b + "q_rope");
    int k = g.rope(g.rmsnorm(k_proj, &lw.k_norm, hd, eps, b + "k_norm"), hd, il, b + "k_rope");
    int v = g.rmsnorm(v_proj, nullptr, hd, eps, b + "v_norm");  // no weight, no rope
    g.kv_store(k, v, il);
    int o = g.matmul(g.attention(q, il, b + "attn"), lw.wo, b + "attn_out");  // [T, E], scale 1.0
    int h =
        g.add(x, g.rmsnorm(o, &lw.post_attn_norm, E, eps, b + "post_attn_norm"), b + "attn_res");

    int f = g.rmsnorm(h, &lw.ffn_norm, E, eps, b + "ffn_norm");  // [T, E]
    f = g.gelu_glu(g.matmul(f, lw.ffn_gate, b + "gate"), g.matmul(f, lw.ffn_up, b + "up"),
                   b + "geglu");                  // [T, n_ff]
    f = g.matmul(f, lw.ffn_down, b + "ffn_out");  // [T, E]
    h = g.add(h, g.rmsnorm(f, &lw.post_ffn_norm, E, eps, b + "post_ffn_norm"), b + "ffn_res");
    x = lw.out_scale == 1.0f ? h : g.scale(h, lw.out_scale, b + "out");  // layer scalar
  }
  if (n_outputs == 0) {  // a prefill batch whose logits nobody reads: skip the output head
    graph.output = g.last_rows(x, 1, "last_hidden");
    graph.validate();
    return graph;
  }
  if (n_outputs < T) x = g.last_rows(x, n_outputs, "out_rows");  // logits only where needed
  const int normed = g.rmsnorm(x, &w.output_norm, E, eps, "output_norm");
  graph.hidden = normed;  // [n_out, E], for the MTP drafter
  int z = g.matmul(normed, w.output, "logits_raw");
  if (c.final_softcap > 0) z = g.softcap(z, c.final_softcap, "logits");  // [n_out, vocab]
  graph.output = z;
  graph.validate();
  return graph;
}

}  // namespace qgemma
