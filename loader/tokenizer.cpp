#include "loader/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>

namespace qgemma {

namespace {

constexpr std::string_view kSpaceEscape = "\xE2\x96\x81";  // U+2581 '▁'
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// Length of the UTF-8 sequence a lead byte announces; 1 for anything invalid, so that invalid
// bytes become one-byte symbols (and then byte tokens), as in llama.cpp and SentencePiece.
size_t utf8_len(uint8_t b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

// Length of the valid UTF-8 sequence at s[0..] (1..4), 0 when invalid, -1 when s ends in what
// could still become a valid sequence.
int utf8_valid_prefix(std::string_view s) {
  const auto b0 = static_cast<uint8_t>(s[0]);
  int need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (int k = 1; k < need; ++k) {
    if (static_cast<size_t>(k) >= s.size()) return -1;
    const auto b = static_cast<uint8_t>(s[k]);
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
  }
  return need;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

// "<0x4A>" -> 0x4A; -1 when `s` is not a byte token's text.
int parse_byte_token(std::string_view s) {
  if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = s[k];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

bool is_int_type(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
      return true;
    default:
      return false;
  }
}

// Typed access to metadata values, with errors naming the source and the key.
class MetaReader {
 public:
  MetaReader(const Tokenizer::MetadataLookup& find, const std::string& source)
      : find_(find), source_(source) {}

  const GgufValue* find(std::string_view key) const { return find_(key); }
  const GgufValue& require(std::string_view key) const {
    const GgufValue* v = find_(key);
    if (!v) fail(key, "is missing");
    return *v;
  }
  [[noreturn]] void fail(std::string_view key, const std::string& what) const {
    throw Error(source_ + ": metadata key '" + std::string(key) + "' " + what);
  }
  void expect(std::string_view key, const GgufValue& v, GgufValueType t) const {
    if (v.type != t) {
      fail(key, "expected " + std::string(gguf_type_name(t)) + ", found " +
                    std::string(gguf_type_name(v.type)));
    }
  }
  const GgufValue::Array& array(std::string_view key, const GgufValue& v,
                                bool (*elem_ok)(GgufValueType), const char* elem_name) const {
    expect(key, v, GgufValueType::ARRAY);
    const auto& a = std::get<GgufValue::Array>(v.v);
    if (!elem_ok(a.elem_type)) {
      fail(key, std::string("expected an array of ") + elem_name + ", found an array of " +
                    std::string(gguf_type_name(a.elem_type)));
    }
    return a;
  }
  static int64_t int_of(const GgufValue& v) {
    if (const auto* u = std::get_if<uint64_t>(&v.v)) return static_cast<int64_t>(*u);
    return std::get<int64_t>(v.v);
  }
  std::string string(std::string_view key) const {
    const GgufValue& v = require(key);
    expect(key, v, GgufValueType::STRING);
    return std::get<std::string>(v.v);
  }
  std::optional<int64_t> int_opt(std::string_view key) const {
    const GgufValue* v = find_(key);
    if (!v) return std::nullopt;
    if (!is_int_type(v->type)) {
      fail(key, "expected an integer, found " + std::string(gguf_type_name(v->type)));
    }
    return int_of(*v);
  }
  std::optional<bool> bool_opt(std::string_view key) const {
    const GgufValue* v = find_(key);
    if (!v) return std::nullopt;
    expect(key, *v, GgufValueType::BOOL);
    return std::get<bool>(v->v);
  }

 private:
  const Tokenizer::MetadataLookup& find_;
  const std::string& source_;
};

GgufValue gv_string(std::string s) { return GgufValue{GgufValueType::STRING, std::move(s)}; }
GgufValue gv_u32(uint32_t x) { return GgufValue{GgufValueType::UINT32, uint64_t{x}}; }
GgufValue gv_bool(bool b) { return GgufValue{GgufValueType::BOOL, b}; }
GgufValue gv_array(GgufValueType elem, std::vector<GgufValue> items) {
  return GgufValue{GgufValueType::ARRAY, GgufValue::Array{elem, std::move(items)}};
}

}  // namespace

// Leftmost-longest matching of special / user-defined tokens in raw text: a byte trie.
struct Tokenizer::SpecialTrie {
  std::vector<int32_t> node_token{-1};             // token ending at each node, -1 if none
  std::unordered_map<uint64_t, int32_t> children;  // (node << 8 | byte) -> child node
  std::array<bool, 256> first{};                   // bytes that can start a match

  void insert(std::string_view s, int32_t id) {
    int32_t node = 0;
    for (const char c : s) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
      auto it = children.find(key);
      if (it == children.end()) {
        it = children.emplace(key, static_cast<int32_t>(node_token.size())).first;
        node_token.push_back(-1);
      }
      node = it->second;
    }
    node_token[node] = id;
    first[static_cast<uint8_t>(s[0])] = true;
  }

  // Longest token starting at text[pos]; control tokens count only with parse_special.
  std::pair<int32_t, size_t> match(std::string_view text, size_t pos, bool parse_special,
                                   const std::vector<TokenType>& types) const {
    if (!first[static_cast<uint8_t>(text[pos])]) return {-1, 0};
    int32_t node = 0, best = -1;
    size_t best_len = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(text[i]);
      const auto it = children.find(key);
      if (it == children.end()) break;
      node = it->second;
      const int32_t id = node_token[node];
      if (id >= 0 && (parse_special || types[id] == TokenType::kUserDefined)) {
        best = id;
        best_len = i + 1 - pos;
      }
    }
    return {best, best_len};
  }
};

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

int32_t Tokenizer::lookup(std::string_view s) const {
  const auto it = token_to_id_.find(s);
  return it == token_to_id_.end() ? -1 : it->second;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = lookup(text);
  if (id < 0) return std::nullopt;
  return id;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_tokens()) {
    throw Error("tokenizer: token id " + std::to_string(id) + " out of range [0, " +
                std::to_string(n_tokens()) + ")");
  }
  return tokens_[id];
}

