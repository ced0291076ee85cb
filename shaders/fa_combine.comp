#version 450
// Merges the split-KV partial states of flash_attn.comp (SPLIT): for query i and head h, parts
// z < n_split hold (m_z, l_z, acc_z[HEAD_DIM]) over disjoint slot ranges; with M = max m_z,
//   out[d] = sum_z exp(m_z - M) acc_z[d] / sum_z exp(m_z - M) l_z
// (0 when no part saw a visible slot, as the unsplit shader). One workgroup per (query, head);
// thread tid owns dimensions tid + u * WG. Q8OUT: also the Q8 copy of the row, as flash_attn.
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint HEAD_DIM = 256;  // multiple of WG and of 32
layout(constant_id = 2) const bool Q8OUT = false;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint n_head, n_split;
  uint out_stride_token, out_stride_head;  // floats
} p;

layout(binding = 0) readonly buffer PartBuf { float part[]; };
layout(binding = 1) writeonly buffer OBuf { float o[]; };
layout(binding = 2) writeonly buffer XqBuf { uint xq[]; };

#include "f16.glsl"

const uint DPT = HEAD_DIM / WG;
shared float qs[HEAD_DIM];
#include "attn_q8_out.glsl"

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint i = gl_WorkGroupID.x, h = gl_WorkGroupID.y;
  const uint first = (i * p.n_head + h) * p.n_split;
  float mx = -1.0 / 0.0;
  for (uint z = 0; z < p.n_split; ++z) mx = max(mx, part[(first + z) * (HEAD_DIM + 2u)]);
  float acc[DPT];
  for (uint u = 0; u < DPT; ++u) acc[u] = 0.0;
  float l = 0.0;
  if (mx != -1.0 / 0.0) {
    for (uint z = 0; z < p.n_split; ++z) {
      const uint base = (first + z) * (HEAD_DIM + 2u);
      const float mz = part[base];
      if (mz == -1.0 / 0.0) continue;  // nothing visible in this part
      const float wz = exp(mz - mx);
      l += wz * part[base + 1u];
      for (uint u = 0; u < DPT; ++u) acc[u] += wz * part[base + 2u + tid + u * WG];
    }
  }
  const float inv = l > 0.0 ? 1.0 / l : 0.0;
  for (uint u = 0; u < DPT; ++u) {
    const float y = acc[u] * inv;
    o[i * p.out_stride_token + h * p.out_stride_head + tid + u * WG] = y;
    if (Q8OUT) qs[tid + u * WG] = y;
  }
  if (!Q8OUT) return;
  barrier();
  store_head_q8(tid, (i * p.out_stride_token + h * HEAD_DIM) / 32u);
}
