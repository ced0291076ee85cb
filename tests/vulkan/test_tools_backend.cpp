// `qgemma run|logits|bench --backend vulkan|cpu|auto` end to end through the `qgemma` binary on
// the test device (lavapipe in CI): logits of every position agree with the CPU backend's within
// test_backend.cpp's tolerances, greedy tokens of an f32 model are the same, bench names the
// backend, and `auto` takes the CPU unless a discrete or integrated GPU is present.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/backend_select.h"
#include "runtime/session.h"
#include "runtime/vulkan/device.h"
#include "tools/shell_util.h"
#include "vulkan/vk_fixture.h"

namespace qgemma::vk {
namespace {

using testing::test_device;

const std::string& kBin = testing_util::kQgemmaBin;
const std::string kDir =
    std::string(QGEMMA_BINARY_DIR) + "/test_tools_backend_tmp_" + std::to_string(getpid());

using Output = testing_util::ShellOutput;
using testing_util::sh;

// The last line made only of digits and commas (`--print-ids`).
std::string ids_line(const std::string& s) {
  std::istringstream in(s);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty() && line.find_first_not_of("0123456789,") == std::string::npos) last = line;
  }
  return last;
}

std::vector<float> read_floats(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  std::vector<float> v(static_cast<size_t>(f.tellg()) / 4);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  return v;
}

bool gpu_present() {
  for (const DeviceInfo& d : list_devices()) {
    if (d.type == "discrete" || d.type == "integrated") return true;
  }
  return false;
}

class ToolsBackend : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test_device();  // sets VK_DRIVER_FILES to lavapipe when the loader finds nothing by itself
    std::filesystem::create_directories(kDir);
    for (const char* type : {"f32", "q8_0"}) {
      const std::string m = model(type);
      const Output o = sh(kBin + " synth -o " + m + " --preset tiny --type " + type);
      if (o.status != 0) synth_error_ += o.out;
    }
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(kDir); }
  void SetUp() override {
    ASSERT_TRUE(std::ifstream(kBin).good()) << kBin << " is not built";
    ASSERT_TRUE(synth_error_.empty()) << synth_error_;
  }
  static std::string model(const std::string& type) { return kDir + "/tiny_" + type + ".gguf"; }

  // `qgemma logits` on both backends (batches of 4, so prefill crosses batches), then compares
  // every position's row: max |cpu - gpu| <= tol * max |cpu logit|.
  static void compare_logits(const std::string& type, float tol) {
    const std::string ids = "2,105,300,17,999,42,7,512,64,3,250";
    const std::string base = kBin + " logits -m " + model(type) + " -b 4 --tokens " + ids;
    const Output c = sh(base + " --backend cpu -o " + kDir + "/cpu.f32");
    ASSERT_EQ(c.status, 0) << c.out;
    const Output g = sh(base + " --backend vulkan -o " + kDir + "/gpu.f32");
    ASSERT_EQ(g.status, 0) << g.out;
    const std::vector<float> want = read_floats(kDir + "/cpu.f32");
    const std::vector<float> got = read_floats(kDir + "/gpu.f32");
    ASSERT_EQ(got.size(), want.size());
    const size_t T = 11, V = want.size() / T;
    ASSERT_EQ(V * T, want.size());
    ASSERT_GT(V, 0u);
    float worst = 0;
    for (size_t t = 0; t < T; ++t) {
      float maxabs = 0, maxdiff = 0;
      for (size_t i = t * V; i < (t + 1) * V; ++i) {
        maxabs = std::max(maxabs, std::fabs(want[i]));
        maxdiff = std::max(maxdiff, std::fabs(want[i] - got[i]));
      }
      ASSERT_GT(maxabs, 0.0f);
      worst = std::max(worst, maxdiff / maxabs);
      EXPECT_LE(maxdiff, tol * maxabs) << type << " at position " << t;
    }
    std::printf("[ vulkan   ] qgemma logits tiny %s: max |cpu - gpu| / max |logit| = %.2e\n",
                type.c_str(), worst);
  }

  static std::string synth_error_;
  void session_case(const Model& m, int64_t n_batch);
};
std::string ToolsBackend::synth_error_;

