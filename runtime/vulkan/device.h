// The Vulkan device layer: instance and physical-device choice, feature queries, buffers,
// compute pipelines (with an on-disk pipeline cache) and command recording with automatic
// barriers between dependent dispatches. Plain Vulkan C API; every failure is a qgemma::Error
// that names the device and the operation.
//
// Typical use (see runtime/vulkan/ops.h for the op launchers):
//   auto dev = vk::Device::open();                       // QGEMMA_VK_DEVICE or the best device
//   vk::Buffer w = dev->create_buffer(bytes, vk::MemoryKind::device, "blk.0.attn_q");
//   dev->upload(w, 0, host_ptr, bytes);
//   vk::Recorder rec(*dev);
//   vk::mul_mat_vec(rec, ...); vk::rms_norm(rec, ...);    // barriers inserted where needed
//   rec.submit_and_wait();
#pragma once

#include <vulkan/vulkan.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qgemma::vk {

// What `qgemma devices` prints and what device selection and shader choice look at.
struct DeviceInfo {
  uint32_t index = 0;  // position in vkEnumeratePhysicalDevices order
  std::string name;
  std::string type;    // "discrete", "integrated", "virtual", "cpu", "other"
  std::string driver;  // driver name + info (VkPhysicalDeviceDriverProperties)
  std::string api_version;
  uint32_t vendor_id = 0, device_id = 0;
  uint64_t device_local_bytes = 0;  // sum of DEVICE_LOCAL heaps
  bool unified_memory = false;      // a DEVICE_LOCAL | HOST_VISIBLE type covers the big heap
  // Features (enabled at device creation when present).
  bool storage_16bit = false;        // storageBuffer16BitAccess
  bool storage_8bit = false;         // storageBuffer8BitAccess
  bool float16 = false;              // shaderFloat16
  bool int8 = false;                 // shaderInt8
  bool int_dot = false;              // VK_KHR_shader_integer_dot_product (or core 1.3)
  bool int_dot_accelerated = false;  // 4x8 packed signed dot is hardware accelerated
  bool coopmat = false;              // VK_KHR_cooperative_matrix extension present
  bool subgroup_arithmetic = false;  // subgroup add/max in compute shaders
  uint32_t subgroup_size = 0, min_subgroup_size = 0, max_subgroup_size = 0;
  uint32_t max_shared_memory = 0;
  uint32_t max_workgroup_invocations = 0;
  uint64_t max_storage_buffer_range = 0;
  uint64_t storage_offset_alignment = 0;  // minStorageBufferOffsetAlignment
  uint32_t max_workgroup_count[3] = {0, 0, 0};
  uint8_t pipeline_cache_uuid[VK_UUID_SIZE] = {};
};

// Lists every physical device the loader finds (creates and destroys an instance). Throws
// qgemma::Error when no Vulkan loader / driver is usable.
std::vector<DeviceInfo> list_devices();
// Index of the device open() picks without a request: discrete > integrated > virtual > cpu.
uint32_t preferred_device(const std::vector<DeviceInfo>& devices);

enum class MemoryKind {
  device,  // device-local (also host-mapped on unified-memory devices and CPU drivers)
  host,    // host-visible, coherent: staging and read-back
};

class Device;

// One VkBuffer with its own memory. Move-only; freed with the Buffer.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  VkBuffer handle() const { return buffer_; }
  size_t size() const { return size_; }
  void* mapped() const { return mapped_; }  // non-null when host-visible
  explicit operator bool() const { return buffer_ != VK_NULL_HANDLE; }

 private:
  friend class Device;
  VkDevice device_ = VK_NULL_HANDLE;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  size_t size_ = 0;
  void* mapped_ = nullptr;
};

// A byte range of a buffer bound to one shader binding. bytes == 0: to the end of the buffer.
struct View {
  const Buffer* buffer = nullptr;
  size_t offset = 0;
  size_t bytes = 0;
  View() = default;
  View(const Buffer& b, size_t off = 0, size_t n = 0) : buffer(&b), offset(off), bytes(n) {}
  size_t size() const { return bytes ? bytes : buffer->size() - offset; }
};

// A compute pipeline: module + specialization constants (constant_id i = spec[i]),
// `bindings` storage buffers at set 0 bindings 0..n-1, `push_bytes` of push constants.
struct Pipeline {
  VkPipeline pipeline = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  uint32_t bindings = 0;
  uint32_t push_bytes = 0;
  std::string name;
};

class Device {
 public:
  // Opens device `index` (an index into list_devices()), or when index < 0 the one named by
  // the QGEMMA_VK_DEVICE environment variable (an index), or else preferred_device().
  static std::unique_ptr<Device> open(int index = -1);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const DeviceInfo& info() const { return info_; }
  VkDevice handle() const { return device_; }

  // Throws qgemma::Error (out of device/host memory, naming `what` and the size).
  Buffer create_buffer(size_t bytes, MemoryKind kind, std::string_view what);
  // Host <-> buffer copies; through a staging buffer when `buf` is not host-visible.
  void upload(const Buffer& buf, size_t offset, const void* src, size_t bytes);
  void download(const Buffer& buf, size_t offset, void* dst, size_t bytes);
  // Tests: take the staging path (discrete GPUs' path) even for host-visible buffers, in
  // chunks of `chunk` bytes (0: back to normal).
  void force_staging(size_t chunk) { force_staging_chunk_ = chunk; }