TokenType Tokenizer::token_type(int32_t id) const {
  token_text(id);  // range check
  return types_[id];
}

float Tokenizer::token_score(int32_t id) const {
  token_text(id);
  return scores_[id];
}

bool Tokenizer::is_stop(int32_t id) const {
  return std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end();
}

void Tokenizer::add_merge(int32_t left, int32_t right, int32_t rank) {
  const int32_t result = lookup(tokens_[left] + tokens_[right]);
  if (result < 0) return;  // can never apply: the merged string is not a token
  const uint64_t key =
      (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  if (merges_.emplace(key, MergeInfo{rank, result}).second) merge_list_.emplace_back(left, right);
}

// Everything derived from tokens_/types_ and the ids: lookup tables, special-token trie, stops.
void Tokenizer::finish_init(const std::string& source) {
  const size_t n = tokens_.size();
  if (n == 0) throw Error(source + ": tokenizer has no tokens");
  if (scores_.size() != n || types_.size() != n) {
    throw Error(source + ": tokenizer has " + std::to_string(n) + " tokens but " +
                std::to_string(scores_.size()) + " scores and " + std::to_string(types_.size()) +
                " token types");
  }
  token_to_id_.clear();
  token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) token_to_id_[tokens_[i]] = static_cast<int32_t>(i);

  byte_ids_.fill(-1);
  ascii_ids_.fill(-1);
  byte_value_.assign(n, -1);
  special_ = std::make_unique<SpecialTrie>();
  inner_space_tokens_.clear();
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = tokens_[i];
    const auto id = static_cast<int32_t>(i);
    switch (types_[i]) {
      case TokenType::kByte: {
        const int b = parse_byte_token(t);
        if (b < 0) throw Error(source + ": byte token " + std::to_string(i) + " is '" + t + "'");
        byte_value_[i] = static_cast<int16_t>(b);
        if (byte_ids_[b] < 0) byte_ids_[b] = id;
        break;
      }
      case TokenType::kControl:
      case TokenType::kUnknown:
      case TokenType::kUserDefined:
        if (!t.empty()) special_->insert(t, id);
        break;
      default:
        break;
    }
    if (t.size() == 1 && static_cast<uint8_t>(t[0]) < 128) ascii_ids_[t[0]] = lookup(t);
    for (size_t k = t.find(kSpaceEscape, 1); k != std::string::npos;
         k = t.find(kSpaceEscape, k + 1)) {
      if (k < kSpaceEscape.size() ||
          t.compare(k - kSpaceEscape.size(), kSpaceEscape.size(), kSpaceEscape) != 0) {
        inner_space_tokens_.emplace_back(t, k);
      }
    }
  }
  for (int32_t& id : {std::ref(bos_id_), std::ref(eos_id_), std::ref(unk_id_), std::ref(pad_id_),
                      std::ref(eot_id_)}) {
    if (id >= static_cast<int32_t>(n)) {
      throw Error(source + ": special token id " + std::to_string(id) + " >= vocabulary size " +
                  std::to_string(n));
    }
  }
  if (eot_id_ < 0) {
    eot_id_ = lookup("<turn|>");
    if (eot_id_ < 0) eot_id_ = lookup("<end_of_turn>");
  }
  stop_ids_.clear();
  for (const int32_t id :
       {eos_id_, eot_id_, lookup("<eos>"), lookup("<turn|>"), lookup("<end_of_turn>")}) {
    if (id >= 0 && !is_stop(id)) stop_ids_.push_back(id);
  }
}

