#version 450
// Stores K or V rows of a batch into the KV cache: src[t][g * head_dim + d] (f32) goes to the
// row of KV head g in slot slots[t], converted to the cache format (KV_F16 or KV_Q8_0, the
// latter as quantize_row_q8_0_ref). Rows start on a
// 4-byte boundary (checked by the launcher), so each thread writes whole words: F16, one thread
// per word; Q8_0, one thread per row. Workgroups with z = 1 store a second tensor of the same
// shape (src1 into dst1): K and V of a layer in one dispatch.
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  uint tokens;
  uint n_kv_head;
  uint head_dim;
  uint src_stride;   // floats between tokens
  uint stride_slot;  // bytes
  uint stride_head;  // bytes
} p;

layout(binding = 0) readonly buffer SrcBuf { float src0[]; };
layout(binding = 1) readonly buffer SlotBuf { int slots[]; };
layout(binding = 2) buffer DstBuf { uint dst0[]; };
layout(binding = 3) readonly buffer Src1Buf { float src1[]; };
layout(binding = 4) buffer Dst1Buf { uint dst1[]; };

#include "f16.glsl"

// The tensor this workgroup stores (uniform over the workgroup).
#define second (gl_WorkGroupID.z != 0u)
float src(uint i) { return second ? src1[i] : src0[i]; }
void put(uint i, uint v) {
  if (second) {
    dst1[i] = v;
  } else {
    dst0[i] = v;
  }
}
uint get(uint i) { return second ? dst1[i] : dst0[i]; }

void main() {
#if defined(KV_F16)
  // One thread per output word (two values).
  const uint id = gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u + gl_GlobalInvocationID.x;
  const uint words = p.head_dim / 2u;
  if (id >= p.tokens * p.n_kv_head * words) return;
  const uint row = id / words, d = 2u * (id % words);
  const uint t = row / p.n_kv_head, g = row % p.n_kv_head;
  const uint so = t * p.src_stride + g * p.head_dim + d;
  const uint wo = (uint(slots[t]) * p.stride_slot + g * p.stride_head) >> 2;
  put(wo + d / 2u, f16x2_bits(src(so), src(so + 1u)));
#elif defined(KV_Q8_0)
  // One thread per (token, KV head) row: Q8_0 blocks are 34 bytes, so neighbouring blocks share
  // words and one writer per row keeps the writes race-free.
  const uint id = gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64u + gl_GlobalInvocationID.x;
  if (id >= p.tokens * p.n_kv_head) return;
  const uint t = id / p.n_kv_head, g = id % p.n_kv_head;
  const uint so = t * p.src_stride + g * p.head_dim;
  const uint wo = (uint(slots[t]) * p.stride_slot + g * p.stride_head) >> 2;
  // Bytes of the row, packed little-endian into words as they are produced.
  uint word = 0u, nbytes = 0u, w = wo;
  for (uint b = 0; b < p.head_dim / 32u; ++b) {
    float amax = 0.0;
    for (uint i = 0; i < 32u; ++i) amax = max(amax, abs(src(so + 32u * b + i)));
    const float d = div_rn(amax, 127.0);
    const float inv = d != 0.0 ? div_rn(1.0, d) : 0.0;
    const uint dh = f16_bits(d);
    for (uint k = 0; k < 34u; ++k) {
      uint byte;
      if (k < 2u) {
        byte = (dh >> (8u * k)) & 0xFFu;
      } else {
        precise float v = src(so + 32u * b + k - 2u) * inv;  // no fma into the + 0.5
        byte = uint(int(sign(v) * floor(abs(v) + 0.5)) & 0xFF);
      }
      word |= byte << (8u * (nbytes & 3u));
      if ((++nbytes & 3u) == 0u) {
        put(w++, word);
        word = 0u;
      }
    }
  }
  if ((nbytes & 3u) != 0u) put(w, (get(w) & ~((1u << (8u * (nbytes & 3u))) - 1u)) | word);
#else
#error "kv_store: define KV_F16 or KV_Q8_0"
#endif
}
