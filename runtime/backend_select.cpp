#include "runtime/backend_select.h"

#include "loader/error.h"

#if defined(QGEMMA_HAVE_VULKAN)
#include "runtime/vulkan/backend.h"
#include "runtime/vulkan/device.h"
#include "runtime/vulkan/ops.h"
#endif

namespace qgemma {

BackendKind parse_backend(const std::string& name) {
  if (name == "cpu") return BackendKind::cpu;
  if (name == "vulkan") return BackendKind::vulkan;
  if (name == "auto") return BackendKind::automatic;
  throw Error("--backend '" + name + "': expected cpu, vulkan or auto");
}

#if defined(QGEMMA_HAVE_VULKAN)

bool have_vulkan() { return true; }

BackendChoice resolve_backend(BackendKind kind, int device) {
  if (kind == BackendKind::cpu) return {BackendKind::cpu, -1};
  if (kind == BackendKind::vulkan) return {BackendKind::vulkan, device};
  std::vector<vk::DeviceInfo> devs;
  try {
    devs = vk::list_devices();
  } catch (const Error&) {
    return {BackendKind::cpu, -1};  // no loader or driver: the CPU
  }
  if (devs.empty()) return {BackendKind::cpu, -1};
  const int i = device >= 0 ? device : static_cast<int>(vk::preferred_device(devs));
  if (i >= static_cast<int>(devs.size())) {
    throw Error("--device " + std::to_string(device) + ": only " + std::to_string(devs.size()) +
                " Vulkan device(s) found (see `qgemma devices`)");
  }
  const std::string& type = devs[i].type;
  if (type == "discrete" || type == "integrated") return {BackendKind::vulkan, i};
  return {BackendKind::cpu, -1};
}

namespace {

class VulkanGpuBackend final : public GpuBackend {
 public:
  VulkanGpuBackend(std::unique_ptr<vk::Device> dev, const ModelConfig& c, int64_t n_ctx,
                   int64_t n_batch, TensorType kv_type)
      : dev_(std::move(dev)), backend_(*dev_, c, n_ctx, n_batch, kv_type) {}

  const float* run(const Graph& g, const MemoryPlan& plan, const int32_t* tokens,
                   const int32_t* pos) override {
    return backend_.run(g, plan, tokens, pos);
  }
  std::span<const float> hidden() const override { return backend_.hidden(); }
  void crop(int64_t n) override { backend_.crop(n); }
  void clear() override { backend_.clear(); }
  std::string name() const override { return "Vulkan (" + dev_->info().name + ")"; }
  double read_bandwidth_gbs(size_t bytes, int reps) override {
    return vk::read_bandwidth_gbs(*dev_, bytes, reps);
  }

 private:
  std::unique_ptr<vk::Device> dev_;  // outlives backend_ (declared first)
  vk::VulkanBackend backend_;
};

}  // namespace

std::unique_ptr<GpuBackend> GpuBackend::open(int device, const ModelConfig& c, int64_t n_ctx,
                                             int64_t n_batch, TensorType kv_type) {
  return std::make_unique<VulkanGpuBackend>(vk::Device::open(device), c, n_ctx, n_batch, kv_type);
}

#else  // no Vulkan in this build

namespace {
constexpr const char* kNoVulkan =
    "--backend vulkan: this qgemma was built without the Vulkan backend (reconfigure with "
    "-DQGEMMA_VULKAN=ON; Debian packages: libvulkan-dev glslang-tools)";
}  // namespace

bool have_vulkan() { return false; }

BackendChoice resolve_backend(BackendKind kind, int /*device*/) {
  if (kind == BackendKind::vulkan) throw Error(kNoVulkan);
  return {BackendKind::cpu, -1};
}

std::unique_ptr<GpuBackend> GpuBackend::open(int, const ModelConfig&, int64_t, int64_t,
                                             TensorType) {
  throw Error(kNoVulkan);
}

#endif

}  // namespace qgemma
