#include "runtime/vulkan/device.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "loader/error.h"
#include "runtime/vulkan/shaders.h"

namespace qgemma::vk {
namespace {

const char* result_name(VkResult r) {
  switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY:
      return "out of host memory";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
      return "out of device memory";
    case VK_ERROR_INITIALIZATION_FAILED:
      return "initialization failed";
    case VK_ERROR_DEVICE_LOST:
      return "device lost";
    case VK_ERROR_MEMORY_MAP_FAILED:
      return "memory map failed";
    case VK_ERROR_LAYER_NOT_PRESENT:
      return "layer not present";
    case VK_ERROR_EXTENSION_NOT_PRESENT:
      return "extension not present";
    case VK_ERROR_FEATURE_NOT_PRESENT:
      return "feature not present";
    case VK_ERROR_INCOMPATIBLE_DRIVER:
      return "incompatible driver (no Vulkan driver found)";
    case VK_ERROR_TOO_MANY_OBJECTS:
      return "too many objects";
    case VK_ERROR_FRAGMENTED_POOL:
      return "fragmented pool";
    case VK_ERROR_OUT_OF_POOL_MEMORY:
      return "out of pool memory";
    case VK_TIMEOUT:
      return "timeout";
    default:
      return "error";
  }
}

std::string version_string(uint32_t v) {
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) +
         "." + std::to_string(VK_API_VERSION_PATCH(v));
}

std::string type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return "cpu";
    default:
      return "other";
  }
}

int type_rank(const std::string& t) {
  if (t == "discrete") return 0;
  if (t == "integrated") return 1;
  if (t == "virtual") return 2;
  if (t == "cpu") return 3;
  return 4;
}

VkInstance create_instance() {
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "qgemma";
  app.pEngineName = "qgemma";
  app.apiVersion = VK_API_VERSION_1_2;
  // Portability enumeration lists drivers such as MoltenVK; harmless where absent.
  std::vector<const char*> exts;
  VkInstanceCreateFlags flags = 0;
  uint32_t n = 0;
  vkEnumerateInstanceExtensionProperties(nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> props(n);
  vkEnumerateInstanceExtensionProperties(nullptr, &n, props.data());
  for (const auto& p : props) {
    if (std::strcmp(p.extensionName, VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME) == 0) {
      exts.push_back(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME);
      flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
    }
  }
  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.pApplicationInfo = &app;
  ci.flags = flags;
  ci.enabledExtensionCount = (uint32_t)exts.size();
  ci.ppEnabledExtensionNames = exts.data();
  VkInstance inst = VK_NULL_HANDLE;
  VkResult r = vkCreateInstance(&ci, nullptr, &inst);
  if (r != VK_SUCCESS) {
    throw Error(std::string("Vulkan: cannot create an instance (") + result_name(r) +
                "); is a Vulkan driver installed? (Debian: mesa-vulkan-drivers for lavapipe)");
  }
  return inst;
}

std::vector<VkPhysicalDevice> physical_devices(VkInstance inst) {
  uint32_t n = 0;
  vkEnumeratePhysicalDevices(inst, &n, nullptr);
  std::vector<VkPhysicalDevice> pds(n);
  if (n) vkEnumeratePhysicalDevices(inst, &n, pds.data());
  pds.resize(n);
  return pds;
}

bool has_extension(const std::vector<VkExtensionProperties>& exts, const char* name) {
  return std::any_of(exts.begin(), exts.end(), [&](const VkExtensionProperties& e) {
    return !std::strcmp(e.extensionName, name);
  });
}

std::vector<VkExtensionProperties> device_extensions(VkPhysicalDevice pd) {
  uint32_t n = 0;
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> exts(n);
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, exts.data());
  return exts;
}

// The feature chain queried and (with what is supported) enabled.
struct FeatureChain {
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  VkPhysicalDeviceVulkan11Features v11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES};
  VkPhysicalDeviceVulkan12Features v12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceShaderIntegerDotProductFeatures dot{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
  void link(bool with_dot) {
    f2.pNext = &v11;
    v11.pNext = &v12;
    v12.pNext = with_dot ? &dot : nullptr;
    dot.pNext = nullptr;
  }
};

