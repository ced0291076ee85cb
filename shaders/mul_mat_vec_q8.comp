#version 450
// Matrix x vectors with integer dot products (SPV_KHR_integer_dot_product, OpSDot on packed
// 4x8-bit vectors): y[c][r] = sum_k W[r][k] * x[c][k] with the activations quantized to Q8 by
// quantize_q8.comp. Only for devices with shaderIntegerDotProduct; the float shader
// (mul_mat_vec) is the fallback. Variants: WTYPE_Q4_0, WTYPE_Q8_0. One thread per weight block.
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

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint row0 = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * NROWS;
  if (row0 >= p.rows) return;

  float acc[NROWS * NCOLS];
  for (uint i = 0; i < NROWS * NCOLS; ++i) acc[i] = 0.0;

  const uint nblocks = p.K / 32u;
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