// ---------------------------------------------------------------------------------------------
// Loading from GGUF metadata (llama.cpp's keys)

Tokenizer Tokenizer::from_gguf(const GgufFile& file) {
  return from_gguf_metadata([&file](std::string_view key) { return file.find(key); }, file.path());
}

Tokenizer Tokenizer::from_gguf_metadata(const MetadataLookup& find, const std::string& source) {
  const MetaReader meta(find, source);
  Tokenizer t;
  const std::string model = meta.string("tokenizer.ggml.model");
  if (model != "gemma4" && model != "llama") {
    meta.fail("tokenizer.ggml.model",
              "is '" + model + "'; supported: 'gemma4' (BPE with merges), 'llama' (SentencePiece)");
  }
  std::string arch;
  if (const GgufValue* a = meta.find("general.architecture");
      a && a->type == GgufValueType::STRING) {
    arch = std::get<std::string>(a->v);
  }

  {
    const char* key = "tokenizer.ggml.tokens";
    const auto& a = meta.array(
        key, meta.require(key), [](GgufValueType e) { return e == GgufValueType::STRING; },
        "strings");
    t.tokens_.reserve(a.items.size());
    for (const GgufValue& v : a.items) t.tokens_.push_back(std::get<std::string>(v.v));
  }
  const size_t n = t.tokens_.size();
  t.scores_.assign(n, 0.0f);
  if (const GgufValue* v = meta.find("tokenizer.ggml.scores")) {
    const auto& a = meta.array(
        "tokenizer.ggml.scores", *v,
        [](GgufValueType e) { return e == GgufValueType::FLOAT32 || e == GgufValueType::FLOAT64; },
        "floats");
    if (a.items.size() != n) {
      meta.fail("tokenizer.ggml.scores", "has " + std::to_string(a.items.size()) +
                                             " entries, expected " + std::to_string(n));
    }
    for (size_t i = 0; i < n; ++i)
      t.scores_[i] = static_cast<float>(std::get<double>(a.items[i].v));
  }
  t.types_.assign(n, TokenType::kNormal);
  if (const GgufValue* v = meta.find("tokenizer.ggml.token_type")) {
    const auto& a = meta.array("tokenizer.ggml.token_type", *v, is_int_type, "integers");
    if (a.items.size() != n) {
      meta.fail("tokenizer.ggml.token_type", "has " + std::to_string(a.items.size()) +
                                                 " entries, expected " + std::to_string(n));
    }
    for (size_t i = 0; i < n; ++i) {
      const int64_t ty = MetaReader::int_of(a.items[i]);
      if (ty < 0 || ty > 6) {
        meta.fail("tokenizer.ggml.token_type",
                  "entry " + std::to_string(i) + " is " + std::to_string(ty) + ", expected 0..6");
      }
      t.types_[i] = static_cast<TokenType>(ty);
    }
  }
  auto id_key = [&](const char* key) -> int32_t {
    const auto v = meta.int_opt(key);
    if (!v) return -1;
    if (*v < 0 || *v >= static_cast<int64_t>(n)) {
      meta.fail(key, "is " + std::to_string(*v) + ", outside the vocabulary of " +
                         std::to_string(n) + " tokens");
    }
    return static_cast<int32_t>(*v);
  };
  t.bos_id_ = id_key("tokenizer.ggml.bos_token_id");
  t.eos_id_ = id_key("tokenizer.ggml.eos_token_id");
  t.unk_id_ = id_key("tokenizer.ggml.unknown_token_id");
  t.pad_id_ = id_key("tokenizer.ggml.padding_token_id");
  t.eot_id_ = id_key("tokenizer.ggml.eot_token_id");

  const GgufValue* merges = meta.find("tokenizer.ggml.merges");
  const bool gemma4 = model == "gemma4" || (model == "llama" && arch.rfind("gemma4", 0) == 0);
  if (model == "gemma4" && !merges) {
    throw Error(source + ": tokenizer.ggml.model is 'gemma4' but tokenizer.ggml.merges is missing");
  }
  t.normalize_ = {{NormalizeOp::kReplace, " ", std::string(kSpaceEscape)}};
  t.pre_split_ = gemma4 ? PreSplit::kNewlineRuns : PreSplit::kNone;
  t.merge_mode_ = merges ? MergeMode::kRanks : MergeMode::kScores;
  // llama.cpp: SentencePiece models prefix a space unless told otherwise; gemma4 never does.
  t.add_space_prefix_ =
      gemma4 ? false : meta.bool_opt("tokenizer.ggml.add_space_prefix").value_or(true);
  t.add_bos_ = meta.bool_opt("tokenizer.ggml.add_bos_token").value_or(true);

  t.finish_init(source);
  if (merges) {
    const auto& a = meta.array(
        "tokenizer.ggml.merges", *merges,
        [](GgufValueType e) { return e == GgufValueType::STRING; }, "strings");
    t.merges_.reserve(a.items.size());
    t.merge_list_.reserve(a.items.size());
    for (size_t i = 0; i < a.items.size(); ++i) {
      const auto& m = std::get<std::string>(a.items[i].v);
      const size_t sp = m.find(' ', 1);  // a token may itself start with a space
      if (sp == std::string::npos) continue;
      const int32_t l = t.lookup(std::string_view(m).substr(0, sp));
      const int32_t r = t.lookup(std::string_view(m).substr(sp + 1));
      if (l >= 0 && r >= 0) t.add_merge(l, r, static_cast<int32_t>(i));
    }
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Loading from a Hugging Face tokenizer.json

Tokenizer Tokenizer::from_tokenizer_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open tokenizer.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return from_tokenizer_json_text(ss.str(), path);
}

Tokenizer Tokenizer::from_tokenizer_json_text(std::string_view text, const std::string& source) {
  using nlohmann::json;
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
  auto fail = [&](const std::string& what) -> void { throw Error(source + ": " + what); };
  try {
    const json& model = j.at("model");
    if (model.value("type", std::string()) != "BPE") {
      fail("model.type is '" + model.value("type", std::string("?")) +
           "', only BPE (Gemma's SentencePiece-derived BPE) is supported");
    }
    if (!model.value("byte_fallback", false)) fail("model.byte_fallback must be true (Gemma)");

    Tokenizer t;
    const json& vocab = model.at("vocab");
    int64_t n = 0;
    for (const auto& [k, v] : vocab.items()) n = std::max<int64_t>(n, v.get<int64_t>() + 1);
    t.tokens_.assign(n, std::string());
    std::vector<bool> seen(n, false);
    for (const auto& [k, v] : vocab.items()) {
      const auto id = v.get<int64_t>();
      if (id < 0) fail("model.vocab: token '" + k + "' has negative id");
      t.tokens_[id] = k;
      seen[id] = true;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!seen[i]) fail("model.vocab has no token with id " + std::to_string(i));
    }
    t.types_.assign(n, TokenType::kNormal);
    t.scores_.assign(n, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      if (parse_byte_token(t.tokens_[i]) >= 0) t.types_[i] = TokenType::kByte;
    }
    const std::string unk = model.value("unk_token", std::string());
    for (const json& a : j.value("added_tokens", json::array())) {
      const auto id = a.at("id").get<int64_t>();
      if (id < 0 || id >= n) continue;  // no embedding row for it: dropped (see header)
      t.tokens_[id] = a.at("content").get<std::string>();
      const bool special = a.value("special", false);
      t.types_[id] = !special               ? TokenType::kUserDefined
                     : t.tokens_[id] == unk ? TokenType::kUnknown
                                            : TokenType::kControl;
      if (special) t.scores_[id] = -1000.0f;  // as llama.cpp's converter writes them
    }
    t.ignore_merges_ = model.value("ignore_merges", false);

    // normalizer: Replace (literal string) / Prepend, possibly in a Sequence
    std::function<void(const json&)> add_normalizer = [&](const json& nj) {
      if (nj.is_null()) return;
      const std::string type = nj.value("type", std::string());
      if (type == "Sequence") {
        for (const json& sub : nj.at("normalizers")) add_normalizer(sub);
      } else if (type == "Replace" && nj.at("pattern").contains("String")) {
        t.normalize_.push_back({NormalizeOp::kReplace, nj.at("pattern").at("String"),
                                nj.at("content").get<std::string>()});
      } else if (type == "Prepend") {
        t.normalize_.push_back({NormalizeOp::kPrepend, "", nj.at("prepend").get<std::string>()});
      } else {
        fail("unsupported normalizer " + nj.dump().substr(0, 200));
      }
    };
    add_normalizer(j.value("normalizer", json()));

    // pre_tokenizer: Split on a literal string, possibly in a Sequence
    std::function<void(const json&)> add_pre = [&](const json& pj) {
      if (pj.is_null()) return;
      const std::string type = pj.value("type", std::string());
      if (type == "Sequence") {
        for (const json& sub : pj.at("pretokenizers")) add_pre(sub);
        return;
      }
      if (type != "Split" || !pj.at("pattern").contains("String") || pj.value("invert", false)) {
        fail("unsupported pre_tokenizer " + pj.dump().substr(0, 200));
      }
      const std::string behavior = pj.value("behavior", std::string());
      SplitOp op{pj.at("pattern").at("String"), SplitOp::kIsolated};
      if (behavior == "Removed") {
        op.behavior = SplitOp::kRemoved;
      } else if (behavior == "Isolated") {
        op.behavior = SplitOp::kIsolated;
      } else if (behavior == "MergedWithPrevious") {
        op.behavior = SplitOp::kMergedWithPrevious;
      } else if (behavior == "MergedWithNext") {
        op.behavior = SplitOp::kMergedWithNext;
      } else {
        fail("unsupported Split behavior '" + behavior + "'");
      }
      if (op.pattern.empty()) fail("pre_tokenizer Split with an empty pattern");
      t.split_.push_back(std::move(op));
    };
    add_pre(j.value("pre_tokenizer", json()));
    t.pre_split_ = PreSplit::kNone;
    t.merge_mode_ = MergeMode::kRanks;

    auto id_of = [&](const std::string& s) {
      for (int64_t i = 0; i < n; ++i) {
        if (t.tokens_[i] == s) return static_cast<int32_t>(i);
      }
      return -1;
    };
    // <bos>: the post-processor's leading special token, if any.
    t.add_bos_ = false;
    const json pp = j.value("post_processor", json());
    if (!pp.is_null() && pp.value("type", std::string()) == "TemplateProcessing" &&
        !pp.at("single").empty() && pp.at("single")[0].contains("SpecialToken")) {
      const std::string name = pp.at("single")[0].at("SpecialToken").at("id");
      t.bos_id_ = id_of(name);
      if (pp.contains("special_tokens") && pp["special_tokens"].contains(name)) {
        t.bos_id_ = pp["special_tokens"][name].at("ids")[0].get<int32_t>();
      }
      t.add_bos_ = t.bos_id_ >= 0;
    }
    if (t.bos_id_ < 0) t.bos_id_ = id_of("<bos>");
    t.eos_id_ = id_of("<eos>");
    t.pad_id_ = id_of("<pad>");
    t.unk_id_ = unk.empty() ? -1 : id_of(unk);

    t.finish_init(source);
    const json& merges = model.at("merges");
    t.merges_.reserve(merges.size());
    t.merge_list_.reserve(merges.size());
    int32_t rank = 0;
    for (const json& m : merges) {
      std::string a, b;
      if (m.is_array()) {
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      } else {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos) fail("merge '" + s + "' has no space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      }
      const int32_t l = t.lookup(a), r = t.lookup(b);
      if (l >= 0 && r >= 0) t.add_merge(l, r, rank);
      ++rank;
    }
    return t;
  } catch (const json::exception& e) {
    throw Error(source + ": unexpected tokenizer.json structure: " + e.what());
  }
}

// ---------------------------------------------------------------------------------------------
// Writing llama.cpp's GGUF keys

std::vector<GgufKV> Tokenizer::gguf_metadata() const {
  // The GGUF "gemma4" tokenizer escapes spaces and nothing else; a Split on " " is a no-op after
  // that. Anything else cannot be expressed with llama.cpp's keys.
  const bool escape_only = normalize_.size() == 1 && normalize_[0].kind == NormalizeOp::kReplace &&
                           normalize_[0].from == " " && normalize_[0].to == kSpaceEscape;
  const bool splits_ok =
      std::all_of(split_.begin(), split_.end(), [](const SplitOp& s) { return s.pattern == " "; });
  if (!escape_only || !splits_ok || ignore_merges_) {
    throw Error("tokenizer: this normalizer/pre-tokenizer cannot be written as GGUF metadata");
  }
  const size_t n = tokens_.size();
  std::vector<GgufValue> toks, scores, types;
  toks.reserve(n);
  scores.reserve(n);
  types.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    toks.push_back(gv_string(tokens_[i]));
    scores.push_back(GgufValue{GgufValueType::FLOAT32, static_cast<double>(scores_[i])});
    types.push_back(GgufValue{GgufValueType::INT32, int64_t{static_cast<int32_t>(types_[i])}});
  }
  std::vector<GgufKV> kv;
  const bool ranks = merge_mode_ == MergeMode::kRanks;
  kv.push_back({"tokenizer.ggml.model", gv_string(ranks ? "gemma4" : "llama")});
  kv.push_back({"tokenizer.ggml.tokens", gv_array(GgufValueType::STRING, std::move(toks))});
  kv.push_back({"tokenizer.ggml.scores", gv_array(GgufValueType::FLOAT32, std::move(scores))});
  kv.push_back({"tokenizer.ggml.token_type", gv_array(GgufValueType::INT32, std::move(types))});
  if (ranks) {
    std::vector<GgufValue> merges;
    merges.reserve(merge_list_.size());
    for (const auto& [l, r] : merge_list_)
      merges.push_back(gv_string(tokens_[l] + " " + tokens_[r]));
    kv.push_back({"tokenizer.ggml.merges", gv_array(GgufValueType::STRING, std::move(merges))});
  }
  const std::pair<const char*, int32_t> ids[] = {
      {"tokenizer.ggml.bos_token_id", bos_id_},     {"tokenizer.ggml.eos_token_id", eos_id_},
      {"tokenizer.ggml.unknown_token_id", unk_id_}, {"tokenizer.ggml.padding_token_id", pad_id_},
      {"tokenizer.ggml.eot_token_id", eot_id_},
  };
  for (const auto& [key, id] : ids) {
    if (id >= 0) kv.push_back({key, gv_u32(static_cast<uint32_t>(id))});
  }
  kv.push_back({"tokenizer.ggml.add_bos_token", gv_bool(add_bos_)});
  kv.push_back({"tokenizer.ggml.add_eos_token", gv_bool(false)});
  kv.push_back({"tokenizer.ggml.add_space_prefix", gv_bool(add_space_prefix_)});
  return kv;
}

