// The device layer: selection, feature queries, buffers, the pipeline cache, automatic
// barriers, errors. Runs on whatever device the loader finds (lavapipe in CI).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "runtime/vulkan/ops.h"
#include "runtime/vulkan/shaders.h"
#include "vulkan/vk_fixture.h"

namespace qgemma::vk {
namespace {

using testing::from_gpu;
using testing::gpu_zeros;
using testing::random_floats;
using testing::test_device;
using testing::to_gpu;

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  bool had_;
  std::string old_;
};

TEST(VulkanDevice, OpensAndReportsFeatures) {
  const DeviceInfo& info = test_device().info();
  EXPECT_FALSE(info.name.empty());
  EXPECT_FALSE(info.driver.empty());
  EXPECT_GT(info.subgroup_size, 0u);
  EXPECT_GE(info.max_workgroup_invocations, 128u);
  EXPECT_GE(info.max_storage_buffer_range, 1u << 27);
  EXPECT_GT(info.storage_offset_alignment, 0u);
  const auto devices = list_devices();
  ASSERT_FALSE(devices.empty());
  EXPECT_LT(preferred_device(devices), devices.size());
}

TEST(VulkanDevice, PreferenceOrder) {
  std::vector<DeviceInfo> d(4);
  d[0].type = "cpu";
  d[1].type = "integrated";
  d[2].type = "discrete";
  d[3].type = "virtual";
  EXPECT_EQ(preferred_device(d), 2u);
  d[2].type = "cpu";
  EXPECT_EQ(preferred_device(d), 1u);
  d[1].type = "cpu";
  EXPECT_EQ(preferred_device(d), 3u);
}

TEST(VulkanDevice, BadDeviceRequestsAreErrors) {
  test_device();
  EXPECT_THROW(Device::open(1000), Error);
  ScopedEnv env("QGEMMA_VK_DEVICE", "gpu0");
  EXPECT_THROW(Device::open(), Error);
}

TEST(VulkanDevice, BufferRoundTrips) {
  Device& dev = test_device();
  const std::vector<float> v = random_floats(1000, 1);
  for (MemoryKind kind : {MemoryKind::device, MemoryKind::host}) {
    Buffer b = dev.create_buffer(5000, kind, "round trip");
    EXPECT_GE(b.size(), 5000u);
    dev.upload(b, 500, v.data(), 4000);
    std::vector<float> back(1000);
    dev.download(b, 500, back.data(), 4000);
    EXPECT_EQ(back, v);
    EXPECT_THROW(dev.upload(b, b.size() - 8, v.data(), 16), Error);
  }
}

// The staging path that discrete GPUs take (device-local memory is not host-visible there),
// in several chunks, on any device.
TEST(VulkanDevice, StagingRoundTrips) {
  Device& dev = test_device();
  const std::vector<float> v = random_floats(1000, 4);
  Buffer b = dev.create_buffer(5000, MemoryKind::device, "staged round trip");
  dev.force_staging(1024);
  dev.upload(b, 500, v.data(), 4000);
  std::vector<float> back(1000), direct(1000);
  dev.download(b, 500, back.data(), 4000);
  dev.force_staging(0);
  dev.download(b, 500, direct.data(), 4000);
  EXPECT_EQ(back, v);
  EXPECT_EQ(direct, v);
}

TEST(VulkanDevice, OutOfMemoryIsAnError) {
  Device& dev = test_device();
  try {
    Buffer b = dev.create_buffer(size_t(1) << 50, MemoryKind::device, "a 1 PiB tensor");
    FAIL() << "a 1 PiB buffer was allocated";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a 1 PiB tensor"), std::string::npos) << e.what();
  }
}

TEST(VulkanDevice, EveryShaderIsEmbedded) {
  const char* expected[] = {"mul_mat_vec_q4_0",
                            "mul_mat_vec_q6_k",
                            "mul_mat_vec_bf16",
                            "mul_mat_vec_q8_q4_0",
                            "mul_mm_q8_0",
                            "mul_mm_f16",
                            "mul_mm_q8_q4_0",
                            "mul_mm_q8_q8_0",
                            "quantize_q8",
                            "flash_attn_f16",
                            "flash_attn_q8_0",
                            "rms_norm",
                            "layer_norm",
                            "rope",
                            "glu",
                            "softcap",
                            "binary",
                            "softmax",
                            "argmax",
                            "get_rows_q4_k",
                            "get_rows_q5_k",
                            "mul_mat_vec_q5_k",
                            "mul_mm_q5_k",
                            "get_rows_f32",
                            "norm_chain",
                            "head_norm_rope"};
  for (const char* name : expected) {
    const ShaderModuleWords& m = find_shader(name);
    ASSERT_GT(m.count, 5u) << name;
    EXPECT_EQ(m.words[0], 0x07230203u) << name << " is not SPIR-V";
  }
  EXPECT_THROW(find_shader("no_such_shader"), Error);
}

// Read-after-write and write-after-read get a barrier; independent dispatches do not.
TEST(VulkanDevice, BarriersOnlyBetweenDependentDispatches) {
  Device& dev = test_device();
  const uint32_t n = 256;
  const std::vector<float> a = random_floats(n, 2), b = random_floats(n, 3);
  Buffer ab = to_gpu(a), bb = to_gpu(b), t = gpu_zeros(n * 4 * 2), u = gpu_zeros(n * 4);
  Recorder rec(dev);
  add(rec, ab, bb, View(t, 0, n * 4), n);      // t0 = a + b
  mul(rec, ab, bb, View(t, n * 4, n * 4), n);  // t1 = a * b: another range, independent
  EXPECT_EQ(rec.barriers(), 0u);
  add(rec, View(t, 0, n * 4), View(t, n * 4, n * 4), u, n);  // u = t0 + t1: reads both
  EXPECT_EQ(rec.barriers(), 1u);
  scale(rec, ab, View(t, 0, n * 4), n, 2.0f);  // overwrites t0 that the add read
  EXPECT_EQ(rec.barriers(), 2u);
  rec.submit_and_wait();
  const std::vector<float> got = from_gpu<float>(u, n), t0 = from_gpu<float>(t, n);
  for (uint32_t i = 0; i < n; ++i) {
    EXPECT_EQ(got[i], (a[i] + b[i]) + a[i] * b[i]);
    EXPECT_EQ(t0[i], a[i] * 2.0f);
  }
}

// Recorded buffer updates (vkCmdUpdateBuffer) land in order with the dispatches around them:
// a dispatch recorded after an update reads the new data, one recorded before reads the old,
// and updates larger than one vkCmdUpdateBuffer call (64 KiB) are split.
TEST(VulkanDevice, RecordedUpdatesAreOrderedWithDispatches) {
  Device& dev = test_device();
  const uint32_t n = 20000;  // 80 000 bytes: two vkCmdUpdateBuffer calls
  const std::vector<float> a = random_floats(n, 5), b = random_floats(n, 6),
                           c = random_floats(n, 7);
  Buffer in = to_gpu(a), other = to_gpu(c), before = gpu_zeros(n * 4), after = gpu_zeros(n * 4);
  Recorder rec(dev);
  scale(rec, in, before, n, 1.0f);  // reads a
  rec.update(View(in), b.data(), n * 4);
  EXPECT_EQ(rec.barriers(), 1u);                              // write-after-read
  add(rec, in, other, after, n);                              // reads b
  EXPECT_EQ(rec.barriers(), 2u);                              // read-after-write
  EXPECT_THROW(rec.update(View(in, 2), b.data(), 8), Error);  // unaligned offset
  rec.submit_and_wait();
  EXPECT_EQ(from_gpu<float>(before, n), a);
  const std::vector<float> got = from_gpu<float>(after, n);
  for (uint32_t i = 0; i < n; ++i) ASSERT_EQ(got[i], b[i] + c[i]) << i;
}

// A recording longer than one chunk is queued in pieces while it is recorded: a chain of
// dependent dispatches across several chunks, with independent ones mixed in, still sees every
// earlier result.
TEST(VulkanDevice, ChunkedSubmissionKeepsOrder) {
  Device& dev = test_device();
  const uint32_t n = 1000, steps = 150;  // > 3 chunks of dispatches
  const std::vector<float> a = random_floats(n, 9);
  Buffer ab = to_gpu(a), acc = gpu_zeros(n * 4), side = gpu_zeros(n * 4 * steps);
  Recorder rec(dev);
  for (uint32_t i = 0; i < steps; ++i) {
    add(rec, acc, ab, acc, n);                                       // acc += a (dependent chain)
    scale(rec, acc, View(side, (size_t)i * n * 4, n * 4), n, 1.0f);  // snapshot of acc
  }
  rec.submit_and_wait();
  const std::vector<float> got = from_gpu<float>(acc, n), snaps = from_gpu<float>(side, n * steps);
  for (uint32_t j = 0; j < n; ++j) {
    float want = 0;
    for (uint32_t i = 0; i < steps; ++i) {
      want += a[j];
      ASSERT_EQ(snaps[(size_t)i * n + j], want) << "step " << i << " element " << j;
    }
    ASSERT_EQ(got[j], want) << j;
  }
}

// QGEMMA_VK_PROFILE=1: every dispatch is timed and the report names each pipeline with its
// call count (lavapipe has compute timestamps).
TEST(VulkanDevice, ProfileCountsDispatchesPerPipeline) {
  ScopedEnv env("QGEMMA_VK_PROFILE", "1");
  std::unique_ptr<Device> dev = Device::open((int)test_device().info().index);
  if (!dev->profiling()) GTEST_SKIP() << "device has no compute timestamps";
  const uint32_t n = 4096;
  const std::vector<float> a = random_floats(n, 8);
  Buffer x = dev->create_buffer(n * 4, MemoryKind::device, "x");
  Buffer y = dev->create_buffer(n * 4, MemoryKind::device, "y");
  dev->upload(x, 0, a.data(), n * 4);
  Recorder rec(*dev);
  rec.set_profile_tag("t1");
  for (int i = 0; i < 3; ++i) scale(rec, x, y, n, 2.0f);
  add(rec, x, y, y, n);
  rec.submit_and_wait();
  const std::string report = dev->profile_report();
  EXPECT_NE(report.find("t1 binary"), std::string::npos) << report;
  EXPECT_NE(report.find("t1 recording"), std::string::npos) << report;
  // 4 dispatches of the binary shader (scale and add are both binary.comp variants).
  size_t calls = 0;
  for (size_t at = 0; (at = report.find("t1 binary", at)) != std::string::npos; ++at) {
    const size_t line = report.rfind('\n', at) + 1;
    calls += std::stoul(report.substr(line + 11, 8));
  }
  EXPECT_EQ(calls, 4u) << report;
}

TEST(VulkanDevice, PipelineCacheOnDiskAndUnwritableDirIsFine) {
  const uint32_t index = test_device().info().index;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("qgemma-vk-cache-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  {
    ScopedEnv env("XDG_CACHE_HOME", dir.string());
    auto dev = Device::open((int)index);
    const uint32_t spec[] = {128};
    dev->pipeline("softmax", spec, 2, 12);
    EXPECT_EQ(dev->pipeline_cache_path().rfind((dir / "qgemma").string(), 0), 0u);
    const std::string path = dev->pipeline_cache_path();
    dev.reset();  // saves the cache
    EXPECT_TRUE(std::filesystem::exists(path)) << path;
    auto again = Device::open((int)index);  // loads it back
    again->pipeline("softmax", spec, 2, 12);
  }
  std::filesystem::remove_all(dir);
  {
    ScopedEnv env("XDG_CACHE_HOME", "/proc/qgemma-cannot-write-here");
    auto dev = Device::open((int)index);
    const uint32_t spec[] = {128};
    dev->pipeline("softmax", spec, 2, 12);
    dev.reset();  // must not throw
  }
}

TEST(VulkanDevice, DispatchChecksArguments) {
  Device& dev = test_device();
  Buffer a = gpu_zeros(64), y = gpu_zeros(64);
  Recorder rec(dev);
  EXPECT_THROW(softcap(rec, a, y, 1000, 30.0f), Error);  // buffers too small
  const uint32_t spec[] = {128};
  const Pipeline& p = dev.pipeline("softmax", spec, 2, 12);
  const Recorder::Arg one[] = {{View(a), false}};
  EXPECT_THROW(rec.dispatch(p, one, nullptr, 0, 1), Error);  // wrong binding count
  if (dev.info().storage_offset_alignment > 1) {
    const Recorder::Arg args[] = {{View(a, 1), false}, {View(y), true}};
    const uint32_t push[] = {1, 1, 1};
    EXPECT_THROW(rec.dispatch(p, args, push, sizeof push, 1), Error);  // misaligned offset
  }
}

}  // namespace
}  // namespace qgemma::vk
