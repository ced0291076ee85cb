// Runs a graph (runtime/graph.h) on a Vulkan device: the same nodes as CpuBackend, each
// recorded as one or two shader dispatches into ONE command buffer per run, with barriers only
// between dependent nodes (Recorder). Weights are uploaded once, on first use (device-local;
// on unified-memory devices and CPU drivers the memory is host-visible and written in place).
// Activations live in one device buffer laid out by the memory planner; the KV cache lives in
// device memory with the CPU cache's layout and rules (sliding layers: a ring of
// window + batch slots; global layers: the whole context).
//
// Only headers of runtime/ are used here (Graph, Matrix, ModelConfig are plain structs), so
// qgemma_vulkan does not depend on qgemma_runtime's objects.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "kernels/quant/formats.h"
#include "runtime/graph.h"
#include "runtime/model_config.h"
#include "runtime/planner.h"
#include "runtime/vulkan/device.h"

namespace qgemma {
struct Matrix;
}

namespace qgemma::vk {

class VulkanBackend {
 public:
  // n_ctx, n_batch, kv_type: as KvCache. Throws Error for unsupported configs or weight types.
  VulkanBackend(Device& dev, const ModelConfig& c, int64_t n_ctx, int64_t n_batch,
                TensorType kv_type);
  ~VulkanBackend();

  // CpuBackend::run's contract: tokens, pos: [g.n_tokens]; stores the tokens' K/V in the
  // cache. Returns the graph output [rows x cols] copied to host memory (valid until the next
  // run).
  const float* run(const Graph& g, const MemoryPlan& plan, const int32_t* tokens,
                   const int32_t* pos);

  // The graph's hidden state (Graph::hidden) of the last run, copied to host memory: [rows x
  // n_embd], empty when the graph has none (valid until the next run).
  const std::vector<float>& hidden() const { return hidden_; }

  void crop(int64_t n);  // forget positions >= n (KvCache::crop rules)
  void clear();
  Device& device() { return dev_; }
  uint32_t last_dispatches() const { return last_dispatches_; }
  uint32_t last_barriers() const { return last_barriers_; }

 private:
  struct KvLayer {
    bool ring = false;
    int64_t capacity = 0;
    size_t row_bytes = 0;
    Buffer k, v, pos_buf;
    std::vector<int32_t> pos;  // [capacity], -1 = empty
    int64_t used = 0;
    int32_t newest = -1;
  };
  const Buffer& weight(const void* data, size_t bytes, const char* name);
  const Buffer& matrix(const Matrix& m);
  Buffer& scratch(Buffer& b, size_t bytes, const char* what);
  void update_cache_positions(Recorder& rec, const Graph& g, const int32_t* pos);

  Device& dev_;
  const ModelConfig& c_;
  int64_t n_ctx_, n_batch_;
  TensorType kv_type_;
  std::map<const void*, Buffer> weights_;  // host pointer -> uploaded copy
  std::vector<Buffer> inv_freq_;           // per layer [head_dim / 2]
  std::vector<KvLayer> kv_;
  Buffer arena_, tokens_, pos_, slots_ring_, slots_linear_, q8_, readback_;
  std::vector<float> out_, hidden_;
  uint32_t last_dispatches_ = 0, last_barriers_ = 0;
};

}  // namespace qgemma::vk
