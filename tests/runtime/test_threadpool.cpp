// ThreadPool: every task runs exactly once, thread indices are in range, many back-to-back calls
// (the decode pattern) complete, nested calls run serially, ranges cover [0, n) with aligned
// boundaries, and pools of different sizes (including 1) behave the same.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "runtime/threadpool.h"

namespace qgemma {
namespace {

TEST(ThreadPool, EveryTaskRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 5, 64, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<int> bad_thread{0};
      pool.parallel_for(n, [&](int64_t task, int thread) {
        hits[task].fetch_add(1);
        if (thread < 0 || thread >= pool.size()) bad_thread.fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " task " << i;
      EXPECT_EQ(bad_thread.load(), 0);
    }
  }
}

TEST(ThreadPool, ManySmallCallsBackToBack) {
  ThreadPool pool(4);
  std::atomic<int64_t> sum{0};
  const int calls = 20000;
  for (int c = 0; c < calls; ++c) {
    pool.parallel_for(4, [&](int64_t task, int) { sum.fetch_add(task + 1); });
  }
  EXPECT_EQ(sum.load(), int64_t{calls} * 10);
}

// Back-to-back jobs whose task count grows by one each time, on more threads than cores: a
// thread that read the next job's larger task count while the finished job's state was still
// claimable used to run the next job's last task twice and let the caller return early (about
// 20 duplicates per 300,000 jobs on 2 cores; on a 16-core machine it corrupted the CPU
// backend's results, see tests/runtime/test_session_threads.cpp).
TEST(ThreadPool, NoTaskRunsTwiceAcrossBackToBackJobs) {
  ThreadPool pool(16);
  std::vector<std::atomic<int>> hits(64);
  int64_t bad = 0;
  for (int it = 0; it < 300000 && bad < 5; ++it) {
    const int n = 1 + it % 40;
    for (int i = 0; i < n; ++i) hits[i].store(0, std::memory_order_relaxed);
    pool.parallel_for(n, [&](int64_t t, int) {
      for (int s = 0; s < (t * 7 + it) % 50; ++s)
        std::atomic_signal_fence(std::memory_order_seq_cst);
      hits[t].fetch_add(1, std::memory_order_relaxed);
    });
    for (int i = 0; i < n; ++i) {
      const int h = hits[i].load(std::memory_order_relaxed);
      if (h != 1) {
        ADD_FAILURE() << "job " << it << " (" << n << " tasks): task " << i << " ran " << h
                      << " times";
        ++bad;
      }
    }
  }
}

TEST(ThreadPool, WorkersWakeAfterSleeping) {
  ThreadPool pool(3, /*spin_us=*/10);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers go to sleep
    std::vector<std::atomic<int>> hits(50);
    pool.parallel_for(50, [&](int64_t task, int) { hits[task].fetch_add(1); });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
}

TEST(ThreadPool, UsesMoreThanOneThreadWhenTasksBlock) {
  ThreadPool pool(2, /*spin_us=*/1000);
  // Each task waits until both threads have arrived: only completes if two threads run tasks.
  std::atomic<int> arrived{0};
  std::atomic<bool> both{false};
  pool.parallel_for(2, [&](int64_t, int) {
    arrived.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 2 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    if (arrived.load() == 2) both.store(true);
  });
  EXPECT_TRUE(both.load());
}

TEST(ThreadPool, NestedCallsRunSerially) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(4 * 5);
  pool.parallel_for(4, [&](int64_t outer, int) {
    pool.parallel_for(5, [&](int64_t inner, int thread) {
      EXPECT_EQ(thread, 0);
      hits[outer * 5 + inner].fetch_add(1);
    });
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadPool, ParallelRangeCoversWithAlignedBounds) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 7, 8, 9, 100, 4096, 4100}) {
    for (int64_t grain : {1, 8, 16}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<int> misaligned{0};
      std::atomic<int> ranges{0};
      pool.parallel_range(n, grain, [&](int64_t b, int64_t e, int) {
        ranges.fetch_add(1);
        if (b % grain != 0 || (e != n && e % grain != 0) || b >= e) misaligned.fetch_add(1);
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << n << " " << grain;
      EXPECT_EQ(misaligned.load(), 0);
      EXPECT_LE(ranges.load(), pool.size());
    }
  }
}

TEST(ThreadPool, CallsFromSeveralOutsideThreads) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&] {
      for (int c = 0; c < 500; ++c) pool.parallel_for(3, [&](int64_t, int) { sum.fetch_add(1); });
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(sum.load(), 3 * 500 * 3);
}

TEST(ThreadPool, GlobalPoolIsSizedFromTheMachine) {
  ThreadPool& pool = ThreadPool::global();
  EXPECT_GE(pool.size(), 1);
  EXPECT_EQ(&pool, &ThreadPool::global());
}

}  // namespace
}  // namespace qgemma
