// qgemma bench: llama-bench's conventions (-p 512 -n 128 -r 5; a markdown table
// `model | size | params | backend | threads | test | t/s` with mean ± stddev, or -o json), plus
// peak RSS and decode's fraction of this machine's measured memory read bandwidth.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "loader/error.h"
#include "loader/gguf.h"
#include "runtime/ceiling.h"
#include "runtime/threadpool.h"
#include "tools/command.h"
#include "tools/draft_options.h"
#include "tools/run_options.h"

namespace qgemma {
namespace {

struct BenchCmd {
  ModelOptions model;
  int n_prompt = 512;
  int n_gen = 128;
  int n_depth = 0;  // -d: tokens already in the KV cache before each test (llama-bench's -d)
  int reps = 5;
  std::string output = "md";
  bool bandwidth = true;
  DraftOptions draft;  // --draft: also the speculative decoding cost model
};

struct Result {
  std::string test;
  int n_prompt = 0, n_gen = 0;
  std::vector<double> ts;  // tokens per second of each repetition
  double kv_bytes = 0;     // tg: mean K/V cache bytes one token reads (at depth, on the CPU)
  // Paired ceilings (CPU): per repetition, the read bandwidth (GB/s) of the probe reads taken
  // between its tokens (tg), or the int8 peak (GOPS) measured just before and after it (pp); and
  // the repetition's fraction of that ceiling.
  std::vector<double> paired_ceiling, paired_fraction;
  // tg: the same with the best of each side (fastest token against fastest probe read).
  std::vector<double> paired_best_ceiling, paired_best_fraction;
  double mean() const {
    double s = 0;
    for (double x : ts) s += x;
    return ts.empty() ? 0 : s / ts.size();
  }
  double stddev() const {
    if (ts.size() < 2) return 0;
    const double m = mean();
    double s = 0;
    for (double x : ts) s += (x - m) * (x - m);
    return std::sqrt(s / (ts.size() - 1));
  }
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

using Clock = std::chrono::steady_clock;

std::vector<int32_t> random_tokens(int n, int64_t vocab, std::mt19937& rng) {
  std::vector<int32_t> ids(n);
  for (auto& t : ids) t = static_cast<int32_t>(rng() % vocab);
  return ids;
}

// The cache holds `depth` tokens before a test: the first call fills it (untimed); later calls
// crop back to it, or refill it when the sliding rings no longer hold what a crop needs.
void at_depth(Session& s, const std::vector<int32_t>& depth) {
  const int64_t d = static_cast<int64_t>(depth.size());
  if (s.n_past() >= d && d > 0) {
    try {
      s.crop(d);
      return;
    } catch (const Error&) {
    }
  }
  s.reset();
  if (d > 0) s.eval(depth, 1);
}

double run_prompt(Session& s, const std::vector<int32_t>& depth, const std::vector<int32_t>& ids) {
  at_depth(s, depth);
  const auto t0 = Clock::now();
  s.eval(ids, 1);
  return ids.size() / std::chrono::duration<double>(Clock::now() - t0).count();
}

// Also the mean K/V cache bytes a token read (kv_bytes, CPU backend). With a probe, every token
// is preceded by a streaming read of kProbeBytes (untimed for the test): the paired ceiling.
constexpr size_t kProbeBytes = size_t{256} << 20;
// best_s: the fastest token's seconds.
double run_gen(Session& s, const std::vector<int32_t>& depth, int n, std::mt19937& rng,
               double* kv_bytes = nullptr, ReadProbe* probe = nullptr, double* best_s = nullptr) {
  at_depth(s, depth);
  const int64_t vocab = s.config().n_vocab;
  int32_t tok = static_cast<int32_t>(rng() % vocab);
  const double kv0 = static_cast<double>(s.kv_bytes_per_token());
  double secs = 0;
  for (int i = 0; i < n; ++i) {
    if (probe) probe->read(kProbeBytes);
    const auto t0 = Clock::now();
    auto logits = s.eval(std::span<const int32_t>(&tok, 1), 1);
    tok = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    secs += dt;
    if (best_s && (i == 0 || dt < *best_s)) *best_s = dt;
  }
  // The cache grows by one token per step: the mean of the first and last step's reads.
  if (kv_bytes) *kv_bytes = (kv0 + static_cast<double>(s.kv_bytes_per_token())) / 2;
  return n / secs;
}

std::string params_str(int64_t n) {
  char buf[32];
  if (n >= 1000000000) {
    std::snprintf(buf, sizeof(buf), "%.2f B", n / 1e9);
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f M", n / 1e6);
  }
  return buf;
}

int run_bench(const BenchCmd& cmd) {
  auto model = load_model_with_progress(cmd.model);
  const ModelConfig& c = model->config();
  if (cmd.n_depth < 0) throw Error("-d " + std::to_string(cmd.n_depth) + ": expected >= 0");
  SessionOptions so = cmd.model.session();
  so.n_ctx = std::max<int64_t>(int64_t{cmd.n_depth} + std::max(cmd.n_prompt, cmd.n_gen) + 1, 16);
  Session session(*model, so);
  std::mt19937 rng(1234);
  const std::vector<int32_t> depth = random_tokens(cmd.n_depth, c.n_vocab, rng);
  // llama-bench names tests at a depth "pp512 @ d4096".
  const std::string at = cmd.n_depth > 0 ? " @ d" + std::to_string(cmd.n_depth) : "";

  std::vector<Result> results;
  auto add_test = [&](std::string name, int n_prompt, int n_gen) {
    Result r;
    r.test = std::move(name) + at;
    r.n_prompt = n_prompt;
    r.n_gen = n_gen;
    results.push_back(std::move(r));
  };
  if (cmd.n_prompt > 0) add_test("pp" + std::to_string(cmd.n_prompt), cmd.n_prompt, 0);
  if (cmd.n_gen > 0) add_test("tg" + std::to_string(cmd.n_gen), 0, cmd.n_gen);
  // Warm-up run (weights into the page cache and caches, plans built), as llama-bench does.
  if (cmd.n_prompt > 0) run_prompt(session, depth, random_tokens(cmd.n_prompt, c.n_vocab, rng));
  if (cmd.n_gen > 0) run_gen(session, depth, std::min(cmd.n_gen, 4), rng);
  // Prefill does 2 ops (multiply + add) per weight of the layers' matrices per token; the
  // embedding is a row lookup and the output head runs for the last token only, so the vocabulary
  // matrix is not counted (counting it would flatter the figure by ~8% on the 12B).
  const double ops_per_token =
      2.0 * static_cast<double>(c.n_params() - int64_t{c.n_vocab} * c.n_embd);
  // Decode reads every weight once per token (the tied embedding as the output head).
  const double bytes_per_token = static_cast<double>(model->weights().nbytes);
  // Paired ceilings (CPU): the probe buffer is allocated after the warm-up, whose peak resident
  // memory is recorded first; the probe stays resident throughout, so the tests' own peak is the
  // later high-water mark minus the probe.
  const bool paired = cmd.bandwidth && !session.on_gpu();
  const uint64_t rss_before_probe = peak_rss_bytes();
  std::unique_ptr<ReadProbe> probe;
  if (paired) probe = std::make_unique<ReadProbe>(session.pool());
  double int8_prev = paired && cmd.n_prompt > 0 ? int8_peak_gops(session.pool()) : 0;
  for (int r = 0; r < cmd.reps; ++r) {
    for (Result& res : results) {
      double kv = 0;
      if (res.n_prompt) {
        res.ts.push_back(run_prompt(session, depth, random_tokens(res.n_prompt, c.n_vocab, rng)));
        if (paired && int8_prev > 0) {
          const double int8_next = int8_peak_gops(session.pool());
          const double ceil = (int8_prev + int8_next) / 2;
          res.paired_ceiling.push_back(ceil);
          res.paired_fraction.push_back(res.ts.back() * ops_per_token / (ceil * 1e9));
          int8_prev = int8_next;
        }
      } else {
        if (probe) probe->reset();
        double best_s = 0;
        res.ts.push_back(run_gen(session, depth, res.n_gen, rng, &kv, probe.get(), &best_s));
        if (probe) {
          res.paired_ceiling.push_back(probe->gbps());
          const double b = bytes_per_token + (cmd.n_depth > 0 ? kv : 0);
          res.paired_fraction.push_back(res.ts.back() * b / (probe->gbps() * 1e9));
          res.paired_best_ceiling.push_back(probe->best_gbps());
          res.paired_best_fraction.push_back(b / best_s / (probe->best_gbps() * 1e9));
        }
      }
      // At depth 0 the roofline stays weights only (the definition; the cache of a
      // short test is < 0.01% of the bytes).
      if (cmd.n_depth > 0) res.kv_bytes += kv / cmd.reps;
    }
  }
  uint64_t peak_rss = peak_rss_bytes();
  if (probe) {
    peak_rss = std::max(rss_before_probe, peak_rss - std::min<uint64_t>(peak_rss, probe->size()));
    probe.reset();
  }
  if (peak_rss == 0) {  // no /proc: getrusage's figure
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    peak_rss = static_cast<uint64_t>(ru.ru_maxrss) * 1024;
  }
  double bw = 0;    // bytes/s of memory reads
  double int8 = 0;  // int8 ops/s (CPU only: the prefill roofline)
  std::string int8_isa;
  if (cmd.bandwidth && session.on_gpu()) {
    bw = session.gpu_read_bandwidth_gbs(size_t{1} << 30, 5) * 1e9;  // the GPU's memory
  } else if (cmd.bandwidth) {
    const Ceilings ceil = measure_ceilings(session.pool());
    bw = ceil.read_gbps * 1e9;
    int8 = ceil.int8_gops * 1e9;
    int8_isa = ceil.int8_isa;
  }
  const std::string type(
      type_traits(model->file().find_tensor("blk.0.ffn_gate.weight")->type).name);
  const std::string model_name = "gemma4 " + params_str(c.n_params()) + " " + type;
  if (cmd.output == "json") {
    nlohmann::json out = nlohmann::json::array();
    for (const Result& r : results) {
      nlohmann::json j;
      j["model_filename"] = cmd.model.model;
      j["model_type"] = model_name;
      j["model_size"] = model->weights().nbytes;
      j["model_n_params"] = c.n_params();
      j["backend"] = session.backend_name();
      j["n_threads"] = session.n_threads();
      j["n_batch"] = so.n_batch;
      j["type_k"] = cmd.model.kv_type;
      j["n_prompt"] = r.n_prompt;
      j["n_gen"] = r.n_gen;
      j["n_depth"] = cmd.n_depth;
      if (r.n_gen) j["kv_bytes_per_token"] = r.kv_bytes;
      j["avg_ts"] = r.mean();
      j["stddev_ts"] = r.stddev();
      j["samples_ts"] = r.ts;
      j["peak_rss_bytes"] = peak_rss;
      if (bw > 0) {
        j["read_bandwidth_gbps"] = bw / 1e9;
        if (r.n_gen) j["bandwidth_fraction"] = r.mean() * (bytes_per_token + r.kv_bytes) / bw;
      }
      if (int8 > 0 && r.n_prompt) {
        j["int8_peak_gops"] = int8 / 1e9;
        j["int8_fraction"] = r.mean() * ops_per_token / int8;
      }
      if (!r.paired_fraction.empty()) {
        const char* what = r.n_gen ? "paired_read_bandwidth_gbps" : "paired_int8_peak_gops";
        j[what] = r.paired_ceiling;
        j[r.n_gen ? "bandwidth_fraction_paired" : "int8_fraction_paired"] =
            median(r.paired_fraction);
        j["paired_fraction_samples"] = r.paired_fraction;
        if (r.n_gen) {
          j["paired_best_read_bandwidth_gbps"] = r.paired_best_ceiling;
          j["bandwidth_fraction_paired_best"] = median(r.paired_best_fraction);
          j["paired_best_fraction_samples"] = r.paired_best_fraction;
        }
      }
      out.push_back(j);
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  if (cmd.output != "md") throw Error("-o '" + cmd.output + "': expected md or json");
  std::printf("| model | size | params | backend | threads | test | t/s |\n");
  std::printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
  for (const Result& r : results) {
    std::printf("| %s | %s | %s | %s | %d | %s | %.2f ± %.2f |\n", model_name.c_str(),
                format_bytes(model->weights().nbytes).c_str(), params_str(c.n_params()).c_str(),
                session.backend_name().c_str(), session.n_threads(), r.test.c_str(), r.mean(),
                r.stddev());
  }
  std::printf("\npeak RSS: %s\n", format_bytes(peak_rss).c_str());
  if (bw > 0) {
    std::printf("measured read bandwidth (%s): %.2f GB/s\n",
                session.on_gpu() ? "GPU memory" : "CPU memory", bw / 1e9);
    for (const Result& r : results) {
      if (!r.n_gen) continue;
      if (r.kv_bytes > 0) {
        // At a depth: each token also reads the K/V cache (mean over the test's tokens).
        const double b = bytes_per_token + r.kv_bytes;
        std::printf(
            "%s: %.2f GB/s of weights + %.2f GB/s of K/V cache read = %.1f%% of the bandwidth "
            "roofline (roofline: %.2f t/s)\n",
            r.test.c_str(), r.mean() * bytes_per_token / 1e9, r.mean() * r.kv_bytes / 1e9,
            100.0 * r.mean() * b / bw, bw / b);
        continue;
      }
      std::printf(
          "%s: %.2f GB/s of weights read = %.1f%% of the bandwidth roofline (roofline: %.2f t/s)\n",
          r.test.c_str(), r.mean() * bytes_per_token / 1e9, 100.0 * r.mean() * bytes_per_token / bw,
          bw / bytes_per_token);
    }
  }
  if (int8 > 0) {
    std::printf("measured int8 peak (%s): %.1f GOPS\n", int8_isa.c_str(), int8 / 1e9);
    for (const Result& r : results) {
      if (!r.n_prompt) continue;
      std::printf("%s: %.1f GOPS (2 x layer weights x tokens / s) = %.1f%% of the int8 roofline\n",
                  r.test.c_str(), r.mean() * ops_per_token / 1e9,
                  100.0 * r.mean() * ops_per_token / int8);
    }
  }
  // The paired figures: each repetition against the ceiling measured in turns with it.
  for (const Result& r : results) {
    if (r.paired_fraction.size() == 0) continue;
    const auto [fmin, fmax] =
        std::minmax_element(r.paired_fraction.begin(), r.paired_fraction.end());
    const auto [cmin, cmax] = std::minmax_element(r.paired_ceiling.begin(), r.paired_ceiling.end());
    if (r.n_gen) {
      std::printf(
          "%s, paired: %.1f%% of the read bandwidth measured between its tokens (median of %zu "
          "repetitions, range %.1f-%.1f%%; %zu MiB read before each token: %.2f-%.2f GB/s)\n",
          r.test.c_str(), 100.0 * median(r.paired_fraction), r.paired_fraction.size(),
          100.0 * *fmin, 100.0 * *fmax, kProbeBytes >> 20, *cmin, *cmax);
      const auto [bmin, bmax] =
          std::minmax_element(r.paired_best_fraction.begin(), r.paired_best_fraction.end());
      std::printf(
          "%s, paired best: %.1f%% (the fastest token against the fastest probe read of the same "
          "repetition; median of %zu, range %.1f-%.1f%%)\n",
          r.test.c_str(), 100.0 * median(r.paired_best_fraction), r.paired_best_fraction.size(),
          100.0 * *bmin, 100.0 * *bmax);
    } else {
      std::printf(
          "%s, paired: %.1f%% of the int8 peak measured before and after each repetition (median "
          "of %zu, range %.1f-%.1f%%; peak %.0f-%.0f GOPS)\n",
          r.test.c_str(), 100.0 * median(r.paired_fraction), r.paired_fraction.size(),
          100.0 * *fmin, 100.0 * *fmax, *cmin, *cmax);
    }
  }
  if (cmd.draft.enabled()) {
    bench_speculative(*model, cmd.model.session(), cmd.draft, cmd.model.model, cmd.n_gen, cmd.reps);
  }
  return 0;
}

const bool registered = register_command(
    "bench", "Measure prompt processing and generation speed (llama-bench conventions)",
    [](CLI::App& app, std::function<int()>& run) {
      auto cmd = std::make_shared<BenchCmd>();
      cmd->model.add(app);
      app.add_option("-p,--n-prompt", cmd->n_prompt, "prompt tokens (pp test; 0: skip)")
          ->capture_default_str();
      app.add_option("-n,--n-gen", cmd->n_gen, "generated tokens (tg test; 0: skip)")
          ->capture_default_str();
      app.add_option("-d,--n-depth", cmd->n_depth,
                     "tokens already in the KV cache before each test (filled once, untimed)")
          ->capture_default_str();
      app.add_option("-r,--repetitions", cmd->reps, "repetitions of each test")
          ->capture_default_str();
      app.add_option("-o,--output", cmd->output, "md or json")->capture_default_str();
      app.add_flag("!--no-bandwidth", cmd->bandwidth, "skip the memory bandwidth measurement");
      cmd->draft.add(app);
      run = [cmd] {
        if (cmd->draft.enabled()) cmd->model.require_cpu("--draft (speculative decoding)");
        return run_bench(*cmd);
      };
    });

}  // namespace
}  // namespace qgemma
