#version 450
// RMSNorm of each row: y = x / sqrt(mean(x^2) + eps) * w. Rows are contiguous runs of n floats,
// so per-head norms are rows of head_dim with one shared weight. HAS_WEIGHT = 0: no weight
// (Gemma 4's V norm). One workgroup per row (WG threads, chosen by the launcher from the row
// length); y may alias x.
#extension GL_GOOGLE_include_directive : require
#ifdef SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const bool HAS_WEIGHT = true;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint n;
  uint rows;
  uint groups_x;
  float eps;
} p;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) readonly buffer WBuf { float w[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

shared float red[WG];
#include "reduce.glsl"

void main() {
  const uint row = gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x;
  if (row >= p.rows) return;
  const uint tid = gl_LocalInvocationID.x, o = row * p.n;
  // Four independent loads in flight per thread (a plain strided loop waits for each one).
  float s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  uint i = tid;
  for (; i + 3u * WG < p.n; i += 4u * WG) {
    const float a = x[o + i], b = x[o + i + WG], c = x[o + i + 2u * WG], d = x[o + i + 3u * WG];
    s0 += a * a, s1 += b * b, s2 += c * c, s3 += d * d;
  }
  for (; i < p.n; i += WG) s0 += x[o + i] * x[o + i];
  const float r = 1.0 / sqrt(wg_sum((s0 + s1) + (s2 + s3)) / float(p.n) + p.eps);
  for (uint j = tid; j < p.n; j += WG) y[o + j] = HAS_WEIGHT ? x[o + j] * r * w[j] : x[o + j] * r;
}
