// Matrix multiplication of a weight matrix (any supported format) by activation rows:
//
//   Y[r][n] = sum_k W[n][k] * X[r][k]      r in [0, R), n in [n0, n1), k in [0, K)
//
// W: N rows of K elements in the weight type `wtype`, ggml layout: row n starts at
//    w + n * row_size(wtype, K) bytes. Repacked types (Q4_0x8, Q8_0x8, Q4_Kx8, Q5_Kx8,
//    Q6_Kx8) store groups of 8 rows: group g (rows 8g..8g+7) starts at
//    w + g * row_size(wtype, K) (row_size of a repacked type is the size of one group of 8
//    rows); for them N, n0 and n1 must be multiples of 8.
// X: R rows already converted to the activation format vec_dot_type(wtype) (Q8_0 for
//    Q4_0/Q8_0/Q4_0x8/Q8_0x8, Q8_K for Q4_K/Q5_K/Q6_K (+x8), F32 for F32/F16/BF16); row r
//    starts at x + r * ldx bytes (ldx >= row_size(vec_dot_type(wtype), K)).
// Y: R rows of floats, row r at y + r * ldy; only columns [n0, n1) are written (each output is
//    assigned, not accumulated). The caller splits [0, N) across threads.
// K must be a multiple of the weight type's block size (32 for Q4_0/Q8_0, 256 for K-quants,
// 1 for float types; the Q8_0 activation of a float type does not apply).
//
// Kernel contract: pure functions, no allocation, no threads. Every weight type has a `ref`
// variant (the ground truth for tests); ISA variants are named
// <gemv|gemm>_<weights>_<acts>_<isa>, e.g. gemv_q4_0_q8_0_avx512, and live in their own
// translation units (matmul_variants.h lists them). GEMV variants are tuned for R <= 8 (decode,
// speculative verification: each weight byte is read once for all rows); GEMM variants tile R
// and N for prefill. Both are correct for any R.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu.h"
#include "kernels/quant/formats.h"