// Tolerances of test_backend.cpp: 1e-4 for float weights, 5e-2 for quantized ones.
TEST_F(ToolsBackend, LogitsVulkanMatchesCpuF32) { compare_logits("f32", 1e-4f); }
TEST_F(ToolsBackend, LogitsVulkanMatchesCpuQ8_0) { compare_logits("q8_0", 5e-2f); }

TEST_F(ToolsBackend, RunGreedyTokensEqualCpu) {
  // Random synthetic models settle on one token; the repetition penalty (still greedy) moves
  // them on, so the ids depend on more than the first decision.
  const std::string cmd = kBin + " run -m " + model("f32") +
                          " -p 'hello world' -n 8 --temp 0 --repeat-penalty 1.5 --print-ids -b 4";
  const Output c = sh(cmd + " --backend cpu");
  ASSERT_EQ(c.status, 0) << c.out;
  const Output g = sh(cmd + " --backend vulkan");
  ASSERT_EQ(g.status, 0) << g.out;
  const std::string want = ids_line(c.out);
  ASSERT_FALSE(want.empty()) << c.out;
  EXPECT_NE(want.substr(0, want.find(',')), want.substr(want.rfind(',') + 1)) << want;
  EXPECT_EQ(ids_line(g.out), want) << "cpu:\n" << c.out << "\nvulkan:\n" << g.out;
}

// The library side of the wiring: a Session on Vulkan (logits, hidden states, crop, reset)
// against a Session on the CPU.
// n_batch 4: the prompt runs as batches of 4, 4 and 2 tokens, the first two with no output head
// (graphs whose output is the last hidden row); n_batch 16: one batch.
TEST_F(ToolsBackend, SessionOnVulkanMatchesCpu) {
  auto m = Model::load(model("f32"), {}, /*repack=*/false);
  for (int64_t n_batch : {4, 16}) {
    SCOPED_TRACE("n_batch " + std::to_string(n_batch));
    session_case(*m, n_batch);
  }
}

void ToolsBackend::session_case(const Model& mm, int64_t n_batch) {
  const Model* m = &mm;
  SessionOptions so;
  // 4 CPU threads whatever the machine (the CPU side's thread count is not what this tests).
  so.n_threads = 4;
  so.n_ctx = 32;
  so.n_batch = n_batch;
  Session cpu(*m, so);
  so.backend = BackendKind::vulkan;
  so.device = static_cast<int>(test_device().info().index);
  Session gpu(*m, so);
  EXPECT_FALSE(cpu.on_gpu());
  ASSERT_TRUE(gpu.on_gpu());
  EXPECT_EQ(gpu.backend_name(), "Vulkan (" + test_device().info().name + ")");
  EXPECT_EQ(cpu.backend_name(), "CPU");
  // Logits: 1e-4 of the largest, as test_backend.cpp. Hidden states (the normed last layer, no
  // large vocabulary dot product to dilute the differences): 5e-4 of the largest, since one
  // 10-token batch takes the tiled GEMM shader on the GPU and the CPU's GEMM, whose different
  // summation orders differ by ~2e-4 of the largest hidden value on the tiny f32 model.
  auto close = [](std::span<const float> a, std::span<const float> b, const char* what,
                  float tol = 1e-4f) {
    ASSERT_EQ(a.size(), b.size()) << what;
    ASSERT_FALSE(a.empty()) << what;
    float maxabs = 0, maxdiff = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      maxabs = std::max(maxabs, std::fabs(a[i]));
      maxdiff = std::max(maxdiff, std::fabs(a[i] - b[i]));
    }
    EXPECT_LE(maxdiff, tol * maxabs) << what;
  };
  const std::vector<int32_t> prompt = {2, 105, 300, 17, 999, 42, 7, 512, 64, 3};
  const std::span<const int32_t> p(prompt);
  {
    const auto a = cpu.eval(p, 2);
    const std::vector<float> want(a.begin(), a.end());
    const auto b = gpu.eval(p, 2);
    close(want, std::vector<float>(b.begin(), b.end()), "prompt logits");
    close(cpu.hidden(), gpu.hidden(), "hidden states", 5e-4f);
  }
  cpu.crop(7);
  gpu.crop(7);
  EXPECT_EQ(gpu.n_past(), 7);
  const int32_t t = 250;
  {
    const auto a = cpu.eval(std::span<const int32_t>(&t, 1));
    const std::vector<float> want(a.begin(), a.end());
    const auto b = gpu.eval(std::span<const int32_t>(&t, 1));
    close(want, std::vector<float>(b.begin(), b.end()), "after crop");
  }
  cpu.reset();
  gpu.reset();
  {
    const auto a = cpu.eval(p.subspan(0, 5));
    const std::vector<float> want(a.begin(), a.end());
    const auto b = gpu.eval(p.subspan(0, 5));
    close(want, std::vector<float>(b.begin(), b.end()), "after reset");
  }
}

