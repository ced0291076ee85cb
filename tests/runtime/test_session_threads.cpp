// The CPU backend gives the same logits whatever the thread count: 1 thread against several,
// through batched prefill with head-less batches, crop and reset (the sequence that
// test_tools_backend.cpp's Vulkan session test runs), repeated to catch races.
//
// With 16 threads on a 16-core Xeon (the lent GPU machine's host) this failed in most runs
// (logits 2-14% off) and on this 2-core machine about 1 run in 30: the thread pool ran a task
// twice when a thread read the next job's task count while the finished job was still
// claimable (fixed in runtime/threadpool.cpp; ThreadPool.NoTaskRunsTwiceAcrossBackToBackJobs).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "runtime/session.h"
#include "runtime/synth.h"

namespace qgemma {
namespace {

double max_rel(std::span<const float> a, std::span<const float> b) {
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
    m = std::max(m, static_cast<double>(std::fabs(b[i])));
  }
  return d / m;
}

void check_threads(int default_threads) {
  const std::string dir = std::string(QGEMMA_BINARY_DIR) + "/test_session_threads_tmp_" +
                          std::to_string(default_threads);
  std::system(("mkdir -p " + dir).c_str());
  const std::string path = dir + "/tiny_f32.gguf";
  synth_write(path, SynthOptions{});
  auto m = Model::load(path, {}, /*repack=*/false);
  const std::vector<int32_t> prompt = {2, 105, 300, 17, 999, 42, 7, 512, 64, 3};
  const std::span<const int32_t> p(prompt);
  // Split-K attention and the GEMM tiles change the summation order with the thread count:
  // float rounding only, ~1e-6 of the largest logit.
  constexpr double kTol = 1e-4;
  for (int rep = 0; rep < 3; ++rep) {
    for (int64_t n_batch : {4, 16}) {
      SCOPED_TRACE("n_batch " + std::to_string(n_batch) + " rep " + std::to_string(rep));
      SessionOptions so;
      so.n_ctx = 32;
      so.n_batch = n_batch;
      so.n_threads = 1;
      Session one(*m, so);
      // QGEMMA_TEST_THREADS overrides the count (to bisect a failure on a many-core machine).
      const char* env = std::getenv("QGEMMA_TEST_THREADS");
      so.n_threads = env && std::atoi(env) > 0 ? std::atoi(env) : default_threads;
      Session many(*m, so);
      auto a = one.eval(p, 2);
      std::vector<float> want(a.begin(), a.end());
      EXPECT_LT(max_rel(many.eval(p, 2), want), kTol) << "prompt";
      one.crop(7);
      many.crop(7);
      const int32_t t = 250;
      a = one.eval(std::span<const int32_t>(&t, 1));
      want.assign(a.begin(), a.end());
      EXPECT_LT(max_rel(many.eval(std::span<const int32_t>(&t, 1)), want), kTol) << "after crop";
      one.reset();
      many.reset();
      a = one.eval(p.subspan(0, 5));
      want.assign(a.begin(), a.end());
      EXPECT_LT(max_rel(many.eval(p.subspan(0, 5)), want), kTol) << "after reset";
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(SessionThreads, OneAndFourThreadsAgree) { check_threads(4); }

TEST(SessionThreads, OneAndSixteenThreadsAgree) { check_threads(16); }

}  // namespace
}  // namespace qgemma
