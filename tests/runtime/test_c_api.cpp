// The C API: load, tokenize/detokenize, evaluate, crop, errors through qgemma_last_error().
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "qgemma/qgemma.h"
#include "runtime/session.h"
#include "runtime/synth.h"

namespace {

const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_c_api_tmp";

TEST(CApi, LoadTokenizeEvalCrop) {
  std::system(("mkdir -p " + kDir).c_str());
  const std::string path = kDir + "/tiny.gguf";
  qgemma::SynthOptions o;  // F32 weights: prefill and decode agree to float rounding
  qgemma::synth_write(path, o);

  qgemma_model* m = nullptr;
  ASSERT_EQ(qgemma_model_load(path.c_str(), &m), QGEMMA_OK) << qgemma_last_error();
  EXPECT_EQ(qgemma_model_n_vocab(m), qgemma::synth_preset("tiny").n_vocab);

  std::vector<int32_t> ids(64);
  size_t n = 0;
  ASSERT_EQ(qgemma_tokenize(m, "hello world", ids.data(), ids.size(), &n), QGEMMA_OK);
  ASSERT_GT(n, 1u);
  ids.resize(n);
  char text[64];
  size_t len = 0;
  ASSERT_EQ(qgemma_detokenize(m, ids.data() + 1, n - 1, text, sizeof(text), &len), QGEMMA_OK);
  EXPECT_EQ(std::string(text), "hello world");
  size_t need = 0;
  EXPECT_EQ(qgemma_tokenize(m, "hello world", ids.data(), 1, &need), QGEMMA_BUFFER_SMALL);
  EXPECT_EQ(need, n);

  qgemma_session_params p = qgemma_session_default_params();
  p.n_ctx = 64;
  p.n_threads = 2;
  qgemma_session* s = nullptr;
  ASSERT_EQ(qgemma_session_new(m, &p, &s), QGEMMA_OK) << qgemma_last_error();
  const float* logits = nullptr;
  ASSERT_EQ(qgemma_session_eval(s, ids.data(), ids.size(), &logits), QGEMMA_OK);
  const std::vector<float> first(logits, logits + qgemma_model_n_vocab(m));
  EXPECT_EQ(qgemma_session_n_past(s), static_cast<int64_t>(n));
  ASSERT_EQ(qgemma_session_crop(s, static_cast<int64_t>(n) - 1), QGEMMA_OK);
  ASSERT_EQ(qgemma_session_eval(s, &ids.back(), 1, &logits), QGEMMA_OK);
  for (size_t i = 0; i < first.size(); ++i) EXPECT_NEAR(logits[i], first[i], 1e-4f);

  EXPECT_EQ(qgemma_session_crop(s, 1000), QGEMMA_ERROR);
  EXPECT_NE(std::string(qgemma_last_error()).find("crop"), std::string::npos);
  const int32_t bad = 1 << 30;
  EXPECT_EQ(qgemma_session_eval(s, &bad, 1, &logits), QGEMMA_ERROR);
  EXPECT_NE(std::string(qgemma_last_error()).find("vocabulary"), std::string::npos);
  qgemma_session_free(s);
  qgemma_model_free(m);

  EXPECT_EQ(qgemma_model_load((kDir + "/missing.gguf").c_str(), &m), QGEMMA_ERROR);
  EXPECT_STRNE(qgemma_last_error(), "");
  EXPECT_EQ(qgemma_model_load(nullptr, &m), QGEMMA_INVALID_ARG);
}

}  // namespace
