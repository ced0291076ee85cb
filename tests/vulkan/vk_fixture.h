// Shared helpers of the Vulkan tests: the test device (lavapipe when nothing else exists),
// host <-> GPU copies and random data. A missing Vulkan device is a test FAILURE, never a skip:
// CI installs mesa-vulkan-drivers so that every shader runs there.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "loader/error.h"
#include "runtime/vulkan/device.h"

namespace qgemma::vk::testing {

// The device every test uses, opened once. If the loader finds no device by itself, retries
// with Mesa's lavapipe ICD named explicitly; throws (failing the test) if that fails too.
inline Device& test_device() {
  static std::unique_ptr<Device> dev = [] {
    try {
      return Device::open();
    } catch (const Error& first) {
      const char* icds[] = {"/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
                            "/usr/share/vulkan/icd.d/lvp_icd.aarch64.json"};
      for (const char* icd : icds) {
        if (!std::getenv("VK_DRIVER_FILES") && std::filesystem::exists(icd)) {
          setenv("VK_DRIVER_FILES", icd, 1);
          setenv("VK_ICD_FILENAMES", icd, 1);
          return Device::open();
        }
      }
      throw Error(std::string(first.what()) +
                  " - the Vulkan tests need a device (apt-get install mesa-vulkan-drivers)");
    }
  }();
  static bool printed = [] {
    std::printf("[ vulkan   ] device: %s (%s, %s)\n", dev->info().name.c_str(),
                dev->info().type.c_str(), dev->info().driver.c_str());
    return true;
  }();
  (void)printed;
  return *dev;
}

template <class T>
Buffer to_gpu(const std::vector<T>& v, MemoryKind kind = MemoryKind::device) {
  Device& dev = test_device();
  Buffer b = dev.create_buffer(v.size() * sizeof(T), kind, "test input");
  if (!v.empty()) dev.upload(b, 0, v.data(), v.size() * sizeof(T));
  return b;
}

inline Buffer gpu_zeros(size_t bytes) {
  Device& dev = test_device();
  Buffer b = dev.create_buffer(bytes, MemoryKind::device, "test output");
  std::vector<char> z(bytes, 0);
  dev.upload(b, 0, z.data(), bytes);
  return b;
}

template <class T>
std::vector<T> from_gpu(const Buffer& b, size_t n) {
  std::vector<T> v(n);
  test_device().download(b, 0, v.data(), n * sizeof(T));
  return v;
}

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace qgemma::vk::testing
