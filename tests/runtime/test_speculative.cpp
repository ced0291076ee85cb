// Speculative decoding on a tiny synthetic target + drafter:
//  - greedy speculative output is identical, token for token, to plain greedy decoding, for
//    draft lengths 1..8, with the (random, mostly rejected) MTP drafter and with an oracle
//    drafter that proposes the target's own tokens with a planted mistake at every position;
//  - at the end of the context;
//  - the KV cache after speculative rounds (crops) gives the same logits as a plain run's;
//  - speculative sampling reproduces the target's distribution (chi-square, fixed seeds);
//  - the forced-acceptance draft source realises its per-token rate and the stats report it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "loader/error.h"
#include "runtime/drafter.h"
#include "runtime/session.h"
#include "runtime/speculative.h"
#include "runtime/synth.h"
#include "runtime/synth_drafter.h"
#include "speculative_test_util.h"

namespace qgemma {
namespace {

const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_speculative_tmp";

const Model& target() {
  static const std::unique_ptr<Model> m = [] {
    std::system(("mkdir -p " + kDir).c_str());
    const std::string p = kDir + "/tiny_f32.gguf";
    SynthOptions o;  // F32: batched and single-token passes agree up to float rounding
    synth_write(p, o);
    return Model::load(p);
  }();
  return *m;
}

const Drafter& drafter() {
  static const std::unique_ptr<Drafter> d = [] {
    std::system(("mkdir -p " + kDir).c_str());
    const std::string p = kDir + "/tiny_assistant_f32.gguf";
    synth_drafter_write(p, synth_drafter_preset("tiny-assistant"), TensorType::F32, 3);
    return Drafter::load(p);
  }();
  return *d;
}

Session make_session(int64_t ctx = 128) {
  SessionOptions o;
  o.n_ctx = ctx;
  o.n_batch = 64;
  o.n_threads = 2;
  return Session(target(), o);
}

std::vector<int32_t> prompt(int n, int salt = 0) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((37 * i + 11 + 101 * salt) % 1000 + 2);
  return ids;
}

// Plain greedy decoding: n tokens, or until the context is full.
std::vector<int32_t> plain_greedy(Session& s, const std::vector<int32_t>& p, int n) {
  std::vector<int32_t> out;
  std::span<const float> logits = s.eval(p, 1);
  for (;;) {
    out.push_back(argmax(logits));
    if (static_cast<int>(out.size()) >= n || s.n_past() >= s.kv_cache().n_ctx()) break;
    logits = s.eval(std::span<const int32_t>(&out.back(), 1), 1);
  }
  return out;
}

SamplingParams greedy_params() {
  SamplingParams sp;
  sp.temperature = 0.0f;
  return sp;
}

// Proposes the target's own greedy continuation (known in advance), with a wrong token at
// draft index `mistake_at(round)` (>= k: no mistake, the whole draft is accepted).
class OracleDraft : public DraftSource {
 public:
  OracleDraft(std::vector<int32_t> full, int64_t prompt_len, int64_t vocab)
      : full_(std::move(full)), prompt_len_(prompt_len), vocab_(vocab) {}
  void draft(const Session&, int32_t token, std::span<const float> hidden, int64_t pos, int k,
             Sampler*, std::vector<int32_t>* out,
             std::vector<std::vector<TokenProb>>* dists) override {
    EXPECT_FALSE(hidden.empty());
    out->clear();
    if (dists) dists->clear();
    // full_[i] is the token at position prompt_len + i; `token` sits at `pos`.
    const int64_t i0 = pos - prompt_len_;
    EXPECT_EQ(full_.at(i0), token);
    const int wrong = round_ % (k + 1);
    planted_.push_back(wrong < k ? wrong : k);
    ++round_;
    for (int j = 0; j < k && i0 + 1 + j < static_cast<int64_t>(full_.size()); ++j) {
      int32_t t = full_[i0 + 1 + j];
      if (j == wrong) t = static_cast<int32_t>((t + 1) % vocab_);
      out->push_back(t);
      if (dists) dists->push_back({{t, 1.0f}});
    }
  }
  std::vector<int> planted_;  // expected accepted count per round (if the draft was long enough)

