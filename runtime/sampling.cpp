#include "runtime/sampling.h"

#include <algorithm>
#include <cmath>

#include "loader/error.h"

namespace qgemma {

namespace {

// Higher logit first; the lower id on ties (so results never depend on scan order).
bool better(const TokenProb& a, const TokenProb& b) {
  return a.p > b.p || (a.p == b.p && a.id < b.id);
}

// Maximum of p[0..n), n >= 1, with 8 independent lanes so the compiler can vectorize it.
float block_max(const float* p, size_t n) {
  float lane[8];
  for (float& l : lane) l = p[0];
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) lane[k] = p[i + k] > lane[k] ? p[i + k] : lane[k];
  }
  float m = lane[0];
  for (int k = 1; k < 8; ++k) m = lane[k] > m ? lane[k] : m;
  for (; i < n; ++i) m = p[i] > m ? p[i] : m;
  return m;
}

}  // namespace

int32_t argmax(std::span<const float> values) {
  const size_t n = values.size();
  if (n == 0) return -1;
  // One pass over block maxima (the first block holding the maximum wins ties), then a scan of
  // that block for the first index holding it.
  constexpr size_t kBlock = 64;
  float best = values[0];
  size_t best_block = 0;
  for (size_t b = 0; b < n; b += kBlock) {
    const float m = block_max(values.data() + b, std::min(kBlock, n - b));
    if (m > best) {
      best = m;
      best_block = b;
    }
  }
  for (size_t i = best_block; i < std::min(n, best_block + kBlock); ++i) {
    if (values[i] == best) return static_cast<int32_t>(i);
  }
  size_t first = 0;  // only with NaNs: the first largest non-NaN value
  for (size_t i = 1; i < n; ++i) {
    if (values[i] > values[first] || values[first] != values[first]) first = i;
  }
  return static_cast<int32_t>(first);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

void Sampler::accept(int32_t token) {
  if (params_.repeat_last_n <= 0) return;
  history_.push_back(token);
  while (history_.size() > static_cast<size_t>(params_.repeat_last_n)) history_.pop_front();
}

void Sampler::reset() { reset(params_.seed); }

void Sampler::reset(uint64_t seed) {
  params_.seed = seed;
  rng_.seed(seed);
  history_.clear();
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

std::vector<int32_t> Sampler::penalized_ids() const {
  if (params_.repeat_penalty == 1.0f) return {};
  std::vector<int32_t> ids(history_.begin(), history_.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

float Sampler::penalized(std::span<const float> logits, int32_t id) const {
  const float v = logits[id];
  return v > 0.0f ? v / params_.repeat_penalty : v * params_.repeat_penalty;
}

std::vector<TokenProb> Sampler::distribution(std::span<const float> logits) const {
  const size_t n = logits.size();
  if (n == 0) throw Error("sampler: empty logits row");

  // Repetition penalty on a copy of the row (only when some ids are penalized).
  std::vector<float> copy;
  std::span<const float> row = logits;
  const std::vector<int32_t> pen = penalized_ids();
  if (!pen.empty()) {
    copy.assign(logits.begin(), logits.end());
    for (const int32_t id : pen) {
      if (id >= 0 && static_cast<size_t>(id) < n) copy[id] = penalized(logits, id);
    }
    row = copy;
  }

  if (params_.temperature <= 0.0f) return {{argmax(row), 1.0f}};

  // Top-k with a k-sized min-heap (front = worst kept); `p` holds the logit until softmax.
  std::vector<TokenProb> cand;
  const size_t k = params_.top_k > 0 ? static_cast<size_t>(params_.top_k) : n;
  if (k < n) {
    cand.reserve(k);
    auto worse_first = [](const TokenProb& a, const TokenProb& b) { return better(a, b); };
    constexpr size_t kBlock = 64;  // once the heap is full, most blocks are skipped whole
    for (size_t b = 0; b < n; b += kBlock) {
      const size_t e = std::min(n, b + kBlock);
      if (cand.size() == k && !(block_max(row.data() + b, e - b) > cand.front().p)) continue;
      for (size_t i = b; i < e; ++i) {
        const TokenProb t{static_cast<int32_t>(i), row[i]};
        if (cand.size() < k) {
          cand.push_back(t);
          std::push_heap(cand.begin(), cand.end(), worse_first);
        } else if (t.p > cand.front().p) {  // equal logit: the earlier (lower) id stays
          std::pop_heap(cand.begin(), cand.end(), worse_first);
          cand.back() = t;
          std::push_heap(cand.begin(), cand.end(), worse_first);
        }
      }
    }
  } else {
    cand.resize(n);
    for (size_t i = 0; i < n; ++i) cand[i] = {static_cast<int32_t>(i), row[i]};
  }
  // Temperature + softmax weights, relative to the best token: `p` becomes exp((l - max) / T).
  const float max_logit =
      k < n ? std::max_element(cand.begin(), cand.end(), [](auto& x, auto& y) { return x.p < y.p; })
                  ->p
            : block_max(row.data(), n);
  const double inv_t = 1.0 / params_.temperature;
  double sum = 0.0;  // over the top-k set: top-p's normalization
  for (TokenProb& c : cand) {
    c.p = static_cast<float>(std::exp((c.p - max_logit) * inv_t));
    sum += c.p;
  }
  // Min-p: at least min_p times as likely as the best token (weight 1). Applying it before top-p
  // gives the same set: both keep a prefix of the sorted candidates.
  if (params_.min_p > 0.0f) {
    std::erase_if(cand, [&](const TokenProb& c) { return c.p < params_.min_p; });
  }
  // Top-p: the smallest prefix, by decreasing probability, whose mass reaches top_p. Only that
  // prefix needs sorting: grow a sorted head (nth_element + sort) until it holds the mass.
  const double target = params_.top_p < 1.0f ? params_.top_p * sum : HUGE_VAL;
  size_t keep = cand.size(), sorted = 0, head = std::min<size_t>(cand.size(), 1024);
  double cum = 0.0;
  for (size_t i = 0; keep == cand.size();) {
    if (head < cand.size())
      std::nth_element(cand.begin() + sorted, cand.begin() + head, cand.end(), better);
    std::sort(cand.begin() + sorted, cand.begin() + head, better);
    sorted = head;
    for (; i < head; ++i) {
      cum += cand[i].p;
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
    if (head == cand.size()) break;
    head = std::min(cand.size(), head * 8);
  }
  cand.resize(keep);
  double kept = 0.0;
  for (const TokenProb& c : cand) kept += c.p;
  for (TokenProb& c : cand) c.p = static_cast<float>(c.p / kept);
  return cand;
}

int32_t Sampler::draw(std::span<const TokenProb> dist) {
  if (dist.empty()) throw Error("sampler: empty distribution");
  if (dist.size() == 1) return dist[0].id;
  double total = 0.0;
  for (const TokenProb& t : dist) total += t.p;
  const double u = uniform() * total;
  double cum = 0.0;
  for (const TokenProb& t : dist) {
    cum += t.p;
    if (u < cum) return t.id;
  }
  return dist.back().id;
}

int32_t Sampler::sample(std::span<const float> logits) {
  const std::vector<TokenProb> dist = distribution(logits);
  return draw(dist);
}

}  // namespace qgemma
