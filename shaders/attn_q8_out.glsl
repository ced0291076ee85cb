// The Q8 copy of one attention output row (quantize_q8.comp's layout and rounding) for the
// integer-dot output projection. Needs `shared float qs[HEAD_DIM]` holding the head's output
// (written by this workgroup before a barrier), `uint xq[]`, WG, HEAD_DIM (a multiple of 32:
// blocks never straddle heads) and f16.glsl. `blocks_before`: Q8 blocks before this head's.
// One thread per packed word (4 values); each recomputes its block's scale and sum from shared
// memory (32 values), so no further reduction is needed.
void store_head_q8(uint tid, uint blocks_before) {
  for (uint w = tid; w < HEAD_DIM / 4u; w += WG) {
    const uint b = w / 8u, lane = w % 8u;
    float amax = 0.0;
    for (uint e = 0; e < 32u; ++e) amax = max(amax, abs(qs[32u * b + e]));
    const float d = div_rn(amax, 127.0);
    const float id_ = d != 0.0 ? div_rn(1.0, d) : 0.0;
    uint packed = 0u;
    int sum = 0;
    for (uint e = 0; e < 32u; ++e) {
      precise float v = qs[32u * b + e] * id_;  // no fma into the + 0.5 below
      const int qv = int(sign(v) * floor(abs(v) + 0.5));
      sum += qv;
      if (e / 4u == lane) packed |= uint(qv & 0xFF) << (8u * (e % 4u));
    }
    const uint qo = (blocks_before + b) * 10u;
    xq[qo + 2u + lane] = packed;
    if (lane == 0u) {
      xq[qo] = floatBitsToUint(unpackHalf2x16(f16_bits(d)).x);
      xq[qo + 1u] = uint(sum);
    }
  }
}