TEST_F(ToolsBackend, BenchNamesTheBackend) {
  const std::string cmd =
      kBin + " bench -m " + model("q8_0") + " -p 8 -n 2 -r 1 -o json --no-bandwidth --backend ";
  const Output g = sh(cmd + "vulkan");
  ASSERT_EQ(g.status, 0) << g.out;
  const auto jg = nlohmann::json::parse(g.out.substr(g.out.find('[')));
  ASSERT_EQ(jg.size(), 2u);
  EXPECT_EQ(jg[0]["backend"], "Vulkan (" + test_device().info().name + ")");
  EXPECT_GT(jg[1]["avg_ts"].get<double>(), 0.0);
  const Output c = sh(cmd + "cpu");
  ASSERT_EQ(c.status, 0) << c.out;
  EXPECT_EQ(nlohmann::json::parse(c.out.substr(c.out.find('[')))[0]["backend"], "CPU");
  // The markdown table's backend column.
  const Output md =
      sh(kBin + " bench -m " + model("q8_0") + " -p 0 -n 2 -r 1 --no-bandwidth --backend vulkan");
  ASSERT_EQ(md.status, 0) << md.out;
  EXPECT_NE(md.out.find("| Vulkan (" + test_device().info().name + ") |"), std::string::npos)
      << md.out;
}

// lavapipe (a CPU driver) never counts for `auto`; a discrete or integrated GPU does.
TEST_F(ToolsBackend, AutoTakesTheCpuUnlessAGpuIsPresent) {
  const bool gpu = gpu_present();
  EXPECT_EQ(resolve_backend(BackendKind::automatic).kind,
            gpu ? BackendKind::vulkan : BackendKind::cpu);
  if (test_device().info().type == "cpu") {
    // The test device is a CPU driver: asking for it by index still gives the CPU.
    EXPECT_EQ(
        resolve_backend(BackendKind::automatic, static_cast<int>(test_device().info().index)).kind,
        BackendKind::cpu);
  }
  const Output o = sh(kBin + " bench -m " + model("q8_0") +
                      " -p 0 -n 2 -r 1 -o json --no-bandwidth --backend auto");
  ASSERT_EQ(o.status, 0) << o.out;
  const std::string backend = nlohmann::json::parse(o.out.substr(o.out.find('[')))[0]["backend"];
  if (gpu) {
    EXPECT_EQ(backend.rfind("Vulkan (", 0), 0u) << backend;
  } else {
    EXPECT_EQ(backend, "CPU");
  }
}

TEST_F(ToolsBackend, BadChoicesAreClearErrors) {
  const std::string base = kBin + " run -m " + model("f32") + " -p hi -n 1";
  const Output d = sh(base + " --backend vulkan --device 99");
  EXPECT_EQ(WEXITSTATUS(d.status), 1) << d.out;
  EXPECT_NE(d.out.find("device 99"), std::string::npos) << d.out;
  const Output b = sh(base + " --backend cuda");
  EXPECT_NE(b.status, 0) << b.out;
  EXPECT_NE(b.out.find("expected cpu, vulkan or auto"), std::string::npos) << b.out;
  EXPECT_THROW(parse_backend("gpu"), Error);
  EXPECT_TRUE(have_vulkan());
}

}  // namespace
}  // namespace qgemma::vk
