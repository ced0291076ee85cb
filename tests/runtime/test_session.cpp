// Session: prefill in one batch, in several batches and token by token (decode) give the same
// logits; crop() then re-evaluation reproduces them (speculative decoding's rollback).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "loader/error.h"
#include "runtime/session.h"
#include "runtime/synth.h"

namespace qgemma {
namespace {

const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_session_tmp";

const Model& tiny_model() {
  static const std::unique_ptr<Model> m = [] {
    std::system(("mkdir -p " + kDir).c_str());
    // F32 weights: activations are not quantized, so batching and slot order change the logits by
    // float rounding only (with int8 activations a rounding flip moves them by ~1%).
    const std::string p = kDir + "/tiny_f32.gguf";
    SynthOptions o;
    synth_write(p, o);
    return Model::load(p);
  }();
  return *m;
}

std::vector<int32_t> prompt(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((37 * i + 11) % 1000 + 2);
  return ids;
}

double max_rel(const float* a, const float* b, int64_t n) {
  double d = 0, m = 0;
  for (int64_t i = 0; i < n; ++i) {
    d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
    m = std::max(m, static_cast<double>(std::fabs(b[i])));
  }
  return d / m;
}

Session make(int64_t batch, TensorType kv = TensorType::F16) {
  SessionOptions o;
  o.n_ctx = 128;
  o.n_batch = batch;
  o.n_threads = 2;
  o.kv_type = kv;
  return Session(tiny_model(), o);
}

TEST(Session, BatchedPrefillAndDecodeAgree) {
  const auto ids = prompt(30);  // past the sliding window (8) several times
  const int64_t V = tiny_model().config().n_vocab;
  Session whole = make(512);
  const std::vector<float> ref = whole.eval_all(ids);
  ASSERT_EQ(ref.size(), ids.size() * V);
  EXPECT_EQ(whole.n_past(), 30);

  Session batched = make(7);
  const std::vector<float> b = batched.eval_all(ids);
  EXPECT_LT(max_rel(b.data(), ref.data(), b.size()), 1e-4);

  // Decode: one token per call (GEMV kernels, the ring wrapping every call).
  Session decode = make(1);
  for (size_t t = 0; t < ids.size(); ++t) {
    auto logits = decode.eval(std::span<const int32_t>(&ids[t], 1), 1);
    EXPECT_LT(max_rel(logits.data(), ref.data() + t * V, V), 1e-4) << "position " << t;
  }

  // eval() returns just the last rows.
  Session last = make(8);
  auto tail = last.eval(ids, 3);
  ASSERT_EQ(tail.size(), static_cast<size_t>(3 * V));
  EXPECT_LT(max_rel(tail.data(), ref.data() + (ids.size() - 3) * V, 3 * V), 1e-4);
}

TEST(Session, CropAndReevaluateReproducesLogits) {
  const auto ids = prompt(20);
  const int64_t V = tiny_model().config().n_vocab;
  Session s = make(4);
  s.eval(std::span<const int32_t>(ids.data(), 16), 1);
  const auto tail = s.eval(std::span<const int32_t>(ids.data() + 16, 4), 4);
  const std::vector<float> want(tail.begin(), tail.end());
  // Reject the last three "drafted" tokens, feed different ones, then roll back again and
  // re-feed the originals: the logits come back.
  s.crop(17);
  EXPECT_EQ(s.n_past(), 17);
  const int32_t other[3] = {5, 6, 7};
  s.eval(other, 1);
  s.crop(17);
  const auto again = s.eval(std::span<const int32_t>(ids.data() + 17, 3), 3);
  // Same tolerance as the batch-shape comparisons above: 3 rows vs 4 rows take different matmul
  // tiles (summation order), ~1e-5 apart; a wrong crop changes logits by O(1).
  EXPECT_LT(max_rel(again.data(), want.data() + V, 3 * V), 1e-4);
  EXPECT_THROW(s.crop(21), Error);
}

TEST(Session, Q8KvCacheStaysClose) {
  const auto ids = prompt(24);
  Session f16 = make(512, TensorType::F16);
  Session q8 = make(512, TensorType::Q8_0);
  const auto a = f16.eval_all(ids), b = q8.eval_all(ids);
  EXPECT_LT(max_rel(b.data(), a.data(), a.size()), 5e-2);
}

TEST(Session, RejectsBadTokensAndAFullContext) {
  Session s = make(8);
  const int32_t bad[1] = {static_cast<int32_t>(tiny_model().config().n_vocab)};
  EXPECT_THROW(s.eval(bad), Error);
  const auto ids = prompt(129);
  EXPECT_THROW(s.eval(ids), Error);
}

}  // namespace
}  // namespace qgemma
