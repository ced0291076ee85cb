// Speculative decoding: a draft model proposes k tokens, the target verifies [t, d1..dk] in ONE
// batched pass (k + 1 <= 9 rows go through the GEMV kernels, so it costs about one decode step),
// then keeps the longest accepted prefix plus one token of its own.
//   greedy (temperature <= 0): accept d_i while it equals the target's argmax; the bonus token is
//     the target's argmax after the last accepted one. Output == plain greedy decoding.
//   sampling: standard speculative sampling: accept d_i with probability min(1, p(d_i)/q(d_i)),
//     else draw from norm(max(0, p - q)) and stop; after k acceptances draw the bonus from p.
//     The output distribution equals the target's sampling chain (temperature, top-k, ...).
// The target's KV cache is cropped to the accepted tokens; the target's final hidden state of
// the last accepted position is carried into the next drafting round. See docs/speculative.md.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "runtime/sampling.h"

namespace qgemma {

class Session;
class Model;
class Drafter;
class DrafterRunner;
class ThreadPool;

// Something that proposes draft tokens. `token` is the last accepted token, at position `pos`
// (not yet in the target's cache, which holds positions < pos); `hidden` the target's final
// hidden state (after the final norm) of position pos - 1. Proposes up to k tokens into
// `out`. When `dists` is non-null (sampling), each token must be drawn from the distribution
// stored in (*dists)[i] (sorted or not; probabilities summing to 1), using `sampler`'s RNG.
class DraftSource {
 public:
  virtual ~DraftSource() = default;
  virtual void draft(const Session& target, int32_t token, std::span<const float> hidden,
                     int64_t pos, int k, Sampler* sampler, std::vector<int32_t>* out,
                     std::vector<std::vector<TokenProb>>* dists) = 0;
};

// The MTP drafter as a DraftSource (greedy drafts, or samples from its own sampling chain).
class MtpDraftSource : public DraftSource {
 public:
  // n_threads <= 0: all cores.
  MtpDraftSource(const Drafter& d, const Model& target, int n_threads);
  ~MtpDraftSource() override;
  void draft(const Session& target, int32_t token, std::span<const float> hidden, int64_t pos,
             int k, Sampler* sampler, std::vector<int32_t>* out,
             std::vector<std::vector<TokenProb>>* dists) override;
  // One drafter step on its own (for `bench`): logits of the first draft token.
  std::span<const float> step_once(const Session& target, int32_t token,
                                   std::span<const float> hidden, int64_t pos);

