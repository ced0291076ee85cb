#include "runtime/speculative.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "loader/error.h"
#include "runtime/drafter.h"
#include "runtime/session.h"
#include "runtime/threadpool.h"

namespace qgemma {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

float prob_of(std::span<const TokenProb> d, int32_t id) {
  for (const TokenProb& t : d) {
    if (t.id == id) return t.p;
  }
  return 0.0f;
}

}  // namespace

// ---- MTP drafter as a draft source ----------------------------------------------------------

MtpDraftSource::MtpDraftSource(const Drafter& d, const Model& target, int n_threads)
    : pool_(std::make_unique<ThreadPool>(n_threads)),
      runner_(std::make_unique<DrafterRunner>(d, target.config(), target.weights(), *pool_)),
      logits_(d.config().n_vocab),
      h_(d.config().n_embd_backbone),
      h_next_(d.config().n_embd_backbone) {}

MtpDraftSource::~MtpDraftSource() = default;

void MtpDraftSource::draft(const Session& target, int32_t token, std::span<const float> hidden,
                           int64_t pos, int k, Sampler* sampler, std::vector<int32_t>* out,
                           std::vector<std::vector<TokenProb>>* dists) {
  out->clear();
  if (dists) dists->clear();
  if (target.kv_cache().n_ctx() <= target.n_past()) {
    // The Vulkan backend keeps the cache on the device; the host one is a placeholder.
    throw Error(
        "the MTP drafter reads the target's KV cache on the CPU: this session's cache "
        "is not on the host (run the target on the CPU backend for --draft)");
  }
  if (hidden.size() != h_.size()) {
    throw Error("drafter: hidden state of " + std::to_string(hidden.size()) + " floats, expected " +
                std::to_string(h_.size()));
  }
  std::copy(hidden.begin(), hidden.end(), h_.begin());
  int32_t tok = token;
  for (int i = 0; i < k; ++i) {
    // Position stays fixed at `pos` for the whole round; the drafter writes no cache.
    runner_->step(target.kv_cache(), tok, h_.data(), pos, logits_.data(), h_next_.data());
    int32_t d;
    if (sampler && dists) {
      std::vector<TokenProb> q = sampler->distribution(logits_);
      d = sampler->draw(q);
      dists->push_back(std::move(q));
    } else {
      d = argmax(logits_);
    }
    out->push_back(d);
    tok = d;
    h_.swap(h_next_);
  }
}

std::span<const float> MtpDraftSource::step_once(const Session& target, int32_t token,
                                                 std::span<const float> hidden, int64_t pos) {
  std::copy(hidden.begin(), hidden.end(), h_.begin());
  runner_->step(target.kv_cache(), token, h_.data(), pos, logits_.data(), h_next_.data());
  return logits_;
}

// ---- forced acceptance ----------------------------------------------------------------------

ForcedAcceptanceDraft::ForcedAcceptanceDraft(DraftSource* cost, std::vector<int32_t> truth,
                                             int64_t first_pos, double a, int64_t vocab,
                                             uint64_t seed, Reanchor reanchor)
    : cost_(cost),
      truth_(std::move(truth)),
      first_pos_(first_pos),
      a_(a),
      vocab_(vocab),
      rng_(seed),
      reanchor_(std::move(reanchor)) {
  if (vocab_ < 2) throw Error("forced acceptance: a vocabulary of at least 2 tokens is needed");
}

void ForcedAcceptanceDraft::draft(const Session& target, int32_t token,
                                  std::span<const float> hidden, int64_t pos, int k,
                                  Sampler* sampler, std::vector<int32_t>* out,
                                  std::vector<std::vector<TokenProb>>* dists) {
  if (cost_) cost_->draft(target, token, hidden, pos, k, sampler, out, dists);  // the cost
  out->clear();
  if (dists) dists->clear();
  const int64_t at = pos - first_pos_;  // truth index of `token`
  if (reanchor_ && at >= 0 && at < static_cast<int64_t>(truth_.size()) && truth_[at] != token) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> next = reanchor_(pos, token);
    truth_.resize(at);
    truth_.push_back(token);
    truth_.insert(truth_.end(), next.begin(), next.end());
    reanchor_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++reanchors_;
  }
  // `token` sits at `pos`, so the drafts are the tokens at pos + 1 .. pos + k.
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int j = 0; j < k; ++j) {
    const int64_t i = pos + 1 + j - first_pos_;
    if (i < 0 || i >= static_cast<int64_t>(truth_.size())) break;
    int32_t t = truth_[i];
    if (u(rng_) >= a_) t = static_cast<int32_t>((t + 1) % vocab_);
    out->push_back(t);
  }
}

// ---- acceptance ----------------------------------------------------------------------------