DeviceInfo query_info(VkPhysicalDevice pd, uint32_t index) {
  DeviceInfo info;
  info.index = index;
  const auto exts = device_extensions(pd);
  const bool dot_ext = has_extension(exts, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);

  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  VkPhysicalDeviceDriverProperties drv{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
  VkPhysicalDeviceSubgroupProperties sg{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceSubgroupSizeControlProperties sgc{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
  VkPhysicalDeviceShaderIntegerDotProductProperties dotp{
      VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES};
  p2.pNext = &drv;
  drv.pNext = &sg;
  const bool sgc_ext = has_extension(exts, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
  sg.pNext = sgc_ext ? (void*)&sgc : nullptr;
  sgc.pNext = dot_ext ? &dotp : nullptr;
  if (!sgc_ext) sg.pNext = dot_ext ? &dotp : nullptr;
  vkGetPhysicalDeviceProperties2(pd, &p2);
  const VkPhysicalDeviceProperties& p = p2.properties;

  info.name = p.deviceName;
  info.type = type_name(p.deviceType);
  info.driver =
      std::string(drv.driverName) + (drv.driverInfo[0] ? std::string(" ") + drv.driverInfo : "");
  info.api_version = version_string(p.apiVersion);
  info.vendor_id = p.vendorID;
  info.device_id = p.deviceID;
  std::memcpy(info.pipeline_cache_uuid, p.pipelineCacheUUID, VK_UUID_SIZE);
  info.subgroup_size = sg.subgroupSize;
  info.subgroup_arithmetic = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                             (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
  info.min_subgroup_size = sgc_ext ? sgc.minSubgroupSize : sg.subgroupSize;
  info.max_subgroup_size = sgc_ext ? sgc.maxSubgroupSize : sg.subgroupSize;
  info.max_shared_memory = p.limits.maxComputeSharedMemorySize;
  info.max_workgroup_invocations = p.limits.maxComputeWorkGroupInvocations;
  info.max_storage_buffer_range = p.limits.maxStorageBufferRange;
  info.storage_offset_alignment = p.limits.minStorageBufferOffsetAlignment;
  for (int i = 0; i < 3; ++i) info.max_workgroup_count[i] = p.limits.maxComputeWorkGroupCount[i];

  FeatureChain fc;
  fc.link(dot_ext);
  vkGetPhysicalDeviceFeatures2(pd, &fc.f2);
  info.storage_16bit = fc.v11.storageBuffer16BitAccess;
  info.storage_8bit = fc.v12.storageBuffer8BitAccess;
  info.float16 = fc.v12.shaderFloat16;
  info.int8 = fc.v12.shaderInt8;
  info.int_dot = dot_ext && fc.dot.shaderIntegerDotProduct;
  info.int_dot_accelerated = info.int_dot && dotp.integerDotProduct4x8BitPackedSignedAccelerated;
  info.coopmat = has_extension(exts, "VK_KHR_cooperative_matrix");

  VkPhysicalDeviceMemoryProperties mem;
  vkGetPhysicalDeviceMemoryProperties(pd, &mem);
  uint64_t biggest = 0;
  uint32_t biggest_heap = 0;
  for (uint32_t h = 0; h < mem.memoryHeapCount; ++h) {
    if (mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) {
      info.device_local_bytes += mem.memoryHeaps[h].size;
      if (mem.memoryHeaps[h].size > biggest) biggest = mem.memoryHeaps[h].size, biggest_heap = h;
    }
  }
  const VkMemoryPropertyFlags uma =
      VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT;
  for (uint32_t t = 0; t < mem.memoryTypeCount; ++t) {
    if ((mem.memoryTypes[t].propertyFlags & uma) == uma &&
        mem.memoryTypes[t].heapIndex == biggest_heap && info.type != "discrete") {
      info.unified_memory = true;
    }
  }
  return info;
}

std::string cache_directory() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) return std::string(xdg) + "/qgemma";
  const char* home = std::getenv("HOME");
  if (home && *home) return std::string(home) + "/.cache/qgemma";
  return "";
}

}  // namespace

// ---- shaders -------------------------------------------------------------------------------

const ShaderModuleWords& find_shader(std::string_view name) {
  for (const auto& m : embedded_shaders()) {
    if (name == m.name) return m;
  }
  throw Error("Vulkan: no embedded shader module '" + std::string(name) + "'");
}

// ---- device listing ----------------------------------------------------------------------

std::vector<DeviceInfo> list_devices() {
  VkInstance inst = create_instance();
  std::vector<DeviceInfo> out;
  const auto pds = physical_devices(inst);
  for (uint32_t i = 0; i < pds.size(); ++i) out.push_back(query_info(pds[i], i));
  vkDestroyInstance(inst, nullptr);
  return out;
}

uint32_t preferred_device(const std::vector<DeviceInfo>& devices) {
  uint32_t best = 0;
  for (uint32_t i = 1; i < devices.size(); ++i) {
    const int a = type_rank(devices[i].type), b = type_rank(devices[best].type);
    if (a < b || (a == b && devices[i].device_local_bytes > devices[best].device_local_bytes)) {
      best = i;
    }
  }
  return best;
}

// ---- Buffer ------------------------------------------------------------------------------

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    this->~Buffer();
    device_ = o.device_, buffer_ = o.buffer_, memory_ = o.memory_, size_ = o.size_;
    mapped_ = o.mapped_;
    o.device_ = VK_NULL_HANDLE, o.buffer_ = VK_NULL_HANDLE, o.memory_ = VK_NULL_HANDLE;
    o.size_ = 0, o.mapped_ = nullptr;
  }
  return *this;
}