void Tokenizer::write_gguf_metadata(GgufWriter& writer) const {
  for (GgufKV& kv : gguf_metadata()) writer.set(std::move(kv.key), std::move(kv.value));
}

// ---------------------------------------------------------------------------------------------
// Encoding

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
  size_t chunk = 0, pos = 0;
  while (pos < text.size()) {
    const auto [id, len] = special_->match(text, pos, parse_special, types_);
    if (len == 0) {
      ++pos;
      continue;
    }
    encode_chunk(text.substr(chunk, pos - chunk), chunk == 0, out);
    out.push_back(id);
    pos += len;
    chunk = pos;
  }
  encode_chunk(text.substr(chunk), chunk == 0, out);
  return out;
}

// Text between special tokens: normalize, pre-split, BPE each piece.
void Tokenizer::encode_chunk(std::string_view raw, bool at_text_start,
                             std::vector<int32_t>& out) const {
  if (raw.empty()) return;
  std::string s(raw);
  for (const NormalizeOp& op : normalize_) {
    s = op.kind == NormalizeOp::kReplace ? replace_all(s, op.from, op.to) : op.to + s;
  }
  if (add_space_prefix_ && at_text_start) s.insert(0, kSpaceEscape);
  if (s.empty()) return;

  // Hugging Face Split pre-tokenizers (literal patterns), as [begin, end) ranges of s.
  std::vector<std::pair<size_t, size_t>> pieces{{0, s.size()}};
  for (const SplitOp& op : split_) {
    std::vector<std::pair<size_t, size_t>> next;
    for (const auto& [b, e] : pieces) {
      size_t start = b, pos = b;
      while (true) {
        const size_t hit = std::string_view(s).substr(0, e).find(op.pattern, pos);
        if (hit == std::string_view::npos) break;
        const size_t end = hit + op.pattern.size();
        switch (op.behavior) {
          case SplitOp::kRemoved:
            if (hit > start) next.emplace_back(start, hit);
            start = end;
            break;
          case SplitOp::kIsolated:
            if (hit > start) next.emplace_back(start, hit);
            next.emplace_back(hit, end);
            start = end;
            break;
          case SplitOp::kMergedWithPrevious:
            next.emplace_back(start, end);
            start = end;
            break;
          case SplitOp::kMergedWithNext:
            if (hit > start) next.emplace_back(start, hit);
            start = hit;
            break;
        }
        pos = end;
      }
      if (e > start) next.emplace_back(start, e);
    }
    pieces = std::move(next);
  }

  for (const auto& [b, e] : pieces) {
    const std::string_view piece = std::string_view(s).substr(b, e - b);
    if (pre_split_ == PreSplit::kNone) {
      encode_piece(piece, out);
      continue;
    }
    // llama.cpp's gemma4 pre-tokenizer: runs of '\n' and runs of everything else.
    size_t i = 0;
    while (i < piece.size()) {
      const bool nl = piece[i] == '\n';
      size_t j = i + 1;
      while (j < piece.size() && (piece[j] == '\n') == nl) ++j;
      encode_piece(piece.substr(i, j - i), out);
      i = j;
    }
  }
}

void Tokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  // A run of newlines that is itself a token stays whole (llama.cpp's gemma4 rule); with
  // ignore_merges any piece that is a token does.
  if ((pre_split_ == PreSplit::kNewlineRuns && piece.find_first_not_of('\n') == piece.npos) ||
      ignore_merges_) {
    const int32_t id = lookup(piece);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  bpe(piece, out);
}

void Tokenizer::byte_fallback(std::string_view bytes, std::vector<int32_t>& out) const {
  for (const char c : bytes) {
    if (byte_ids_[static_cast<uint8_t>(c)] < 0) {  // incomplete byte vocabulary: one <unk>
      if (unk_id_ >= 0) out.push_back(unk_id_);
      return;
    }
  }
  for (const char c : bytes) out.push_back(byte_ids_[static_cast<uint8_t>(c)]);
}

// True when no token can contain both piece[pos - 1] and piece[pos] (pos starts a '▁').
bool Tokenizer::no_token_spans(std::string_view piece, size_t pos) const {
  for (const auto& [tok, k] : inner_space_tokens_) {
    if (pos >= k && piece.compare(pos - k, tok.size(), tok) == 0) return false;
  }
  return true;
}

// Every intermediate symbol of BPE is a token, so where no token can span a position, merges on
// either side never interact: cut long pieces there ("x▁y" -> "x", "▁y", except inside a run of
// '▁' or where a token like ">▁</" could cover the cut). Keeps the merge queues small.
void Tokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  const size_t w = kSpaceEscape.size();
  size_t start = 0;
  for (size_t i = piece.find(kSpaceEscape, 1); i != std::string_view::npos;
       i = piece.find(kSpaceEscape, i + w)) {
    if (i >= w && piece.compare(i - w, w, kSpaceEscape) == 0) continue;  // inside a run
    if (!no_token_spans(piece, i)) continue;
    bpe_segment(piece.substr(start, i - start), out);
    start = i;
  }
  bpe_segment(piece.substr(start), out);
}

