#include "runtime/planner.h"

#include <algorithm>
#include <map>

namespace qgemma {
namespace {

constexpr int64_t kAlign = 16;  // floats

int64_t aligned(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

MemoryPlan plan_memory(const Graph& g) {
  const int n_tensors = static_cast<int>(g.tensors.size());
  const int n_nodes = static_cast<int>(g.nodes.size());
  MemoryPlan p;
  p.offset.assign(n_tensors, -1);
  p.first.assign(n_tensors, -1);
  p.last.assign(n_tensors, -1);
  for (int i = 0; i < n_nodes; ++i) {
    const Node& n = g.nodes[i];
    if (n.output >= 0) p.first[n.output] = p.last[n.output] = i;
    for (int in : n.inputs) p.last[in] = std::max(p.last[in], i);
  }
  if (g.output >= 0) p.last[g.output] = n_nodes;
  if (g.hidden >= 0) p.last[g.hidden] = n_nodes;

  std::map<int64_t, int64_t> live;  // offset -> size of blocks in use
  std::vector<std::vector<int>> dies_at(n_nodes + 1);
  for (int t = 0; t < n_tensors; ++t) {
    if (p.first[t] >= 0) dies_at[p.last[t]].push_back(t);
  }
  for (int i = 0; i < n_nodes; ++i) {
    const int out = g.nodes[i].output;
    if (out >= 0) {
      // First fit: the lowest gap between live blocks that holds the tensor. Inputs of this
      // node are still live here, so the output never aliases them.
      const int64_t size = aligned(g.tensors[out].nfloats());
      int64_t at = 0;
      for (const auto& [off, sz] : live) {
        if (off - at >= size) break;
        at = std::max(at, off + sz);
      }
      live[at] = size;
      p.offset[out] = at;
      p.arena_floats = std::max(p.arena_floats, at + size);
      p.naive_floats += size;
    }
    for (int t : dies_at[i]) live.erase(p.offset[t]);
  }
  return p;
}

}  // namespace qgemma
