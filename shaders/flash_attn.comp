#version 450
// Flash attention (kernels/attention/attention.h semantics): for query token i and head h,
//   out[i,h,:] = sum_j softmax_j(scale * q[i,h,:] . k[j,g,:]) v[j,g,:],  g = h / (n_head / n_kv_head)
// over the visible slots j: kv_pos[j] >= 0 and either (kv_pos[j] <= q_pos[i] and within the
// window) or (same bidirectional group, q_group[i] >= 0). Online softmax over tiles of WG slots.
// One workgroup per (query, head): each thread scores one slot of a tile, then owns
// HEAD_DIM / WG output dimensions. Compile-time variant: the KV format (KV_F16 or KV_Q8_0).
//
// SPLIT (split-KV, for decoding: n_q * n_head workgroups alone are far fewer than a GPU runs at
// once): workgroup z of the grid's third dimension covers slots [z * split_len, + split_len)
// and writes its partial state (running max m, sum l, unnormalized output) to `part` at
// ((i * n_head + h) * n_split + z) * (HEAD_DIM + 2); fa_combine.comp merges the parts.
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG = 64;          // threads and slots per tile (power of two)
layout(constant_id = 1) const uint HEAD_DIM = 256;   // multiple of WG and of 32
// Q8OUT: the output rows are also quantized to Q8 blocks into xq (quantize_q8.comp's layout
// and rounding; blocks never straddle heads since HEAD_DIM % 32 == 0), for the integer-dot
// output projection. Needs out_stride_head == HEAD_DIM and out_stride_token % 32 == 0.
layout(constant_id = 2) const bool Q8OUT = false;
layout(constant_id = 3) const bool SPLIT = false;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint n_q, n_head, n_kv_head, n_kv;
  uint q_stride_token, q_stride_head, out_stride_token, out_stride_head;  // floats
  uint k_stride_slot, k_stride_head, v_stride_slot, v_stride_head;        // bytes
  int window;    // <= 0: unlimited
  float scale;
  uint has_groups;
  uint split_len;  // SPLIT: slots per workgroup (a multiple of WG)
} p;

layout(binding = 0) readonly buffer QBuf { float q[]; };
layout(binding = 1) readonly buffer KBuf { uint k_words[]; };
layout(binding = 2) readonly buffer VBuf { uint v_words[]; };
layout(binding = 3) readonly buffer QPos { int q_pos[]; };
layout(binding = 4) readonly buffer KVPos { int kv_pos[]; };
layout(binding = 5) readonly buffer QGroup { int q_group[]; };
layout(binding = 6) readonly buffer KVGroup { int kv_group[]; };
layout(binding = 7) writeonly buffer OBuf { float o[]; };
layout(binding = 8) writeonly buffer XqBuf { uint xq[]; };
layout(binding = 9) writeonly buffer PartBuf { float part[]; };

#include "bytes.glsl"
#include "f16.glsl"
BYTE_READERS(k, k_words)
BYTE_READERS(v, v_words)

#if defined(KV_F16)
vec4 k_dq4(uint base, uint d) {
  return vec4(unpackHalf2x16(k_u32(base + 2u * d)), unpackHalf2x16(k_u32(base + 2u * d + 4u)));
}
float v_dq1(uint base, uint d) { return v_f16(base + 2u * d); }
#elif defined(KV_Q8_0)
vec4 k_dq4(uint base, uint d) {
  const uint bb = base + (d >> 5) * 34u;
  return k_f16(bb) * vec4(k_i8x4(bb + 2u + (d & 31u)));
}
float v_dq1(uint base, uint d) {
  const uint bb = base + (d >> 5) * 34u;
  return v_f16(bb) * float(bitfieldExtract(int(v_u8(bb + 2u + (d & 31u))), 0, 8));
}
#else
#error "flash_attn: define KV_F16 or KV_Q8_0"
#endif

