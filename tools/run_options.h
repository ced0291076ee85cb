// Options and helpers shared by the commands that run a model (run, chat, bench, logits).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "kernels/quant/formats.h"
#include "loader/error.h"
#include "runtime/sampling.h"
#include "runtime/session.h"

namespace qgemma {

struct ModelOptions {
  std::string model;
  int64_t ctx = 32768;
  int64_t batch = 512;
  int threads = 0;
  std::string kv_type = "f16";
  double mem_budget_gib = 16.0;
  bool repack = true;
  std::string backend = "auto";
  int device = -1;

  void add(CLI::App& app) {
    app.add_option("-m,--model", model, "GGUF file (architecture gemma4)")->required();
    app.add_option("--ctx", ctx, "context length in tokens (max 262144)")->capture_default_str();
    app.add_option("-b,--batch", batch, "prompt tokens per forward pass")->capture_default_str();
    app.add_option("-t,--threads", threads, "threads (0: all cores)")->capture_default_str();
    app.add_option("--kv-type", kv_type, "KV cache type: f16 or q8_0")->capture_default_str();
    app.add_option("--mem-budget", mem_budget_gib, "memory budget in GiB")->capture_default_str();
    app.add_flag("!--no-repack", repack, "keep Q4_0/Q8_0 weights in the file's layout");
    app.add_option("--backend", backend,
                   "cpu, vulkan or auto (auto: Vulkan on a discrete or integrated GPU, else CPU)")
        ->capture_default_str();
    app.add_option("--device", device, "Vulkan device index (see `qgemma devices`; -1: default)")
        ->capture_default_str();
  }

  // For features that need the CPU backend: `auto` becomes `cpu`, `vulkan` is an error.
  void require_cpu(const std::string& what) {
    if (backend == "vulkan") {
      throw Error(what +
                  " runs on the CPU backend only (the MTP drafter reads the CPU KV cache); "
                  "use --backend cpu");
    }
    backend = "cpu";
  }

  SessionOptions session() const {
    SessionOptions o;
    o.n_ctx = ctx;
    o.n_batch = batch;
    o.n_threads = threads;
    if (kv_type == "f16") {
      o.kv_type = TensorType::F16;
    } else if (kv_type == "q8_0") {
      o.kv_type = TensorType::Q8_0;
    } else {
      throw Error("--kv-type '" + kv_type + "': expected f16 or q8_0");
    }
    o.mem_budget = static_cast<uint64_t>(mem_budget_gib * static_cast<double>(kGiB));
    o.backend = parse_backend(backend);
    o.device = device;
    return o;
  }
};

struct SamplingOptions {
  SamplingParams p;
  void add(CLI::App& app) {
    app.add_option("--temp", p.temperature, "temperature (0: greedy)")->capture_default_str();
    app.add_option("--top-k", p.top_k, "top-k (0: off)")->capture_default_str();
    app.add_option("--top-p", p.top_p, "top-p (1: off)")->capture_default_str();
    app.add_option("--min-p", p.min_p, "min-p (0: off)")->capture_default_str();
    app.add_option("--repeat-penalty", p.repeat_penalty, "repetition penalty (1: off)")
        ->capture_default_str();
    app.add_option("--seed", p.seed, "random seed")->capture_default_str();
  }
};

// Loads a model, drawing a progress bar on stderr while a large file is read.
inline std::unique_ptr<Model> load_model_with_progress(const ModelOptions& opts) {
  const std::string& path = opts.model;
  // The Vulkan backend reads the file's layouts (it would unpack repacked rows on upload).
  const bool cpu =
      resolve_backend(parse_backend(opts.backend), opts.device).kind == BackendKind::cpu;
  int last = -1;
  auto m = Model::load(
      path,
      [&](uint64_t done, uint64_t total) {
        const int pct = static_cast<int>(100 * done / total);
        if (pct == last) return;
        last = pct;
        const int bar = pct / 4;
        std::fprintf(stderr, "\rloading %s [%.*s%*s] %3d%%", path.c_str(), bar,
                     "=========================", 25 - bar, "", pct);
        if (done == total) std::fprintf(stderr, "\n");
        std::fflush(stderr);
      },
      opts.repack && cpu);
  return m;
}

}  // namespace qgemma
