// Memory planner: places every activation tensor of a graph in one arena, reusing the space of
// tensors whose last reader has run (liveness over the node order). The graph output stays live
// to the end. Offsets are in floats, aligned to 16 floats (64 bytes).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/graph.h"

namespace qgemma {

struct MemoryPlan {
  std::vector<int64_t> offset;  // per tensor, in floats; -1 for tensors never written
  std::vector<int> first;       // node index that writes the tensor
  std::vector<int> last;        // last node index that reads it (the end for the output)
  int64_t arena_floats = 0;     // arena size
  int64_t naive_floats = 0;     // what one buffer per tensor would take, for comparison
};

MemoryPlan plan_memory(const Graph& g);

}  // namespace qgemma
