#version 450
// Matrix x vectors (decode): y[c][r] = sum_k W[r][k] * x[c][k] for NCOLS (1..8) activation
// columns, float activations. One workgroup computes NROWS rows; each weight byte is read once
// for all columns. Compile-time variant: the weight format (WTYPE_*, see dequant.glsl).
#extension GL_GOOGLE_include_directive : require
#ifdef SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(constant_id = 0) const uint WG = 64;    // threads (power of two)
layout(constant_id = 1) const uint NCOLS = 1;  // activation columns
layout(constant_id = 2) const uint NROWS = 2;  // weight rows per workgroup
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint rows;       // weight rows (outputs per column)
  uint K;          // elements per row
  uint row_bytes;  // bytes per weight row
  uint x_stride;   // floats between activation columns
  uint y_stride;   // floats between output columns
  uint groups_x;   // workgroups along x (the grid is folded into y beyond the x limit)
} p;

layout(binding = 0) readonly buffer WBuf { uint w_words[]; };
layout(binding = 1) readonly buffer XBuf { float x[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

#include "bytes.glsl"
BYTE_READERS(w, w_words)
#include "dequant.glsl"

shared float red[NROWS * NCOLS * WG];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint row0 = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * NROWS;
  if (row0 >= p.rows) return;  // uniform over the workgroup

  float acc[NROWS * NCOLS];
  for (uint i = 0; i < NROWS * NCOLS; ++i) acc[i] = 0.0;

  const uint nquads = p.K / 4u;
  for (uint q = tid; q < nquads; q += WG) {
    const uint e = q * 4u;
    for (uint r = 0; r < NROWS; ++r) {
      const uint row = min(row0 + r, p.rows - 1u);
      const vec4 wv = w_dq4(row * p.row_bytes, e);
      for (uint c = 0; c < NCOLS; ++c) {
        const uint xo = c * p.x_stride + e;
        acc[r * NCOLS + c] += dot(wv, vec4(x[xo], x[xo + 1u], x[xo + 2u], x[xo + 3u]));
      }
    }
  }
#ifdef W_HAS_DQ1
  for (uint e = nquads * 4u + tid; e < p.K; e += WG) {
    for (uint r = 0; r < NROWS; ++r) {
      const uint row = min(row0 + r, p.rows - 1u);
      const float wv = w_dq1(row * p.row_bytes, e);
      for (uint c = 0; c < NCOLS; ++c) acc[r * NCOLS + c] += wv * x[c * p.x_stride + e];
    }
  }
#endif

  // The workgroup's sum of accumulator i ends in red[i * WG] (as in mul_mat_vec_q8).
  const uint NACC = NROWS * NCOLS;
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
  for (uint t = tid; t < NACC; t += WG) {
    const uint r = t / NCOLS, c = t % NCOLS;
    if (row0 + r < p.rows) y[c * p.y_stride + row0 + r] = red[t * WG];
  }
}
