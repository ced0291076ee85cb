// CPU-matching numerics for the shaders that quantize.
//
// fp32 -> f16 bits with round-to-nearest-even, as the CPU's conversion (kernels/quant) does.
// packHalf2x16's rounding is implementation-defined (NVIDIA's differs from lavapipe's), and the
// cache and Q8 activation scales must match the CPU's bit for bit.
uint f16_bits(float v) {
  const uint x = floatBitsToUint(v);
  const uint s = (x >> 16) & 0x8000u;
  const uint ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return s | 0x7E00u;  // NaN
  if (ax >= 0x477FF000u) return s | 0x7C00u;  // >= 65520 rounds to infinity
  if (ax >= 0x38800000u) {                    // normal f16 (>= 2^-14): drop 13 mantissa bits
    return s | ((ax + 0xFFFu + ((ax >> 13) & 1u) - 0x38000000u) >> 13);
  }
  return s | uint(roundEven(uintBitsToFloat(ax) * 16777216.0));  // subnormal: units of 2^-24
}

uint f16x2_bits(float lo, float hi) { return f16_bits(lo) | (f16_bits(hi) << 16); }

// a / b correctly rounded (as the CPU's IEEE division) for the quantizers' scales: GLSL lets
// drivers compute a / b as a * approx(1 / b), which moves a q8 value across a rounding boundary
// now and then. One Newton step on the remainder fixes the last bit.
float div_rn(float a, float b) {
  precise float q = a / b;
  precise float r = fma(-q, b, a);
  precise float out_q = fma(r, 1.0 / b, q);
  return out_q;
}