 private:
  std::vector<int32_t> full_;
  int64_t prompt_len_, vocab_;
  int round_ = 0;
};

TEST(Speculative, GreedyMtpDrafterEqualsPlainGreedy) {
  const auto p = prompt(13);
  Session plain = make_session();
  const std::vector<int32_t> ref = plain_greedy(plain, p, 40);
  for (int k = 1; k <= 8; ++k) {
    Session s = make_session();
    MtpDraftSource draft(drafter(), target(), 2);
    SpeculativeOptions o;
    o.draft_max = k;
    o.draft_min = k;
    o.adaptive = false;
    SpeculativeDecoder dec(s, draft, o, greedy_params());
    const std::vector<int32_t> got = dec.generate(p, 40);
    EXPECT_EQ(got, ref) << "k = " << k;
    EXPECT_GT(dec.stats().rounds, 0);
    EXPECT_EQ(dec.stats().drafted_at.size(), static_cast<size_t>(k));
  }
}

TEST(Speculative, GreedyOracleAcceptsEveryLengthAndEqualsPlain) {
  const auto p = prompt(9, 1);
  Session plain = make_session();
  const std::vector<int32_t> ref = plain_greedy(plain, p, 60);
  // The oracle needs the token at every position, prompt included for the first round.
  for (int k = 1; k <= 8; ++k) {
    Session s = make_session();
    OracleDraft oracle(ref, static_cast<int64_t>(p.size()) - 1 + 1, target().config().n_vocab);
    SpeculativeOptions o;
    o.draft_max = k;
    o.draft_min = k;
    o.adaptive = false;
    SpeculativeDecoder dec(s, oracle, o, greedy_params());
    dec.start(p);
    std::vector<int32_t> got{dec.last_token()};
    int round = 0;
    while (got.size() < ref.size()) {
      const int64_t before = s.n_past();
      const std::vector<int32_t> e = dec.step();
      const int64_t drafted =
          std::min<int64_t>(k, static_cast<int64_t>(ref.size()) - static_cast<int64_t>(got.size()));
      const int expect_acc = std::min<int>(oracle.planted_.at(round), static_cast<int>(drafted));
      EXPECT_EQ(static_cast<int>(e.size()), expect_acc + 1) << "k " << k << " round " << round;
      EXPECT_EQ(s.n_past(), before + static_cast<int64_t>(e.size())) << "crop";
      got.insert(got.end(), e.begin(), e.end());
      ++round;
    }
    got.resize(ref.size());
    EXPECT_EQ(got, ref) << "k = " << k;
    // Acceptance happened at every draft position, and a rejection too.
    for (int j = 0; j < k; ++j) {
      EXPECT_GT(dec.stats().accepted_at.at(j), 0) << "k " << k << " position " << j;
    }
    EXPECT_LT(dec.stats().accepted, dec.stats().drafted);
  }
}

TEST(Speculative, GreedyUntilContextIsFull) {
  const int64_t ctx = 40;
  const auto p = prompt(21, 2);
  Session plain = make_session(ctx);
  const std::vector<int32_t> ref = plain_greedy(plain, p, 1000);
  ASSERT_EQ(static_cast<int64_t>(ref.size()), ctx - 21 + 1);
  for (int k : {1, 3, 8}) {
    // Oracle (mostly accepted, so rounds run into the end of the context) and MTP drafter.
    for (int which = 0; which < 2; ++which) {
      Session s = make_session(ctx);
      OracleDraft oracle(ref, static_cast<int64_t>(p.size()), target().config().n_vocab);
      MtpDraftSource mtp(drafter(), target(), 2);
      SpeculativeOptions o;
      o.draft_max = k;
      SpeculativeDecoder dec(s, which ? static_cast<DraftSource&>(mtp) : oracle, o,
                             greedy_params());
      const std::vector<int32_t> got = dec.generate(p, 1000);
      EXPECT_EQ(got, ref) << "k " << k << " drafter " << which;
      EXPECT_EQ(s.n_past(), ctx);
    }
  }
}

TEST(Speculative, CroppedCacheMatchesPlainRun) {
  const auto p = prompt(17, 3);
  Session plain = make_session();
  const std::vector<int32_t> ref = plain_greedy(plain, p, 30);
  Session s = make_session();
  OracleDraft oracle(ref, static_cast<int64_t>(p.size()), target().config().n_vocab);
  SpeculativeOptions o;
  o.draft_max = 5;
  SpeculativeDecoder dec(s, oracle, o, greedy_params());
  const std::vector<int32_t> got = dec.generate(p, 30);
  ASSERT_EQ(got, ref);
  // Both sessions hold prompt + every generated token but the last; the next pass must agree.
  Session fresh = make_session();
  std::vector<int32_t> all = p;
  all.insert(all.end(), got.begin(), got.end() - 1);
  fresh.eval(all, 1);
  const std::vector<int32_t> probe{got.back(), 5, 77, 300};
  // Rejected drafts left stale rows in `s` (sliding rings included) that crop() must hide.
  ASSERT_EQ(s.n_past(), fresh.n_past());
  const std::span<const float> a = s.eval(probe, 4);
  const std::vector<float> la(a.begin(), a.end());
  const std::span<const float> b = fresh.eval(probe, 4);
  double d = 0, m = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    d = std::max(d, static_cast<double>(std::fabs(la[i] - b[i])));
    m = std::max(m, static_cast<double>(std::fabs(b[i])));
  }
  EXPECT_LT(d / m, 1e-4);
  // The cache positions agree slot by slot.
  for (int l = 0; l < target().config().n_layer; ++l) {
    for (int64_t slot = 0; slot < s.kv_cache().capacity(l); ++slot) {
      EXPECT_EQ(s.kv_cache().slot_pos(l, slot) >= 0, fresh.kv_cache().slot_pos(l, slot) >= 0)
          << "layer " << l << " slot " << slot;
    }
  }
}

