// A loaded Gemma 4 model and a generation session on it (KV cache + graphs + CPU backend).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "kernels/quant/formats.h"
#include "runtime/backend_select.h"
#include "runtime/cpu_backend.h"
#include "runtime/graph.h"
#include "runtime/kv_cache.h"
#include "runtime/model_config.h"
#include "runtime/planner.h"
#include "runtime/weights.h"

namespace qgemma {

class GgufFile;
class ThreadPool;

constexpr uint64_t kGiB = uint64_t{1} << 30;

class Model {
 public:
  // Maps the file, reads the config and checks every tensor. `progress(done, total)` is called
  // while the weights are read into memory (page cache) when the file is large (>= 256 MiB).
  // Q4_0 / Q8_0 matrices are repacked into the interleaved layouts the fastest kernels read
  // when this CPU has them (repack = false keeps the file's layout, for comparisons).
  static std::unique_ptr<Model> load(const std::string& path,
                                     const std::function<void(uint64_t, uint64_t)>& progress = {},
                                     bool repack = true);
  ~Model();

  const GgufFile& file() const { return *file_; }
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }

 private:
  Model() = default;
  void repack_matrices(const std::function<void(uint64_t, uint64_t)>& progress);

  std::unique_ptr<GgufFile> file_;
  std::vector<std::unique_ptr<uint8_t[], void (*)(void*)>> repacked_;  // owned repacked weights
  ModelConfig config_;
  ModelWeights weights_;
};

struct SessionOptions {
  int64_t n_ctx = 32768;  // positions the session can reach (max 262144)
  int64_t n_batch = 512;  // tokens per forward pass in prefill
  int n_threads = 0;      // <= 0: all cores
  TensorType kv_type = TensorType::F16;
  uint64_t mem_budget = 16 * kGiB;
  // cpu, vulkan or automatic (runtime/backend_select.h); device: Vulkan device index (-1: the
  // default). On Vulkan the KV cache and activations live on the device (kv_cache() is empty).
  BackendKind backend = BackendKind::cpu;
  int device = -1;
};

struct MemoryEstimate {
  uint64_t weights = 0, kv = 0, activations = 0;
  uint64_t total() const { return weights + kv + activations; }
};

class Session {
 public:
  // Checks the memory budget before allocating anything (throws Error naming the numbers).
  Session(const Model& m, const SessionOptions& o);
  ~Session();

  static MemoryEstimate estimate(const Model& m, const SessionOptions& o);

  // Runs `tokens` at positions n_past().. (in batches of n_batch) and returns the logits of the
  // last n_logits tokens, [n_logits x n_vocab] row-major (valid until the next call).
  std::span<const float> eval(std::span<const int32_t> tokens, int64_t n_logits = 1);
  // Logits of every token, [tokens x n_vocab] (for `qgemma logits` and reference checks).
  std::vector<float> eval_all(std::span<const int32_t> tokens);

  int64_t n_past() const { return n_past_; }
  void crop(int64_t n);  // forget positions >= n
  void reset();
  const ModelConfig& config() const { return m_.config(); }
  const KvCache& kv_cache() const { return kv_; }
  int n_threads() const;
  // The session's thread pool (what its kernels run on; benchmarks pair their ceilings with it).
  ThreadPool& pool() { return *pool_; }
  // "CPU" or "Vulkan (<device name>)".
  std::string backend_name() const;
  bool on_gpu() const { return gpu_ != nullptr; }
  // The GPU's read bandwidth in GB/s (on_gpu() only).
  double gpu_read_bandwidth_gbs(size_t bytes, int reps) {
    return gpu_->read_bandwidth_gbs(bytes, reps);
  }
  // Final hidden states (after the final norm) of the output rows of the last forward pass,
  // [rows x n_embd] row-major: after eval(tokens, n) with tokens.size() <= n_batch, the last n
  // tokens' states (the MTP drafter's input). Valid until the next eval / eval_all.
  std::span<const float> hidden() const {
    return {hidden_, static_cast<size_t>(hidden_rows_ * config().n_embd)};
  }
  int64_t hidden_rows() const { return hidden_rows_; }

  // Batch invariance (CPU backend): while on, a multi-token eval gives each token the logits a
  // decoding step at its position would give, bit for bit (attention runs per token; see
  // CpuBackend::set_invariant_attention). Speculative verification turns it on so that greedy
  // speculative output equals plain greedy output exactly. No effect on Vulkan.
  void set_batch_invariant(bool on) { backend_.set_invariant_attention(on); }
  bool batch_invariant() const { return backend_.invariant_attention(); }
  // Bytes of weights in the model, and of K/V cache one query token reads at the current fill.
  uint64_t weight_bytes() const { return m_.weights().nbytes; }
  uint64_t kv_bytes_per_token() const { return gpu_ ? 0 : kv_.bytes_in_use(); }

 private:
  struct Plan {
    Graph graph;
    MemoryPlan memory;
  };
  const Plan& plan(int64_t n_tokens, int64_t n_outputs);
  // One forward pass of at most n_batch tokens; returns its output rows.
  const float* forward(std::span<const int32_t> tokens, int64_t n_outputs);

  const Model& m_;
  SessionOptions o_;
  std::unique_ptr<ThreadPool> pool_;
  KvCache kv_;
  CpuBackend backend_;
  std::map<std::pair<int64_t, int64_t>, Plan> plans_;
  std::vector<float> arena_;
  std::vector<float> logits_;
  std::vector<int32_t> pos_;
  int64_t n_past_ = 0;
  const float* hidden_ = nullptr;  // see hidden()
  int64_t hidden_rows_ = 0;
  std::unique_ptr<GpuBackend> gpu_;  // set when the graphs run on Vulkan
};

std::string format_bytes(uint64_t bytes);  // "6.71 GiB", "512.0 MiB"

}  // namespace qgemma
