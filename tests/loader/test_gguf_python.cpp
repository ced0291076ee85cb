// Reads a GGUF written by another program: scripts/make_test_gguf.py (Python struct + numpy,
// llama.cpp's gemma4 naming, 262,144-token tokenizer metadata, Q4_0/Q8_0/F32 tensors). The
// script also prints what it wrote; the reader must see exactly that.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "gguf_test_util.h"
#include "loader/gguf.h"

namespace qgemma {
namespace {

using testing::TempDir;

// Runs the script into `dir` and returns the parsed list of tensors it reports.
nlohmann::json make_file(const TempDir& dir, const std::string& out, const std::string& args) {
  const std::string expected = dir.file("expected.json");
  const std::string cmd = std::string("/usr/bin/python3 ") + QGEMMA_SOURCE_DIR +
                          "/scripts/make_test_gguf.py " + out + " " + args +
                          " --print-expected > " + expected;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return nlohmann::json::parse(testing::read_file(expected));
}

float f16_to_f32(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  const float sign = (h & 0x8000) ? -1.0f : 1.0f;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -24);
  if (exp == 31) return mant ? NAN : sign * INFINITY;
  return sign * std::ldexp(static_cast<float>(mant | 0x400), exp - 25);
}

TEST(GgufPython, ReaderSeesWhatThePythonWriterWrote) {
  TempDir dir;
  const std::string path = dir.file("py.gguf");
  const nlohmann::json expected = make_file(dir, path, "--alignment 64");
  ASSERT_TRUE(expected.is_array());
  ASSERT_GT(expected.size(), 80u);

  auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->get_string("general.architecture"), "gemma4");
  EXPECT_EQ(f->get_int("gemma4.block_count"), 6);
  const auto tokens = f->get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 262144u);
  EXPECT_EQ(tokens[0], "<pad>");
  EXPECT_EQ(tokens[262143], "tok_262143");
  EXPECT_EQ(f->get_f32_array("tokenizer.ggml.scores").size(), 262144u);
  EXPECT_EQ(f->get_int_array("tokenizer.ggml.token_type").size(), 262144u);
  EXPECT_EQ(f->get_int_or_array("gemma4.attention.head_count_kv", 6),
            (std::vector<int64_t>{2, 2, 2, 2, 2, 1}));
  EXPECT_EQ(f->get_bool_array("gemma4.attention.sliding_window_pattern"),
            (std::vector<bool>{true, true, true, true, true, false}));

  EXPECT_EQ(f->data_offset() % 64, 0u);
  ASSERT_EQ(f->tensors().size(), expected.size());
  std::map<std::string, size_t> type_counts;
  for (size_t i = 0; i < expected.size(); ++i) {
    const GgufTensor& t = f->tensors()[i];
    const auto& e = expected[i];
    EXPECT_EQ(t.name, e["name"].get<std::string>());
    EXPECT_EQ(t.shape, e["shape"].get<std::vector<int64_t>>()) << t.name;
    EXPECT_EQ(type_traits(t.type).name, e["type"].get<std::string>()) << t.name;
    EXPECT_EQ(t.nbytes, e["bytes"].get<uint64_t>()) << t.name;
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    ++type_counts[std::string(type_traits(t.type).name)];
  }
  EXPECT_EQ(type_counts.size(), 3u);  // q4_0, q8_0 and f32
  const GgufTensor* emb = f->find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{64, 262144}));
  EXPECT_EQ(emb->type, TensorType::Q4_0);
  EXPECT_EQ(f->find_tensor("blk.5.attn_v.weight"), nullptr);  // global layer: K = V
  ASSERT_NE(f->find_tensor("blk.4.attn_v.weight"), nullptr);

  // The data pointers reach the right bytes: rope_freqs holds 8 ones (a quarter of the pairs
  // rotate) then 1e30, and every Q8_0 block of ffn_down starts with a finite, positive f16 scale.
  const GgufTensor* rf = f->find_tensor("rope_freqs.weight");
  ASSERT_NE(rf, nullptr);
  std::vector<float> freqs(static_cast<size_t>(rf->shape[0]));
  std::memcpy(freqs.data(), rf->data, rf->nbytes);
  EXPECT_EQ(freqs[0], 1.0f);
  EXPECT_EQ(freqs[7], 1.0f);
  EXPECT_EQ(freqs[8], 1e30f);
  EXPECT_EQ(freqs[31], 1e30f);
  const GgufTensor* down = f->find_tensor("blk.0.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  ASSERT_EQ(down->type, TensorType::Q8_0);
  for (uint64_t b = 0; b < down->nbytes / sizeof(block_q8_0); ++b) {
    block_q8_0 blk;
    std::memcpy(&blk, down->data + b * sizeof(block_q8_0), sizeof blk);
    const float d = f16_to_f32(blk.d);
    ASSERT_TRUE(std::isfinite(d) && d > 0.0f) << "block " << b;
  }
}

}  // namespace
}  // namespace qgemma
