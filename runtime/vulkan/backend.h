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
  // Commands of the last run: dispatches and barriers recorded.
  uint32_t last_dispatches() const { return last_dispatches_; }
  uint32_t last_barriers() const { return last_barriers_; }
  // Fusion of consecutive nodes into one dispatch (on by default; QGEMMA_VK_NO_FUSE=1 or
  // set_fusion(false): one dispatch per node as before, for comparisons).
  void set_fusion(bool on) { fusion_ = on; }

  // A group of consecutive graph nodes [first, first + count) run as one dispatch.
  struct Fused {
    enum Kind {
      Single,     // one node, its own launcher (Attention: + Q8 of its output when q8)
      NormChain,  // RmsNorm [Add] [Scale] [RmsNorm] [+ Q8 of the result]: norm_chain
      HeadNorm,   // up to 3 x (per-head RmsNorm [Rope]) (Q, K, V) [KvStore]: head_norm_rope
      MatVec,     // 2-3 int-dot MatMuls of one input [+ GeluGlu]: mul_mat_vec_q8_multi
    };
    Kind kind = Single;
    int first = 0, count = 1;
    int norm1 = -1, add = -1, scale = -1, norm2 = -1;  // NormChain nodes
    // NormChain, Single Attention: also quantize the result for the next int-dot matmuls.
    bool q8 = false;
    int parts = 0, part_norm[3] = {-1, -1, -1}, part_rope[3] = {-1, -1, -1}, rope_layer = -1;
    int kv_store = -1;  // HeadNorm: the KvStore of parts 1 and 2 (K, V), stored in the same pass
    int mm[3] = {-1, -1, -1}, n_mm = 0, glu = -1;  // MatVec nodes (mm[0] = the GLU's gate)
  };
  // The groups of a graph, in node order (what run() records; public for tests).
  std::vector<Fused> fuse(const Graph& g) const;

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
  Buffer arena_, tokens_, pos_, slots_ring_, slots_linear_, q8_, fa_part_, readback_;
  std::vector<float> out_, hidden_;
  uint32_t last_dispatches_ = 0, last_barriers_ = 0;
  bool fusion_ = true;
  struct CachedPlan {
    std::vector<uint64_t> sig;  // the graph's nodes, compared on every run
    std::vector<Fused> groups;
    MemoryPlan plan;
  };
  std::map<const Graph*, CachedPlan> plans_;
};

}  // namespace qgemma::vk
