#version 450
// Fused row chain of the decoder's norms (one dispatch instead of up to five), per row of n
// floats, one workgroup per row:
//   v = x;  if NORM1: v = rmsnorm(v) * w1 (HAS_W1)        (post-attention / post-FFN norm)
//   if ADD: v = res + v;  v = v * s                       (residual add, layer scalar)
//   h = v                                                 (always written)
//   if NORM2: v = rmsnorm(v) * w2 (HAS_W2); a = v          (the next pre-norm)
//   if Q8: xq = Q8 blocks of v                            (for the integer-dot matmuls)
// Same arithmetic as the separate shaders (rms_norm, binary, quantize_q8), so results differ
// from the CPU's by rounding only. The row lives in registers: thread tid owns the vec4s
// tid + k * WG (k < ITEMS), n % 4 == 0 (Q8: n % 32 == 0). Outputs may not alias inputs of
// other rows; within a row every read happens before the first write.
#extension GL_GOOGLE_include_directive : require
#ifdef SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint ITEMS = 1;
layout(constant_id = 2) const bool NORM1 = true;
layout(constant_id = 3) const bool HAS_W1 = true;
layout(constant_id = 4) const bool ADD = false;
layout(constant_id = 5) const bool NORM2 = false;
layout(constant_id = 6) const bool HAS_W2 = true;
layout(constant_id = 7) const bool Q8 = false;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint n;
  uint rows;
  uint groups_x;
  float eps1;
  float eps2;
  float s;
} p;

layout(binding = 0) readonly buffer XBuf { vec4 x[]; };
layout(binding = 1) readonly buffer W1Buf { vec4 w1[]; };
layout(binding = 2) readonly buffer RBuf { vec4 res[]; };
layout(binding = 3) writeonly buffer HBuf { vec4 h[]; };
layout(binding = 4) readonly buffer W2Buf { vec4 w2[]; };
layout(binding = 5) writeonly buffer ABuf { vec4 a[]; };
layout(binding = 6) writeonly buffer QBuf { uint xq[]; };

shared float red[WG];
#include "reduce.glsl"
#include "f16.glsl"

shared int isum[WG];

void main() {
  const uint row = gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x;
  if (row >= p.rows) return;
  const uint tid = gl_LocalInvocationID.x, n4 = p.n / 4u, o = row * n4;
  // Every input is loaded up front, so the memory latencies overlap instead of following
  // each reduction.
  vec4 v[ITEMS], rv[ITEMS], wa[ITEMS], wb[ITEMS];
  float ss = 0.0;
  for (uint k = 0; k < ITEMS; ++k) {
    const uint i = tid + k * WG;
    const bool live = i < n4;
    v[k] = live ? x[o + i] : vec4(0.0);
    rv[k] = ADD && live ? res[o + i] : vec4(0.0);
    wa[k] = NORM1 && HAS_W1 && live ? w1[i] : vec4(1.0);
    wb[k] = NORM2 && HAS_W2 && live ? w2[i] : vec4(1.0);
    ss += dot(v[k], v[k]);
  }
  if (NORM1) {
    const float r = 1.0 / sqrt(wg_sum(ss) / float(p.n) + p.eps1);
    for (uint k = 0; k < ITEMS; ++k) v[k] = HAS_W1 ? v[k] * r * wa[k] : v[k] * r;
  }
  ss = 0.0;
  for (uint k = 0; k < ITEMS; ++k) {
    const uint i = tid + k * WG;
    if (ADD) v[k] = rv[k] + v[k];
    v[k] = v[k] * p.s;
    if (i < n4) h[o + i] = v[k];
    ss += dot(v[k], v[k]);  // zero past the row
  }
  if (NORM2) {
    const float r = 1.0 / sqrt(wg_sum(ss) / float(p.n) + p.eps2);
    for (uint k = 0; k < ITEMS; ++k) {
      const uint i = tid + k * WG;
      v[k] = HAS_W2 ? v[k] * r * wb[k] : v[k] * r;
      if (i < n4) a[o + i] = v[k];
    }
  }
  if (!Q8) return;
  // Blocks of 32 = 8 neighbouring threads' vec4s (WG is a multiple of 8), quantized as
  // quantize_q8.comp does: d = f16(amax / 127), q = round-half-away(v / d), sum of q.
  const uint lane = tid & 7u, base = tid & ~7u, blocks = p.n / 32u;
  for (uint k = 0; k < ITEMS; ++k) {
    const uint i = tid + k * WG;
    const vec4 av = abs(v[k]);
    red[tid] = max(max(av.x, av.y), max(av.z, av.w));  // zero past the row
    barrier();
    for (uint st = 4u; st > 0u; st >>= 1) {
      if (lane < st) red[tid] = max(red[tid], red[tid + st]);
      barrier();
    }
    const float amax = red[base];
    const float d = div_rn(amax, 127.0);
    const float id_ = d != 0.0 ? div_rn(1.0, d) : 0.0;
    uint packed = 0u;
    int sum = 0;
    for (uint e = 0; e < 4u; ++e) {
      precise float q = v[k][e] * id_;  // no fma into the + 0.5 below
      const int qi = int(sign(q) * floor(abs(q) + 0.5));
      sum += qi;
      packed |= uint(qi & 0xFF) << (8u * e);
    }
    isum[tid] = sum;
    barrier();
    for (uint st = 4u; st > 0u; st >>= 1) {
      if (lane < st) isum[tid] += isum[tid + st];
      barrier();
    }
    if (i < n4) {
      const uint qo = (row * blocks + i / 8u) * 10u;
      xq[qo + 2u + lane] = packed;
      if (lane == 0u) {
        xq[qo] = floatBitsToUint(unpackHalf2x16(f16_bits(d)).x);
        xq[qo + 1u] = uint(isum[base]);
      }
    }
    barrier();  // red / isum are reused by the next k
  }
}
