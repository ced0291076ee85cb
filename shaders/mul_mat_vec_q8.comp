#version 450
// Matrix x vectors with integer dot products (SPV_KHR_integer_dot_product, OpSDot on packed
// 4x8-bit vectors): y[c][r] = sum_k W[r][k] * x[c][k] with the activations quantized to Q8 by
// quantize_q8.comp. Only for devices with shaderIntegerDotProduct; the float shader
// (mul_mat_vec) is the fallback. Variants: WTYPE_Q4_0, WTYPE_Q8_0. One thread per weight block.
//
// Up to three weight matrices of one input in one dispatch (Q/K/V): NSEG segments, weights
// w0..w2 with M0..M2 rows into y0..y2; workgroups [0, g0) do segment 0, [g0, g1) segment 1, the
// rest segment 2. GLU = true (NSEG = 2, M0 = M1): each workgroup computes the same rows of w0
// (gate) and w1 (up) and writes y0 = gelu_tanh(gate) * up (glu.comp's formula).
#extension GL_GOOGLE_include_directive : require
#ifdef SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
#extension GL_EXT_spirv_intrinsics : require

// OpSDot (4450) with capabilities DotProduct (6019) and DotProductInput4x8BitPacked (6018);
// the last operand is PackedVectorFormat4x8Bit (0).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018],
                  id = 4450)
int sdot4x8(uint a, uint b, spirv_literal int packed_format);

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint NCOLS = 1;
layout(constant_id = 2) const uint NROWS = 2;
layout(constant_id = 3) const uint NSEG = 1;
layout(constant_id = 4) const bool GLU = false;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint M0, M1, M2;
  uint K;
  uint row_bytes;
  uint xq_stride;  // words between quantized activation columns (10 per block)
  uint ys0, ys1, ys2;  // floats between output columns
  uint groups_x;
  uint g0, g1;  // first workgroup of segments 1 and 2
} p;

layout(binding = 0) readonly buffer W0Buf { uint w0_words[]; };
layout(binding = 1) readonly buffer W1Buf { uint w1_words[]; };
layout(binding = 2) readonly buffer W2Buf { uint w2_words[]; };
layout(binding = 3) readonly buffer XBuf { uint xq[]; };
layout(binding = 4) writeonly buffer Y0Buf { float y0[]; };
layout(binding = 5) writeonly buffer Y1Buf { float y1[]; };
layout(binding = 6) writeonly buffer Y2Buf { float y2[]; };

#include "bytes.glsl"
BYTE_READERS(w0, w0_words)
BYTE_READERS(w1, w1_words)
BYTE_READERS(w2, w2_words)

const uint NACC = (GLU ? 2u : 1u) * NROWS * NCOLS;
shared float red[NACC * WG];

// Adds block b of rows row0 .. row0 + NROWS - 1 (clamped to `rows`) of weights P times the
// activation columns to acc[A + r * NCOLS + c].
#if defined(WTYPE_Q4_0)
#define DOT_BLOCK(P, b, row0, rows, A)                                      \
  for (uint r = 0; r < NROWS; ++r) {                                        \
    const uint row = min(row0 + r, rows - 1u);                              \
    const uint bb = row * p.row_bytes + b * 18u;                            \
    const float dw = P##_f16(bb);                                           \
    uint lo[4], hi[4];                                                      \
    for (uint k = 0; k < 4u; ++k) {                                         \
      const uint q = P##_u32(bb + 2u + 4u * k);                             \
      lo[k] = q & 0x0F0F0F0Fu;                                              \
      hi[k] = (q >> 4) & 0x0F0F0F0Fu;                                       \
    }                                                                       \
    for (uint c = 0; c < NCOLS; ++c) {                                      \
      const uint xo = c * p.xq_stride + b * 10u;                            \
      int s = 0;                                                            \
      for (uint k = 0; k < 4u; ++k) {                                       \
        s += sdot4x8(lo[k], xq[xo + 2u + k], 0);                            \
        s += sdot4x8(hi[k], xq[xo + 6u + k], 0);                            \
      }                                                                     \
      /* sum (q - 8) a = dot(q, a) - 8 sum(a), in integers as dot_block_q4_0 */ \
      s -= 8 * int(xq[xo + 1u]);                                            \
      acc[A + r * NCOLS + c] += float(s) * (dw * uintBitsToFloat(xq[xo]));  \
    }                                                                       \
  }