 private:
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<DrafterRunner> runner_;
  std::vector<float> logits_, h_, h_next_;
};

// How the target's verification pass treats its k + 1 tokens (CPU backend):
//   exact:   batch-invariant (Session::set_batch_invariant): every row's logits equal a decoding
//            step's bit for bit, so greedy speculative output is plain greedy output exactly,
//            even on near-ties; attention reads the KV cache once per token instead of once.
//   batched: one attention pass for all rows (cheapest; rows may differ from decoding steps in
//            the last bits, which can flip a near-tie argmax).
//   automatic: exact while the extra cache reads (k x the cache bytes one token reads) are at
//            most 40% of the weight bytes, batched beyond. The rereads mostly hit the CPU caches
//            (a task rereads one KV head or one slot range for all rows): on the 2-core dev VM,
//            12B Q4_0, k = 4, exact verification cost 2% of a decode step more than batched at
//            1000 tokens and 6% at 4000 tokens (where k x cache = 37% of the weights).
enum class VerifyMode { automatic, exact, batched };
const char* verify_mode_name(VerifyMode m);
// Whether a verification of k drafts runs exact under mode m.
bool verify_exact(VerifyMode m, int k, uint64_t kv_bytes_per_token, uint64_t weight_bytes);

struct SpeculativeOptions {
  int draft_max = 4;     // k at most (k + 1 <= 9 keeps verification on the GEMV path)
  int draft_min = 1;     // k at least
  bool adaptive = true;  // shorten after rejections, lengthen after full acceptance
  int draft_start = 0;   // initial k (0: draft_max)
  VerifyMode verify = VerifyMode::automatic;
};

// Two acceptance rates, which differ a lot: with per-token acceptance a and k drafts a round
// accepts a prefix of expected length a + a^2 + ... + a^k, so accepted / drafted is that over k
// (44% for a = 0.7, k = 4), while accepted / examined estimates a itself. "Examined" drafts
// are those the target actually judged: the accepted ones plus the first rejected one of each
// round (the drafts after it are dropped unjudged).
struct SpeculativeStats {
  int64_t rounds = 0;        // verification passes with at least one draft
  int64_t plain = 0;         // single-token decode steps (no room to draft)
  int64_t drafted = 0;       // draft tokens proposed
  int64_t accepted = 0;      // draft tokens accepted
  int64_t examined = 0;      // draft tokens judged: accepted + one per round with a rejection
  int64_t generated = 0;     // tokens emitted (accepted + bonus / resampled)
  int64_t exact_rounds = 0;  // rounds verified batch-invariantly (VerifyMode)
  // Per draft position (0-based): proposed, judged (every earlier draft accepted), accepted.
  std::vector<int64_t> drafted_at, examined_at, accepted_at;
  double draft_s = 0, verify_s = 0;  // time in the drafter / in target passes
  // Accepted / drafted (what fraction of the drafter's work was kept).
  double acceptance() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
  // Accepted / examined: the per-token acceptance rate (a, in the cost model).
  double token_acceptance() const {
    return examined ? static_cast<double>(accepted) / examined : 0.0;
  }
  // Tokens emitted per verification round (accepted drafts + 1).
  double mean_accepted_length() const {
    return rounds ? static_cast<double>(accepted + rounds) / rounds : 0.0;
  }
  std::string summary() const;  // multi-line report for `run` / `bench`
};

// Proposes a known greedy continuation `truth` of the target (truth[i] is the token at
// position first_pos + i), each token replaced by a wrong one with probability 1 - a, so that
// the per-token acceptance is a by construction (the speed-up model's input, measurable on
// synthetic weights where a real drafter accepts nothing). When `cost` is non-null it also runs
// that draft source and discards its tokens, so a round costs what a real one does. Past the
// end of `truth` it proposes fewer tokens. Greedy only (dists are left empty).
//
// Re-anchoring: the verification pass (several query rows) and the single-token passes that
// produced `truth` round differently, so on a near-tie the speculative output can leave `truth`;
// every later forced draft would then be wrong. When `reanchor` is set and the token it is
// called with differs from truth at that position, it calls reanchor(pos, token), which must
// return the target's greedy continuation after `token` (the tokens at pos + 1, ...), and
// continues from there. The time spent in it is kept (reanchor_seconds) so a benchmark can leave
// the oracle's work out of the speculative run's time.
class ForcedAcceptanceDraft : public DraftSource {
 public:
  using Reanchor = std::function<std::vector<int32_t>(int64_t pos, int32_t token)>;
  ForcedAcceptanceDraft(DraftSource* cost, std::vector<int32_t> truth, int64_t first_pos, double a,
                        int64_t vocab, uint64_t seed = 42, Reanchor reanchor = {});
  int reanchors() const { return reanchors_; }
  double reanchor_seconds() const { return reanchor_seconds_; }
  void draft(const Session& target, int32_t token, std::span<const float> hidden, int64_t pos,
             int k, Sampler* sampler, std::vector<int32_t>* out,
             std::vector<std::vector<TokenProb>>* dists) override;

 private:
  DraftSource* cost_;
  std::vector<int32_t> truth_;
  int64_t first_pos_;
  double a_;
  int64_t vocab_;
  std::mt19937_64 rng_;
  Reanchor reanchor_;
  int reanchors_ = 0;
  double reanchor_seconds_ = 0;
};

// Accept / reject one draft token with standard speculative sampling. p: the target's
// distribution at this position, q: the one `drafted` was drawn from. Returns -1 when accepted,
// else the token drawn from norm(max(0, p - q)). u: a uniform [0, 1) draw.
int32_t speculative_accept(std::span<const TokenProb> p, std::span<const TokenProb> q,
                           int32_t drafted, double u, Sampler& sampler);

class SpeculativeDecoder {
 public:
  SpeculativeDecoder(Session& target, DraftSource& draft, const SpeculativeOptions& o,
                     const SamplingParams& sp);

  // Evaluates the prompt (after whatever the session holds) and returns the first token.
  // `history`: tokens already in the session's cache before `prompt` (a reused prefix), which
  // the repetition penalty counts as if they had been evaluated here.
  int32_t start(std::span<const int32_t> prompt, std::span<const int32_t> history = {});
  // One round: drafts, verifies, crops; returns the tokens emitted (1 .. k + 1), the last of
  // which is the next round's input token (not yet in the target's cache).
  std::vector<int32_t> step();
  // start + steps until n_predict tokens or on_token returns false (the token is still
  // emitted). Returns the generated tokens.
  std::vector<int32_t> generate(std::span<const int32_t> prompt, int n_predict,
                                const std::function<bool(int32_t)>& on_token = {});

  const SpeculativeStats& stats() const { return stats_; }
  int current_k() const { return k_; }
  int32_t last_token() const { return token_; }

 private:
  int32_t pick(std::span<const float> logits);  // greedy or sampled target token

  Session& target_;
  DraftSource& draft_;
  SpeculativeOptions o_;
  Sampler sampler_, draft_sampler_;
  std::mt19937_64 rng_;
  bool greedy_;
  int k_;
  int32_t token_ = -1;
  std::vector<float> hidden_;  // target hidden state of position n_past - 1
  SpeculativeStats stats_;
};

}  // namespace qgemma
