#include "runtime/threadpool.h"

#include <chrono>
#include <cstdlib>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace qgemma {
namespace {

thread_local bool t_in_pool_task = false;

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

using Clock = std::chrono::steady_clock;

constexpr uint64_t pack(uint32_t gen, uint32_t task) { return uint64_t{gen} << 32 | task; }
// The task index of a job being set up: above any task count (run() keeps counts below 2^32).
constexpr uint32_t kClosed = 0xFFFFFFFFu;

}  // namespace

ThreadPool::ThreadPool(int n_threads, int spin_us) : spin_us_(spin_us) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  workers_.reserve(n_threads - 1);
  for (int t = 1; t < n_threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  for (std::thread& w : workers_) w.join();
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool([] {
    const char* env = std::getenv("QGEMMA_THREADS");
    const int n = env ? std::atoi(env) : 0;
    return n > 0 ? n : 0;
  }());
  return pool;
}

void ThreadPool::run_tasks(uint32_t gen, int thread) {
  t_in_pool_task = true;
  uint64_t state = state_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(state >> 32) != gen) break;
    // Read the job before claiming. The caller closes a finished job's state (kClosed) before
    // it rewrites these for the next job, and all of it is sequentially consistent, so if these
    // loads saw the next job's values the claim below fails: a claim of (gen, task) succeeds
    // only with gen's own task count, fn and ctx. (Without the closing step a thread could read
    // the next job's larger n_tasks_ while state_ still held the finished (gen, n) and claim a
    // task that does not exist: the next job's task n then ran twice, and the extra completion
    // let the caller return while a task was still running.)
    const int64_t n = n_tasks_.load(std::memory_order_seq_cst);
    const TaskFn fn = fn_.load(std::memory_order_seq_cst);
    void* ctx = ctx_.load(std::memory_order_seq_cst);
    const uint32_t task = static_cast<uint32_t>(state);
    if (task >= n) break;
    if (!state_.compare_exchange_weak(state, state + 1, std::memory_order_seq_cst,
                                      std::memory_order_seq_cst)) {
      continue;
    }
    fn(ctx, task, thread);
    tasks_done_.fetch_add(1, std::memory_order_acq_rel);
    state = state_.load(std::memory_order_acquire);
  }
  t_in_pool_task = false;
}

void ThreadPool::run(int64_t n_tasks, TaskFn fn, void* ctx) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1 || t_in_pool_task || n_tasks >= (int64_t{1} << 32)) {
    // Serial: a single task, a one-thread pool, or a nested call from inside a task.
    for (int64_t t = 0; t < n_tasks; ++t) fn(ctx, t, 0);
    return;
  }
  std::lock_guard<std::mutex> lock(call_mutex_);
  const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
  state_.store(pack(gen, kClosed), std::memory_order_seq_cst);  // nothing left to claim
  fn_.store(fn, std::memory_order_seq_cst);
  ctx_.store(ctx, std::memory_order_seq_cst);
  n_tasks_.store(n_tasks, std::memory_order_seq_cst);
  tasks_done_.store(0, std::memory_order_relaxed);
  state_.store(pack(gen, 0), std::memory_order_seq_cst);  // opens the job
  generation_.store(gen, std::memory_order_seq_cst);      // wakes the workers
  if (sleepers_.load(std::memory_order_seq_cst) > 0) generation_.notify_all();

  run_tasks(gen, 0);

  // Wait for the tasks other threads claimed.
  for (int spins = 0; tasks_done_.load(std::memory_order_acquire) < n_tasks; ++spins) {
    if (spins < 4096) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::worker_loop(int thread) {
  uint32_t seen = 0;
  for (;;) {
    // Spin for a while, then sleep until the generation changes.
    uint32_t gen = generation_.load(std::memory_order_acquire);
    if (gen == seen) {
      const auto deadline = Clock::now() + std::chrono::microseconds(spin_us_);
      for (int i = 0; gen == seen; ++i) {
        cpu_relax();
        if ((i & 63) == 63 && Clock::now() > deadline) {
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          if (generation_.load(std::memory_order_seq_cst) == seen) {
            generation_.wait(seen, std::memory_order_acquire);
          }
          sleepers_.fetch_sub(1, std::memory_order_relaxed);
        }
        gen = generation_.load(std::memory_order_acquire);
      }
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    run_tasks(gen, thread);
  }
}

}  // namespace qgemma