const uint DPT = HEAD_DIM / WG;  // output dimensions per thread
shared float qs[HEAD_DIM];
shared float ps[WG];
shared float red[WG];
#include "attn_q8_out.glsl"

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint i = gl_WorkGroupID.x, h = gl_WorkGroupID.y;
  const uint g = h / (p.n_head / p.n_kv_head);
  for (uint d = tid; d < HEAD_DIM; d += WG) qs[d] = q[i * p.q_stride_token + h * p.q_stride_head + d];
  const int qp = q_pos[i];
  const int qg = p.has_groups != 0u ? q_group[i] : -1;
  barrier();

  float m = -1.0 / 0.0, l = 0.0;
  float acc[DPT];
  for (uint t = 0; t < DPT; ++t) acc[t] = 0.0;

  const uint z = gl_WorkGroupID.z;
  const uint j_begin = SPLIT ? z * p.split_len : 0u;
  const uint j_end = SPLIT ? min(p.n_kv, j_begin + p.split_len) : p.n_kv;
  for (uint j0 = j_begin; j0 < j_end; j0 += WG) {
    const uint j = j0 + tid;
    float s = -1.0 / 0.0;
    if (j < j_end) {
      const int kp = kv_pos[j];
      bool visible = kp >= 0 && kp <= qp && (p.window <= 0 || qp - kp < p.window);
      if (kp >= 0 && qg >= 0 && kv_group[j] == qg) visible = true;
      if (visible) {
        const uint base = j * p.k_stride_slot + g * p.k_stride_head;
        float dot_qk = 0.0;
        for (uint d = 0; d < HEAD_DIM; d += 4u) {
          dot_qk += dot(vec4(qs[d], qs[d + 1u], qs[d + 2u], qs[d + 3u]), k_dq4(base, d));
        }
        s = p.scale * dot_qk;
      }
    }
    red[tid] = s;
    barrier();
    for (uint st = WG / 2u; st > 0u; st >>= 1) {
      if (tid < st) red[tid] = max(red[tid], red[tid + st]);
      barrier();
    }
    const float tile_max = red[0];
    barrier();
    if (tile_max == -1.0 / 0.0) continue;  // nothing visible in this tile (uniform)

    const float m_new = max(m, tile_max);
    const float alpha = exp(m - m_new);  // 0 on the first visible tile (m = -inf)
    ps[tid] = exp(s - m_new);            // 0 for invisible slots
    barrier();
    float psum = 0.0;
    for (uint t = 0; t < WG; ++t) psum += ps[t];
    l = l * alpha + psum;
    for (uint t = 0; t < DPT; ++t) acc[t] *= alpha;
    const uint jn = min(WG, j_end - j0);
    for (uint t = 0; t < jn; ++t) {
      const float pt = ps[t];
      if (pt == 0.0) continue;
      const uint base = (j0 + t) * p.v_stride_slot + g * p.v_stride_head;
      for (uint u = 0; u < DPT; ++u) acc[u] += pt * v_dq1(base, tid + u * WG);
    }
    m = m_new;
    barrier();
  }

  if (SPLIT) {
    const uint base = ((i * p.n_head + h) * gl_NumWorkGroups.z + z) * (HEAD_DIM + 2u);
    if (tid == 0u) {
      part[base] = m;
      part[base + 1u] = l;
    }
    for (uint u = 0; u < DPT; ++u) part[base + 2u + tid + u * WG] = acc[u];
    return;
  }
  const float inv = l > 0.0 ? 1.0 / l : 0.0;
  for (uint u = 0; u < DPT; ++u) {
    const float y = acc[u] * inv;
    o[i * p.out_stride_token + h * p.out_stride_head + tid + u * WG] = y;
    if (Q8OUT) qs[tid + u * WG] = y;  // q is no longer needed
  }
  if (!Q8OUT) return;
  barrier();
  store_head_q8(tid, (i * p.out_stride_token + h * HEAD_DIM) / 32u);
}
