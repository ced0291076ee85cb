#version 450
// Quantizes float activations to Q8 blocks of 32 for the integer-dot matrix-vector shader:
// per block {float d, int sum, int qs[8]} (10 words), d = f16-rounded amax / 127 as in
// quantize_row_q8_0_ref, q = round-half-away(x * (1 / d)), sum = sum of the 32 q (Q4_0's
// offset of 8 is then subtracted exactly, in integers).
// Eight threads per block, each owning one packed word (4 values); the block's amax and sum
// are reduced over the eight in shared memory. K a multiple of 32.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  uint blocks;    // blocks per column (K / 32)
  uint columns;   // activation columns
  uint x_stride;  // floats between columns
} p;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) writeonly buffer QBuf { uint xq[]; };

#include "f16.glsl"

shared float amax_s[64];
shared int sum_s[64];

void main() {
  const uint tid = gl_LocalInvocationID.x, lane = tid & 7u, base = tid & ~7u;
  const uint id = gl_GlobalInvocationID.x >> 3;  // the block
  const bool live = id < p.blocks * p.columns;
  const uint c = live ? id / p.blocks : 0u, b = live ? id % p.blocks : 0u;
  const uint xo = c * p.x_stride + b * 32u + lane * 4u;
  vec4 v4 = vec4(0.0);
  if (live) v4 = vec4(x[xo], x[xo + 1u], x[xo + 2u], x[xo + 3u]);
  const vec4 a4 = abs(v4);
  amax_s[tid] = max(max(a4.x, a4.y), max(a4.z, a4.w));
  barrier();
  for (uint s = 4u; s > 0u; s >>= 1) {
    if (lane < s) amax_s[tid] = max(amax_s[tid], amax_s[tid + s]);
    barrier();
  }
  const float amax = amax_s[base];
  const float d = div_rn(amax, 127.0);
  const float id_ = d != 0.0 ? div_rn(1.0, d) : 0.0;
  uint packed = 0u;
  int sum = 0;
  for (uint k = 0; k < 4u; ++k) {
    precise float v = v4[k] * id_;  // no fma into the + 0.5 below
    const int q = int(sign(v) * floor(abs(v) + 0.5));
    sum += q;
    packed |= uint(q & 0xFF) << (8u * k);
  }
  sum_s[tid] = sum;
  barrier();
  for (uint s = 4u; s > 0u; s >>= 1) {
    if (lane < s) sum_s[tid] += sum_s[tid + s];
    barrier();
  }
  if (!live) return;
  const uint qo = id * 10u;
  xq[qo + 2u + lane] = packed;
  if (lane == 0u) {
    xq[qo] = floatBitsToUint(unpackHalf2x16(f16_bits(d)).x);
    xq[qo + 1u] = uint(sum_s[base]);
  }
}
