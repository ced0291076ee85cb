#version 450
// Softmax of each row of n floats: y = exp(x - max) / sum(exp(x - max)). One workgroup per
// row; y may alias x.
#extension GL_GOOGLE_include_directive : require
#ifdef SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(constant_id = 0) const uint WG = 128;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint n;
  uint rows;
  uint groups_x;
} p;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) writeonly buffer YBuf { float y[]; };

shared float red[WG];
#include "reduce.glsl"

void main() {
  const uint row = gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x;
  if (row >= p.rows) return;
  const uint tid = gl_LocalInvocationID.x, o = row * p.n;
  float m = -1.0 / 0.0;
  for (uint i = tid; i < p.n; i += WG) m = max(m, x[o + i]);
  m = wg_max(m);
  float s = 0.0;
  for (uint i = tid; i < p.n; i += WG) s += exp(x[o + i] - m);
  const float inv = 1.0 / wg_sum(s);
  for (uint i = tid; i < p.n; i += WG) y[o + i] = exp(x[o + i] - m) * inv;
}
