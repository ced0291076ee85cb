#version 450
// Tiled matrix x matrix (prefill): y[n][m] = sum_k W[m][k] * x[n][k], float activations.
// A workgroup of 256 threads computes a BM x BN tile of outputs (each thread TM x TN); weight
// and activation tiles of BK = 32 elements of k are dequantized into shared memory.
// Compile-time variant: the weight format (WTYPE_*, see dequant.glsl).
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint BM = 64;  // weight rows per tile (16 * TM)
layout(constant_id = 1) const uint BN = 64;  // activation rows per tile (16 * TN)
layout(local_size_x = 256) in;
const uint BK = 32u;
const uint TM = BM / 16u, TN = BN / 16u;

layout(push_constant) uniform Push {
  uint M;          // weight rows
  uint N;          // activation rows
  uint K;
  uint row_bytes;  // bytes per weight row
  uint x_stride;   // floats between activation rows
  uint y_stride;   // floats between output rows
} p;

layout(binding = 0) readonly buffer WBuf { uint w_words[]; };
layout(binding = 1) readonly buffer XBuf { float x[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

#include "bytes.glsl"
BYTE_READERS(w, w_words)
#include "dequant.glsl"

shared float ws[BM * (BK + 1u)];
shared float xs[BN * (BK + 1u)];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint m0 = gl_WorkGroupID.x * BM, n0 = gl_WorkGroupID.y * BN;
  const uint tm = tid % 16u, tn = tid / 16u;  // this thread: rows m0 + tm + 16 i, n0 + tn + 16 j

  float acc[TM * TN];
  for (uint i = 0; i < TM * TN; ++i) acc[i] = 0.0;

  for (uint k0 = 0; k0 < p.K; k0 += BK) {
    // Weight tile: BM rows x 8 quads.
    for (uint q = tid; q < BM * 8u; q += 256u) {
      const uint r = q / 8u, e = k0 + (q % 8u) * 4u;
      const uint m = m0 + r;
      vec4 v = vec4(0.0);
      if (m < p.M) {
        if (e + 4u <= p.K) {
          v = w_dq4(m * p.row_bytes, e);
        }
#ifdef W_HAS_DQ1
        else {
          for (uint t = 0; t < 4u; ++t) v[t] = e + t < p.K ? w_dq1(m * p.row_bytes, e + t) : 0.0;
        }
#endif
      }
      const uint so = r * (BK + 1u) + (q % 8u) * 4u;
      ws[so] = v.x, ws[so + 1u] = v.y, ws[so + 2u] = v.z, ws[so + 3u] = v.w;
    }
    // Activation tile: BN rows x 32 elements.
    for (uint i = tid; i < BN * BK; i += 256u) {
      const uint r = i / BK, e = k0 + i % BK;
      const uint n = n0 + r;
      xs[r * (BK + 1u) + i % BK] = (n < p.N && e < p.K) ? x[n * p.x_stride + e] : 0.0;
    }
    barrier();
    for (uint k = 0; k < BK; ++k) {
      float wr[TM];
      for (uint i = 0; i < TM; ++i) wr[i] = ws[(tm + 16u * i) * (BK + 1u) + k];
      for (uint j = 0; j < TN; ++j) {
        const float xv = xs[(tn + 16u * j) * (BK + 1u) + k];
        for (uint i = 0; i < TM; ++i) acc[j * TM + i] += wr[i] * xv;
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
