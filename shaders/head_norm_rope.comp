#version 450
// Gemma 4's per-head norms and RoPE of Q, K and V in one dispatch (instead of five):
//   q_out = rope(rmsnorm(q) * wq), k_out = rope(rmsnorm(k) * wk), v_out = rmsnorm(v) * wv
// with the weights optional (flags), V optional (n_v_head = 0) and RoPE optional per part
// (flags). One workgroup per (token, head row); rows of a token are ordered q heads, k heads,
// v heads. RoPE as rope.comp (frequency table, NeoX pairing: i with i + head_dim / 2; angles
// range-reduced). Thread tid owns pairs tid + k * WG (k < ITEMS). Same arithmetic as rms_norm
// followed by rope. Outputs may alias their own input (each row is read before it is written).
// STORE = 1 (F16) or 2 (Q8_0): the K and V rows are also written into the KV cache rows of
// slot slots[t] (kv_store.comp's formats and rounding, so the bytes equal the CPU's).
#extension GL_GOOGLE_include_directive : require
#ifdef SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint ITEMS = 2;
layout(constant_id = 2) const uint STORE = 0;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint tokens;
  uint head_dim;
  uint n_q_head, n_k_head, n_v_head;
  uint q_stride, k_stride, v_stride;  // floats between tokens (inputs and outputs alike)
  uint flags;  // 1: wq, 2: wk, 4: wv, 8: rope q, 16: rope k
  uint groups_x;
  float eps;
  uint stride_slot, stride_head;  // cache bytes (STORE)
} p;

layout(binding = 0) readonly buffer QBuf { float q[]; };
layout(binding = 1) readonly buffer KBuf { float k[]; };
layout(binding = 2) readonly buffer VBuf { float v[]; };
layout(binding = 3) readonly buffer WqBuf { float wq[]; };
layout(binding = 4) readonly buffer WkBuf { float wk[]; };
layout(binding = 5) readonly buffer WvBuf { float wv[]; };
layout(binding = 6) readonly buffer PosBuf { int pos[]; };
layout(binding = 7) readonly buffer FreqBuf { float inv_freq[]; };
layout(binding = 8) writeonly buffer QOut { float q_out[]; };
layout(binding = 9) writeonly buffer KOut { float k_out[]; };
layout(binding = 10) writeonly buffer VOut { float v_out[]; };
layout(binding = 11) readonly buffer SlotBuf { int slots[]; };
layout(binding = 12) writeonly buffer KCache { uint k_cache[]; };
layout(binding = 13) writeonly buffer VCache { uint v_cache[]; };

shared float red[WG];
#include "reduce.glsl"
#include "f16.glsl"

shared float row_s[STORE != 0u ? 2u * ITEMS * WG : 1u];
shared float d_s[STORE != 0u ? (2u * ITEMS * WG + 31u) / 32u : 1u];

void put(uint part, uint i, uint v) {
  if (part == 1u) {
    k_cache[i] = v;
  } else {
    v_cache[i] = v;
  }
}

vec2 cos_sin(float a) {
  const float kk = round(a * 0.15915494309189535);
  const float r = (a - kk * 6.28125) - kk * 0.0019353071795864769;
  return vec2(cos(r), sin(r));
}

