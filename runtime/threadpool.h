// A small fork-join thread pool for kernels: the calling thread plus (size() - 1) workers run
// the tasks of one parallel_for and the call returns when all are done. Built for many short
// calls (decoding runs hundreds of kernels per token): workers spin briefly on a generation
// counter before sleeping (C++20 atomic wait), tasks are handed out by one atomic counter, and
// nothing is allocated per call.
//
//   ThreadPool& pool = ThreadPool::global();
//   pool.parallel_for(n_tasks, [&](int64_t task, int thread) { ... });
//
// Not reentrant: a parallel_for called from inside a task runs its tasks serially on the calling
// thread. Calls from different outside threads are serialized. Task functions must not throw.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace qgemma {

class ThreadPool {
 public:
  // n_threads <= 0: std::thread::hardware_concurrency() (at least 1). spin_us: how long an idle
  // worker spins before it sleeps.
  explicit ThreadPool(int n_threads = 0, int spin_us = 100);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that run tasks, the caller included.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(task, thread) for every task in [0, n_tasks); `thread` is in [0, size()) and is 0 for
  // the calling thread. Which thread runs which task is unspecified.
  template <typename Fn>
  void parallel_for(int64_t n_tasks, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    run(
        n_tasks, [](void* ctx, int64_t task, int thread) { (*static_cast<F*>(ctx))(task, thread); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Splits [0, n) into at most size() contiguous ranges whose boundaries are multiples of
  // `grain` (except n itself) and runs fn(begin, end, thread) once per non-empty range.
  template <typename Fn>
  void parallel_range(int64_t n, int64_t grain, Fn&& fn) {
    const int64_t units = (n + grain - 1) / grain;
    const int64_t parts = units < size() ? units : size();
    if (parts <= 0) return;
    parallel_for(parts, [&](int64_t p, int thread) {
      const int64_t b = units * p / parts * grain;
      const int64_t e = p + 1 == parts ? n : units * (p + 1) / parts * grain;
      if (b < e) fn(b, e, thread);
    });
  }

  // The process-wide pool, created on first use with QGEMMA_THREADS threads if that variable is
  // set to a positive number, else hardware_concurrency().
  static ThreadPool& global();

 private:
  using TaskFn = void (*)(void* ctx, int64_t task, int thread);
  void run(int64_t n_tasks, TaskFn fn, void* ctx);
  void worker_loop(int thread);
  // Claims and runs tasks of job `gen` until none is left (or a newer job started).
  void run_tasks(uint32_t gen, int thread);

  std::vector<std::thread> workers_;
  int spin_us_;
  std::mutex call_mutex_;  // serializes callers from different threads

  // The current job, written by the caller before it publishes a new generation in state_.
  // A worker claims task k of job g by a compare-exchange of state_ from (g, k) to (g, k + 1), so
  // a worker that arrives late never runs a task of a finished job, and the caller only waits for
  // tasks, not for idle workers (which matters when threads outnumber free cores).
  std::atomic<TaskFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> n_tasks_{0};
  alignas(64) std::atomic<uint64_t> state_{0};  // generation << 32 | next task
  alignas(64) std::atomic<int64_t> tasks_done_{0};
  alignas(64) std::atomic<uint32_t> generation_{0};  // what workers wait on
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace qgemma
