#version 450
// Matrix x vectors with integer dot products (SPV_KHR_integer_dot_product, OpSDot on packed
// 4x8-bit vectors): y[c][r] = sum_k W[r][k] * x[c][k] with the activations quantized to Q8 by
// quantize_q8.comp. Only for devices with shaderIntegerDotProduct; the float shader
// (mul_mat_vec) is the fallback. Variants: WTYPE_Q4_0, WTYPE_Q8_0. One thread per pair of weight
// blocks (aligned words) when the row size is a multiple of 4 bytes, else per block.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_spirv_intrinsics : require

// OpSDot (4450) with capabilities DotProduct (6019) and DotProductInput4x8BitPacked (6018);
// the last operand is PackedVectorFormat4x8Bit (0).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018],
                  id = 4450)
int sdot4x8(uint a, uint b, spirv_literal int packed_format);

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint NCOLS = 1;
layout(constant_id = 2) const uint NROWS = 2;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint rows;
  uint K;
  uint row_bytes;
  uint xq_stride;  // words between quantized activation columns (10 per block)
  uint y_stride;
  uint groups_x;
} p;

layout(binding = 0) readonly buffer WBuf { uint w_words[]; };
layout(binding = 1) readonly buffer XBuf { uint xq[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

#include "bytes.glsl"
BYTE_READERS(w, w_words)

shared float red[NROWS * NCOLS * WG];

// The scale of a pair's second block and the quants of its first sit across word boundaries:
// funnel shift of two words by 16 bits.
uint hi16lo16(uint a, uint b) { return (a >> 16) | (b << 16); }

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint row0 = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * NROWS;
  if (row0 >= p.rows) return;

  float acc[NROWS * NCOLS];
  for (uint i = 0; i < NROWS * NCOLS; ++i) acc[i] = 0.0;

  const uint nblocks = p.K / 32u;
  if ((p.row_bytes & 3u) == 0u) {
    // Rows start on a word: take the blocks in pairs, which are whole words (Q4_0: 36 bytes,
    // 9 words; Q8_0: 68 bytes, 17 words), so every load is an aligned, independent word.
    for (uint bp = tid; bp < nblocks / 2u; bp += WG) {
      for (uint r = 0; r < NROWS; ++r) {
        const uint row = min(row0 + r, p.rows - 1u);
#if defined(WTYPE_Q4_0)
        const uint wo = (row * p.row_bytes + bp * 36u) >> 2;
        uint wv[9];
        for (uint k = 0; k < 9u; ++k) wv[k] = w_words[wo + k];
        const float d0 = unpackHalf2x16(wv[0] & 0xFFFFu).x, d1 = unpackHalf2x16(wv[4] >> 16).x;
        uint q0[4], q1[4];
        for (uint k = 0; k < 4u; ++k) {
          q0[k] = hi16lo16(wv[k], wv[k + 1u]);
          q1[k] = wv[5u + k];
        }
        for (uint c = 0; c < NCOLS; ++c) {
          const uint xo = c * p.xq_stride + bp * 20u;
          int s0 = 0, s1 = 0;
          for (uint k = 0; k < 4u; ++k) {
            s0 += sdot4x8(q0[k] & 0x0F0F0F0Fu, xq[xo + 2u + k], 0);
            s0 += sdot4x8((q0[k] >> 4) & 0x0F0F0F0Fu, xq[xo + 6u + k], 0);
            s1 += sdot4x8(q1[k] & 0x0F0F0F0Fu, xq[xo + 12u + k], 0);
            s1 += sdot4x8((q1[k] >> 4) & 0x0F0F0F0Fu, xq[xo + 16u + k], 0);
          }
          s0 -= 8 * int(xq[xo + 1u]);
          s1 -= 8 * int(xq[xo + 11u]);
          acc[r * NCOLS + c] += float(s0) * (d0 * uintBitsToFloat(xq[xo])) +
                                float(s1) * (d1 * uintBitsToFloat(xq[xo + 10u]));
        }
#elif defined(WTYPE_Q8_0)
        const uint wo = (row * p.row_bytes + bp * 68u) >> 2;
        uint wv[17];
        for (uint k = 0; k < 17u; ++k) wv[k] = w_words[wo + k];
        const float d0 = unpackHalf2x16(wv[0] & 0xFFFFu).x, d1 = unpackHalf2x16(wv[8] >> 16).x;
        for (uint c = 0; c < NCOLS; ++c) {
          const uint xo = c * p.xq_stride + bp * 20u;
          int s0 = 0, s1 = 0;
          for (uint k = 0; k < 8u; ++k) {
            s0 += sdot4x8(hi16lo16(wv[k], wv[k + 1u]), xq[xo + 2u + k], 0);
            s1 += sdot4x8(wv[9u + k], xq[xo + 12u + k], 0);
          }
          acc[r * NCOLS + c] += float(s0) * (d0 * uintBitsToFloat(xq[xo])) +
                                float(s1) * (d1 * uintBitsToFloat(xq[xo + 10u]));
        }
#endif
      }
    }
  } else {
    // Odd block count: rows alternate between word and half-word starts; one block at a time.
    for (uint b = tid; b < nblocks; b += WG) {
      for (uint r = 0; r < NROWS; ++r) {
        const uint row = min(row0 + r, p.rows - 1u);
#if defined(WTYPE_Q4_0)
        const uint bb = row * p.row_bytes + b * 18u;
        const float dw = w_f16(bb);
        uint lo[4], hi[4];
        for (uint k = 0; k < 4u; ++k) {
          const uint q = w_u32(bb + 2u + 4u * k);
          lo[k] = q & 0x0F0F0F0Fu;
          hi[k] = (q >> 4) & 0x0F0F0F0Fu;
        }
        for (uint c = 0; c < NCOLS; ++c) {
          const uint xo = c * p.xq_stride + b * 10u;
          int s = 0;
          for (uint k = 0; k < 4u; ++k) {
            s += sdot4x8(lo[k], xq[xo + 2u + k], 0);
            s += sdot4x8(hi[k], xq[xo + 6u + k], 0);
          }
          // sum (q - 8) a = dot(q, a) - 8 sum(a), in integers as dot_block_q4_0
          s -= 8 * int(xq[xo + 1u]);
          acc[r * NCOLS + c] += float(s) * (dw * uintBitsToFloat(xq[xo]));
        }
#elif defined(WTYPE_Q8_0)
        const uint bb = row * p.row_bytes + b * 34u;
        const float dw = w_f16(bb);
        uint wq[8];
        for (uint k = 0; k < 8u; ++k) wq[k] = w_u32(bb + 2u + 4u * k);
        for (uint c = 0; c < NCOLS; ++c) {
          const uint xo = c * p.xq_stride + b * 10u;
          int s = 0;
          for (uint k = 0; k < 8u; ++k) s += sdot4x8(wq[k], xq[xo + 2u + k], 0);
          acc[r * NCOLS + c] += float(s) * (dw * uintBitsToFloat(xq[xo]));
        }
#else
#error "mul_mat_vec_q8: WTYPE_Q4_0 or WTYPE_Q8_0"
#endif
      }
    }
  }

  for (uint i = 0; i < NROWS * NCOLS; ++i) red[i * WG + tid] = acc[i];
  barrier();
  for (uint s = WG / 2u; s > 0u; s >>= 1) {
    if (tid < s) {
      for (uint i = 0; i < NROWS * NCOLS; ++i) red[i * WG + tid] += red[i * WG + tid + s];
    }
    barrier();
  }
  if (tid < NROWS * NCOLS) {
    const uint r = tid / NCOLS, c = tid % NCOLS;
    if (row0 + r < p.rows) y[c * p.y_stride + row0 + r] = red[tid * WG];
  }
}