void main() {
  const uint heads = p.n_q_head + p.n_k_head + p.n_v_head;
  const uint id = gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x;
  if (id >= p.tokens * heads) return;
  const uint t = id / heads, hr = id % heads;
  // Which part (0 q, 1 k, 2 v) and the row's offset in it: uniform over the workgroup.
  uint part, o;
  if (hr < p.n_q_head) {
    part = 0u;
    o = t * p.q_stride + hr * p.head_dim;
  } else if (hr < p.n_q_head + p.n_k_head) {
    part = 1u;
    o = t * p.k_stride + (hr - p.n_q_head) * p.head_dim;
  } else {
    part = 2u;
    o = t * p.v_stride + (hr - p.n_q_head - p.n_k_head) * p.head_dim;
  }
  const uint half_dim = p.head_dim / 2u, tid = gl_LocalInvocationID.x;
  const bool has_w = (p.flags & (1u << part)) != 0u;
  const bool roped = part < 2u && (p.flags & (8u << part)) != 0u;
  // Inputs, weights and the rotation are all loaded / computed before the reduction, so their
  // latencies overlap.
  vec2 x[ITEMS], w[ITEMS], cs[ITEMS];  // (element i, element i + half_dim)
  const float fpos = float(pos[t]);
  float ss = 0.0;
  for (uint j = 0; j < ITEMS; ++j) {
    const uint i = tid + j * WG;
    x[j] = vec2(0.0);
    w[j] = vec2(1.0);
    cs[j] = vec2(1.0, 0.0);
    if (i < half_dim) {
      if (part == 0u) {
        x[j] = vec2(q[o + i], q[o + i + half_dim]);
        if (has_w) w[j] = vec2(wq[i], wq[i + half_dim]);
      } else if (part == 1u) {
        x[j] = vec2(k[o + i], k[o + i + half_dim]);
        if (has_w) w[j] = vec2(wk[i], wk[i + half_dim]);
      } else {
        x[j] = vec2(v[o + i], v[o + i + half_dim]);
        if (has_w) w[j] = vec2(wv[i], wv[i + half_dim]);
      }
      if (roped) cs[j] = cos_sin(fpos * inv_freq[i]);
    }
    ss += dot(x[j], x[j]);
  }
  const float r = 1.0 / sqrt(wg_sum(ss) / float(p.head_dim) + p.eps);
  for (uint j = 0; j < ITEMS; ++j) {
    const uint i = tid + j * WG;
    if (i >= half_dim) continue;
    vec2 y = has_w ? vec2(x[j].x * r * w[j].x, x[j].y * r * w[j].y) : x[j] * r;
    if (roped) y = vec2(y.x * cs[j].x - y.y * cs[j].y, y.x * cs[j].y + y.y * cs[j].x);
    if (part == 0u) {
      q_out[o + i] = y.x;
      q_out[o + i + half_dim] = y.y;
    } else if (part == 1u) {
      k_out[o + i] = y.x;
      k_out[o + i + half_dim] = y.y;
    } else {
      v_out[o + i] = y.x;
      v_out[o + i + half_dim] = y.y;
    }
    if (STORE != 0u) {
      row_s[i] = y.x;
      row_s[i + half_dim] = y.y;
    }
  }
  if (STORE == 0u || part == 0u) return;  // uniform over the workgroup
  barrier();
  const uint head = hr - p.n_q_head - (part == 2u ? p.n_k_head : 0u);
  const uint wo = (uint(slots[t]) * p.stride_slot + head * p.stride_head) >> 2;
  if (STORE == 1u) {  // F16: a word per two values
    for (uint w = tid; w < half_dim; w += WG) {
      put(part, wo + w, f16x2_bits(row_s[2u * w], row_s[2u * w + 1u]));
    }
    return;
  }
  // Q8_0: 34-byte blocks; block scales first, then every thread packs whole words.
  const uint nb = p.head_dim / 32u;
  for (uint b = tid; b < nb; b += WG) {
    float amax = 0.0;
    for (uint e = 0; e < 32u; ++e) amax = max(amax, abs(row_s[32u * b + e]));
    d_s[b] = div_rn(amax, 127.0);
  }
  barrier();
  for (uint w = tid; w < nb * 34u / 4u; w += WG) {
    uint word = 0u;
    for (uint e = 0; e < 4u; ++e) {
      const uint byte_i = 4u * w + e, b = byte_i / 34u, off = byte_i % 34u;
      const float d = d_s[b];
      uint byte;
      if (off < 2u) {
        byte = (f16_bits(d) >> (8u * off)) & 0xFFu;
      } else {
        const float inv = d != 0.0 ? div_rn(1.0, d) : 0.0;
        precise float v = row_s[32u * b + off - 2u] * inv;  // no fma into the + 0.5
        byte = uint(int(sign(v) * floor(abs(v) + 0.5)) & 0xFF);
      }
      word |= byte << (8u * e);
    }
    put(part, wo + w, word);
  }
}