Buffer::~Buffer() {
  if (device_ == VK_NULL_HANDLE) return;
  if (mapped_) vkUnmapMemory(device_, memory_);
  if (buffer_) vkDestroyBuffer(device_, buffer_, nullptr);
  if (memory_) vkFreeMemory(device_, memory_, nullptr);
  device_ = VK_NULL_HANDLE, buffer_ = VK_NULL_HANDLE, memory_ = VK_NULL_HANDLE, mapped_ = nullptr;
}

// ---- Device ------------------------------------------------------------------------------

std::unique_ptr<Device> Device::open(int index) {
  std::unique_ptr<Device> dev(new Device());
  dev->instance_ = create_instance();
  const auto pds = physical_devices(dev->instance_);
  if (pds.empty()) {
    throw Error(
        "Vulkan: no device found (no GPU driver and no CPU driver; Debian: install "
        "mesa-vulkan-drivers for lavapipe, or set VK_DRIVER_FILES to a driver's ICD json)");
  }
  std::vector<DeviceInfo> infos;
  for (uint32_t i = 0; i < pds.size(); ++i) infos.push_back(query_info(pds[i], i));
  if (index < 0) {
    const char* env = std::getenv("QGEMMA_VK_DEVICE");
    if (env && *env) {
      char* end = nullptr;
      long v = std::strtol(env, &end, 10);
      if (*end || v < 0)
        throw Error(std::string("QGEMMA_VK_DEVICE='") + env + "' is not a device index");
      index = (int)v;
    } else {
      index = (int)preferred_device(infos);
    }
  }
  if ((size_t)index >= pds.size()) {
    throw Error("Vulkan: device " + std::to_string(index) + " requested but only " +
                std::to_string(pds.size()) + " found (see `qgemma devices`)");
  }
  dev->physical_ = pds[index];
  dev->info_ = infos[index];
  vkGetPhysicalDeviceMemoryProperties(dev->physical_, &dev->memory_);

  // One compute queue.
  uint32_t nq = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(dev->physical_, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> qf(nq);
  vkGetPhysicalDeviceQueueFamilyProperties(dev->physical_, &nq, qf.data());
  uint32_t family = UINT32_MAX;
  for (uint32_t i = 0; i < nq && family == UINT32_MAX; ++i) {
    if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) family = i;
  }
  if (family == UINT32_MAX)
    throw Error("Vulkan: device '" + dev->info_.name + "' has no compute queue");
  dev->queue_family_ = family;

  // Enable exactly the optional features the shaders may use and the device has.
  FeatureChain want;
  want.link(dev->info_.int_dot);
  want.f2.features.shaderInt16 = VK_FALSE;
  VkPhysicalDeviceFeatures core{};
  vkGetPhysicalDeviceFeatures(dev->physical_, &core);
  want.f2.features.shaderInt16 = core.shaderInt16;
  want.v11.storageBuffer16BitAccess = dev->info_.storage_16bit;
  want.v12.storageBuffer8BitAccess = dev->info_.storage_8bit;
  want.v12.shaderFloat16 = dev->info_.float16;
  want.v12.shaderInt8 = dev->info_.int8;
  want.dot.shaderIntegerDotProduct = dev->info_.int_dot;
  std::vector<const char*> exts;
  if (dev->info_.int_dot) exts.push_back(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);

  const float priority = 1.0f;
  VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qci.queueFamilyIndex = family;
  qci.queueCount = 1;
  qci.pQueuePriorities = &priority;
  VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.pNext = &want.f2;
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  dci.enabledExtensionCount = (uint32_t)exts.size();
  dci.ppEnabledExtensionNames = exts.data();
  dev->check(vkCreateDevice(dev->physical_, &dci, nullptr, &dev->device_), "creating the device");
  vkGetDeviceQueue(dev->device_, family, 0, &dev->queue_);

  VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = family;
  dev->check(vkCreateCommandPool(dev->device_, &pci, nullptr, &dev->command_pool_),
             "creating a command pool");
  dev->load_pipeline_cache();
  if (const char* sync = std::getenv("QGEMMA_VK_SYNC"); sync && *sync && *sync != '0')
    dev->sync_all_ = true;
  if (const char* prof = std::getenv("QGEMMA_VK_PROFILE"); prof && *prof && *prof != '0') {
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(dev->physical_, &props);
    if (qf[family].timestampValidBits > 0 && props.limits.timestampPeriod > 0)
      dev->profile_period_ns_ = props.limits.timestampPeriod;
    else
      std::fprintf(stderr, "QGEMMA_VK_PROFILE: device '%s' has no compute timestamps\n",
                   dev->info_.name.c_str());
  }
  return dev;
}

void Device::add_profile(const std::string& key, double ms, uint64_t calls) {
  std::lock_guard<std::mutex> lock(mutex_);
  ProfileEntry& e = profile_[key];
  e.calls += calls;
  e.ms += ms;
}