// The forced-acceptance draft source (`bench --draft`'s synthetic speed-up run) realises its
// per-token acceptance a, and the statistics report it: accepted / judged drafts estimates a,
// accepted / drafted is (a + ... + a^k) / k, tokens per round 1 + a + ... + a^k, the judged
// count per position follows the accepted prefixes. a = 1 accepts every draft, a = 0 none.
// Re-anchoring: the forced drafts follow a "truth" that is wrong from token 20 on (as if the
// speculative output had left a precomputed plain run on a near-tie). Without re-anchoring every
// later draft is rejected; with it, the oracle is asked once, at the first divergence, for the
// continuation of what was actually emitted, and acceptance returns to 100%.
TEST(Speculative, ForcedAcceptanceReanchorsOnTheEmittedOutput) {
  const auto p = prompt(7, 5);
  const int n_gen = 60, m = 20, k = 4;
  Session plain = make_session(200);
  const std::vector<int32_t> right = plain_greedy(plain, p, n_gen + k);
  const int64_t V = target().config().n_vocab;
  const int64_t first = static_cast<int64_t>(p.size());
  std::vector<int32_t> wrong = right;
  for (size_t i = m; i < wrong.size(); ++i) wrong[i] = static_cast<int32_t>((wrong[i] + 1) % V);
  for (bool with : {false, true}) {
    SCOPED_TRACE(with ? "with re-anchoring" : "without");
    int calls = 0;
    auto oracle = [&](int64_t pos, int32_t token) {
      ++calls;
      const int64_t at = pos - first;
      EXPECT_EQ(at, m);
      EXPECT_EQ(token, right[at]);
      return std::vector<int32_t>(right.begin() + at + 1, right.end());
    };
    ForcedAcceptanceDraft forced(
        nullptr, wrong, first, 1.0, V, 7,
        with ? ForcedAcceptanceDraft::Reanchor(oracle) : ForcedAcceptanceDraft::Reanchor());
    Session s = make_session(200);
    SpeculativeOptions o;
    o.draft_max = k;
    o.adaptive = false;
    SpeculativeDecoder dec(s, forced, o, greedy_params());
    const std::vector<int32_t> got = dec.generate(p, n_gen);
    EXPECT_EQ(got, std::vector<int32_t>(right.begin(), right.begin() + n_gen));
    const SpeculativeStats& st = dec.stats();
    if (with) {
      EXPECT_EQ(calls, 1);
      EXPECT_EQ(forced.reanchors(), 1);
      // At most the one draft at the divergence is rejected (none when a round ended there).
      EXPECT_LE(st.examined - st.accepted, 1);
    } else {
      EXPECT_EQ(forced.reanchors(), 0);
      EXPECT_GT(st.examined - st.accepted, 5);  // every round after token 20 rejects
    }
  }
}

