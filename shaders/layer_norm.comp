#version 450
// LayerNorm of each row: y = (x - mean) / sqrt(var + eps) * w + b (biased variance).
// HAS_WEIGHT / HAS_BIAS select the optional terms. One workgroup per row; y may alias x.
#extension GL_GOOGLE_include_directive : require
#ifdef SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const bool HAS_WEIGHT = true;
layout(constant_id = 2) const bool HAS_BIAS = true;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint n;
  uint rows;
  uint groups_x;
  float eps;
} p;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) readonly buffer WBuf { float w[]; };
layout(binding = 2) readonly buffer BBuf { float b[]; };
layout(binding = 3) writeonly buffer YBuf { float y[]; };

shared float red[WG];
#include "reduce.glsl"

void main() {
  const uint row = gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x;
  if (row >= p.rows) return;
  const uint tid = gl_LocalInvocationID.x, o = row * p.n;
  float s = 0.0;
  for (uint i = tid; i < p.n; i += WG) s += x[o + i];
  const float mean = wg_sum(s) / float(p.n);
  float v = 0.0;
  for (uint i = tid; i < p.n; i += WG) v += (x[o + i] - mean) * (x[o + i] - mean);
  const float r = 1.0 / sqrt(wg_sum(v) / float(p.n) + p.eps);
  for (uint i = tid; i < p.n; i += WG) {
    float t = (x[o + i] - mean) * r;
    if (HAS_WEIGHT) t *= w[i];
    if (HAS_BIAS) t += b[i];
    y[o + i] = t;
  }
}