  // The pipeline for (module, spec constants), created once and kept for the device's life.
  const Pipeline& pipeline(std::string_view module, std::span<const uint32_t> spec,
                           uint32_t bindings, uint32_t push_bytes);

  // Command buffers for Recorder: one-time submit and wait, with device-loss reporting.
  VkCommandBuffer begin_commands();
  void submit_and_wait(VkCommandBuffer cmd);   // frees cmd
  void submit(VkCommandBuffer cmd);            // ends and queues cmd; free it once work is done
  void discard_commands(VkCommandBuffer cmd);  // frees cmd without running it (or after it ran)
  void wait_idle();                            // the queue's submitted work is done
  // Where the pipeline cache lives ("" when no cache directory could be used).
  const std::string& pipeline_cache_path() const { return cache_path_; }

  // Turns a VkResult into a qgemma::Error naming the device and `what` (no-op on success).
  void check(VkResult r, std::string_view what) const;

  // Opt-in GPU profile (environment QGEMMA_VK_PROFILE=1, on devices with compute timestamps):
  // Recorder writes a timestamp after every dispatch; the GPU time of each dispatch (from the
  // previous timestamp to its own, i.e. including any wait at a barrier before it) is summed
  // per "tag pipeline" and printed to stderr, sorted by time, when the device closes.
  bool profiling() const { return profile_period_ns_ > 0; }
  // QGEMMA_VK_SYNC=1: a full barrier before every command (debugging: rules out a missing one).
  bool sync_all() const { return sync_all_; }
  double timestamp_period_ns() const { return profile_period_ns_; }
  void add_profile(const std::string& key, double ms, uint64_t calls = 1);
  std::string profile_report() const;

 private:
  Device() = default;
  uint32_t find_memory_type(uint32_t type_bits, MemoryKind kind, bool* mapped) const;
  void load_pipeline_cache();
  void save_pipeline_cache();

  VkInstance instance_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkPipelineCache pipeline_cache_ = VK_NULL_HANDLE;
  VkPhysicalDeviceMemoryProperties memory_{};
  DeviceInfo info_;
  std::string cache_path_;
  size_t force_staging_chunk_ = 0;
  Buffer& staging(size_t bytes);  // grow-only host buffer for upload/download; staging_mutex_
  Buffer staging_;
  std::mutex staging_mutex_;
  double profile_period_ns_ = 0;  // > 0 when profiling
  bool sync_all_ = false;
  struct ProfileEntry {
    uint64_t calls = 0;
    double ms = 0;
  };
  std::map<std::string, ProfileEntry> profile_;
  std::mutex mutex_;  // guards pipelines_ and the queue
  std::map<std::string, std::unique_ptr<Pipeline>> pipelines_;
};

// Records dispatches into one command buffer. A dispatch that reads or writes a buffer range
// written by an earlier dispatch since the last barrier (or writes a range read since then)
// gets a compute->compute memory barrier first; independent dispatches run without one.
class Recorder {
 public:
  explicit Recorder(Device& dev);
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  struct Arg {
    View view;
    bool write;
  };
  // Binds args to bindings 0..n-1 in order. Group counts must be within the device's limits
  // (the launchers in ops.h fold large counts into y).
  void dispatch(const Pipeline& p, std::span<const Arg> args, const void* push, size_t push_bytes,
                uint32_t gx, uint32_t gy = 1, uint32_t gz = 1);
  // Copies bytes between buffer ranges (with the same hazard tracking as dispatches).
  void copy(View src, View dst, size_t bytes);
  // Writes host data into a buffer range as part of the command buffer (vkCmdUpdateBuffer:
  // the bytes are captured now, no staging buffer and no extra submit; for small data such as
  // token ids and cache positions). offset and bytes must be multiples of 4.
  void update(View dst, const void* src, size_t bytes);
  void barrier();  // full compute memory barrier now
  // Runs what was recorded (and waits); the recorder can then record again. Long recordings are
  // submitted in chunks of kChunk dispatches as they are recorded, so the device starts while
  // the host still records; barriers recorded in a later chunk also order the earlier ones
  // (submission order on one queue), so hazard tracking carries across chunks unchanged.
  void submit_and_wait();
  // Profile key prefix for the dispatches recorded from now on (see Device::profiling).
  void set_profile_tag(std::string tag) { tag_ = std::move(tag); }
  Device& device() { return dev_; }
  uint32_t dispatches() const { return dispatches_; }
  uint32_t barriers() const { return barriers_; }

 private:
  struct Range {
    VkBuffer buffer;
    size_t begin, end;
  };
  static bool overlaps(const std::vector<Range>& set, const Range& r);
  VkDescriptorSet allocate_set(VkDescriptorSetLayout layout);
  void begin_if_needed();
  void read_profile();
  void flush();  // queue the current chunk without waiting

  static constexpr uint32_t kChunk = 48;
  std::vector<VkCommandBuffer> submitted_;  // queued chunks, freed after the final wait
  uint32_t since_flush_ = 0;

  Device& dev_;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  // Profiling: timestamp 0 at the start, i + 1 after dispatch i (up to kQueries - 1).
  static constexpr uint32_t kQueries = 8192;
  VkQueryPool queries_ = VK_NULL_HANDLE;
  std::vector<std::string> query_keys_;
  std::string tag_;
  double record_start_ms_ = 0;
  std::vector<VkDescriptorPool> pools_;
  uint32_t pool_sets_left_ = 0;
  std::vector<Range> written_, read_;  // since the last barrier
  uint32_t dispatches_ = 0, barriers_ = 0;
};

}  // namespace qgemma::vk