// Merges adjacent symbols, best merge first (lowest rank, or highest score of the merged token),
// leftmost first on ties. Symbols form a linked list; stale queue entries are skipped on pop.
void Tokenizer::bpe_segment(std::string_view piece, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;  // -1: not a token
    int32_t prev, next;
    uint32_t start, len;  // bytes of piece; len 0 once merged into its left neighbour
  };
  std::vector<Symbol> sym;
  sym.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    const auto b = static_cast<uint8_t>(piece[i]);
    const size_t len = std::min(utf8_len(b), piece.size() - i);
    const int32_t id = b < 128 ? ascii_ids_[b] : lookup(piece.substr(i, len));
    const auto idx = static_cast<int32_t>(sym.size());
    sym.push_back({id, idx - 1, idx + 1, static_cast<uint32_t>(i), static_cast<uint32_t>(len)});
    i += len;
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  struct Candidate {
    float key;  // smaller is better
    int32_t left, right, left_id, right_id, result;
    uint32_t len;
  };
  struct Worse {
    bool operator()(const Candidate& a, const Candidate& b) const {
      return a.key > b.key || (a.key == b.key && a.left > b.left);
    }
  };
  std::vector<Candidate> storage;
  storage.reserve(sym.size() * 2);
  std::priority_queue<Candidate, std::vector<Candidate>, Worse> queue(Worse{}, std::move(storage));

  auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Symbol& a = sym[l];
    const Symbol& b = sym[r];
    float key;
    int32_t result;
    if (merge_mode_ == MergeMode::kRanks) {
      if (a.id < 0 || b.id < 0) return;
      const auto it = merges_.find((static_cast<uint64_t>(static_cast<uint32_t>(a.id)) << 32) |
                                   static_cast<uint32_t>(b.id));
      if (it == merges_.end()) return;
      key = static_cast<float>(it->second.rank);
      result = it->second.result;
    } else {
      result = lookup(piece.substr(a.start, a.len + b.len));
      if (result < 0) return;
      key = -scores_[result];
    }
    queue.push({key, l, r, a.id, b.id, result, a.len + b.len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); ++i) consider(i - 1, i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& a = sym[c.left];
    Symbol& b = sym[c.right];
    if (a.len == 0 || b.len == 0 || a.next != c.right || a.id != c.left_id || b.id != c.right_id ||
        a.len + b.len != c.len) {
      continue;  // stale: one side changed since this candidate was queued
    }
    a.id = c.result;
    a.len += b.len;
    b.len = 0;
    a.next = b.next;
    if (b.next >= 0) sym[b.next].prev = c.left;
    consider(a.prev, c.left);
    consider(c.left, a.next);
  }

  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    if (sym[i].id >= 0) {
      out.push_back(sym[i].id);
    } else {
      byte_fallback(piece.substr(sym[i].start, sym[i].len), out);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

void Tokenizer::append_token_bytes(int32_t id, bool render_special, std::string& out) const {
  const std::string& text = token_text(id);
  switch (types_[id]) {
    case TokenType::kByte:
      out.push_back(static_cast<char>(byte_value_[id]));
      return;
    case TokenType::kControl:
    case TokenType::kUnknown:
      if (render_special) out.append(text);
      return;
    default:
      break;
  }
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(kSpaceEscape, pos);
    if (hit == std::string::npos) break;
    out.append(text, pos, hit - pos);
    out.push_back(' ');
    pos = hit + kSpaceEscape.size();
  }
  out.append(text, pos, std::string::npos);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  for (const int32_t id : ids) append_token_bytes(id, render_special, out);
  return out;
}

std::string StreamingDecoder::push(int32_t id) {
  tok_.append_token_bytes(id, render_special_, pending_);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const int n = utf8_valid_prefix(std::string_view(pending_).substr(i));
    if (n < 0) break;  // incomplete: wait for the next token
    if (n == 0) {
      out.append(kReplacementChar);
      ++i;
    } else {
      out.append(pending_, i, n);
      i += n;
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamingDecoder::flush() {
  std::string out = pending_.empty() ? std::string() : std::string(kReplacementChar);
  pending_.clear();
  return out;
}

}  // namespace qgemma