TEST(Speculative, ForcedAcceptanceRealisesItsRateInTheStats) {
  const auto p = prompt(7, 5);
  const int n_gen = 330;
  Session plain = make_session(400);
  const std::vector<int32_t> truth = plain_greedy(plain, p, n_gen);
  ASSERT_EQ(static_cast<int>(truth.size()), n_gen);
  const int64_t V = target().config().n_vocab;
  const int k = 4;
  for (double a : {1.0, 0.0, 0.7}) {
    Session s = make_session(400);
    // With the MTP drafter as the cost (its tokens are discarded) for a = 1, without for the
    // others (faster).
    MtpDraftSource mtp(drafter(), target(), 2);
    ForcedAcceptanceDraft forced(a == 1.0 ? &mtp : nullptr, truth, static_cast<int64_t>(p.size()),
                                 a, V, 1234);
    SpeculativeOptions o;
    o.draft_max = k;
    o.adaptive = false;
    SpeculativeDecoder dec(s, forced, o, greedy_params());
    const std::vector<int32_t> got = dec.generate(p, n_gen);
    ASSERT_EQ(got, truth) << "a = " << a;
    const SpeculativeStats& st = dec.stats();
    ASSERT_GT(st.rounds, 0);
    EXPECT_EQ(st.generated, st.accepted + st.rounds + st.plain + 1) << "a = " << a;
    EXPECT_LE(st.accepted, st.examined);
    EXPECT_LE(st.examined, st.drafted);
    ASSERT_EQ(st.examined_at.size(), static_cast<size_t>(k));
    for (int j = 0; j < k; ++j) {
      EXPECT_LE(st.accepted_at[j], st.examined_at[j]);
      EXPECT_LE(st.examined_at[j], st.drafted_at[j]);
      // Position j is judged exactly when every earlier draft of the round was accepted.
      if (j > 0) {
        EXPECT_LE(st.examined_at[j], st.accepted_at[j - 1]);
      }
    }
    if (a == 1.0) {
      EXPECT_EQ(st.accepted, st.drafted);
      EXPECT_EQ(st.examined, st.drafted);
      EXPECT_DOUBLE_EQ(st.token_acceptance(), 1.0);
      EXPECT_DOUBLE_EQ(st.acceptance(), 1.0);
      // Every round but the last (drafts cut at the end of `truth`) emits k + 1 tokens.
      EXPECT_GT(st.mean_accepted_length(), k + 1 - 1.0 / st.rounds - 1e-9);
    } else if (a == 0.0) {
      EXPECT_EQ(st.accepted, 0);
      EXPECT_EQ(st.examined, st.rounds);
      EXPECT_DOUBLE_EQ(st.mean_accepted_length(), 1.0);
    } else {
      // ~300 judged drafts: the per-token rate is a binomial proportion, sd ~0.027; 4 sd.
      ASSERT_GT(st.examined, 200);
      const double sd = std::sqrt(a * (1 - a) / st.examined);
      EXPECT_NEAR(st.token_acceptance(), a, 4 * sd) << st.summary();
      // Conditional per position, too (fewer samples at later positions).
      for (int j = 0; j < k; ++j) {
        ASSERT_GT(st.examined_at[j], 30) << j;
        const double pj = static_cast<double>(st.accepted_at[j]) / st.examined_at[j];
        EXPECT_NEAR(pj, a, 4 * std::sqrt(a * (1 - a) / st.examined_at[j])) << "position " << j;
      }
      // Accepted / drafted is the truncated geometric mean, well below a.
      double geo = 0;
      for (int i = 1; i <= k; ++i) geo += std::pow(a, i);
      EXPECT_NEAR(st.acceptance(), geo / k, 0.08);
      EXPECT_LT(st.acceptance(), a - 0.15);
      EXPECT_NEAR(st.mean_accepted_length(), 1 + geo, 0.35);
    }
  }
}

