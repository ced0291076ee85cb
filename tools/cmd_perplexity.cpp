// qgemma perplexity: perplexity of a model on a text file, and KL divergence against a reference
// model's saved distributions, with llama-perplexity's chunking (runtime/perplexity.h):
//   qgemma perplexity -m MODEL -f TEXT [-c 512] [--chunks N]
//   qgemma perplexity -m BASE -f TEXT --kl-divergence-base BASE.kld    (also prints PPL)
//   qgemma perplexity -m QUANT --kl-divergence-base BASE.kld --kl-divergence
// The KL run takes the token ids from the base file, so both runs score the same tokens.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "loader/error.h"
#include "loader/tokenizer.h"
#include "runtime/perplexity.h"
#include "tools/command.h"
#include "tools/run_options.h"

namespace qgemma {
namespace {

struct PerplexityCmd {
  ModelOptions model;
  std::string text_file;
  int64_t chunk = 512;
  int64_t max_chunks = -1;
  std::string kl_base;
  bool kl = false;
};

// Positions scored per eval call: their logits (n x vocab floats) are all the memory this needs.
constexpr int64_t kScoreGroup = 32;

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("perplexity: cannot open text file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0.0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

int run_perplexity(PerplexityCmd& cmd) {
  if (cmd.kl && cmd.kl_base.empty()) {
    throw Error("--kl-divergence needs --kl-divergence-base FILE (written by a base run)");
  }
  if (cmd.chunk < 16) {
    throw Error("-c " + std::to_string(cmd.chunk) + ": chunks need at least 16 tokens");
  }
  std::unique_ptr<KlBaseReader> base;
  if (cmd.kl) {
    base = std::make_unique<KlBaseReader>(cmd.kl_base);
    cmd.chunk = base->n_ctx();
  }
  auto model = load_model_with_progress(cmd.model);
  const int64_t vocab = model->config().n_vocab;

  // Tokens: from the text (llama-perplexity: with <bos>, which each chunk's first token becomes),
  // or the base file's.
  std::vector<int32_t> tokens;
  int64_t n_chunk = 0;
  if (base) {
    if (base->n_vocab() != vocab) {
      throw Error("KL base file '" + cmd.kl_base + "' has a vocabulary of " +
                  std::to_string(base->n_vocab()) + " tokens, model '" + cmd.model.model +
                  "' has " + std::to_string(vocab));
    }
    tokens = base->tokens();
    n_chunk = static_cast<int64_t>(tokens.size()) / cmd.chunk;
    if (cmd.max_chunks > 0) n_chunk = std::min(n_chunk, cmd.max_chunks);
    for (int32_t t : tokens) {
      if (t < 0 || t >= vocab) {
        throw Error("KL base file '" + cmd.kl_base + "': token id " + std::to_string(t) +
                    " outside the model's vocabulary");
      }
    }
  } else {
    if (cmd.text_file.empty()) throw Error("perplexity: give the text with -f FILE");
    const Tokenizer tok = Tokenizer::from_gguf(model->file());
    tokens = tok.encode(read_text(cmd.text_file), tok.add_bos(), /*parse_special=*/false);
    n_chunk = static_cast<int64_t>(tokens.size()) / cmd.chunk;
    if (n_chunk == 0) {
      throw Error("perplexity: '" + cmd.text_file + "' is " + std::to_string(tokens.size()) +
                  " tokens, fewer than one chunk of " + std::to_string(cmd.chunk) +
                  " (-c): use a longer text or a smaller -c");
    }
    if (cmd.max_chunks > 0) n_chunk = std::min(n_chunk, cmd.max_chunks);
    tokens.resize(static_cast<size_t>(n_chunk * cmd.chunk));
    const Tokenizer& t = tok;
    if (t.bos_id() >= 0) {
      for (int64_t c = 0; c < n_chunk; ++c) tokens[c * cmd.chunk] = t.bos_id();
    }
  }

  SessionOptions so = cmd.model.session();
  so.n_ctx = cmd.chunk;
  so.n_batch = std::min<int64_t>(so.n_batch, cmd.chunk);
  Session session(*model, so);

  std::unique_ptr<KlBaseWriter> writer;
  if (!cmd.kl_base.empty() && !cmd.kl) {
    writer = std::make_unique<KlBaseWriter>(cmd.kl_base, vocab, cmd.chunk, tokens);
  }

  const int64_t first = perplexity_first_scored(cmd.chunk);
  std::fprintf(stderr,
               "perplexity: %zu tokens, %lld chunks of %lld, scoring positions %lld..%lld of "
               "each\n",
               tokens.size(), static_cast<long long>(n_chunk), static_cast<long long>(cmd.chunk),
               static_cast<long long>(first + 1), static_cast<long long>(cmd.chunk - 1));
  MeanStat nll, nll_base, log_ratio, kld, dp;
  std::vector<double> klds;
  double dp2 = 0;
  MeanStat same_top;
  std::vector<float> lp(static_cast<size_t>(vocab));
  KlBaseRow brow;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t c = 0; c < n_chunk; ++c) {
    const int32_t* ct = tokens.data() + c * cmd.chunk;
    session.reset();
    // Positions [0, first) need no logits; then groups whose logits predict the next tokens.
    if (first > 0) session.eval(std::span<const int32_t>(ct, static_cast<size_t>(first)), 1);
    for (int64_t p0 = first; p0 < cmd.chunk - 1; p0 += kScoreGroup) {
      const int64_t n = std::min(kScoreGroup, cmd.chunk - 1 - p0);
      const std::span<const float> logits =
          session.eval(std::span<const int32_t>(ct + p0, static_cast<size_t>(n)), n);
      for (int64_t i = 0; i < n; ++i) {
        const int32_t target = ct[p0 + i + 1];
        log_softmax(logits.data() + i * vocab, vocab, lp.data());
        const double l = -static_cast<double>(lp[target]);
        nll.add(l);
        if (writer) writer->add(lp, target);
        if (base) {
          base->next(brow);
          const KlPosition k = compare_position(brow, lp, target);
          nll_base.add(-static_cast<double>(brow.lp_target));
          log_ratio.add(l + brow.lp_target);
          kld.add(k.kld);
          klds.push_back(k.kld);
          dp.add(k.p_model - k.p_base);
          dp2 += (k.p_model - k.p_base) * (k.p_model - k.p_base);
          same_top.add(k.same_top ? 1.0 : 0.0);
        }
      }
    }
    std::printf("[%lld]%.4f,", static_cast<long long>(c + 1), std::exp(nll.mean()));
    std::fflush(stdout);
  }
  std::printf("\n");
  if (writer) writer->close();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ppl = std::exp(nll.mean());
  std::printf("Final estimate: PPL = %.4f +/- %.5f (%lld scored tokens, %.1f s)\n", ppl,
              ppl * nll.error(), static_cast<long long>(nll.n), secs);
  if (writer) std::printf("KL base written to %s\n", cmd.kl_base.c_str());
  if (base) {
    const double ppl_b = std::exp(nll_base.mean());
    std::printf("\n====== Perplexity statistics ======\n");
    std::printf("Mean PPL(Q)                   : %10.6f +/- %10.6f\n", ppl, ppl * nll.error());
    std::printf("Mean PPL(base)                : %10.6f +/- %10.6f\n", ppl_b,
                ppl_b * nll_base.error());
    std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f +/- %10.6f\n", log_ratio.mean(),
                log_ratio.error());
    std::printf("Mean PPL(Q)/PPL(base)         : %10.6f +/- %10.6f\n", std::exp(log_ratio.mean()),
                std::exp(log_ratio.mean()) * log_ratio.error());
    std::printf("\n====== KL divergence statistics ======\n");
    std::printf("Mean    KLD: %10.6f +/- %10.6f\n", kld.mean(), kld.error());
    std::printf("Maximum KLD: %10.6f\n", percentile(klds, 1.0));
    std::printf("99.9%%   KLD: %10.6f\n", percentile(klds, 0.999));
    std::printf("99.0%%   KLD: %10.6f\n", percentile(klds, 0.99));
    std::printf("Median  KLD: %10.6f\n", percentile(klds, 0.5));
    std::printf("Minimum KLD: %10.6f\n", percentile(klds, 0.0));
    std::printf("\n====== Token probability statistics ======\n");
    std::printf("Mean    Δp: %8.4f +/- %7.4f %%\n", 100.0 * dp.mean(), 100.0 * dp.error());
    std::printf("RMS     Δp: %8.4f %%\n", 100.0 * std::sqrt(dp2 / std::max<int64_t>(1, dp.n)));
    std::printf("Same top p: %8.4f +/- %7.4f %%\n", 100.0 * same_top.mean(),
                100.0 * same_top.error());
  }
  return 0;
}

const bool registered = register_command(
    "perplexity",
    "Perplexity on a text file; KL divergence against a base model's saved distributions",
    [](CLI::App& app, std::function<int()>& run) {
      auto cmd = std::make_shared<PerplexityCmd>();
      cmd->model.add(app);
      app.add_option("-f,--file", cmd->text_file, "text file to score");
      app.add_option("-c,--chunk", cmd->chunk, "tokens per chunk (each from an empty cache)")
          ->capture_default_str();
      app.add_option("--chunks", cmd->max_chunks, "score at most this many chunks (-1: all)")
          ->capture_default_str();
      app.add_option("--kl-divergence-base", cmd->kl_base,
                     "base run: write the distributions here (never overwrites a file); with "
                     "--kl-divergence: read them");
      app.add_flag("--kl-divergence", cmd->kl,
                   "compare with the --kl-divergence-base file (same tokens; -f not needed)");
      run = [cmd] { return run_perplexity(*cmd); };
    });

}  // namespace
}  // namespace qgemma
