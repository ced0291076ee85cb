// `qgemma info`, run as the built binary: on a GGUF written by another program
// (scripts/make_test_gguf.py), on a header shaped like Gemma 4 12B (a sparse 500+ MB file), on
// other architectures, and on malformed files (non-zero exit, message on stderr).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "loader/gguf_test_util.h"

namespace qgemma {
namespace {

using namespace qgemma::testing;

const std::string kQgemma = std::string(QGEMMA_BINARY_DIR) + "/tools/qgemma";

struct Result {
  int rc;
  std::string out, err;
};

Result run(const TempDir& dir, const std::string& args) {
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  const int status = std::system((kQgemma + " " + args + " > " + out + " 2> " + err).c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(out), read_file(err)};
}

class Info : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kQgemma)) << kQgemma << " is missing: build target qgemma";
  }
  TempDir dir_;
};

// Encoded arrays for metadata entries.
std::string i32_array(const std::vector<int32_t>& xs) {
  std::string s = enc_u32(5) + enc_u64(xs.size());
  for (int32_t x : xs) s += enc_u32(static_cast<uint32_t>(x));
  return s;
}
std::string bool_array(const std::vector<bool>& xs) {
  std::string s = enc_u32(7) + enc_u64(xs.size());
  for (bool x : xs) s.push_back(x ? 1 : 0);
  return s;
}

TEST_F(Info, FileFromAnotherProgram) {
  const std::string path = dir_.file("py.gguf");
  const std::string expected_json = dir_.file("expected.json");
  const std::string cmd = std::string("/usr/bin/python3 ") + QGEMMA_SOURCE_DIR +
                          "/scripts/make_test_gguf.py " + path + " --print-expected > " +
                          expected_json;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto expected = nlohmann::json::parse(read_file(expected_json));

  const Result text = run(dir_, "info " + path + " --tensors");
  ASSERT_EQ(text.rc, 0) << text.err;
  EXPECT_NE(text.out.find("architecture:  gemma4"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("tensors:       " + std::to_string(expected.size())), std::string::npos);
  EXPECT_NE(text.out.find("[string x 262144] \"<pad>\", \"<eos>\""), std::string::npos);
  for (const auto& t : expected) {
    EXPECT_NE(text.out.find(t["name"].get<std::string>()), std::string::npos) << t["name"];
  }

  const Result js = run(dir_, "info " + path + " --json --ctx 32768");
  ASSERT_EQ(js.rc, 0) << js.err;
  const auto j = nlohmann::json::parse(js.out);
  EXPECT_EQ(j["architecture"], "gemma4");
  EXPECT_EQ(j["alignment"], 32);
  ASSERT_EQ(j["n_tensors"].get<size_t>(), expected.size());
  uint64_t weights = 0;
  std::map<std::string, size_t> per_type;
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& t = j["tensors"][i];
    EXPECT_EQ(t["name"], expected[i]["name"]);
    EXPECT_EQ(t["shape"], expected[i]["shape"]);
    EXPECT_EQ(t["type"], expected[i]["type"]);
    EXPECT_EQ(t["bytes"], expected[i]["bytes"]);
    weights += expected[i]["bytes"].get<uint64_t>();
    ++per_type[expected[i]["type"].get<std::string>()];
  }
  for (const auto& [type, count] : per_type) EXPECT_EQ(j["types"][type]["count"], count) << type;
  EXPECT_EQ(j["metadata"]["tokenizer.ggml.tokens"]["count"], 262144);
  EXPECT_EQ(j["memory"]["weights_bytes"], weights);
  // The script's model: 5 sliding layers (2 KV heads x 32 dims, window 512) and 1 global layer
  // (1 KV head x 64 dims), f16 K and V.
  const auto kv_bytes = [](uint64_t ctx) {
    return 5 * 2 * (32 + 32) * std::min<uint64_t>(ctx, 512) * 2 + 1 * 1 * (64 + 64) * ctx * 2;
  };
  EXPECT_EQ(j["memory"]["kv_cache_bytes"], kv_bytes(32768));
  EXPECT_EQ(j["memory"]["total_bytes"], weights + kv_bytes(32768));

  const Result small = run(dir_, "info " + path + " --json --ctx 100");
  ASSERT_EQ(small.rc, 0) << small.err;
  EXPECT_EQ(nlohmann::json::parse(small.out)["memory"]["kv_cache_bytes"], kv_bytes(100));
}