using testing_util::chi2;

TEST(Speculative, AcceptRuleReproducesTargetDistribution) {
  // p over 6 tokens, q with a different support (token 5 absent from p, token 0 absent from q).
  const std::vector<TokenProb> p = {{0, 0.30f}, {1, 0.25f}, {2, 0.20f}, {3, 0.15f}, {4, 0.10f}};
  const std::vector<TokenProb> q = {{1, 0.40f}, {2, 0.05f}, {3, 0.25f}, {4, 0.10f}, {5, 0.20f}};
  SamplingParams sp;
  sp.seed = 99;
  Sampler s(sp);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  const int64_t n = 200000;
  std::vector<int64_t> counts(6, 0);
  int64_t accepted = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t d = s.draw(q);
    const int32_t r = speculative_accept(p, q, d, u(rng), s);
    const int32_t out = r < 0 ? d : r;
    accepted += r < 0;
    counts.at(out) += 1;
  }
  EXPECT_EQ(counts[5], 0);  // never outside p's support
  const std::vector<double> pd = {0.30, 0.25, 0.20, 0.15, 0.10};
  // 4 degrees of freedom: P(chi2 > 18.5) = 0.001.
  EXPECT_LT(chi2(pd, counts, n), 18.5);
  // Acceptance rate = sum min(p, q) = 0.25 + 0.05 + 0.15 + 0.10 = 0.55.
  EXPECT_NEAR(static_cast<double>(accepted) / n, 0.55, 0.01);
}

TEST(Speculative, SamplingMatchesTargetDistribution) {
  // Top-k 3 keeps 3 candidates per position; the exact joint distribution of the first two
  // generated tokens comes from the target itself; speculative runs (one verification round
  // drafts the 2nd token) must reproduce it.
  SamplingParams sp;
  sp.temperature = 1.5f;
  sp.top_k = 3;
  sp.top_p = 1.0f;
  const auto p = prompt(6, 4);
  SessionOptions so;
  so.n_ctx = 16;
  so.n_batch = 16;
  so.n_threads = 1;
  Session s(target(), so);
  const testing_util::JointTwo j = testing_util::joint_first_two(s, p, sp);
  ASSERT_EQ(j.cells.size(), 9u);
  // Two drafters: the MTP drafter (its own top-k 3 distribution) and a point-mass oracle that
  // always proposes the second most likely first token (exercises the residual draw).
  MtpDraftSource mtp(drafter(), target(), 1);
  class Fixed : public DraftSource {
   public:
    explicit Fixed(int32_t t) : t_(t) {}
    void draft(const Session&, int32_t, std::span<const float>, int64_t, int k, Sampler*,
               std::vector<int32_t>* out, std::vector<std::vector<TokenProb>>* dists) override {
      out->assign(k, t_);
      dists->assign(k, {{t_, 1.0f}});
    }
    int32_t t_;
  } fixed(j.first[1].id);
  for (int which = 0; which < 2; ++which) {
    DraftSource& d = which ? static_cast<DraftSource&>(fixed) : mtp;
    // 8 degrees of freedom: P(chi2 > 26.1) = 0.001.
    EXPECT_LT(testing_util::speculative_chi2(s, d, p, sp, j, 800, 1000), 26.1)
        << "drafter " << which;
  }
}

}  // namespace
}  // namespace qgemma
