#version 450
// Tiled matrix x matrix (prefill) with integer dot products (SPV_KHR_integer_dot_product, OpSDot
// on packed 4x8-bit vectors): y[n][m] = sum_k W[m][k] * x[n][k] with the activations quantized
// to Q8 blocks by quantize_q8.comp ({float d, int sum, int qs[8]}, 10 words per block).
// Variants: WTYPE_Q4_0 (nibbles expanded to int8 with the -8 offset when the tile is loaded),
// WTYPE_Q8_0. Only for devices with shaderIntegerDotProduct; mul_mm is the float path.
// A workgroup of 256 threads computes a BM x BN tile of outputs (each thread TM x TN, rows
// tm + 16 i, columns tn + 16 j); per k-tile of KB blocks of 32 the int8 weights and
// activations go to shared memory (k-major, so the 16 threads of a row group read
// consecutive words) with their scales. Each 32-element block is summed in int32, then
// added in f32 times d_w * d_x, as mul_mat_vec_q8 and matmul_ref do.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_spirv_intrinsics : require

// OpSDot (4450) with capabilities DotProduct (6019) and DotProductInput4x8BitPacked (6018);
// the last operand is PackedVectorFormat4x8Bit (0).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018],
                  id = 4450)
int sdot4x8(uint a, uint b, spirv_literal int packed_format);

layout(constant_id = 0) const uint BM = 64;  // weight rows per tile (16 * TM)
layout(constant_id = 1) const uint BN = 64;  // activation rows per tile (16 * TN)
layout(constant_id = 2) const uint KB = 2;   // blocks of 32 per k-tile
layout(local_size_x = 256) in;
const uint TM = BM / 16u, TN = BN / 16u;

layout(push_constant) uniform Push {
  uint M;          // weight rows
  uint N;          // activation rows
  uint K;          // a multiple of 32
  uint row_bytes;  // bytes per weight row
  uint xq_stride;  // words between quantized activation rows (10 per block)
  uint y_stride;   // floats between output rows
} p;

layout(binding = 0) readonly buffer WBuf { uint w_words[]; };
layout(binding = 1) readonly buffer XBuf { uint xq[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

#include "bytes.glsl"
BYTE_READERS(w, w_words)

#if defined(WTYPE_Q4_0)
const uint W_BLOCK_BYTES = 18u;
#elif defined(WTYPE_Q8_0)
const uint W_BLOCK_BYTES = 34u;
#else
#error "mul_mm_q8: WTYPE_Q4_0 or WTYPE_Q8_0"
#endif

// Word k (0..7) of block kb of weight row r: ws[(kb * 8 + k) * BM + r]; scales wd[kb * BM + r].
shared uint ws[KB * 8u * BM];
shared float wd[KB * BM];
shared uint xs[KB * 8u * BN];
shared float xd[KB * BN];

// Four unsigned nibbles (one per byte, 0..15) to four signed bytes q - 8: +0x80 per byte keeps
// every byte >= 8 so the subtraction borrows from none, the xor restores the sign.
uint nib_minus8(uint q) { return ((q | 0x80808080u) - 0x08080808u) ^ 0x80808080u; }

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint m0 = gl_WorkGroupID.x * BM, n0 = gl_WorkGroupID.y * BN;
  const uint tm = tid % 16u, tn = tid / 16u;
  const uint nblocks = p.K / 32u;

  float acc[TM * TN];
  for (uint i = 0; i < TM * TN; ++i) acc[i] = 0.0;

  for (uint b0 = 0; b0 < nblocks; b0 += KB) {
    // Weight tile: BM rows x KB blocks.
#if defined(WTYPE_Q4_0)
    for (uint q = tid; q < BM * KB * 4u; q += 256u) {  // one packed word of nibbles each
      const uint r = q % BM, kb = (q / BM) / 4u, k = (q / BM) % 4u;
      const uint m = m0 + r, b = b0 + kb;
      uint lo = 0u, hi = 0u;
      float d = 0.0;
      if (m < p.M && b < nblocks) {
        const uint bb = m * p.row_bytes + b * W_BLOCK_BYTES;
        const uint v = w_u32(bb + 2u + 4u * k);
        lo = nib_minus8(v & 0x0F0F0F0Fu);
        hi = nib_minus8((v >> 4) & 0x0F0F0F0Fu);
        if (k == 0u) d = w_f16(bb);
      }
      ws[(kb * 8u + k) * BM + r] = lo;
      ws[(kb * 8u + k + 4u) * BM + r] = hi;
      if (k == 0u) wd[kb * BM + r] = d;
    }
#else
    for (uint q = tid; q < BM * KB * 8u; q += 256u) {
      const uint r = q % BM, kb = (q / BM) / 8u, k = (q / BM) % 8u;
      const uint m = m0 + r, b = b0 + kb;
      uint v = 0u;
      float d = 0.0;
      if (m < p.M && b < nblocks) {
        const uint bb = m * p.row_bytes + b * W_BLOCK_BYTES;
        v = w_u32(bb + 2u + 4u * k);
        if (k == 0u) d = w_f16(bb);
      }
      ws[(kb * 8u + k) * BM + r] = v;
      if (k == 0u) wd[kb * BM + r] = d;
    }
#endif
    // Activation tile: BN rows x KB blocks (the d word and the 8 quant words; sum unused).
    for (uint q = tid; q < BN * KB * 9u; q += 256u) {
      const uint c = q % BN, kb = (q / BN) / 9u, k = (q / BN) % 9u;
      const uint n = n0 + c, b = b0 + kb;
      uint v = 0u;
      if (n < p.N && b < nblocks) v = xq[n * p.xq_stride + b * 10u + (k == 0u ? 0u : k + 1u)];
      if (k == 0u) {
        xd[kb * BN + c] = uintBitsToFloat(v);
      } else {
        xs[(kb * 8u + k - 1u) * BN + c] = v;
      }
    }
    barrier();
    for (uint kb = 0; kb < KB; ++kb) {
      int s[TM * TN];
      for (uint i = 0; i < TM * TN; ++i) s[i] = 0;
      for (uint k = 0; k < 8u; ++k) {
        uint wr[TM];
        for (uint i = 0; i < TM; ++i) wr[i] = ws[(kb * 8u + k) * BM + tm + 16u * i];
        for (uint j = 0; j < TN; ++j) {
          const uint xv = xs[(kb * 8u + k) * BN + tn + 16u * j];
          for (uint i = 0; i < TM; ++i) s[j * TM + i] += sdot4x8(wr[i], xv, 0);
        }
      }
      for (uint j = 0; j < TN; ++j) {
        const float dx = xd[kb * BN + tn + 16u * j];
        for (uint i = 0; i < TM; ++i) {
          acc[j * TM + i] += float(s[j * TM + i]) * (wd[kb * BM + tm + 16u * i] * dx);
        }
      }
    }
    barrier();
  }

  for (uint j = 0; j < TN; ++j) {
    const uint n = n0 + tn + 16u * j;
    if (n >= p.N) continue;
    for (uint i = 0; i < TM; ++i) {
      const uint m = m0 + tm + 16u * i;
      if (m < p.M) y[n * p.y_stride + m] = acc[j * TM + i];
    }
  }
}
