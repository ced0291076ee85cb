#version 450
// Quantizes float activations to Q8 blocks of 32 for the integer-dot matrix-vector shader:
// per block {float d, int sum, int qs[8]} (10 words), d = f16-rounded amax / 127 as in
// quantize_row_q8_0_ref, q = round-half-away(x * (1 / d)), sum = sum of the 32 q (Q4_0's
// offset of 8 is then subtracted exactly, in integers).
// One thread per block; K a multiple of 32.
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  uint blocks;    // blocks per column (K / 32)
  uint columns;   // activation columns
  uint x_stride;  // floats between columns
} p;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) writeonly buffer QBuf { uint xq[]; };

void main() {
  const uint id = gl_GlobalInvocationID.x;
  if (id >= p.blocks * p.columns) return;
  const uint c = id / p.blocks, b = id % p.blocks;
  const uint xo = c * p.x_stride + b * 32u;
  float amax = 0.0;
  for (uint i = 0; i < 32u; ++i) amax = max(amax, abs(x[xo + i]));
  const float d = amax / 127.0;
  const float id_ = d != 0.0 ? 1.0 / d : 0.0;
  const uint qo = id * 10u;
  int sum = 0;
  for (uint w = 0; w < 8u; ++w) {
    uint packed = 0u;
    for (uint k = 0; k < 4u; ++k) {
      const float v = x[xo + w * 4u + k] * id_;
      const int q = int(sign(v) * floor(abs(v) + 0.5));
      sum += q;
      packed |= uint(q & 0xFF) << (8u * k);
    }
    xq[qo + 2u + w] = packed;
  }
  const float dh = unpackHalf2x16(packHalf2x16(vec2(d, 0.0))).x;
  xq[qo] = floatBitsToUint(dh);
  xq[qo + 1u] = uint(sum);
}