namespace qgemma {

// Arguments shared by every thread of one matmul; each thread passes its own [n0, n1).
struct MatmulArgs {
  const void* w = nullptr;  // weights, row (or 8-row group) 0
  const void* x = nullptr;  // activations in vec_dot_type(wtype), row 0
  size_t ldx = 0;           // bytes between activation rows
  float* y = nullptr;       // output, row 0
  int64_t ldy = 0;          // floats between output rows
  int64_t K = 0;            // reduction length (elements per weight / activation row)
  int64_t R = 0;            // activation rows
};

// One kernel variant: computes Y[r][n] for all r in [0, R) and n in [n0, n1).
using MatmulFn = void (*)(const MatmulArgs& a, int64_t n0, int64_t n1);

// GEMV is used for R <= kGemvMaxRows, GEMM above.
constexpr int64_t kGemvMaxRows = 8;

// The activation format a weight type's dot products consume; TensorType::Q8_0 for
// Q4_0/Q8_0 (+x8), Q8_K for Q4_K/Q5_K/Q6_K (+x8), F32 for F32/F16/BF16. Returns F32 (with
// matmul_supported() false) for types without a matmul.
TensorType vec_dot_type(TensorType wtype);
bool matmul_supported(TensorType wtype);
// Rows of N that a thread's [n0, n1) boundaries must be multiples of (8 for repacked types,
// else 1). For the repacked types, multiples of 32 keep the AVX-512 kernels' tiles full.
int64_t matmul_row_granularity(TensorType wtype);

// The variants of one weight type for one ISA; nullptr where there is none (the dispatcher
// then falls back to a lower ISA, finally to ref).
struct MatmulKernels {
  MatmulFn gemv = nullptr;
  MatmulFn gemm = nullptr;
};
// The kernels for `wtype` at exactly `isa` (entries may be null). Tests and benchmarks use it to
// call a specific variant.
MatmulKernels matmul_kernels(TensorType wtype, Isa isa);
// The best available kernel for `wtype`, R rows, at ISA `isa` or below; nullptr when
// !matmul_supported(wtype). Pick once per node and call it from every thread.
MatmulFn matmul_pick(TensorType wtype, int64_t R, Isa isa);

// Computes columns [n0, n1) with the best kernel for active_isa() (gemv for R <= 8, else gemm).
void matmul(TensorType wtype, const MatmulArgs& a, int64_t n0, int64_t n1);
// Scalar reference for every supported weight type (same semantics, same arguments).
// matmul() and matmul_ref() require matmul_supported(wtype).
void matmul_ref(TensorType wtype, const MatmulArgs& a, int64_t n0, int64_t n1);

// ---- repacked layouts -------------------------------------------------------------------
// Q4_0x8: for each group of 8 rows and each block column b, one block_q4_0x8 holding block b of
// the 8 rows, interleaved in 4-byte chunks so that one 32-byte load gives the same 4 bytes of all
// 8 rows: d[j] = row j's scale; qs[32 c + 4 j + t] = row j's qs[4 c + t] (c = 0..3, t = 0..3;
// Q4_0 nibble order: low nibble of qs[i] = element i, high nibble = element i + 16).
// Blocks of a group are consecutive (group bytes = 8 * row_size(Q4_0, K)).
struct block_q4_0x8 {
  f16_bits d[8];
  uint8_t qs[8 * QK4_0 / 2];
};
static_assert(sizeof(block_q4_0x8) == 8 * sizeof(block_q4_0));

// Q8_0x8: same idea with 8 chunks: qs[32 c + 4 j + t] = row j's qs[4 c + t] (c = 0..7).
struct block_q8_0x8 {
  f16_bits d[8];
  int8_t qs[8 * QK8_0];
};
static_assert(sizeof(block_q8_0x8) == 8 * sizeof(block_q8_0));

// Byte offset in an x8 block's qs of row j's qs[i].
constexpr int x8_qs_offset(int j, int i) { return 32 * (i / 4) + 4 * j + i % 4; }

// Q4_Kx8: block b of 8 Q4_K rows (1152 bytes, = 8 plain blocks). qs as Q4_0x8:
// qs[x8_qs_offset(j, i)] = row j's qs[i] (i < 128), so one 64-byte load holds 8 bytes of each row.
// The 6-bit scales and mins, unpacked from each row's 12 bytes and re-packed into 96 bytes:
//   scales[8 s + j]:  row j's scale of sub-block s (bits 0..5) | bits 4..5 of min #(8 s + j) << 6
//   mins[i]:          bits 0..3 of min #i (low nibble) and of min #(i + 32) (high nibble)
// where min #q4_kx8_min_index(j, s) is row j's min of sub-block s (the order the AVX-512 kernel
// pairs them in). Layout helpers: kernels/matmul/kquant.h.
struct block_q4_Kx8 {
  f16_bits d[8];
  f16_bits dmin[8];
  uint8_t scales[64];
  uint8_t mins[32];
  uint8_t qs[8 * QK_K / 2];
};
static_assert(sizeof(block_q4_Kx8) == 8 * sizeof(block_q4_K));
constexpr int q4_kx8_min_index(int j, int s) { return 16 * (s / 2) + 2 * j + s % 2; }

// Q6_Kx8: block b of 8 Q6_K rows (1680 bytes). ql and qh interleaved like qs above:
// ql[x8_qs_offset(j, i)] = row j's ql[i] (i < 128), qh[x8_qs_offset(j, i)] = row j's qh[i]
// (i < 64); scales[q6_kx8_scale_index(j, s)] = row j's scale of sub-block s (s < 16): sub-blocks
// 2p and 2p + 1 of a row side by side (one int16 pair once sign-extended).
struct block_q6_Kx8 {
  f16_bits d[8];
  int8_t scales[8 * QK_K / 16];
  uint8_t ql[8 * QK_K / 2];
  uint8_t qh[8 * QK_K / 4];
};
static_assert(sizeof(block_q6_Kx8) == 8 * sizeof(block_q6_K));
constexpr int q6_kx8_scale_index(int j, int s) { return 16 * (s / 2) + 2 * j + s % 2; }

// Q5_Kx8: block b of 8 Q5_K rows (1408 bytes). d, dmin, scales, mins and qs exactly as Q4_Kx8
// (qs holds the low 4 bits of every code). The fifth bits are stored as 32 masks of 64 bits, two
// per 64-byte qs vector, so the AVX-512 kernel loads each with one kmovq and merges it with one
// masked vpaddb: for qs vector v (qs[64 v .. 64 v + 63], v < 16) and byte t (t < 64),
//   bit t of the little-endian uint64 at qh + 16 v      = bit 4 of the code in qs[64 v + t]'s
//                                                         low nibble,
//   bit t of the little-endian uint64 at qh + 16 v + 8  = the same for the high nibble.
// (Row j's qs[32 c + l] holds elements 64 c + l (low nibble, fifth bit = bit 2c of its qh[l])
// and 64 c + 32 + l (high nibble, bit 2c + 1).) q5_kx8_qh_bit() gives the position.
struct block_q5_Kx8 {
  f16_bits d[8];
  f16_bits dmin[8];
  uint8_t scales[64];
  uint8_t mins[32];
  uint8_t qh[8 * QK_K / 8];
  uint8_t qs[8 * QK_K / 2];
};
static_assert(sizeof(block_q5_Kx8) == 8 * sizeof(block_q5_K));
// Bit index into qh (bit q = bit q % 8 of qh[q / 8]) of the fifth bit of element e (< 256) of
// row j: its code's low 4 bits are in the low (e % 64 < 32) or high nibble of row j's
// qs[32 (e / 64) + e % 32], at qs[o] with o = x8_qs_offset(j, ...).
constexpr int q5_kx8_qh_bit(int j, int e) {
  const int o = x8_qs_offset(j, 32 * (e / 64) + e % 32);
  return 128 * (o / 64) + 64 * ((e % 64) / 32) + o % 64;
}

// The repacked type for a plain one (Q4_0 -> Q4_0x8, Q8_0 -> Q8_0x8, Q4_K -> Q4_Kx8,
// Q5_K -> Q5_Kx8, Q6_K -> Q6_Kx8), or the type itself when there is none.
TensorType repacked_type(TensorType wtype);
// The inverse: the plain type of a repacked one (Q4_0x8 -> Q4_0), or the type itself.
TensorType unpacked_type(TensorType t);
// Whether the loader should repack this weight (the repacked kernels are faster on this CPU
// and N is a multiple of 8).
bool should_repack(TensorType wtype, int64_t N, int64_t K);
// Repacks rows [n0, n1) (multiples of 8) of an N x K matrix of type `wtype` (Q4_0, Q8_0, Q4_K,
// Q5_K or Q6_K) from `src` into `dst` (which has the same total size: row_size(wtype, K) * N
// bytes).
void repack_rows(TensorType wtype, const void* src, void* dst, int64_t K, int64_t n0, int64_t n1);
// The inverse (for tests and for reading a single row back).
void unpack_rows(TensorType repacked, const void* src, void* dst, int64_t K, int64_t n0,
                 int64_t n1);

}  // namespace qgemma
