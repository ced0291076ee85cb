#include "runtime/perplexity.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "loader/error.h"

namespace qgemma {
namespace {

constexpr char kMagic[8] = {'Q', 'G', 'K', 'L', 'B', 'A', 'S', 'E'};
constexpr uint32_t kVersion = 1;
// Log-probabilities below the top one minus this are stored as that floor (e^-80 ~ 2e-35).
constexpr float kFloorRange = 80.0f;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t reserved;
  int64_t n_vocab, n_ctx, n_tokens;
};

struct RowHeader {
  float lp_target;
  int32_t top;
  float lo, step;
};

}  // namespace

double log_softmax(const float* logits, int64_t n, float* lp) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, logits[i]);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(s);
  for (int64_t i = 0; i < n; ++i) lp[i] = static_cast<float>(logits[i] - lse);
  return lse;
}

double MeanStat::error() const {
  if (n < 2) return 0.0;
  const double m = mean();
  const double var = std::max(0.0, (sum2 / n - m * m) * n / (n - 1));
  return std::sqrt(var / n);
}

KlBaseWriter::KlBaseWriter(const std::string& path, int64_t n_vocab, int64_t n_ctx,
                           std::span<const int32_t> tokens)
    : path_(path), n_vocab_(n_vocab), q_(n_vocab) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    throw Error("KL base file '" + path +
                "' already exists: not overwriting it (remove it or choose another name)");
  }
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) throw Error("cannot create KL base file '" + path + "': " + std::strerror(errno));
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.n_vocab = n_vocab;
  h.n_ctx = n_ctx;
  h.n_tokens = static_cast<int64_t>(tokens.size());
  std::fwrite(&h, sizeof(h), 1, f_);
  std::fwrite(tokens.data(), sizeof(int32_t), tokens.size(), f_);
}

KlBaseWriter::~KlBaseWriter() {
  if (f_) std::fclose(f_);
}

void KlBaseWriter::add(std::span<const float> lp, int32_t target) {
  if (static_cast<int64_t>(lp.size()) != n_vocab_) {
    throw Error("KL base file: a row of " + std::to_string(lp.size()) + " log-probabilities, " +
                "expected " + std::to_string(n_vocab_));
  }
  const auto top_it = std::max_element(lp.begin(), lp.end());
  const float hi = *top_it;
  const float lo = std::max(*std::min_element(lp.begin(), lp.end()), hi - kFloorRange);
  const float step = hi > lo ? (hi - lo) / 65535.0f : 0.0f;
  for (size_t i = 0; i < lp.size(); ++i) {
    const float v = std::max(lp[i], lo);
    q_[i] = step > 0 ? static_cast<uint16_t>(std::min(65535.0f, std::round((v - lo) / step))) : 0;
  }
  const RowHeader r{lp[target], static_cast<int32_t>(top_it - lp.begin()), lo, step};
  std::fwrite(&r, sizeof(r), 1, f_);
  std::fwrite(q_.data(), sizeof(uint16_t), q_.size(), f_);
}

void KlBaseWriter::close() {
  if (!f_) return;
  const bool ok = std::ferror(f_) == 0;
  const bool closed = std::fclose(f_) == 0;
  f_ = nullptr;
  if (!ok || !closed) throw Error("writing KL base file '" + path_ + "' failed (disk full?)");
}

KlBaseReader::KlBaseReader(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "rb");
  if (!f_) throw Error("cannot open KL base file '" + path + "': " + std::strerror(errno));
  Header h{};
  if (std::fread(&h, sizeof(h), 1, f_) != 1 || std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) {
    throw Error("'" + path + "' is not a qgemma KL base file (written by `qgemma perplexity " +
                "--kl-divergence-base`)");
  }
  if (h.version != kVersion) {
    throw Error("KL base file '" + path + "': version " + std::to_string(h.version) +
                ", expected " + std::to_string(kVersion));
  }
  struct stat st {};
  const int64_t size = fstat(fileno(f_), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
  if (h.n_vocab <= 0 || h.n_vocab > (int64_t{1} << 24) || h.n_ctx < 2 || h.n_tokens < 0 ||
      h.n_tokens > size / 4) {
    throw Error("KL base file '" + path + "': bad header (vocabulary " + std::to_string(h.n_vocab) +
                ", chunk " + std::to_string(h.n_ctx) + ", tokens " + std::to_string(h.n_tokens) +
                ")");
  }
  n_vocab_ = h.n_vocab;
  n_ctx_ = h.n_ctx;
  tokens_.resize(static_cast<size_t>(h.n_tokens));
  if (std::fread(tokens_.data(), sizeof(int32_t), tokens_.size(), f_) != tokens_.size()) {
    throw Error("KL base file '" + path + "': truncated token list");
  }
  q_.resize(static_cast<size_t>(n_vocab_));
}

KlBaseReader::~KlBaseReader() {
  if (f_) std::fclose(f_);
}

void KlBaseReader::next(KlBaseRow& row) {
  RowHeader r{};
  if (std::fread(&r, sizeof(r), 1, f_) != 1 ||
      std::fread(q_.data(), sizeof(uint16_t), q_.size(), f_) != q_.size()) {
    throw Error("KL base file '" + path_ + "' ends early: it holds fewer scored positions " +
                "than this run (was it written with other --chunks?)");
  }
  if (r.top < 0 || r.top >= n_vocab_) {
    throw Error("KL base file '" + path_ + "': top token " + std::to_string(r.top) +
                " outside the vocabulary");
  }
  row.lp_target = r.lp_target;
  row.top = r.top;
  row.lp.resize(q_.size());
  for (size_t i = 0; i < q_.size(); ++i) row.lp[i] = r.lo + r.step * q_[i];
}

KlPosition compare_position(const KlBaseRow& base, std::span<const float> lp_model,
                            int32_t target) {
  KlPosition out;
  const size_t n = base.lp.size();
  // Renormalize the dequantized base distribution (16-bit steps shift its sum slightly).
  const float mx = *std::max_element(base.lp.begin(), base.lp.end());
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(base.lp[i]) - mx);
  const double lse = mx + std::log(s);
  double kld = 0;
  for (size_t i = 0; i < n; ++i) {
    const double lb = base.lp[i] - lse;
    kld += std::exp(lb) * (lb - lp_model[i]);
  }
  out.kld = std::max(0.0, kld);
  out.p_base = std::exp(static_cast<double>(base.lp_target));
  out.p_model = std::exp(static_cast<double>(lp_model[target]));
  out.same_top = std::max_element(lp_model.begin(), lp_model.end()) - lp_model.begin() == base.top;
  return out;
}

}  // namespace qgemma
