// This machine's ceilings, measured by the benchmark binary before any benchmark runs and by
// `qgemma bench`, so every figure comes with the fraction of what the hardware can do:
//  - read bandwidth: a streaming read of a buffer several times the last-level cache, all threads
//    of the thread pool, widest vector loads the CPU has;
//  - int8 peak: a register-only loop of independent int8 dot-product instructions on all threads
//    (vpdpbusd zmm with AVX-512 VNNI, else vpdpbusd ymm with AVX-VNNI, else vpmaddubsw +
//    vpmaddwd + vpaddd ymm with AVX2), counted
//    as 2 ops (multiply + add) per int8 multiply-accumulate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qgemma {

class ThreadPool;

// Each ceiling comes twice: per wall-clock second, and per CPU second of the working threads
// (total work / (sum of the threads' CPU time / threads)). On a machine shared with other
// processes the second is what the code achieves while it runs; the benchmarks report both.
struct Ceilings {
  double read_gbps = 0.0;      // GB/s (1e9 bytes per second), wall clock
  double int8_gops = 0.0;      // 1e9 int8 ops per second (2 per multiply-accumulate), wall clock
  double read_gbps_cpu = 0.0;  // the same per CPU second of the reading threads
  double int8_gops_cpu = 0.0;
  std::string int8_isa;  // the instruction the peak was measured with
  int threads = 0;
};

// A paired ceiling: streaming reads of a buffer twice the size of this machine's last-level
// cache class (512 MiB by default, 2 MiB aligned, advised for huge pages, touched by the threads
// that read it), taken in turns with the measured work so that both sides of a fraction see the
// same machine state. On a shared machine the bandwidth one process gets swings by 15-20% from
// minute to minute (other tenants); a ceiling measured once, seconds or minutes away from the
// work, then moves every fraction with it. Each read() continues where the last one stopped, so
// the bytes it reads were last touched a whole buffer ago (not in cache).
class ReadProbe {
 public:
  explicit ReadProbe(ThreadPool& pool, size_t bytes = size_t{512} << 20);
  ~ReadProbe();
  ReadProbe(const ReadProbe&) = delete;
  ReadProbe& operator=(const ReadProbe&) = delete;

  // Reads `bytes` (rounded to whole 4 KiB pages per thread, at most the buffer) with every
  // thread of the pool; returns the wall seconds it took and adds to the totals below.
  double read(size_t bytes);
  // Bytes read and wall seconds spent in read() since construction or reset().
  double bytes_read() const { return bytes_; }
  double seconds() const { return seconds_; }
  double gbps() const { return seconds_ > 0 ? bytes_ / seconds_ / 1e9 : 0.0; }
  // The fastest single read() since construction or reset(), GB/s.
  double best_gbps() const { return best_gbps_; }
  void reset() { bytes_ = seconds_ = best_gbps_ = 0; }
  // Resident bytes of the buffer (for peak-RSS accounting).
  size_t size() const { return size_; }

 private:
  ThreadPool& pool_;
  uint8_t* buf_ = nullptr;
  size_t size_ = 0;
  size_t at_ = 0;  // where the next read starts
  double bytes_ = 0, seconds_ = 0, best_gbps_ = 0;
};

// Peak and current resident set size of this process (VmHWM / VmRSS of /proc/self/status, in
// bytes; 0 where unavailable).
uint64_t peak_rss_bytes();
uint64_t current_rss_bytes();

// CPU time of the calling thread, in seconds.
double thread_cpu_seconds();

// Measures both ceilings with every thread of `pool` (about two seconds).
Ceilings measure_ceilings(ThreadPool& pool);
// The same on ThreadPool::global(); the result is kept for ceilings().
const Ceilings& measure_ceilings();
// The int8 peak alone, best of `passes` passes of about 60 ms (0 without AVX-512 VNNI or AVX2).
double int8_peak_gops(ThreadPool& pool, int passes = 2);
// The same with one instruction sequence: "avx512vnni" (vpdpbusd zmm), "avxvnni" (vpdpbusd ymm)
// or "avx2" (vpmaddubsw + vpmaddwd + vpaddd); 0 when this CPU cannot run it.
double int8_peak_gops_with(ThreadPool& pool, std::string_view instr, int passes = 1);
// The measured values (zeros before measure_ceilings()).
const Ceilings& ceilings();

}  // namespace qgemma
