// Speculative decoding in the commands: --draft / --draft-max / --draft-min / --no-draft-adapt
// (run, chat, bench), the generation loop of `run --draft` and the cost model of `bench --draft`.
// Header-only so that each command file only gains a field, an add() call and one call.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "loader/error.h"
#include "loader/gguf.h"
#include "loader/tokenizer.h"
#include "runtime/drafter.h"
#include "runtime/sampling.h"
#include "runtime/session.h"
#include "runtime/speculative.h"

namespace qgemma {

struct DraftOptions {
  std::string path;  // drafter GGUF, "auto" (look next to the target) or empty (off)
  int draft_max = 4;
  int draft_min = 1;
  bool adaptive = true;
  std::string head = "auto";    // --draft-head auto | full | clustered
  int top = 0;                  // --draft-top: clusters per step (0: the file's, else 32)
  std::string verify = "auto";  // --draft-verify auto | exact | batched

  void add(CLI::App& app) {
    app.add_option("--draft", path,
                   "MTP drafter GGUF (gemma4-assistant) for speculative decoding; 'auto': the "
                   "first gemma4-assistant GGUF in the target's directory");
    app.add_option("--draft-max", draft_max, "draft tokens per round at most (1..8)")
        ->capture_default_str();
    app.add_option("--draft-min", draft_min, "draft tokens per round at least")
        ->capture_default_str();
    app.add_flag("!--no-draft-adapt", adaptive, "keep the draft length at --draft-max");
    app.add_option("--draft-head", head,
                   "drafter output head: auto (clustered when the file has "
                   "masked_embd_centroids, as transformers), full (all rows, as llama.cpp), "
                   "clustered")
        ->capture_default_str();
    app.add_option("--draft-top", top,
                   "clustered head: clusters scored per step (default: the file's, else 32)");
    app.add_option("--draft-verify", verify,
                   "verification pass: exact (every row equals a decoding step bit for bit: "
                   "greedy output identical to plain decoding; reads the KV cache once per "
                   "row), batched (one attention pass for all rows), auto (exact while the "
                   "extra cache reads, mostly from the CPU caches, are <= 40% of the weights)")
        ->check(CLI::IsMember({"auto", "exact", "batched"}))
        ->capture_default_str();
  }
  DraftHeadOptions head_options() const {
    DraftHeadOptions o;
    o.mode = parse_draft_head(head);
    o.top_k = top;
    if (top < 0) throw Error("--draft-top " + std::to_string(top) + ": expected >= 1");
    return o;
  }
  bool enabled() const { return !path.empty(); }

  SpeculativeOptions options() const {
    if (draft_max < 1 || draft_max > 8) {
      throw Error("--draft-max " + std::to_string(draft_max) +
                  ": expected 1..8 (k + 1 <= 9 rows keep verification on the GEMV path)");
    }
    SpeculativeOptions o;
    o.draft_max = draft_max;
    o.draft_min = std::clamp(draft_min, 1, draft_max);
    o.adaptive = adaptive;
    o.verify = verify == "exact"     ? VerifyMode::exact
               : verify == "batched" ? VerifyMode::batched
                                     : VerifyMode::automatic;
    return o;
  }

  // The drafter file: `path`, or for "auto" a gemma4-assistant GGUF next to the target.
  std::string resolve(const std::string& target_path) const {
    if (path != "auto") return path;
    namespace fs = std::filesystem;
    fs::path dir = fs::path(target_path).parent_path();
    if (dir.empty()) dir = ".";
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file() || e.path().extension() != ".gguf") continue;
      if (fs::equivalent(e.path(), fs::path(target_path))) continue;
      try {
        const auto f = GgufFile::open(e.path().string());
        if (f->has("general.architecture") &&
            f->get_string("general.architecture") == "gemma4-assistant") {
          found.push_back(e.path().string());
        }
      } catch (const Error&) {
        // not a GGUF we can read: skip
      }
    }
    if (found.empty()) {
      throw Error("--draft auto: no gemma4-assistant GGUF next to " + target_path);
    }
    std::sort(found.begin(), found.end());
    return found.front();
  }
};

