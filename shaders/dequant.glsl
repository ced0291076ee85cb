// Dequantization of llama.cpp block formats (kernels/quant/formats.h), four elements at a time.
// Needs BYTE_READERS(w, <array>) from bytes.glsl and exactly one WTYPE_* define:
//   WTYPE_Q4_0, WTYPE_Q8_0, WTYPE_Q4_K, WTYPE_Q5_K, WTYPE_Q6_K, WTYPE_F16, WTYPE_BF16,
//   WTYPE_F32.
// w_dq4(rb, e): elements e..e+3 (e a multiple of 4) of the row starting at byte rb.
// w_dq1(rb, e): one element (only the float types need it, for rows with K % 4 != 0).
// W_BLOCK: elements per block (K must be a multiple of it).

#if defined(WTYPE_Q4_0)
#define W_BLOCK 32u
vec4 w_dq4(uint rb, uint e) {
  uint bb = rb + (e >> 5) * 18u;
  uint i = e & 31u;
  float d = w_f16(bb);
  uint q = w_u32(bb + 2u + (i & 15u));
  q = (i < 16u) ? (q & 0x0F0F0F0Fu) : ((q >> 4) & 0x0F0F0F0Fu);
  return d * (vec4(q & 0xFFu, (q >> 8) & 0xFFu, (q >> 16) & 0xFFu, q >> 24) - 8.0);
}

#elif defined(WTYPE_Q8_0)
#define W_BLOCK 32u
vec4 w_dq4(uint rb, uint e) {
  uint bb = rb + (e >> 5) * 34u;
  return w_f16(bb) * vec4(w_i8x4(bb + 2u + (e & 31u)));
}

#elif defined(WTYPE_Q4_K) || defined(WTYPE_Q5_K)
#define W_BLOCK 256u
// Q4_K / Q5_K: 6-bit scale and min of sub-block j from the 12 packed bytes at bb + 4.
void k4_scale_min(uint bb, uint j, out uint sc, out uint m) {
  if (j < 4u) {
    sc = w_u8(bb + 4u + j) & 63u;
    m = w_u8(bb + 8u + j) & 63u;
  } else {
    uint hi = w_u8(bb + 8u + j);
    sc = (hi & 15u) | ((w_u8(bb + j) >> 6) << 4);
    m = (hi >> 4) | ((w_u8(bb + 4u + j) >> 6) << 4);
  }
}
#if defined(WTYPE_Q4_K)
vec4 w_dq4(uint rb, uint e) {
  uint bb = rb + (e >> 8) * 144u;
  uint i = e & 255u;
  uint j = i >> 5;  // sub-block of 32
  float d = w_f16(bb), dmin = w_f16(bb + 2u);
  uint sc, m;
  k4_scale_min(bb, j, sc, m);
  uint q = w_u32(bb + 16u + (i >> 6) * 32u + (i & 31u));
  q = ((j & 1u) == 0u) ? (q & 0x0F0F0F0Fu) : ((q >> 4) & 0x0F0F0F0Fu);
  return d * float(sc) * vec4(q & 0xFFu, (q >> 8) & 0xFFu, (q >> 16) & 0xFFu, q >> 24) -
         dmin * float(m);
}

#else  // WTYPE_Q5_K
// Q4_K's scales and nibbles (qs at byte 48), plus bit j of qh[l] (byte 16 + l) as bit 4 of
// element 32j + l.
vec4 w_dq4(uint rb, uint e) {
  uint bb = rb + (e >> 8) * 176u;
  uint i = e & 255u;
  uint j = i >> 5;
  float d = w_f16(bb), dmin = w_f16(bb + 2u);
  uint sc, m;
  k4_scale_min(bb, j, sc, m);
  uint q = w_u32(bb + 48u + (i >> 6) * 32u + (i & 31u));
  q = ((j & 1u) == 0u) ? (q & 0x0F0F0F0Fu) : ((q >> 4) & 0x0F0F0F0Fu);
  q |= ((w_u32(bb + 16u + (i & 31u)) >> j) & 0x01010101u) << 4;
  return d * float(sc) * vec4(q & 0xFFu, (q >> 8) & 0xFFu, (q >> 16) & 0xFFu, q >> 24) -
         dmin * float(m);
}
#endif

#elif defined(WTYPE_Q6_K)
#define W_BLOCK 256u
vec4 w_dq4(uint rb, uint e) {
  uint bb = rb + (e >> 8) * 210u;
  uint i = e & 255u;
  uint h = i >> 7, qq = (i & 127u) >> 5, l = i & 31u;
  uint lo = w_u32(bb + 64u * h + l + (qq & 1u) * 32u) >> ((qq >> 1) * 4u);
  uint hi = w_u32(bb + 128u + 32u * h + l) >> (2u * qq);
  uint q = (lo & 0x0F0F0F0Fu) | ((hi & 0x03030303u) << 4);
  int sc = bitfieldExtract(int(w_u8(bb + 192u + 8u * h + (l >> 4) + 2u * qq)), 0, 8);
  float d = w_f16(bb + 208u) * float(sc);
  return d * (vec4(q & 0xFFu, (q >> 8) & 0xFFu, (q >> 16) & 0xFFu, q >> 24) - 32.0);
}

#elif defined(WTYPE_F16)
#define W_BLOCK 1u
vec4 w_dq4(uint rb, uint e) {
  uint b = rb + 2u * e;
  return vec4(unpackHalf2x16(w_u32(b)), unpackHalf2x16(w_u32(b + 4u)));
}
float w_dq1(uint rb, uint e) { return w_f16(rb + 2u * e); }

#elif defined(WTYPE_BF16)
#define W_BLOCK 1u
vec2 bf16x2(uint u) { return vec2(uintBitsToFloat(u << 16), uintBitsToFloat(u & 0xFFFF0000u)); }
vec4 w_dq4(uint rb, uint e) {
  uint b = rb + 2u * e;
  return vec4(bf16x2(w_u32(b)), bf16x2(w_u32(b + 4u)));
}
float w_dq1(uint rb, uint e) { return uintBitsToFloat(w_u16(rb + 2u * e) << 16); }

#elif defined(WTYPE_F32)
#define W_BLOCK 1u
vec4 w_dq4(uint rb, uint e) {
  uint i = (rb >> 2) + e;
  return uintBitsToFloat(uvec4(w_u32(4u * i), w_u32(4u * i + 4u), w_u32(4u * i + 8u), w_u32(4u * i + 12u)));
}
float w_dq1(uint rb, uint e) { return uintBitsToFloat(w_u32(rb + 4u * e)); }

#else
#error "define one WTYPE_*"
#endif

#if defined(WTYPE_F16) || defined(WTYPE_BF16) || defined(WTYPE_F32)
#define W_HAS_DQ1 1
#endif
