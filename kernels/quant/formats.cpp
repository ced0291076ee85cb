// Type traits table: names, block sizes and bytes per block exactly as llama.cpp's ggml type
// table, so row sizes computed here match the tensor data offsets in llama.cpp's GGUF files.
#include "kernels/quant/formats.h"

#include <array>

namespace qgemma {
namespace {

struct Entry {
  TensorType type;
  TypeTraits traits;
};

// Sizes of the formats qgemma does not dequantize, from ggml-common.h:
//   q4_1: f16 d, f16 m, 16 B quants = 20       q5_0: f16 d, 4 B high bits, 16 B = 22
//   q5_1: d, m, 4 B high bits, 16 B = 24       q8_1: f16 d, f16 s, 32 B = 36
//   q2_K: 16 B scales, 64 B quants, d, dmin = 84
//   q3_K: 32 B hmask, 64 B quants, 12 B scales, d = 110
constexpr std::array<Entry, 25> kTable = {{
    {TensorType::F32, {"f32", 1, 4, true}},
    {TensorType::F16, {"f16", 1, 2, true}},
    {TensorType::Q4_0, {"q4_0", QK4_0, sizeof(block_q4_0), true}},
    {TensorType::Q4_1, {"q4_1", 32, 20, false}},
    {TensorType::Q5_0, {"q5_0", 32, 22, false}},
    {TensorType::Q5_1, {"q5_1", 32, 24, false}},
    {TensorType::Q8_0, {"q8_0", QK8_0, sizeof(block_q8_0), true}},
    {TensorType::Q8_1, {"q8_1", 32, 36, false}},
    {TensorType::Q2_K, {"q2_K", QK_K, 84, false}},
    {TensorType::Q3_K, {"q3_K", QK_K, 110, false}},
    {TensorType::Q4_K, {"q4_K", QK_K, sizeof(block_q4_K), true}},
    {TensorType::Q5_K, {"q5_K", QK_K, sizeof(block_q5_K), true}},
    {TensorType::Q6_K, {"q6_K", QK_K, sizeof(block_q6_K), true}},
    {TensorType::Q8_K, {"q8_K", QK_K, sizeof(block_q8_K), true}},
    {TensorType::I8, {"i8", 1, 1, false}},
    {TensorType::I16, {"i16", 1, 2, false}},
    {TensorType::I32, {"i32", 1, 4, false}},
    {TensorType::I64, {"i64", 1, 8, false}},
    {TensorType::F64, {"f64", 1, 8, false}},
    {TensorType::BF16, {"bf16", 1, 2, true}},
    // Repacked layouts (kernels/matmul): one block column of 8 interleaved rows.
    {TensorType::Q4_0x8, {"q4_0x8", QK4_0, 8 * sizeof(block_q4_0), false}},
    {TensorType::Q8_0x8, {"q8_0x8", QK8_0, 8 * sizeof(block_q8_0), false}},
    {TensorType::Q4_Kx8, {"q4_Kx8", QK_K, 8 * sizeof(block_q4_K), false}},
    {TensorType::Q6_Kx8, {"q6_Kx8", QK_K, 8 * sizeof(block_q6_K), false}},
    {TensorType::Q5_Kx8, {"q5_Kx8", QK_K, 8 * sizeof(block_q5_K), false}},
}};

constexpr TypeTraits kUnknown = {"unknown", 0, 0, false};

}  // namespace

const TypeTraits& type_traits(TensorType t) {
  for (const Entry& e : kTable) {
    if (e.type == t) return e.traits;
  }
  return kUnknown;
}

bool is_known_type(uint32_t id) {
  // Only GGML ids: the repacked layouts (>= 1000) never appear in files.
  return id < static_cast<uint32_t>(TensorType::Q4_0x8) &&
         type_traits(static_cast<TensorType>(id)).block_size != 0;
}

size_t row_size(TensorType t, int64_t n) {
  const TypeTraits& tr = type_traits(t);
  if (tr.block_size == 0) return 0;
  return static_cast<size_t>(n / tr.block_size) * tr.type_size;
}

}  // namespace qgemma
