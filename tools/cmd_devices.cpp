// `qgemma devices [--json]`: the Vulkan devices the loader finds, in the order `--device N` and
// QGEMMA_VK_DEVICE index them, with type, driver, memory and the features the shaders use
// (16-bit storage, int8, subgroup size, integer dot product, cooperative matrix). Marks the
// device that is picked by default (discrete > integrated > virtual > CPU).
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "loader/error.h"
#include "tools/command.h"
#ifdef QGEMMA_HAVE_VULKAN
#include "runtime/vulkan/device.h"
#include "runtime/vulkan/ops.h"
#endif

namespace qgemma {
namespace {

struct DevicesOptions {
  bool json = false;
  int bandwidth_device = -1;  // measure this device's read bandwidth (-1: none)
  int bandwidth_mib = 1024;
};

#ifdef QGEMMA_HAVE_VULKAN
const char* yes_no(bool b) { return b ? "yes" : "no"; }

int measure_bandwidth(const DevicesOptions& o) {
  auto dev = vk::Device::open(o.bandwidth_device);
  const double gbs = vk::read_bandwidth_gbs(*dev, static_cast<size_t>(o.bandwidth_mib) << 20, 5);
  if (o.json) {
    nlohmann::json j = {
        {"index", dev->info().index}, {"name", dev->info().name}, {"read_bandwidth_gbs", gbs}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("[%u] %s: read bandwidth %.1f GB/s (%d MiB buffer, best of 5)\n", dev->info().index,
                dev->info().name.c_str(), gbs, o.bandwidth_mib);
  }
  return 0;
}

int run_devices(const DevicesOptions& o) {
  if (o.bandwidth_device >= 0) return measure_bandwidth(o);
  const auto devices = vk::list_devices();
  if (devices.empty()) {
    throw Error(
        "no Vulkan device found (install a GPU driver, or mesa-vulkan-drivers for the "
        "CPU driver lavapipe)");
  }
  const uint32_t pick = vk::preferred_device(devices);
  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& d : devices) {
      out.push_back({{"index", d.index},
                     {"name", d.name},
                     {"type", d.type},
                     {"driver", d.driver},
                     {"api_version", d.api_version},
                     {"default", d.index == pick},
                     {"device_local_bytes", d.device_local_bytes},
                     {"unified_memory", d.unified_memory},
                     {"storage_16bit", d.storage_16bit},
                     {"storage_8bit", d.storage_8bit},
                     {"float16", d.float16},
                     {"int8", d.int8},
                     {"subgroup_size", d.subgroup_size},
                     {"subgroup_size_range", {d.min_subgroup_size, d.max_subgroup_size}},
                     {"subgroup_arithmetic", d.subgroup_arithmetic},
                     {"integer_dot_product", d.int_dot},
                     {"integer_dot_product_accelerated", d.int_dot_accelerated},
                     {"cooperative_matrix", d.coopmat},
                     {"max_storage_buffer_range", d.max_storage_buffer_range},
                     {"max_shared_memory", d.max_shared_memory}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  for (const auto& d : devices) {
    std::printf("%s[%u] %s\n", d.index == pick ? "* " : "  ", d.index, d.name.c_str());
    std::printf("      type %s, driver %s, Vulkan %s\n", d.type.c_str(), d.driver.c_str(),
                d.api_version.c_str());
    std::printf("      memory %.1f GiB device-local%s, max buffer binding %.0f MiB\n",
                d.device_local_bytes / double(1ull << 30), d.unified_memory ? " (unified)" : "",
                d.max_storage_buffer_range / double(1 << 20));
    std::printf("      16-bit storage %s, 8-bit storage %s, float16 %s, int8 %s\n",
                yes_no(d.storage_16bit), yes_no(d.storage_8bit), yes_no(d.float16), yes_no(d.int8));
    std::printf(
        "      subgroup %u (range %u-%u, arithmetic %s), integer dot product %s%s, cooperative "
        "matrix %s\n",
        d.subgroup_size, d.min_subgroup_size, d.max_subgroup_size, yes_no(d.subgroup_arithmetic),
        yes_no(d.int_dot),
        d.int_dot ? (d.int_dot_accelerated ? " (accelerated)" : " (emulated)") : "",
        yes_no(d.coopmat));
  }
  std::printf("* = used by default; choose another with --device N or QGEMMA_VK_DEVICE=N\n");
  return 0;
}
#else
int run_devices(const DevicesOptions&) {
  throw Error(
      "this qgemma was built without the Vulkan backend (QGEMMA_VULKAN=OFF or no "
      "Vulkan headers / glslangValidator at build time)");
}
#endif

const bool registered = register_command(
    "devices", "List the Vulkan devices (GPUs, CPU drivers) with their memory and features",
    [](CLI::App& app, std::function<int()>& run) {
      auto opt = std::make_shared<DevicesOptions>();
      app.add_flag("--json", opt->json, "Print JSON");
      app.add_option("--bandwidth", opt->bandwidth_device,
                     "Measure the memory read bandwidth of device N (a shader reading a buffer)");
      app.add_option("--bandwidth-mib", opt->bandwidth_mib, "Buffer size for --bandwidth")
          ->capture_default_str();
      run = [opt] { return run_devices(*opt); };
    });

}  // namespace
}  // namespace qgemma