int32_t speculative_accept(std::span<const TokenProb> p, std::span<const TokenProb> q,
                           int32_t drafted, double u, Sampler& sampler) {
  const double pd = prob_of(p, drafted), qd = prob_of(q, drafted);
  if (qd > 0 ? u * qd < pd : pd > 0) return -1;  // accept with probability min(1, p/q)
  // Rejected: draw from norm(max(0, p - q)) (tokens outside p's support have p = 0). q sorted
  // by id for the lookups (both can hold the whole vocabulary when sampling without top-k).
  std::vector<TokenProb> qs(q.begin(), q.end());
  std::sort(qs.begin(), qs.end(),
            [](const TokenProb& a, const TokenProb& b) { return a.id < b.id; });
  auto q_of = [&](int32_t id) {
    const auto it = std::lower_bound(qs.begin(), qs.end(), id,
                                     [](const TokenProb& t, int32_t v) { return t.id < v; });
    return it != qs.end() && it->id == id ? it->p : 0.0f;
  };
  std::vector<TokenProb> residual;
  residual.reserve(p.size());
  for (const TokenProb& t : p) {
    const float r = t.p - q_of(t.id);
    if (r > 0) residual.push_back({t.id, r});
  }
  if (residual.empty()) return sampler.draw(p);  // p == q up to rounding
  return sampler.draw(residual);                 // draw() normalizes by the total
}

const char* verify_mode_name(VerifyMode m) {
  switch (m) {
    case VerifyMode::exact:
      return "exact";
    case VerifyMode::batched:
      return "batched";
    default:
      return "auto";
  }
}

bool verify_exact(VerifyMode m, int k, uint64_t kv_bytes_per_token, uint64_t weight_bytes) {
  if (m != VerifyMode::automatic) return m == VerifyMode::exact;
  return static_cast<double>(k) * static_cast<double>(kv_bytes_per_token) <=
         0.4 * static_cast<double>(weight_bytes);
}

// ---- stats ---------------------------------------------------------------------------------

std::string SpeculativeStats::summary() const {
  std::string s;
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "speculative: %lld rounds (+%lld plain steps), %lld drafted, %lld accepted "
                "(%.1f%% of drafted; per-token acceptance %.1f%% = %lld of %lld judged), %.2f "
                "tokens per round, %lld tokens, %lld rounds verified exactly\n",
                static_cast<long long>(rounds), static_cast<long long>(plain),
                static_cast<long long>(drafted), static_cast<long long>(accepted),
                100.0 * acceptance(), 100.0 * token_acceptance(), static_cast<long long>(accepted),
                static_cast<long long>(examined), mean_accepted_length(),
                static_cast<long long>(generated), static_cast<long long>(exact_rounds));
  s += buf;
  s += "acceptance per draft position, of drafted (of judged):";
  for (size_t i = 0; i < drafted_at.size(); ++i) {
    const int64_t judged = i < examined_at.size() ? examined_at[i] : 0;
    std::snprintf(buf, sizeof(buf), " %zu:%.0f%%(%.0f%% of %lld)", i + 1,
                  drafted_at[i] ? 100.0 * accepted_at[i] / drafted_at[i] : 0.0,
                  judged ? 100.0 * accepted_at[i] / judged : 0.0, static_cast<long long>(judged));
    s += buf;
  }
  std::snprintf(buf, sizeof(buf), "\ntime: drafter %.3f s, target %.3f s\n", draft_s, verify_s);
  s += buf;
  return s;
}

// ---- the loop ------------------------------------------------------------------------------

SpeculativeDecoder::SpeculativeDecoder(Session& target, DraftSource& draft,
                                       const SpeculativeOptions& o, const SamplingParams& sp)
    : target_(target),
      draft_(draft),
      o_(o),
      sampler_(sp),
      draft_sampler_([&] {
        SamplingParams d = sp;
        d.seed = sp.seed ^ 0xd4af7ull;
        d.repeat_penalty = 1.0f;  // q is whatever the draft was drawn from: exactness holds
        return d;
      }()),
      rng_(sp.seed * 0x9e3779b97f4a7c15ull + 0x5bd1e995ull),
      greedy_(sp.temperature <= 0.0f) {
  if (o_.draft_max < 1) throw Error("--draft-max must be >= 1");
  o_.draft_min = std::clamp(o_.draft_min, 1, o_.draft_max);
  k_ = o_.draft_start > 0 ? std::clamp(o_.draft_start, o_.draft_min, o_.draft_max) : o_.draft_max;
}

int32_t SpeculativeDecoder::pick(std::span<const float> logits) {
  return greedy_ ? argmax(logits) : sampler_.sample(logits);
}

int32_t SpeculativeDecoder::start(std::span<const int32_t> prompt,
                                  std::span<const int32_t> history) {
  if (prompt.empty()) throw Error("speculative: empty prompt");
  for (int32_t id : history) sampler_.accept(id);
  for (int32_t id : prompt) sampler_.accept(id);
  const auto t0 = Clock::now();
  std::span<const float> logits = target_.eval(prompt, 1);
  stats_.verify_s += since(t0);
  const std::span<const float> h = target_.hidden();
  hidden_.assign(h.end() - target_.config().n_embd, h.end());
  token_ = pick(logits);
  sampler_.accept(token_);
  stats_.generated += 1;
  return token_;
}

