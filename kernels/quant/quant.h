// Scalar quantize / dequantize for every block format, plus f16/bf16 conversions.
// These are the references every optimized kernel and every shader is tested against.
#pragma once

#include <cstdint>

#include "kernels/quant/formats.h"

namespace qgemma {

float f16_to_f32(f16_bits h);
f16_bits f32_to_f16(float f);  // round to nearest even
float bf16_to_f32(bf16_bits h);
bf16_bits f32_to_bf16(float f);  // round to nearest even, NaN kept quiet

// Row conversions: n elements, n a multiple of the type's block size.
void quantize_row(TensorType t, const float* x, void* dst, int64_t n);
void dequantize_row(TensorType t, const void* src, float* y, int64_t n);

// Per-format entry points (the generic ones above dispatch to these).
void quantize_row_q4_0_ref(const float* x, block_q4_0* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, block_q8_0* y, int64_t n);
void quantize_row_q4_K_ref(const float* x, block_q4_K* y, int64_t n);
void quantize_row_q5_K_ref(const float* x, block_q5_K* y, int64_t n);
void quantize_row_q6_K_ref(const float* x, block_q6_K* y, int64_t n);
void quantize_row_q8_K_ref(const float* x, block_q8_K* y, int64_t n);
void dequantize_row_q4_0(const block_q4_0* x, float* y, int64_t n);
void dequantize_row_q8_0(const block_q8_0* x, float* y, int64_t n);
void dequantize_row_q4_K(const block_q4_K* x, float* y, int64_t n);
void dequantize_row_q5_K(const block_q5_K* x, float* y, int64_t n);
void dequantize_row_q6_K(const block_q6_K* x, float* y, int64_t n);
void dequantize_row_q8_K(const block_q8_K* x, float* y, int64_t n);

}  // namespace qgemma
