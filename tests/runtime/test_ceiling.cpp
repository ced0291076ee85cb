// The paired ceiling's probe (runtime/ceiling.h): what it reads and counts, where it wraps, and
// the resident-memory readings the benchmarks use to leave the probe out of their peak RSS.
#include <gtest/gtest.h>

#include <cstdio>

#include "kernels/cpu.h"
#include "runtime/ceiling.h"
#include "runtime/threadpool.h"

namespace qgemma {
namespace {

TEST(ReadProbe, CountsWhatItReadsAndWraps) {
  ThreadPool pool(2);
  ReadProbe p(pool, size_t{8} << 20);
  EXPECT_EQ(p.size(), size_t{8} << 20);  // a multiple of 2 MiB: unchanged
  EXPECT_EQ(p.bytes_read(), 0.0);
  // 3 MiB per read: each of the 2 threads reads 1.5 MiB (whole 4 KiB pages).
  for (int i = 0; i < 10; ++i) EXPECT_GT(p.read(size_t{3} << 20), 0.0);
  EXPECT_EQ(p.bytes_read(), 10.0 * (3 << 20));  // reads wrap around the 8 MiB buffer
  EXPECT_GT(p.seconds(), 0.0);
  EXPECT_GT(p.gbps(), 0.0);
  EXPECT_DOUBLE_EQ(p.gbps(), p.bytes_read() / p.seconds() / 1e9);
  EXPECT_GE(p.best_gbps(), p.gbps() * (1 - 1e-12));  // the fastest read beats the mean
  // More than the buffer: capped at the buffer.
  p.reset();
  EXPECT_EQ(p.seconds(), 0.0);
  EXPECT_EQ(p.best_gbps(), 0.0);
  p.read(size_t{64} << 20);
  EXPECT_EQ(p.bytes_read(), static_cast<double>(size_t{8} << 20));
  // Sizes round up to whole 2 MiB huge pages; tiny reads still read a page per thread.
  ReadProbe q(pool, 1);
  EXPECT_EQ(q.size(), size_t{2} << 20);
  q.read(1);
  EXPECT_EQ(q.bytes_read(), 2.0 * 4096);
}

TEST(ReadProbe, ResidentMemoryIsVisible) {
  const uint64_t before = current_rss_bytes();
  ASSERT_GT(before, 0u);
  ThreadPool pool(1);
  ReadProbe p(pool, size_t{64} << 20);  // touched at construction: resident
  EXPECT_GE(current_rss_bytes(), before + (size_t{60} << 20));
  EXPECT_GE(peak_rss_bytes(), current_rss_bytes());
}

TEST(Int8Peak, MeasuresSomethingOnX86) {
#if defined(__x86_64__)
  ThreadPool pool(1);
  EXPECT_GT(int8_peak_gops(pool, 1), 1.0);
#else
  GTEST_SKIP() << "the int8 peak loop is x86 only";
#endif
}

// Each instruction sequence runs where the CPU has it (a positive rate) and is refused (0)
// where it does not. The rates are printed, not compared: this is a unit test on a shared
// machine, and timings belong to the benchmarks.
TEST(Int8Peak, EachInstructionSequence) {
#if defined(__x86_64__)
  ThreadPool pool(1);
  const CpuFeatures& f = cpu_features();
  const double zmm = int8_peak_gops_with(pool, "avx512vnni");
  const double ymm = int8_peak_gops_with(pool, "avxvnni");
  const double avx2 = int8_peak_gops_with(pool, "avx2");
  std::printf("[ peak     ] vpdpbusd zmm %.0f, vpdpbusd ymm %.0f, avx2 %.0f GOPS (1 thread)\n", zmm,
              ymm, avx2);
  EXPECT_EQ(zmm > 0, f.avx512f && f.avx512vnni && f.os_avx512);
  EXPECT_EQ(ymm > 0, f.avx2 && f.avx_vnni && f.os_avx);
  EXPECT_EQ(avx2 > 0, f.avx2 && f.os_avx);
  EXPECT_EQ(int8_peak_gops_with(pool, "sse"), 0.0);
#else
  GTEST_SKIP() << "the int8 peak loops are x86 only";
#endif
}

}  // namespace
}  // namespace qgemma