std::vector<int32_t> SpeculativeDecoder::step() {
  if (token_ < 0) throw Error("speculative: step() before start()");
  const int64_t p = target_.n_past();  // position of token_
  const int64_t V = target_.config().n_vocab;
  const int64_t E = target_.config().n_embd;
  // Verification needs positions p .. p + k inside the context, k + 1 rows in one batch.
  const int64_t room =
      std::min<int64_t>(target_.kv_cache().n_ctx() - p - 1, target_.kv_cache().n_batch() - 1);
  const int k = static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(k_, room), 0, k_));

  std::vector<int32_t> drafts;
  std::vector<std::vector<TokenProb>> q;
  if (k > 0) {
    const auto t0 = Clock::now();
    draft_.draft(target_, token_, hidden_, p, k, greedy_ ? nullptr : &draft_sampler_, &drafts,
                 greedy_ ? nullptr : &q);
    stats_.draft_s += since(t0);
    if (static_cast<int>(drafts.size()) > k) drafts.resize(k);
  }
  const int kd = static_cast<int>(drafts.size());
  if (!greedy_ && static_cast<int>(q.size()) < kd) {
    throw Error("speculative sampling: the draft source gave no distribution for its drafts");
  }
  std::vector<int32_t> batch;
  batch.push_back(token_);
  batch.insert(batch.end(), drafts.begin(), drafts.end());

  const bool exact =
      verify_exact(o_.verify, kd, target_.kv_bytes_per_token(), target_.weight_bytes());
  if (kd > 0 && exact) stats_.exact_rounds += 1;
  const auto t0 = Clock::now();
  target_.set_batch_invariant(kd > 0 && exact);
  std::span<const float> logits;
  try {
    logits = target_.eval(batch, kd + 1);
  } catch (...) {
    target_.set_batch_invariant(false);
    throw;
  }
  target_.set_batch_invariant(false);
  stats_.verify_s += since(t0);

  std::vector<int32_t> emitted;
  int n = 0;  // accepted drafts
  int32_t next = -1;
  if (greedy_) {
    while (n < kd && argmax(logits.subspan(n * V, V)) == drafts[n]) ++n;
    next = argmax(logits.subspan(n * V, V));
  } else {
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    for (; n < kd; ++n) {
      const std::vector<TokenProb> pd = sampler_.distribution(logits.subspan(n * V, V));
      const int32_t r = speculative_accept(pd, q[n], drafts[n], unif(rng_), sampler_);
      if (r >= 0) {
        next = r;
        break;
      }
      sampler_.accept(drafts[n]);
    }
    if (next < 0) next = sampler_.sample(logits.subspan(n * V, V));
  }
  for (int i = 0; i < n; ++i) emitted.push_back(drafts[i]);
  emitted.push_back(next);
  if (!greedy_) sampler_.accept(next);

  // The hidden state of the last accepted position (row n: token_ or d_n) produced `next`.
  const std::span<const float> h = target_.hidden();
  if (static_cast<int64_t>(h.size()) < (n + 1) * E) throw Error("speculative: no hidden state");
  hidden_.assign(h.begin() + n * E, h.begin() + (n + 1) * E);
  target_.crop(p + n + 1);  // keep token_ and the accepted drafts
  token_ = next;

  if (kd > 0) {
    stats_.rounds += 1;
    stats_.drafted += kd;
    stats_.accepted += n;
    const int judged = n < kd ? n + 1 : n;  // the accepted drafts and the first rejected one
    stats_.examined += judged;
    if (static_cast<int>(stats_.drafted_at.size()) < kd) {
      stats_.drafted_at.resize(kd, 0);
      stats_.examined_at.resize(kd, 0);
      stats_.accepted_at.resize(kd, 0);
    }
    for (int i = 0; i < kd; ++i) stats_.drafted_at[i] += 1;
    for (int i = 0; i < judged; ++i) stats_.examined_at[i] += 1;
    for (int i = 0; i < n; ++i) stats_.accepted_at[i] += 1;
    if (o_.adaptive) {
      if (n == kd && kd == k_) {
        k_ = std::min(k_ + 1, o_.draft_max);
      } else if (n < kd / 2) {
        k_ = std::max(k_ - 1, o_.draft_min);
      }
    }
  } else {
    stats_.plain += 1;
  }
  stats_.generated += static_cast<int64_t>(emitted.size());
  return emitted;
}

std::vector<int32_t> SpeculativeDecoder::generate(std::span<const int32_t> prompt, int n_predict,
                                                  const std::function<bool(int32_t)>& on_token) {
  std::vector<int32_t> out;
  if (n_predict <= 0) return out;
  const int32_t first = start(prompt);
  out.push_back(first);
  if (on_token && !on_token(first)) return out;
  while (static_cast<int>(out.size()) < n_predict &&
         target_.n_past() < target_.kv_cache().n_ctx()) {
    for (int32_t t : step()) {
      out.push_back(t);
      if ((on_token && !on_token(t)) || static_cast<int>(out.size()) >= n_predict) return out;
    }
  }
  return out;
}

}  // namespace qgemma