// A header shaped like Gemma 4 12B in a sparse file as large as its tensors say: the KV
// estimate must match the model card's arithmetic (docs: 336 MB sliding + 16 KiB per token).
TEST_F(Info, Gemma4_12bShapedHeader) {
  constexpr int kLayers = 48;
  std::vector<int32_t> kv_heads;
  std::vector<bool> sliding;
  for (int il = 0; il < kLayers; ++il) {
    sliding.push_back(il % 6 != 5);
    kv_heads.push_back(sliding.back() ? 8 : 1);
  }
  RawFile f;
  f.kvs = {kv_str("general.architecture", "gemma4"),
           kv_u32("gemma4.block_count", kLayers),
           kv_u32("gemma4.embedding_length", 3840),
           kv_u32("gemma4.attention.head_count", 16),
           kv_raw("gemma4.attention.head_count_kv", 9, i32_array(kv_heads)),
           kv_raw("gemma4.attention.sliding_window_pattern", 9, bool_array(sliding)),
           kv_u32("gemma4.attention.sliding_window", 1024),
           kv_u32("gemma4.attention.key_length", 512),
           kv_u32("gemma4.attention.value_length", 512),
           kv_u32("gemma4.attention.key_length_swa", 256),
           kv_u32("gemma4.attention.value_length_swa", 256)};
  const uint64_t emb_bytes = 3840ull / 32 * 18 * 262144;
  f.tensors = {{"token_embd.weight", {3840, 262144}, 2, 0},
               {"output_norm.weight", {3840}, 0, emb_bytes}};
  const std::string path = dir_.file("g12.gguf");
  const std::string header = f.bytes();
  write_file(path, header);
  std::filesystem::resize_file(path, header.size() + emb_bytes + 3840 * 4);

  const Result r = run(dir_, "info " + path + " --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const uint64_t sliding_bytes = 40ull * 8 * (256 + 256) * 1024 * 2;  // 336 MB
  const uint64_t global_bytes = 8ull * 1 * (512 + 512) * 32768 * 2;   // 16 KiB per token
  EXPECT_EQ(sliding_bytes, 335544320u);
  EXPECT_EQ(j["memory"]["kv_cache_bytes"], sliding_bytes + global_bytes);
  EXPECT_EQ(j["memory"]["weights_bytes"], emb_bytes + 3840 * 4);
  EXPECT_EQ(j["n_params"], 3840ull * 262144 + 3840);

  const Result text = run(dir_, "info " + path);
  ASSERT_EQ(text.rc, 0);
  EXPECT_NE(text.out.find("40 sliding layers x 8 KV heads x 512 (K+V) x 1024 positions"),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("8 global layers x 1 KV head x 1024 (K+V) x 32768 positions"),
            std::string::npos);
}

TEST_F(Info, OtherArchitectures) {
  RawFile llama;
  llama.kvs = {kv_str("general.architecture", "llama"), kv_u32("llama.block_count", 2),
               kv_u32("llama.embedding_length", 64), kv_u32("llama.attention.head_count", 4),
               kv_u32("llama.attention.head_count_kv", 2)};
  llama.tensors = {{"token_embd.weight", {64, 10}, 0, 0}};
  llama.data_bytes = 64 * 10 * 4;
  write_file(dir_.file("llama.gguf"), llama.bytes());
  const Result r = run(dir_, "info " + dir_.file("llama.gguf") + " --json --ctx 1000");
  ASSERT_EQ(r.rc, 0) << r.err;
  // Every layer at full context; head size = embedding_length / head_count = 16.
  EXPECT_EQ(nlohmann::json::parse(r.out)["memory"]["kv_cache_bytes"], 2 * 2 * (16 + 16) * 1000 * 2);

  RawFile bare;
  bare.kvs = {kv_str("general.architecture", "mystery")};
  write_file(dir_.file("bare.gguf"), bare.bytes());
  const Result b = run(dir_, "info " + dir_.file("bare.gguf"));
  ASSERT_EQ(b.rc, 0) << b.err;
  EXPECT_NE(b.out.find("no KV-cache estimate: the file has no mystery.block_count"),
            std::string::npos)
      << b.out;
  EXPECT_NE(b.out.find("weights"), std::string::npos);
}

TEST_F(Info, MalformedFilesExitNonZeroWithTheMessage) {
  RawFile good;
  good.kvs = {kv_str("general.architecture", "test")};
  good.tensors = {{"a", {8}, 0, 0}, {"b", {8}, 0, 32}};
  good.data_bytes = 64;

  std::vector<std::pair<std::string, std::string>> cases;  // bytes, expected phrase
  RawFile f = good;
  f.magic = "GGML";
  cases.push_back({f.bytes(), "not a GGUF file"});
  f = good;
  f.version = 1;
  cases.push_back({f.bytes(), "GGUF version 1 is not supported"});
  cases.push_back({good.bytes().substr(0, 10), "truncated: header: tensor count"});
  f = good;
  f.tensors[1].offset = 0;
  cases.push_back({f.bytes(), "overlap"});
  f = good;
  f.data_bytes = 40;
  cases.push_back({f.bytes(), "tensor 'b': data [offset 32, 32 bytes] runs past the end"});
  f = good;
  f.tensors[0].type = 77;
  cases.push_back({f.bytes(), "unknown tensor type id 77"});
  f = good;
  f.n_kv = 1ull << 50;
  cases.push_back({f.bytes(), "cannot fit"});

  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = dir_.file("bad" + std::to_string(i) + ".gguf");
    write_file(path, cases[i].first);
    const Result r = run(dir_, "info " + path);
    EXPECT_NE(r.rc, 0) << cases[i].second;
    EXPECT_EQ(r.err.rfind("qgemma: error: " + path + ": ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(cases[i].second), std::string::npos) << r.err;
  }
  const Result missing = run(dir_, "info " + dir_.file("none.gguf"));
  EXPECT_NE(missing.rc, 0);
  EXPECT_NE(missing.err.find("cannot open"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace qgemma
