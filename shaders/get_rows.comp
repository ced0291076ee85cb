#version 450
// Embedding gather: y[t][:] = multiplier * dequantize(table row ids[t]). Compile-time variant:
// the table format (WTYPE_*, see dequant.glsl); n_cols a multiple of its block size.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  uint n_cols;
  uint row_bytes;
  uint tokens;
  float multiplier;
} p;

layout(binding = 0) readonly buffer WBuf { uint w_words[]; };
layout(binding = 1) readonly buffer IdBuf { int ids[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

#include "bytes.glsl"
BYTE_READERS(w, w_words)
#include "dequant.glsl"

void main() {
  const uint t = gl_WorkGroupID.y;
  const uint rb = uint(ids[t]) * p.row_bytes, yo = t * p.n_cols;
  const uint nquads = p.n_cols / 4u;
  for (uint q = gl_GlobalInvocationID.x; q < nquads; q += gl_NumWorkGroups.x * 64u) {
    const vec4 v = w_dq4(rb, 4u * q) * p.multiplier;
    y[yo + 4u * q] = v.x, y[yo + 4u * q + 1u] = v.y, y[yo + 4u * q + 2u] = v.z, y[yo + 4u * q + 3u] = v.w;
  }
#ifdef W_HAS_DQ1
  for (uint e = nquads * 4u + gl_GlobalInvocationID.x; e < p.n_cols; e += gl_NumWorkGroups.x * 64u) {
    y[yo + e] = w_dq1(rb, e) * p.multiplier;
  }
#endif
}