#elif defined(WTYPE_Q8_0)
#define DOT_BLOCK(P, b, row0, rows, A)                                      \
  for (uint r = 0; r < NROWS; ++r) {                                        \
    const uint row = min(row0 + r, rows - 1u);                              \
    const uint bb = row * p.row_bytes + b * 34u;                            \
    const float dw = P##_f16(bb);                                           \
    uint wq[8];                                                             \
    for (uint k = 0; k < 8u; ++k) wq[k] = P##_u32(bb + 2u + 4u * k);        \
    for (uint c = 0; c < NCOLS; ++c) {                                      \
      const uint xo = c * p.xq_stride + b * 10u;                            \
      int s = 0;                                                            \
      for (uint k = 0; k < 8u; ++k) s += sdot4x8(wq[k], xq[xo + 2u + k], 0); \
      acc[A + r * NCOLS + c] += float(s) * (dw * uintBitsToFloat(xq[xo]));  \
    }                                                                       \
  }
#else
#error "mul_mat_vec_q8: WTYPE_Q4_0 or WTYPE_Q8_0"
#endif

float gelu_tanh(float x) {
  const float u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -10.0, 10.0);
  return 0.5 * x * (1.0 + tanh(u));
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint g = gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x;
  // Segment and first row of this workgroup (uniform).
  const uint seg = NSEG == 1u || g < p.g0 ? 0u : (NSEG == 2u || g < p.g1 ? 1u : 2u);
  const uint rows = seg == 0u ? p.M0 : (seg == 1u ? p.M1 : p.M2);
  const uint row0 = (g - (seg == 0u ? 0u : (seg == 1u ? p.g0 : p.g1))) * NROWS;
  if (row0 >= rows) return;

  float acc[NACC];  // a local (a global array would live in scratch memory on some drivers)
  for (uint i = 0; i < NACC; ++i) acc[i] = 0.0;
  const uint nblocks = p.K / 32u;
  if (GLU) {
    for (uint b = tid; b < nblocks; b += WG) {
      DOT_BLOCK(w0, b, row0, rows, 0u)
      DOT_BLOCK(w1, b, row0, rows, NROWS * NCOLS)
    }
  } else if (seg == 0u) {
    for (uint b = tid; b < nblocks; b += WG) DOT_BLOCK(w0, b, row0, rows, 0u)
  } else if (seg == 1u) {
    for (uint b = tid; b < nblocks; b += WG) DOT_BLOCK(w1, b, row0, rows, 0u)
  } else {
    for (uint b = tid; b < nblocks; b += WG) DOT_BLOCK(w2, b, row0, rows, 0u)
  }

  // The workgroup's sum of accumulator i ends in red[i * WG].
#ifdef SUBGROUP_REDUCE
  for (uint i = 0; i < NACC; ++i) acc[i] = subgroupAdd(acc[i]);
  if (subgroupElect()) {
    for (uint i = 0; i < NACC; ++i) red[i * WG + gl_SubgroupID] = acc[i];
  }
  barrier();
  for (uint i = tid; i < NACC; i += WG) {
    float v = red[i * WG];
    for (uint s = 1u; s < gl_NumSubgroups; ++s) v += red[i * WG + s];
    red[i * WG] = v;
  }
#else
  for (uint i = 0; i < NACC; ++i) red[i * WG + tid] = acc[i];
  barrier();
  for (uint s = WG / 2u; s > 1u; s >>= 1) {
    if (tid < s) {
      for (uint i = 0; i < NACC; ++i) red[i * WG + tid] += red[i * WG + tid + s];
    }
    barrier();
  }
  for (uint i = tid; i < NACC; i += WG) red[i * WG] += red[i * WG + 1u];
#endif
  barrier();
  for (uint t = tid; t < NROWS * NCOLS; t += WG) {
    const uint r = t / NCOLS, c = t % NCOLS, row = row0 + r;
    if (row >= rows) continue;
    const float v = red[t * WG];
    if (GLU) {
      y0[c * p.ys0 + row] = gelu_tanh(v) * red[(NROWS * NCOLS + t) * WG];
    } else if (seg == 0u) {
      y0[c * p.ys0 + row] = v;
    } else if (seg == 1u) {
      y1[c * p.ys1 + row] = v;
    } else {
      y2[c * p.ys2 + row] = v;
    }
  }
}
