// GGUF v2/v3: a memory-mapped reader (no copies of tensor data) and a streaming writer.
// Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (little-endian).
// Every size and offset read from a file is overflow-checked; a malformed file throws
// qgemma::Error naming the file and what is wrong. Never an over-read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kernels/quant/formats.h"
#include "loader/error.h"

namespace qgemma {

enum class GgufValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
std::string_view gguf_type_name(GgufValueType t);

// One metadata value. Arrays hold their element type and the elements (nested arrays allowed).
struct GgufValue {
  struct Array {
    GgufValueType elem_type;
    std::vector<GgufValue> items;
  };
  GgufValueType type;
  // Integers widen to uint64_t (unsigned types) or int64_t (signed types), floats to double.
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> v;

  static GgufValue u32(uint32_t x);
  static GgufValue i32(int32_t x);
  static GgufValue u64(uint64_t x);
  static GgufValue f32(float x);
  static GgufValue boolean(bool x);
  static GgufValue str(std::string s);
  static GgufValue array(GgufValueType elem_type, std::vector<GgufValue> items);
  static GgufValue str_array(const std::vector<std::string>& xs);
  static GgufValue f32_array(const std::vector<float>& xs);
  static GgufValue i32_array(const std::vector<int32_t>& xs);
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (row) dimension
  TensorType type;
  uint64_t offset;  // from the start of the data section
  uint64_t nbytes;
  const uint8_t* data;  // points into the mapping
  int64_t n_elements() const;
};

class GgufFile {
 public:
  // Maps and parses the header; throws Error on anything malformed.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses a GGUF image already in memory (used by the fuzzer and tests). `name` stands for the
  // file in error messages; `bytes` must outlive the returned object (tensor data points into it).
  static std::unique_ptr<GgufFile> parse(std::string name, std::span<const uint8_t> bytes);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const;
  uint32_t version() const;
  uint64_t alignment() const;
  uint64_t file_size() const;
  uint64_t data_offset() const;  // where the tensor data section starts

  const std::vector<GgufKV>& metadata() const;
  const GgufValue* find(std::string_view key) const;  // nullptr if absent
  bool has(std::string_view key) const;
  const GgufValue& require(std::string_view key) const;  // throws "... is missing"

  // Typed getters: throw Error "<file>: metadata key '<key>': expected <T>, found <type>" or
  // "... is missing". Integer getters accept any integer type whose value fits.
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  uint32_t get_u32(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  std::vector<bool> get_bool_array(std::string_view key) const;
  // An integer key that may be a scalar or a per-layer array (llama.cpp writes both forms).
  std::vector<int64_t> get_int_or_array(std::string_view key, size_t n) const;
  std::optional<int64_t> get_int_opt(std::string_view key) const;
  std::optional<float> get_f32_opt(std::string_view key) const;

  const std::vector<GgufTensor>& tensors() const;
  const GgufTensor* find_tensor(std::string_view name) const;  // nullptr if absent

 private:
  GgufFile();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Streams a GGUF v3 file: metadata and tensor infos first, then each tensor's bytes produced by
// its fill callback into a buffer of exactly nbytes, so multi-GB files never sit in memory.
class GgufWriter {
 public:
  explicit GgufWriter(uint64_t alignment = 32);
  void set(std::string key, GgufValue value);  // replaces an existing key
  void add_tensor(std::string name, TensorType type, std::vector<int64_t> shape,
                  std::function<void(std::span<uint8_t>)> fill);
  void add_tensor(std::string name, TensorType type, std::vector<int64_t> shape,
                  std::span<const uint8_t> bytes);  // copies the bytes
  // Writes to `path` (via a temporary file renamed at the end). Throws Error on I/O failure.
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
    std::function<void(std::span<uint8_t>)> fill;
  };
  uint64_t alignment_;
  std::vector<GgufKV> kvs_;
  std::vector<Pending> tensors_;
};

}  // namespace qgemma