std::string Device::profile_report() const {
  std::vector<std::pair<std::string, ProfileEntry>> rows(profile_.begin(), profile_.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double gpu = 0;
  for (const auto& [k, e] : rows)
    if (k.rfind("(", 0) != 0) gpu += e.ms;  // "(host) ..." rows are wall-clock, not GPU
  std::string out = "Vulkan profile (" + info_.name + "): GPU time per tag and pipeline\n";
  char line[512];
  std::snprintf(line, sizeof line, "%10s %8s %12s %6s  %s\n", "ms", "calls", "us/call", "%",
                "tag pipeline");
  out += line;
  for (const auto& [k, e] : rows) {
    if (k.rfind("(count)", 0) == 0) continue;  // printed per run below
    const bool host = k.rfind("(", 0) == 0;
    std::snprintf(line, sizeof line, "%10.3f %8llu %12.2f %6s  %s\n", e.ms,
                  (unsigned long long)e.calls, e.calls ? 1000.0 * e.ms / (double)e.calls : 0.0,
                  host ? "" : std::to_string((int)std::lround(100.0 * e.ms / gpu)).c_str(),
                  k.c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "%10.3f total GPU time in dispatches\n", gpu);
  out += line;
  // Per-run command counts ("(count) <tag> runs|dispatches|barriers", from VulkanBackend).
  for (const auto& [k, e] : profile_) {
    const std::string pre = "(count) ", suf = " runs";
    if (k.rfind(pre, 0) != 0 || k.size() < pre.size() + suf.size() ||
        k.compare(k.size() - suf.size(), suf.size(), suf) != 0 || e.calls == 0)
      continue;
    const std::string tag = k.substr(pre.size(), k.size() - pre.size() - suf.size());
    auto count = [&](const char* what) {
      auto it = profile_.find(pre + tag + " " + what);
      return it == profile_.end() ? 0.0 : (double)it->second.calls / (double)e.calls;
    };
    std::snprintf(line, sizeof line, "per %s run: %.1f dispatches, %.1f barriers (%llu runs)\n",
                  tag.c_str(), count("dispatches"), count("barriers"), (unsigned long long)e.calls);
    out += line;
  }
  return out;
}

Device::~Device() {
  if (profiling() && !profile_.empty()) std::fputs(profile_report().c_str(), stderr);
  if (device_) {
    vkDeviceWaitIdle(device_);
    staging_ = Buffer();  // its memory belongs to device_
    save_pipeline_cache();
    for (auto& [name, p] : pipelines_) {
      vkDestroyPipeline(device_, p->pipeline, nullptr);
      vkDestroyPipelineLayout(device_, p->layout, nullptr);
      vkDestroyDescriptorSetLayout(device_, p->set_layout, nullptr);
    }
    if (pipeline_cache_) vkDestroyPipelineCache(device_, pipeline_cache_, nullptr);
    if (command_pool_) vkDestroyCommandPool(device_, command_pool_, nullptr);
    vkDestroyDevice(device_, nullptr);
  }
  if (instance_) vkDestroyInstance(instance_, nullptr);
}

void Device::check(VkResult r, std::string_view what) const {
  if (r == VK_SUCCESS) return;
  std::string msg = "Vulkan: " + std::string(what) + " failed on '" + info_.name +
                    "': " + result_name(r) + " (VkResult " + std::to_string((int)r) + ")";
  if (r == VK_ERROR_DEVICE_LOST) {
    msg += "; the GPU reset or the driver crashed - results are lost, restart the program";
  } else if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY) {
    msg += "; use a smaller model / context or the CPU backend";
  }
  throw Error(msg);
}

uint32_t Device::find_memory_type(uint32_t type_bits, MemoryKind kind, bool* mapped) const {
  const VkMemoryPropertyFlags hv =
      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  const VkMemoryPropertyFlags dl = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  // Preference lists: first match wins.
  std::vector<VkMemoryPropertyFlags> prefs;
  if (kind == MemoryKind::device) {
    if (info_.unified_memory || info_.type == "cpu") prefs.push_back(dl | hv);
    prefs.push_back(dl);
    prefs.push_back(hv);
  } else {
    prefs.push_back(hv | VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    prefs.push_back(hv);
  }
  for (VkMemoryPropertyFlags want : prefs) {
    for (uint32_t t = 0; t < memory_.memoryTypeCount; ++t) {
      if ((type_bits & (1u << t)) && (memory_.memoryTypes[t].propertyFlags & want) == want) {
        *mapped = (memory_.memoryTypes[t].propertyFlags & hv) == hv;
        return t;
      }
    }
  }
  throw Error("Vulkan: no suitable memory type on '" + info_.name + "'");
}

Buffer Device::create_buffer(size_t bytes, MemoryKind kind, std::string_view what) {
  const size_t mib = (bytes + (1 << 20) - 1) >> 20;
  const std::string desc = "allocating " + std::to_string(mib) + " MiB for " + std::string(what);
  // Whole 16-byte words: shaders read every format through 32-bit words, and a word that
  // straddles the end of a binding reads as zero on robust drivers.
  bytes = (std::max<size_t>(bytes, 1) + 15) & ~size_t(15);
  Buffer b;
  b.device_ = device_;
  b.size_ = bytes;
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = bytes;
  bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
              VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(vkCreateBuffer(device_, &bci, nullptr, &b.buffer_), desc);
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(device_, b.buffer_, &req);
  bool mapped = false;
  VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = find_memory_type(req.memoryTypeBits, kind, &mapped);
  check(vkAllocateMemory(device_, &mai, nullptr, &b.memory_), desc);
  check(vkBindBufferMemory(device_, b.buffer_, b.memory_, 0), desc);
  if (mapped) check(vkMapMemory(device_, b.memory_, 0, VK_WHOLE_SIZE, 0, &b.mapped_), desc);
  return b;
}

Buffer& Device::staging(size_t bytes) {
  if (!staging_ || staging_.size() < bytes)
    staging_ = create_buffer(bytes, MemoryKind::host, "a staging buffer");
  return staging_;
}

void Device::upload(const Buffer& buf, size_t offset, const void* src, size_t bytes) {
  if (offset + bytes > buf.size()) throw Error("Vulkan: upload past the end of a buffer");
  if (buf.mapped() && !force_staging_chunk_) {
    std::memcpy((char*)buf.mapped() + offset, src, bytes);
    return;
  }
  // Staging in chunks of at most 64 MiB, through one buffer kept for the device's life.
  const size_t chunk =
      std::min<size_t>(bytes, force_staging_chunk_ ? force_staging_chunk_ : 64u << 20);
  std::lock_guard<std::mutex> lock(staging_mutex_);
  const Buffer& stage = staging(chunk);
  for (size_t done = 0; done < bytes; done += chunk) {
    const size_t n = std::min(chunk, bytes - done);
    std::memcpy(stage.mapped(), (const char*)src + done, n);
    VkCommandBuffer cmd = begin_commands();
    VkBufferCopy region{0, offset + done, n};
    vkCmdCopyBuffer(cmd, stage.handle(), buf.handle(), 1, &region);
    submit_and_wait(cmd);
  }
}

void Device::download(const Buffer& buf, size_t offset, void* dst, size_t bytes) {
  if (offset + bytes > buf.size()) throw Error("Vulkan: download past the end of a buffer");
  if (buf.mapped() && !force_staging_chunk_) {
    std::memcpy(dst, (const char*)buf.mapped() + offset, bytes);
    return;
  }
  const size_t chunk =
      std::min<size_t>(bytes, force_staging_chunk_ ? force_staging_chunk_ : 64u << 20);
  std::lock_guard<std::mutex> lock(staging_mutex_);
  const Buffer& stage = staging(chunk);
  for (size_t done = 0; done < bytes; done += chunk) {
    const size_t n = std::min(chunk, bytes - done);
    VkCommandBuffer cmd = begin_commands();
    VkBufferCopy region{offset + done, 0, n};
    vkCmdCopyBuffer(cmd, buf.handle(), stage.handle(), 1, &region);
    submit_and_wait(cmd);
    std::memcpy((char*)dst + done, stage.mapped(), n);
  }
}

VkCommandBuffer Device::begin_commands() {
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = command_pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    check(vkAllocateCommandBuffers(device_, &ai, &cmd), "allocating a command buffer");
  }
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(vkBeginCommandBuffer(cmd, &bi), "beginning a command buffer");
  return cmd;
}

void Device::submit_and_wait(VkCommandBuffer cmd) {
  std::lock_guard<std::mutex> lock(mutex_);
  struct Cleanup {
    Device* d;
    VkCommandBuffer c;
    VkFence f = VK_NULL_HANDLE;
    ~Cleanup() {
      if (f) vkDestroyFence(d->device_, f, nullptr);
      vkFreeCommandBuffers(d->device_, d->command_pool_, 1, &c);
    }
  } cleanup{this, cmd};
  check(vkEndCommandBuffer(cmd), "ending a command buffer");
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  check(vkCreateFence(device_, &fci, nullptr, &cleanup.f), "creating a fence");
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  check(vkQueueSubmit(queue_, 1, &si, cleanup.f), "submitting commands");
  check(vkWaitForFences(device_, 1, &cleanup.f, VK_TRUE, UINT64_MAX), "waiting for the GPU");
}

void Device::submit(VkCommandBuffer cmd) {
  std::lock_guard<std::mutex> lock(mutex_);
  check(vkEndCommandBuffer(cmd), "ending a command buffer");
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  check(vkQueueSubmit(queue_, 1, &si, VK_NULL_HANDLE), "submitting commands");
}

void Device::wait_idle() {
  std::lock_guard<std::mutex> lock(mutex_);
  vkQueueWaitIdle(queue_);
}

void Device::discard_commands(VkCommandBuffer cmd) {
  std::lock_guard<std::mutex> lock(mutex_);
  vkFreeCommandBuffers(device_, command_pool_, 1, &cmd);
}

const Pipeline& Device::pipeline(std::string_view module, std::span<const uint32_t> spec,
                                 uint32_t bindings, uint32_t push_bytes) {
  std::string key(module);
  for (uint32_t s : spec) key += ":" + std::to_string(s);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = pipelines_.find(key);
  if (it != pipelines_.end()) return *it->second;

  const ShaderModuleWords& words = find_shader(module);
  auto p = std::make_unique<Pipeline>();
  p->name = key;
  p->bindings = bindings;
  p->push_bytes = push_bytes;
  const std::string what = "creating pipeline " + key;

  std::vector<VkDescriptorSetLayoutBinding> b(bindings);
  for (uint32_t i = 0; i < bindings; ++i) {
    b[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
  }
  VkDescriptorSetLayoutCreateInfo dl{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  dl.bindingCount = bindings;
  dl.pBindings = b.data();
  check(vkCreateDescriptorSetLayout(device_, &dl, nullptr, &p->set_layout), what);
  VkPushConstantRange pcr{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes};
  VkPipelineLayoutCreateInfo pl{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  pl.setLayoutCount = 1;
  pl.pSetLayouts = &p->set_layout;
  pl.pushConstantRangeCount = push_bytes ? 1 : 0;
  pl.pPushConstantRanges = &pcr;
  check(vkCreatePipelineLayout(device_, &pl, nullptr, &p->layout), what);

  VkShaderModuleCreateInfo smi{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  smi.codeSize = words.count * 4;
  smi.pCode = words.words;
  VkShaderModule sm = VK_NULL_HANDLE;
  check(vkCreateShaderModule(device_, &smi, nullptr, &sm), what);

  std::vector<VkSpecializationMapEntry> entries(spec.size());
  for (uint32_t i = 0; i < spec.size(); ++i) entries[i] = {i, i * 4, 4};
  VkSpecializationInfo si{(uint32_t)spec.size(), entries.data(), spec.size() * 4, spec.data()};
  VkComputePipelineCreateInfo ci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  ci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = sm;
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = spec.empty() ? nullptr : &si;
  ci.layout = p->layout;
  VkResult r = vkCreateComputePipelines(device_, pipeline_cache_, 1, &ci, nullptr, &p->pipeline);
  vkDestroyShaderModule(device_, sm, nullptr);
  check(r, what);
  return *(pipelines_[key] = std::move(p));
}

void Device::load_pipeline_cache() {
  const std::string dir = cache_directory();
  std::vector<char> data;
  if (!dir.empty()) {
    char uuid[2 * VK_UUID_SIZE + 1];
    for (unsigned i = 0; i < VK_UUID_SIZE; ++i)
      std::snprintf(uuid + 2 * i, 3, "%02x", info_.pipeline_cache_uuid[i]);
    char ids[32];
    std::snprintf(ids, sizeof ids, "%04x-%04x-", info_.vendor_id, info_.device_id);
    cache_path_ = dir + "/vk-pipelines-" + ids + uuid + ".bin";
    std::ifstream in(cache_path_, std::ios::binary);
    if (in) data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  VkPipelineCacheCreateInfo ci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  ci.initialDataSize = data.size();
  ci.pInitialData = data.empty() ? nullptr : data.data();
  // A stale or corrupt file: the driver rejects it; start empty instead of failing.
  if (vkCreatePipelineCache(device_, &ci, nullptr, &pipeline_cache_) != VK_SUCCESS) {
    ci.initialDataSize = 0;
    ci.pInitialData = nullptr;
    check(vkCreatePipelineCache(device_, &ci, nullptr, &pipeline_cache_),
          "creating a pipeline cache");
  }
}

// Best effort: an unwritable cache directory only costs pipeline compile time next run.
void Device::save_pipeline_cache() {
  if (cache_path_.empty() || !pipeline_cache_) return;
  size_t n = 0;
  if (vkGetPipelineCacheData(device_, pipeline_cache_, &n, nullptr) != VK_SUCCESS || n == 0) return;
  std::vector<char> data(n);
  if (vkGetPipelineCacheData(device_, pipeline_cache_, &n, data.data()) != VK_SUCCESS) return;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(cache_path_).parent_path(), ec);
  if (ec) return;
  const std::string tmp = cache_path_ + ".tmp" + std::to_string((unsigned long)(uintptr_t)this);
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) return;
    out.write(data.data(), (std::streamsize)n);
    if (!out) {
      out.close();
      std::filesystem::remove(tmp, ec);
      return;
    }
  }
  std::filesystem::rename(tmp, cache_path_, ec);
  if (ec) std::filesystem::remove(tmp, ec);
}

// ---- Recorder ----------------------------------------------------------------------------

Recorder::Recorder(Device& dev) : dev_(dev) {}

Recorder::~Recorder() {
  if (cmd_) dev_.discard_commands(cmd_);  // recorded but never submitted
  if (!submitted_.empty()) {              // an error after a chunk was queued
    dev_.wait_idle();
    for (VkCommandBuffer c : submitted_) dev_.discard_commands(c);
  }
  if (queries_) vkDestroyQueryPool(dev_.handle(), queries_, nullptr);
  for (VkDescriptorPool p : pools_) vkDestroyDescriptorPool(dev_.handle(), p, nullptr);
}

bool Recorder::overlaps(const std::vector<Range>& set, const Range& r) {
  for (const Range& s : set) {
    if (s.buffer == r.buffer && s.begin < r.end && r.begin < s.end) return true;
  }
  return false;
}

static double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Recorder::begin_if_needed() {
  if (cmd_) return;
  cmd_ = dev_.begin_commands();
  if (!dev_.profiling()) return;
  if (!queries_) {
    VkQueryPoolCreateInfo qi{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qi.queryCount = kQueries;
    dev_.check(vkCreateQueryPool(dev_.handle(), &qi, nullptr, &queries_),
               "creating a timestamp query pool");
  }
  vkCmdResetQueryPool(cmd_, queries_, 0, kQueries);
  vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_, 0);
  query_keys_.clear();
  record_start_ms_ = now_ms();
}

void Recorder::read_profile() {
  const uint32_t n = (uint32_t)query_keys_.size() + 1;
  std::vector<uint64_t> ts(n);
  dev_.check(
      vkGetQueryPoolResults(dev_.handle(), queries_, 0, n, n * sizeof(uint64_t), ts.data(),
                            sizeof(uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
      "reading timestamps");
  std::map<std::string, std::pair<double, uint64_t>> sums;  // one lock per submit, not per key
  for (uint32_t i = 1; i < n; ++i) {
    auto& [ms, calls] = sums[query_keys_[i - 1]];
    ms += (double)(ts[i] - ts[i - 1]) * dev_.timestamp_period_ns() * 1e-6;
    ++calls;
  }
  for (const auto& [k, v] : sums) dev_.add_profile(k, v.first, v.second);
  query_keys_.clear();
}

VkDescriptorSet Recorder::allocate_set(VkDescriptorSetLayout layout) {
  constexpr uint32_t kSets = 256, kBuffers = 12;  // bindings per set at most
  if (pool_sets_left_ == 0) {
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSets * kBuffers};
    VkDescriptorPoolCreateInfo ci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    ci.maxSets = kSets;
    ci.poolSizeCount = 1;
    ci.pPoolSizes = &size;
    VkDescriptorPool pool = VK_NULL_HANDLE;
    dev_.check(vkCreateDescriptorPool(dev_.handle(), &ci, nullptr, &pool),
               "creating a descriptor pool");
    pools_.push_back(pool);
    pool_sets_left_ = kSets;
  }
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = pools_.back();
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  dev_.check(vkAllocateDescriptorSets(dev_.handle(), &ai, &set), "allocating a descriptor set");
  --pool_sets_left_;
  return set;
}

void Recorder::barrier() {
  begin_if_needed();
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                     VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  // Read-after-write and write-after-read/write between compute and transfer, either way.
  const VkPipelineStageFlags stages =
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  vkCmdPipelineBarrier(cmd_, stages, stages, 0, 1, &mb, 0, nullptr, 0, nullptr);
  written_.clear();
  read_.clear();
  ++barriers_;
}

void Recorder::dispatch(const Pipeline& p, std::span<const Arg> args, const void* push,
                        size_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
  if (args.size() != p.bindings || push_bytes != p.push_bytes) {
    throw Error("Vulkan: dispatch of " + p.name + " with " + std::to_string(args.size()) +
                " buffers / " + std::to_string(push_bytes) + " push bytes, pipeline expects " +
                std::to_string(p.bindings) + " / " + std::to_string(p.push_bytes));
  }
  const DeviceInfo& info = dev_.info();
  if (gx > info.max_workgroup_count[0] || gy > info.max_workgroup_count[1] ||
      gz > info.max_workgroup_count[2]) {
    throw Error("Vulkan: dispatch of " + p.name + " exceeds the device's workgroup count limit");
  }
  if (gx == 0 || gy == 0 || gz == 0) return;
  begin_if_needed();

  // Hazards: read-after-write, write-after-write, write-after-read.
  std::vector<Range> ranges(args.size());
  bool hazard = dev_.sync_all() && dispatches_ > 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const View& v = args[i].view;
    const size_t n = v.size();
    if (v.offset % info.storage_offset_alignment) {
      throw Error("Vulkan: " + p.name + " binding " + std::to_string(i) + " offset " +
                  std::to_string(v.offset) + " is not a multiple of the device's alignment " +
                  std::to_string(info.storage_offset_alignment));
    }
    if (n > info.max_storage_buffer_range) {
      throw Error("Vulkan: " + p.name + " binding " + std::to_string(i) + " spans " +
                  std::to_string(n) + " bytes, more than the device's maxStorageBufferRange " +
                  std::to_string(info.max_storage_buffer_range));
    }
    ranges[i] = {v.buffer->handle(), v.offset, v.offset + n};
    if (overlaps(written_, ranges[i]) || (args[i].write && overlaps(read_, ranges[i])))
      hazard = true;
  }
  if (hazard) barrier();
  for (size_t i = 0; i < args.size(); ++i) (args[i].write ? written_ : read_).push_back(ranges[i]);

  VkDescriptorSet set = allocate_set(p.set_layout);
  std::vector<VkDescriptorBufferInfo> infos(args.size());
  std::vector<VkWriteDescriptorSet> writes(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    // Ranges rounded up to whole words (buffers are allocated in 16-byte multiples).
    const size_t range = std::min((args[i].view.size() + 3) & ~size_t(3),
                                  args[i].view.buffer->size() - args[i].view.offset);
    infos[i] = {args[i].view.buffer->handle(), args[i].view.offset, range};
    writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[i].dstSet = set;
    writes[i].dstBinding = (uint32_t)i;
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
  }
  vkUpdateDescriptorSets(dev_.handle(), (uint32_t)writes.size(), writes.data(), 0, nullptr);
  vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nullptr);
  if (push_bytes)
    vkCmdPushConstants(cmd_, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, (uint32_t)push_bytes, push);
  vkCmdDispatch(cmd_, gx, gy, gz);
  ++dispatches_;
  if (queries_) {  // profiling: one command buffer (its timestamps), no chunks
    if (query_keys_.size() + 1 < kQueries) {
      query_keys_.push_back(tag_.empty() ? p.name : tag_ + " " + p.name);
      vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_,
                          (uint32_t)query_keys_.size());
    }
  } else if (++since_flush_ >= kChunk) {
    flush();
  }
}

void Recorder::flush() {
  if (!cmd_) return;
  VkCommandBuffer cmd = cmd_;
  cmd_ = VK_NULL_HANDLE;
  since_flush_ = 0;
  submitted_.push_back(cmd);
  dev_.submit(cmd);
}

void Recorder::copy(View src, View dst, size_t bytes) {
  if (bytes == 0) return;
  if (src.offset + bytes > src.buffer->size() || dst.offset + bytes > dst.buffer->size()) {
    throw Error("Vulkan: copy of " + std::to_string(bytes) + " bytes past the end of a buffer");
  }
  begin_if_needed();
  const Range rs{src.buffer->handle(), src.offset, src.offset + bytes};
  const Range rd{dst.buffer->handle(), dst.offset, dst.offset + bytes};
  if (dev_.sync_all() || overlaps(written_, rs) || overlaps(written_, rd) || overlaps(read_, rd))
    barrier();
  VkBufferCopy region{src.offset, dst.offset, bytes};
  vkCmdCopyBuffer(cmd_, src.buffer->handle(), dst.buffer->handle(), 1, &region);
  read_.push_back(rs);
  written_.push_back(rd);
}

void Recorder::update(View dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (dst.offset + bytes > dst.buffer->size())
    throw Error("Vulkan: update of " + std::to_string(bytes) + " bytes past the end of a buffer");
  if (dst.offset % 4 || bytes % 4)
    throw Error("Vulkan: buffer update offset and size must be multiples of 4");
  begin_if_needed();
  const Range rd{dst.buffer->handle(), dst.offset, dst.offset + bytes};
  if (dev_.sync_all() || overlaps(written_, rd) || overlaps(read_, rd)) barrier();
  constexpr size_t kMax = 65536;  // vkCmdUpdateBuffer's limit per call
  for (size_t done = 0; done < bytes; done += kMax) {
    vkCmdUpdateBuffer(cmd_, dst.buffer->handle(), dst.offset + done, std::min(kMax, bytes - done),
                      (const char*)src + done);
  }
  written_.push_back(rd);
}

void Recorder::submit_and_wait() {
  if (!cmd_ && submitted_.empty()) return;
  begin_if_needed();  // the final chunk carries the host barrier and the fence
  // Results the host reads after the fence (read-back copies, mapped buffers) become visible.
  VkMemoryBarrier to_host{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  to_host.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                       VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &to_host, 0, nullptr, 0, nullptr);
  VkCommandBuffer cmd = cmd_;
  cmd_ = VK_NULL_HANDLE;
  written_.clear();
  read_.clear();
  struct ResetPools {
    Recorder* r;
    ~ResetPools() {
      for (VkDescriptorPool p : r->pools_) vkResetDescriptorPool(r->dev_.handle(), p, 0);
      // All pools are empty again; reuse them from the first.
      if (!r->pools_.empty()) {
        for (size_t i = 1; i < r->pools_.size(); ++i)
          vkDestroyDescriptorPool(r->dev_.handle(), r->pools_[i], nullptr);
        r->pools_.resize(1);
        r->pool_sets_left_ = 256;
      }
    }
  } reset{this};
  const bool prof = queries_ != VK_NULL_HANDLE;
  const double t0 = prof ? now_ms() : 0;
  if (prof) dev_.add_profile("(host) " + tag_ + " recording", t0 - record_start_ms_);
  since_flush_ = 0;
  dev_.submit_and_wait(cmd);
  for (VkCommandBuffer c : submitted_) dev_.discard_commands(c);
  submitted_.clear();
  if (prof) {
    dev_.add_profile("(host) " + tag_ + " submit+wait", now_ms() - t0);
    read_profile();
  }
}

}  // namespace qgemma::vk