// `run --draft`: speculative generation, tokens streamed to stdout, statistics on stderr.
inline int run_speculative(const Model& model, Session& session, const DraftOptions& d,
                           const std::string& target_path, const SamplingParams& sp,
                           std::span<const int32_t> prompt, int n_predict, const Tokenizer& tok,
                           bool print_ids) {
  using Clock = std::chrono::steady_clock;
  const std::string dpath = d.resolve(target_path);
  const auto drafter = Drafter::load(dpath, true, d.head_options());
  MtpDraftSource src(*drafter, model, session.n_threads());
  SpeculativeDecoder dec(session, src, d.options(), sp);
  StreamingDecoder out(tok);
  const int64_t n_ctx = session.kv_cache().n_ctx();
  std::vector<int32_t> generated;
  const auto t_prompt = Clock::now();
  const int32_t first = dec.start(prompt);
  const double prompt_s = std::chrono::duration<double>(Clock::now() - t_prompt).count();
  const auto t_gen = Clock::now();
  auto emit = [&](int32_t id) {
    generated.push_back(id);
    if (tok.is_stop(id)) return false;
    std::fputs(out.push(id).c_str(), stdout);
    std::fflush(stdout);
    return static_cast<int>(generated.size()) < n_predict;
  };
  bool go = n_predict > 0 && emit(first);
  while (go && session.n_past() < n_ctx) {
    for (int32_t id : dec.step()) {
      if (!(go = emit(id))) break;
    }
  }
  std::fputs(out.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  const double gen_s = std::chrono::duration<double>(Clock::now() - t_gen).count();
  if (print_ids) {
    for (size_t i = 0; i < generated.size(); ++i) std::printf("%s%d", i ? "," : "", generated[i]);
    std::printf("\n");
  }
  std::fflush(stdout);
  std::fprintf(stderr, "drafter: %s (%s), head %s\n", dpath.c_str(),
               format_bytes(drafter->weights().nbytes).c_str(), drafter->head_summary().c_str());
  std::fputs(dec.stats().summary().c_str(), stderr);
  std::fprintf(stderr,
               "prompt: %zu tokens in %.2f s (%.2f t/s) | generation: %zu tokens in %.2f s "
               "(%.2f t/s, speculative) | %d threads\n",
               prompt.size(), prompt_s, prompt.size() / prompt_s, generated.size(), gen_s,
               generated.size() / gen_s, session.n_threads());
  return 0;
}

// `chat --draft`: the drafter, loaded on the first reply, and the statistics of all replies.
struct ChatDraftState {
  std::unique_ptr<Drafter> drafter;
  std::unique_ptr<MtpDraftSource> src;
  int turn = 0;
};

// One chat reply with speculative decoding: evaluates `ids` after what the session holds,
// streams the reply and leaves the cache holding ids + the reply, its stop token included (as
// the plain chat loop does). Returns whether the reply ended with the end-of-turn token.
inline bool chat_reply_speculative(ChatDraftState& st, const Model& model, Session& session,
                                   const DraftOptions& d, const std::string& target_path,
                                   SamplingParams sp, std::span<const int32_t> ids, int n_predict,
                                   const Tokenizer& tok) {
  using Clock = std::chrono::steady_clock;
  if (!st.drafter) {
    st.drafter = Drafter::load(d.resolve(target_path), true, d.head_options());
    st.src = std::make_unique<MtpDraftSource>(*st.drafter, model, session.n_threads());
  }
  sp.seed += static_cast<uint64_t>(st.turn++);
  const auto t0 = Clock::now();
  const int64_t base = session.n_past() + static_cast<int64_t>(ids.size());  // reply starts here
  const int64_t n_ctx = session.kv_cache().n_ctx();
  SpeculativeDecoder dec(session, *st.src, d.options(), sp);
  StreamingDecoder out(tok);
  std::vector<int32_t> reply;
  bool closed = false, done = false;
  auto emit = [&](int32_t id) {
    reply.push_back(id);
    if (tok.is_stop(id)) {
      closed = id == tok.eot_id();
      return false;
    }
    std::fputs(out.push(id).c_str(), stdout);
    std::fflush(stdout);
    return static_cast<int>(reply.size()) < n_predict;
  };
  done = n_predict <= 0 || !emit(dec.start(ids));
  while (!done && session.n_past() < n_ctx) {
    for (int32_t id : dec.step()) {
      if ((done = !emit(id))) break;
    }
  }
  // The cache holds the reply's tokens but the last emitted one, and possibly accepted tokens
  // after the stop: make it hold exactly the reply.
  const int64_t want = base + static_cast<int64_t>(reply.size());
  if (session.n_past() > want) session.crop(want);
  if (session.n_past() < want && want <= n_ctx) {
    session.eval(std::span<const int32_t>(&reply.back(), 1), 1);
  }
  std::fputs(out.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  const SpeculativeStats& stats = dec.stats();
  std::fprintf(stderr,
               "[%zu prompt + %zu reply tokens in %.2f s, context %lld; speculative: %.2f tokens "
               "per round, %.0f%% of drafts accepted, per-token acceptance %.0f%%]\n",
               ids.size(), reply.size(), s, static_cast<long long>(session.n_past()),
               stats.mean_accepted_length(), 100 * stats.acceptance(),
               100 * stats.token_acceptance());
  return closed;
}

// `bench --draft`: the cost model of speculative decoding on this machine and a run with forced
// acceptance. Prints markdown.
inline void bench_speculative(const Model& model, const SessionOptions& base, const DraftOptions& d,
                              const std::string& target_path, int n_gen, int reps) {
  using Clock = std::chrono::steady_clock;
  auto secs = [](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  const std::string dpath = d.resolve(target_path);
  const auto drafter = Drafter::load(dpath, true, d.head_options());
  // With the clustered head, the full head is timed too (same run, interleaved) for comparison.
  std::unique_ptr<Drafter> full_drafter;
  if (drafter->clustered()) {
    DraftHeadOptions fo;
    fo.mode = DraftHeadMode::Full;
    full_drafter = Drafter::load(dpath, true, fo);
  }
  const SpeculativeOptions so = d.options();
  const int kmax = so.draft_max;
  const int ctx_len = 64;  // context the measurements run at
  SessionOptions o = base;
  o.n_ctx = std::max<int64_t>(ctx_len + n_gen + kmax + 2, 128);
  o.n_batch = std::min<int64_t>(o.n_batch, o.n_ctx);
  Session s(model, o);
  MtpDraftSource src(*drafter, model, s.n_threads());
  std::unique_ptr<MtpDraftSource> src_full;
  if (full_drafter)
    src_full = std::make_unique<MtpDraftSource>(*full_drafter, model, s.n_threads());
  const int64_t V = model.config().n_vocab;
  std::vector<int32_t> ctx(ctx_len);
  for (int i = 0; i < ctx_len; ++i) ctx[i] = static_cast<int32_t>((7919 * i + 13) % V);
  reps = std::max(reps, 3);

  // One decode step, verification of k + 1 tokens, one drafter step: best of `reps` rounds
  // of 4 calls each at the same context length (the cache is cropped back each time). The
  // rounds interleave the sizes, so a noisy machine disturbs all of them alike.
  s.eval(ctx, 1);
  const int64_t base_pos = s.n_past();
  // exact: the batch-invariant verification pass (VerifyMode::exact).
  auto time_eval = [&](int n, bool exact) {
    std::vector<int32_t> toks(n, 5);
    s.set_batch_invariant(exact);
    const auto t0 = Clock::now();
    for (int i = 0; i < 4; ++i) {
      s.eval(toks, n);
      s.crop(base_pos);
    }
    s.set_batch_invariant(false);
    return secs(t0) / 4;
  };
  for (int n = 1; n <= kmax + 1; ++n) time_eval(n, false);  // warm-up (plans, caches)
  // By rows n = 1 .. kmax + 1: batched, and exact (n >= 2).
  std::vector<double> best(kmax + 2, 1e30), best_exact(kmax + 2, 1e30);
  for (int r = 0; r < reps; ++r) {
    for (int n = 1; n <= kmax + 1; ++n) {
      best[n] = std::min(best[n], time_eval(n, false));
      if (n > 1) best_exact[n] = std::min(best_exact[n], time_eval(n, true));
    }
  }
  const double t_dec = best[1];
  // The cost model uses the pass the decoder would run at this context (VerifyMode).
  std::vector<double> t_ver(kmax + 1, 0.0);
  std::vector<bool> ver_exact(kmax + 1, false);
  for (int k = 1; k <= kmax; ++k) {
    ver_exact[k] = verify_exact(so.verify, k, s.kv_bytes_per_token(), s.weight_bytes());
    t_ver[k] = ver_exact[k] ? best_exact[k + 1] : best[k + 1];
  }
  s.eval(std::vector<int32_t>{5}, 1);
  const std::vector<float> h(s.hidden().begin(), s.hidden().end());
  s.crop(base_pos);
  double t_draft = 1e30, t_draft_full = 1e30;
  src.step_once(s, 5, h, base_pos);
  if (src_full) src_full->step_once(s, 5, h, base_pos);
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < 8; ++i) src.step_once(s, 5, h, base_pos);
    t_draft = std::min(t_draft, secs(t0) / 8);
    if (src_full) {
      const auto t1 = Clock::now();
      for (int i = 0; i < 8; ++i) src_full->step_once(s, 5, h, base_pos);
      t_draft_full = std::min(t_draft_full, secs(t1) / 8);
    }
  }

  std::printf("\n### Speculative decoding cost model (drafter %s, %d threads, context %d)\n\n",
              dpath.c_str(), s.n_threads(), ctx_len);
  std::printf("drafter head: %s\n", drafter->head_summary().c_str());
  std::printf("decode step: %.2f ms | drafter step: %.3f ms (%.1f%% of a decode step)", t_dec * 1e3,
              t_draft * 1e3, 100 * t_draft / t_dec);
  if (src_full) {
    std::printf(" | with the full head: %.3f ms (%.1f%%; clustered %.2fx faster)",
                t_draft_full * 1e3, 100 * t_draft_full / t_dec, t_draft_full / t_draft);
  }
  std::printf("\n\n");
  std::printf(
      "verification: --draft-verify %s; 'exact' = batch-invariant (rows equal decoding steps "
      "bit for bit), 'batched' = one attention pass\n\n",
      verify_mode_name(so.verify));
  std::printf("| k | verify k+1 batched (ms) | exact (ms) | used | verify / decode | round (ms) |");
  const double accs[] = {0.5, 0.6, 0.7, 0.8, 0.9};
  for (double a : accs) std::printf(" speed-up a=%.1f |", a);
  std::printf("\n| ---: | ---: | ---: | :--- | ---: | ---: |");
  for (size_t i = 0; i < std::size(accs); ++i) std::printf(" ---: |");
  std::printf("\n");
  for (int k = 1; k <= kmax; ++k) {
    const double round = k * t_draft + t_ver[k];
    std::printf("| %d | %.2f | %.2f | %s | %.3f | %.2f |", k, best[k + 1] * 1e3,
                best_exact[k + 1] * 1e3, ver_exact[k] ? "exact" : "batched", t_ver[k] / t_dec,
                round * 1e3);
    for (double a : accs) {
      // Tokens per round with per-token acceptance a: 1 + a + ... + a^k.
      const double tokens = (1 - std::pow(a, k + 1)) / (1 - a);
      std::printf(" %.2fx |", tokens * t_dec / round);
    }
    std::printf("\n");
  }

  // A real run: plain greedy decoding, then speculative decoding of the same tokens with the
  // drafter's output replaced by the true continuation at 70% per-token acceptance.
  if (n_gen <= 0) return;
  s.reset();
  std::span<const float> logits = s.eval(ctx, 1);
  std::vector<int32_t> truth;
  const auto t0 = Clock::now();
  for (int i = 0; i < n_gen; ++i) {
    truth.push_back(argmax(logits));
    logits = s.eval(std::span<const int32_t>(&truth.back(), 1), 1);
  }
  const double plain_s = secs(t0);
  s.reset();
  SpeculativeOptions fo = so;
  fo.adaptive = false;
  const double a = 0.7;
  // The oracle behind the forced drafts: when the speculative output leaves `truth` on a
  // near-tie (verification and single-token passes round differently), the greedy continuation
  // of what was actually emitted, from a second session; its time is not the speculative run's.
  std::vector<int32_t> got;
  std::unique_ptr<Session> ref;
  auto reanchor = [&](int64_t pos, int32_t token) {
    if (!ref) ref = std::make_unique<Session>(model, o);
    ref->reset();
    std::vector<int32_t> prefix = ctx;
    prefix.insert(prefix.end(), got.begin(), got.end());
    if (prefix.back() != token || static_cast<int64_t>(prefix.size()) != pos + 1) {
      throw Error("bench --draft: the forced-acceptance oracle lost track of the output");
    }
    std::span<const float> l = ref->eval(prefix, 1);
    std::vector<int32_t> next;
    for (int64_t p = pos + 1; p < ctx_len + n_gen + kmax; ++p) {
      next.push_back(argmax(l));
      l = ref->eval(std::span<const int32_t>(&next.back(), 1), 1);
    }
    return next;
  };
  ForcedAcceptanceDraft forced(&src, truth, ctx_len, a, V, 42, reanchor);
  SamplingParams greedy;
  greedy.temperature = 0;
  SpeculativeDecoder dec(s, forced, fo, greedy);
  dec.start(ctx);
  const auto t1 = Clock::now();
  got.push_back(dec.last_token());
  while (static_cast<int>(got.size()) < n_gen) {
    for (int32_t t : dec.step()) got.push_back(t);
  }
  const double spec_s = secs(t1) - forced.reanchor_seconds();
  got.resize(n_gen);
  size_t first_diff = 0;
  while (first_diff < got.size() && got[first_diff] == truth[first_diff]) ++first_diff;
  std::printf(
      "\nforced 70%% acceptance, k = %d: plain %.2f t/s, speculative %.2f t/s (%.2fx), "
      "output %s\n",
      kmax, n_gen / plain_s, n_gen / spec_s, plain_s / spec_s,
      got == truth
          ? "identical to plain greedy"
          : ("identical to plain greedy up to token " + std::to_string(first_diff) +
             " (a near-tie: batched and single-token passes round differently); the forced "
             "drafts were re-anchored " +
             std::to_string(forced.reanchors()) + " time(s) on the emitted output (" +
             std::to_string(forced.reanchor_seconds()).substr(0, 5) +
             " s of oracle work left out of the speculative time)")
                .c_str());
  std::printf("%s", dec.stats().summary().c_str());
  // What the forced run should show: per-token acceptance a; accepted / drafted is
  // (a + ... + a^k) / k, not a; tokens per round 1 + a + ... + a^k. The realised values
  // scatter with few rounds: the per-token rate is a binomial proportion of the judged drafts.
  const SpeculativeStats& st = dec.stats();
  double geo = 0;
  for (int i = 1; i <= kmax; ++i) geo += std::pow(a, i);
  const double sd = st.examined ? std::sqrt(a * (1 - a) / st.examined) : 0.0;
  std::printf(
      "expected at a = %.2f, k = %d: per-token acceptance %.1f%% (realised %.1f%%, %lld judged: "
      "+-%.1f%% at 2 sigma), %.1f%% of drafted (realised %.1f%%), %.2f tokens per round "
      "(realised %.2f over %lld rounds)\n",
      a, kmax, 100 * a, 100 * st.token_acceptance(), static_cast<long long>(st.examined), 200 * sd,
      100 * geo / kmax, 100 * st.acceptance(), 1 + geo, st.mean_accepted_length(),
      static_cast<long long>(st.rounds));
}

}  // namespace qgemma
