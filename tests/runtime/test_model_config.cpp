// Model config and weight checks: a synthetic file loads with the right config; a missing tensor,
// a wrong shape, an unsupported type and the features of other Gemma 4 sizes are refused with
// errors that name the tensor or key.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "loader/error.h"
#include "loader/gguf.h"
#include "runtime/model_config.h"
#include "runtime/session.h"
#include "runtime/synth.h"
#include "runtime/weights.h"

namespace qgemma {
namespace {

const std::string kDir = std::string(QGEMMA_BINARY_DIR) + "/test_model_config_tmp";

std::string tiny_path() {
  static const std::string path = [] {
    std::system(("mkdir -p " + kDir).c_str());
    const std::string p = kDir + "/tiny.gguf";
    SynthOptions o;
    o.type = TensorType::Q8_0;
    synth_write(p, o);
    return p;
  }();
  return path;
}

// Copies tiny.gguf to `name`, letting `edit` change metadata and tensors (return false from
// keep() to drop a tensor).
struct Edit {
  std::function<void(GgufWriter&)> meta = [](GgufWriter&) {};
  std::function<bool(const GgufTensor&, TensorType*, std::vector<int64_t>*)> keep =
      [](const GgufTensor&, TensorType*, std::vector<int64_t>*) { return true; };
};

std::string edited(const std::string& name, const Edit& e) {
  auto src = GgufFile::open(tiny_path());
  GgufWriter w;
  for (const GgufKV& kv : src->metadata()) w.set(kv.key, kv.value);
  e.meta(w);
  for (const GgufTensor& t : src->tensors()) {
    TensorType type = t.type;
    std::vector<int64_t> shape = t.shape;
    if (!e.keep(t, &type, &shape)) continue;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<uint8_t> bytes(row_size(type, n), 0);
    std::copy(t.data, t.data + std::min<size_t>(t.nbytes, bytes.size()), bytes.begin());
    w.add_tensor(t.name, type, shape, bytes);
  }
  const std::string path = kDir + "/" + name + ".gguf";
  w.write(path);
  return path;
}

std::string load_error(const std::string& path) {
  try {
    auto f = GgufFile::open(path);
    const ModelConfig c = ModelConfig::from_gguf(*f);
    ModelWeights::load(*f, c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, SynthTinyHasEveryLayerType) {
  auto f = GgufFile::open(tiny_path());
  const ModelConfig c = ModelConfig::from_gguf(*f);
  const ModelConfig want = synth_preset("tiny");
  EXPECT_EQ(c.n_layer, 6);
  EXPECT_EQ(c.n_embd, want.n_embd);
  EXPECT_EQ(c.n_vocab, want.n_vocab);
  EXPECT_EQ(c.sliding_window, want.sliding_window);
  EXPECT_FLOAT_EQ(c.final_softcap, 30.0f);
  EXPECT_FLOAT_EQ(c.embed_scale, std::sqrt(static_cast<float>(c.n_embd)));
  EXPECT_TRUE(c.tied_output);
  for (int i = 0; i < c.n_layer; ++i) {
    const LayerConfig& l = c.layers[i];
    EXPECT_EQ(l.sliding, i != 5) << i;
    EXPECT_EQ(l.v_from_k, !l.sliding) << i;          // K = V on the global layer
    EXPECT_EQ(l.use_freq_factors, !l.sliding) << i;  // proportional RoPE there
    EXPECT_EQ(l.head_dim, want.layers[i].head_dim) << i;
    EXPECT_EQ(l.n_head_kv, want.layers[i].n_head_kv) << i;
    EXPECT_FLOAT_EQ(l.rope_base, l.sliding ? 10000.0f : 1000000.0f) << i;
    EXPECT_TRUE(l.has_out_scale);
  }
  ASSERT_EQ(c.rope_freq_factors.size(), static_cast<size_t>(want.layers[5].head_dim / 2));
  EXPECT_EQ(c.rope_freq_factors.front(), 1.0f);
  EXPECT_GT(c.rope_freq_factors.back(), 1e29f);
  const ModelWeights w = ModelWeights::load(*f, c);
  EXPECT_EQ(w.layers[5].wv.data, nullptr);
  EXPECT_NE(w.layers[0].wv.data, nullptr);
  EXPECT_EQ(w.layers[0].wq.type, TensorType::Q8_0);
  EXPECT_GT(w.layers[0].out_scale, 0.5f);
}

TEST(ModelConfig, MissingTensorIsNamed) {
  Edit e;
  e.keep = [](const GgufTensor& t, TensorType*, std::vector<int64_t>*) {
    return t.name != "blk.3.ffn_up.weight";
  };
  const std::string err = load_error(edited("missing", e));
  EXPECT_NE(err.find("blk.3.ffn_up.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
}

TEST(ModelConfig, WrongShapeNamesExpectedAndFound) {
  Edit e;
  e.keep = [](const GgufTensor& t, TensorType*, std::vector<int64_t>* shape) {
    if (t.name == "blk.1.attn_q.weight") (*shape)[1] -= 32;
    return true;
  };
  const std::string err = load_error(edited("shape", e));
  EXPECT_NE(err.find("blk.1.attn_q.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("expected shape {256, 256}"), std::string::npos) << err;
  EXPECT_NE(err.find("found {256, 224}"), std::string::npos) << err;
}

TEST(ModelConfig, UnsupportedTypeIsNamed) {
  Edit e;
  e.keep = [](const GgufTensor& t, TensorType* type, std::vector<int64_t>*) {
    if (t.name == "blk.2.ffn_down.weight") *type = TensorType::Q5_1;
    return true;
  };
  const std::string err = load_error(edited("type", e));
  EXPECT_NE(err.find("blk.2.ffn_down.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("not supported"), std::string::npos) << err;
}

TEST(ModelConfig, OtherGemma4FeaturesAreRefused) {
  const struct {
    const char* key;
    const char* words;
  } cases[] = {{"gemma4.embedding_length_per_layer_input", "per-layer embeddings"},
               {"gemma4.attention.shared_kv_layers", "KV sharing"},
               {"gemma4.expert_count", "mixture of experts"}};
  for (const auto& c : cases) {
    Edit e;
    e.meta = [&](GgufWriter& w) { w.set(c.key, GgufValue::u32(4)); };
    const std::string err = load_error(edited("feature", e));
    EXPECT_NE(err.find(c.words), std::string::npos) << err;
    EXPECT_NE(err.find("not supported yet"), std::string::npos) << err;
  }
  Edit wide;  // double-wide MLP: feed_forward_length differs between layers
  wide.meta = [](GgufWriter& w) {
    w.set("gemma4.feed_forward_length", GgufValue::i32_array({512, 512, 512, 512, 1024, 1024}));
  };
  const std::string err = load_error(edited("wide", wide));
  EXPECT_NE(err.find("double-wide MLP"), std::string::npos) << err;
  EXPECT_NE(err.find("not supported yet"), std::string::npos) << err;
}

TEST(ModelConfig, WrongArchitectureAndMissingKeyAreNamed) {
  Edit arch;
  arch.meta = [](GgufWriter& w) { w.set("general.architecture", GgufValue::str("llama")); };
  EXPECT_NE(load_error(edited("arch", arch)).find("expected 'gemma4', found 'llama'"),
            std::string::npos);
}

TEST(MemoryBudget, RefusesWithTheNumbers) {
  auto m = Model::load(tiny_path());
  SessionOptions o;
  o.n_ctx = 4096;
  o.mem_budget = 1 << 20;  // 1 MiB: the weights alone do not fit
  try {
    Session s(*m, o);
    FAIL() << "expected the memory budget to refuse";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("memory budget"), std::string::npos) << msg;
    EXPECT_NE(msg.find("weights"), std::string::npos) << msg;
    EXPECT_NE(msg.find("KV cache"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ctx 4096"), std::string::npos) << msg;
  }
  o.mem_budget = 16 * kGiB;
  EXPECT_NO_THROW(Session(*m, o));
}

}  // namespace
}  // namespace qgemma
