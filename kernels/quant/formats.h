// Tensor element formats and their block layouts. Byte layouts and type ids are llama.cpp's
// (ggml-common.h / ggml.h), so GGUF files written by llama.cpp's tools load as they are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace qgemma {

// Values are GGML type ids as stored in GGUF tensor infos.
enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  // qgemma-internal repacked layouts (never written to GGUF files) start at 1000.
  Q4_0x8 = 1000,  // 8 rows of Q4_0 interleaved per block column (see kernels/matmul)
  Q8_0x8 = 1001,
  Q4_Kx8 = 1002,  // 8 rows of Q4_K interleaved per 256-block column
  Q6_Kx8 = 1003,  // 8 rows of Q6_K interleaved per 256-block column
  Q5_Kx8 = 1004,  // 8 rows of Q5_K interleaved per 256-block column
};

constexpr int64_t QK4_0 = 32;
constexpr int64_t QK8_0 = 32;
constexpr int64_t QK_K = 256;
constexpr int64_t K_SCALE_SIZE = 12;

using f16_bits = uint16_t;   // IEEE binary16, stored as raw bits
using bf16_bits = uint16_t;  // bfloat16, stored as raw bits

// x[j] = (nibble - 8) * d; low nibbles hold elements 0..15, high nibbles 16..31.
struct block_q4_0 {
  f16_bits d;
  uint8_t qs[QK4_0 / 2];
};
static_assert(sizeof(block_q4_0) == 18);

struct block_q8_0 {
  f16_bits d;
  int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 34);

// 8 sub-blocks of 32; 6-bit scales and mins packed in `scales`; x = d*sc*q - dmin*m.
struct block_q4_K {
  f16_bits d;
  f16_bits dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q4_K) == 144);

// Q4_K plus a fifth bit per element: sub-block j's codes take bit j of qh[l] (l = 0..31) as bit 4,
// so codes are 0..31; x = d*sc*q - dmin*m with the same 6-bit scale/min packing as Q4_K.
struct block_q5_K {
  f16_bits d;
  f16_bits dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q5_K) == 176);

// 16 sub-blocks of 16; 6-bit quants (low 4 in ql, high 2 in qh), int8 scales; x = d*sc*(q-32).
struct block_q6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  f16_bits d;
};
static_assert(sizeof(block_q6_K) == 210);

// Activation format for K-quant dot products: float scale, int8 quants, sums of groups of 16.
struct block_q8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};
static_assert(sizeof(block_q8_K) == 292);

struct TypeTraits {
  std::string_view name;  // llama.cpp's name: "f32", "q4_0", "q4_K", ...
  int64_t block_size;     // elements per block (1 for plain types)
  size_t type_size;       // bytes per block
  bool supported;         // qgemma can dequantize it
};

// Traits of a type id; returns {"unknown", 0, 0, false} for ids qgemma does not know.
const TypeTraits& type_traits(TensorType t);
// True for the GGML type ids listed above (the ids a GGUF file may hold; not the repacked ones).
bool is_known_type(uint32_t id);
// Bytes of one row of n elements; n must be a multiple of the block size (checked by callers).
size_t row_size(TensorType t, int64_t n);

}  // namespace qgemma
