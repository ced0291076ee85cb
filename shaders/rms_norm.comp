#version 450
// RMSNorm of each row: y = x / sqrt(mean(x^2) + eps) * w. Rows are contiguous runs of n floats,
// so per-head norms are rows of head_dim with one shared weight. HAS_WEIGHT = 0: no weight
// (Gemma 4's V norm). One workgroup per row; y may alias x.
#extension GL_GOOGLE_include_directive : require

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
  float ss = 0.0;
  for (uint i = tid; i < p.n; i += WG) ss += x[o + i] * x[o + i];
  const float r = 1.0 / sqrt(wg_sum(ss) / float(p.n) + p.eps);
  for (uint i = tid; i < p.n; i += WG) y[o + i] = HAS_WEIGHT ? x[o + i] * r * w[i] : x[o + i] * r;
}
