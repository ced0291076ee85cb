// Byte-addressed reads from a `uint` storage array, so block formats with 2-byte alignment
// (Q4_0: 18-byte blocks, Q8_0: 34, Q6_K: 210) need no 8/16-bit storage feature.
// BYTE_READERS(P, ARR) defines P_u8(byte), P_u16(byte) (byte even), P_u32(byte) (byte even)
// and P_i8x4(byte) (byte even; four sign-extended bytes) over the uint array ARR.
#define BYTE_READERS(P, ARR)                                                          \
  uint P##_u8(uint b) { return (ARR[b >> 2] >> ((b & 3u) * 8u)) & 0xFFu; }             \
  uint P##_u16(uint b) { return (ARR[b >> 2] >> ((b & 2u) * 8u)) & 0xFFFFu; }          \
  uint P##_u32(uint b) {                                                                \
    uint i = b >> 2;                                                                    \
    return (b & 2u) == 0u ? ARR[i] : ((ARR[i] >> 16) | (ARR[i + 1u] << 16));            \
  }                                                                                     \
  float P##_f16(uint b) { return unpackHalf2x16(P##_u16(b)).x; }                        \
  ivec4 P##_i8x4(uint b) {                                                              \
    int v = int(P##_u32(b));                                                            \
    return ivec4(bitfieldExtract(v, 0, 8), bitfieldExtract(v, 8, 8),                    \
                 bitfieldExtract(v, 16, 8), bitfieldExtract(v, 24, 8));                 \
  }
