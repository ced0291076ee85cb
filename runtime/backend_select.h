// Which backend a Session runs its graphs on: the CPU (CpuBackend) or a Vulkan device
// (vk::VulkanBackend, built only with QGEMMA_HAVE_VULKAN). `qgemma run|chat|bench|logits
// --backend cpu|vulkan|auto --device N` choose through parse_backend() + resolve_backend().
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "kernels/quant/formats.h"
#include "runtime/graph.h"
#include "runtime/model_config.h"
#include "runtime/planner.h"

namespace qgemma {

enum class BackendKind { cpu, vulkan, automatic };

// "cpu", "vulkan" or "auto"; throws Error naming the value otherwise.
BackendKind parse_backend(const std::string& name);
// True when this build has the Vulkan backend (QGEMMA_HAVE_VULKAN).
bool have_vulkan();

struct BackendChoice {
  BackendKind kind = BackendKind::cpu;  // cpu or vulkan, never automatic
  int device = -1;                      // Vulkan device index (-1: vk::Device::open's default)
};

// Resolves a request. `cpu`: the CPU. `vulkan`: checks that the build has Vulkan (else throws
// Error saying how to build it); the device itself is opened (and checked) by GpuBackend::open.
// `automatic`: Vulkan when the build has it and a discrete or integrated GPU is present (device
// `device` when >= 0, else the preferred one); CPU drivers (lavapipe), virtual and other device
// types do not count, nor does a missing loader or driver: then the CPU.
BackendChoice resolve_backend(BackendKind kind, int device = -1);

// A Vulkan device running a session's graphs (vk::VulkanBackend behind a compile-time wall, so
// that session.h needs no Vulkan header). Same contract as CpuBackend::run plus the KV cache,
// which lives on the device.
class GpuBackend {
 public:
  // Opens Vulkan device `device` (-1: QGEMMA_VK_DEVICE or the preferred one) and a backend for
  // the model. Throws Error when the build has no Vulkan, no device is usable, or the index is
  // out of range.
  static std::unique_ptr<GpuBackend> open(int device, const ModelConfig& c, int64_t n_ctx,
                                          int64_t n_batch, TensorType kv_type);
  virtual ~GpuBackend() = default;

  // tokens, pos: [g.n_tokens]; returns the output rows in host memory (valid until next run).
  virtual const float* run(const Graph& g, const MemoryPlan& plan, const int32_t* tokens,
                           const int32_t* pos) = 0;
  // Graph::hidden of the last run in host memory (empty when the graph has none).
  virtual std::span<const float> hidden() const = 0;
  virtual void crop(int64_t n) = 0;
  virtual void clear() = 0;
  // "Vulkan (<device name>)", as `qgemma bench` prints it.
  virtual std::string name() const = 0;
  // The device's memory read bandwidth in GB/s (a pass over `bytes`, best of `reps`).
  virtual double read_bandwidth_gbs(size_t bytes, int reps) = 0;
};

}  // namespace qgemma
