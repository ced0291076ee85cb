// Memory planner: tensors whose lifetimes overlap never share memory; freed space is reused.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "runtime/gemma4.h"
#include "runtime/planner.h"
#include "runtime/synth.h"
#include "runtime/weights.h"

namespace qgemma {
namespace {

// Checks the plan against the graph: every written tensor has memory inside the arena, and two
// tensors alive at the same node (written at or before it, read at or after it) do not overlap.
void expect_no_live_aliasing(const Graph& g, const MemoryPlan& p) {
  const int n = static_cast<int>(g.tensors.size());
  for (int a = 0; a < n; ++a) {
    if (p.first[a] < 0) continue;
    ASSERT_GE(p.offset[a], 0);
    ASSERT_LE(p.offset[a] + g.tensors[a].nfloats(), p.arena_floats);
    for (int b = a + 1; b < n; ++b) {
      if (p.first[b] < 0) continue;
      const bool live_together = p.first[a] <= p.last[b] && p.first[b] <= p.last[a];
      if (!live_together) continue;
      const bool disjoint = p.offset[a] + g.tensors[a].nfloats() <= p.offset[b] ||
                            p.offset[b] + g.tensors[b].nfloats() <= p.offset[a];
      EXPECT_TRUE(disjoint) << "'" << g.tensors[a].name << "' and '" << g.tensors[b].name
                            << "' are alive together and share memory";
    }
  }
}

TEST(Planner, Gemma4GraphReusesMemoryWithoutAliasingLiveTensors) {
  const ModelConfig c = synth_preset("tiny");
  ModelWeights w;  // shapes only: the planner never reads weights
  w.token_embd = {"token_embd", TensorType::F32, c.n_embd, c.n_vocab};
  w.output = w.token_embd;
  w.layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    const LayerConfig& l = c.layers[i];
    const int64_t q = int64_t{l.n_head} * l.head_dim, kv = int64_t{l.n_head_kv} * l.head_dim;
    LayerWeights& lw = w.layers[i];
    lw.wq = {"q", TensorType::F32, c.n_embd, q};
    lw.wk = {"k", TensorType::F32, c.n_embd, kv};
    lw.wv = {"v", TensorType::F32, c.n_embd, kv};
    lw.wo = {"o", TensorType::F32, q, c.n_embd};
    lw.ffn_gate = lw.ffn_up = {"ff", TensorType::F32, c.n_embd, l.n_ff};
    lw.ffn_down = {"down", TensorType::F32, l.n_ff, c.n_embd};
    lw.out_scale = 0.5f;
  }
  for (int64_t T : {1, 7, 64}) {
    for (int64_t n_out : {int64_t{1}, T}) {
      const Graph g = build_gemma4(c, w, T, n_out);
      const MemoryPlan p = plan_memory(g);
      expect_no_live_aliasing(g, p);
      EXPECT_LT(p.arena_floats * 4, p.naive_floats) << "T=" << T;  // real reuse, many layers deep
      // The output survives to the end of the run.
      EXPECT_EQ(p.last[g.output], static_cast<int>(g.nodes.size()));
      EXPECT_EQ(g.tensors[g.output].rows, n_out);
      EXPECT_EQ(g.tensors[g.output].cols, c.n_vocab);
    }
  }
}

TEST(Planner, RandomGraphsNeverAliasLiveTensors) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    Graph g;
    g.n_tokens = 1;
    std::vector<int> tensors;
    Node first;
    first.op = Op::Embed;
    tensors.push_back(g.add_node(first, 1 + rng() % 8, 1 + rng() % 300, "t0"));
    const int n_nodes = 2 + rng() % 40;
    for (int i = 1; i < n_nodes; ++i) {
      Node n;
      n.op = Op::Add;
      const int n_in = 1 + rng() % 2;
      for (int k = 0; k < n_in; ++k) n.inputs.push_back(tensors[rng() % tensors.size()]);
      tensors.push_back(g.add_node(n, 1 + rng() % 8, 1 + rng() % 300, "t" + std::to_string(i)));
    }
    g.output = tensors[rng() % tensors.size()];
    const MemoryPlan p = plan_memory(g);
    expect_no_live_aliasing(g, p);
    EXPECT_LE(p.arena_floats, p.naive_floats);
  }
}

}  // namespace
}  // namespace qgemma
