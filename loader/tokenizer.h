// Gemma's tokenizer: SentencePiece-derived BPE over Unicode characters with byte fallback
// (<0xNN> tokens), spaces escaped to U+2581 '▁', special and user-defined tokens kept whole.
//
// Two sources give the same tokenizer (and the same ids):
//   - GGUF metadata with llama.cpp's keys (tokenizer.ggml.model "gemma4", tokens, scores,
//     token_type, merges, bos/eos/... ids); "llama" (SentencePiece scores, no merges) also loads.
//   - a Hugging Face tokenizer.json (model type BPE with byte_fallback).
// gguf_metadata() turns a loaded tokenizer back into llama.cpp's keys, so a tokenizer.json can be
// embedded into a GGUF file (qgemma synth) and loads back identically.
//
// Encoding (see docs/tokenizer.md): split out special tokens (leftmost-longest; user-defined
// tokens always, control tokens when parse_special), escape spaces, split into runs of newlines
// and of everything else, then merge adjacent symbols by merge rank (leftmost first on ties) with
// a priority queue: O(n log n) in the length of a piece, never quadratic.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loader/gguf.h"

namespace qgemma {

// llama.cpp's token types (gguf tokenizer.ggml.token_type values).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // <bos>, <eos>, <|turn>, ...: matched in text only with parse_special
  kUserDefined = 4,  // always matched whole in text ("\n\n", "<table>", ...)
  kUnused = 5,
  kByte = 6,  // <0x00> .. <0xFF>
};

class Tokenizer {
 public:
  // Looks a metadata key up; nullptr when absent.
  using MetadataLookup = std::function<const GgufValue*(std::string_view key)>;

  static Tokenizer from_gguf(const GgufFile& file);
  // `source` names the origin in error messages (a file name).
  static Tokenizer from_gguf_metadata(const MetadataLookup& find, const std::string& source);
  // A Hugging Face tokenizer.json. Added tokens whose id is >= the model's vocabulary size
  // (Gemma 3's <image_soft_token> 262144) are dropped: the model has no embedding row for them.
  static Tokenizer from_tokenizer_json(const std::string& path);
  static Tokenizer from_tokenizer_json_text(std::string_view json, const std::string& source);

  // llama.cpp's tokenizer.ggml.* keys describing this tokenizer (model "gemma4").
  std::vector<GgufKV> gguf_metadata() const;
  void write_gguf_metadata(GgufWriter& writer) const;

  // Text -> ids. add_bos prepends <bos> (when the vocabulary has one). parse_special: control
  // tokens written in the text ("<bos>", "<|turn>") become their ids; otherwise they are
  // tokenized as plain text. User-defined tokens are always kept whole.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = false,
                              bool parse_special = true) const;

  // Ids -> bytes. Byte tokens become their byte, '▁' becomes ' '. Control tokens are rendered as
  // their text only with render_special (otherwise they are dropped).
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;
  void append_token_bytes(int32_t id, bool render_special, std::string& out) const;

  int32_t n_tokens() const { return static_cast<int32_t>(tokens_.size()); }
  const std::string& token_text(int32_t id) const;  // the vocabulary string ("▁the", "<0x0A>")
  TokenType token_type(int32_t id) const;
  float token_score(int32_t id) const;
  std::optional<int32_t> find_token(std::string_view text) const;

  int32_t bos_id() const { return bos_id_; }  // -1 when absent
  int32_t eos_id() const { return eos_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t pad_id() const { return pad_id_; }
  int32_t eot_id() const { return eot_id_; }  // end of turn: <turn|> (Gemma 4), <end_of_turn>
  bool add_bos() const { return add_bos_; }   // whether prompts should start with <bos>
  // Tokens that end generation: eos, the end-of-turn token and the <eos>/<turn|>/<end_of_turn>
  // tokens when the vocabulary has them.
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  bool is_stop(int32_t id) const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  Tokenizer();
  struct SpecialTrie;
  enum class PreSplit { kNone, kNewlineRuns };
  enum class MergeMode { kRanks, kScores };
  struct NormalizeOp {
    enum Kind { kReplace, kPrepend } kind;
    std::string from, to;
  };
  struct SplitOp {  // Hugging Face Split pre-tokenizer on a literal string
    std::string pattern;
    enum Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext } behavior;
  };

  void finish_init(const std::string& source);
  void add_merge(int32_t left, int32_t right, int32_t rank);
  int32_t lookup(std::string_view s) const;  // -1 when absent
  void encode_chunk(std::string_view raw, bool at_text_start, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe_segment(std::string_view piece, std::vector<int32_t>& out) const;
  bool no_token_spans(std::string_view piece, size_t pos) const;
  void byte_fallback(std::string_view bytes, std::vector<int32_t>& out) const;

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct MergeInfo {
    int32_t rank;
    int32_t result;
  };

  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> token_to_id_;
  std::unordered_map<uint64_t, MergeInfo> merges_;       // (left id << 32 | right id) -> merge
  std::vector<std::pair<int32_t, int32_t>> merge_list_;  // by rank, for gguf_metadata()
  std::array<int32_t, 256> byte_ids_{};                  // byte -> <0xNN> id, -1 when absent
  std::array<int32_t, 128> ascii_ids_{};                 // single ASCII char -> id, -1 absent
  std::vector<int16_t> byte_value_;                      // id -> byte of a byte token, or -1
  std::unique_ptr<SpecialTrie> special_;
  // Tokens with a '▁' right after another character (Gemma 3: only ">▁</"), with the byte offset
  // of that '▁'. Elsewhere a piece can be cut before a '▁' without changing the result.
  std::vector<std::pair<std::string, size_t>> inner_space_tokens_;

  MergeMode merge_mode_ = MergeMode::kRanks;
  PreSplit pre_split_ = PreSplit::kNewlineRuns;
  std::vector<NormalizeOp> normalize_;  // applied to each text chunk between special tokens
  std::vector<SplitOp> split_;
  bool add_space_prefix_ = false;
  bool ignore_merges_ = false;

  int32_t bos_id_ = -1, eos_id_ = -1, unk_id_ = -1, pad_id_ = -1, eot_id_ = -1;
  bool add_bos_ = true;
  std::vector<int32_t> stop_ids_;
};

// Turns a stream of token ids into text that is always valid UTF-8: bytes of a character split
// across byte-fallback tokens are held back until the character is complete. Invalid sequences
// become U+FFFD.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tok, bool render_special = false)
      : tok_(tok), render_special_(render_special) {}
  // The text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Whatever is still held back (an incomplete sequence at the end), as U+FFFD.
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool render_special_;
  std::string pending_;
};

}  // namespace qgemma
