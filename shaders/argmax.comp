#version 450
// Index of the largest element of each row of n floats (the first on ties; NaN never wins
// unless the whole row is NaN, then 0). One workgroup per row.
layout(constant_id = 0) const uint WG = 256;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint n;
  uint rows;
} p;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) writeonly buffer YBuf { int y[]; };

shared float sv[WG];
shared uint si[WG];

// (v, i) beats (bv, bi): larger value, or equal value and smaller index; NaN never beats.
bool better(float v, uint i, float bv, uint bi) {
  if (isnan(v)) return false;
  if (isnan(bv)) return true;
  return v > bv || (v == bv && i < bi);
}

void main() {
  const uint row = gl_WorkGroupID.x;
  const uint tid = gl_LocalInvocationID.x, o = row * p.n;
  float bv = 0.0 / 0.0;
  uint bi = 0xFFFFFFFFu;
  for (uint i = tid; i < p.n; i += WG) {
    const float v = x[o + i];
    if (better(v, i, bv, bi)) bv = v, bi = i;
  }
  sv[tid] = bv;
  si[tid] = bi;
  barrier();
  for (uint s = WG / 2u; s > 0u; s >>= 1) {
    if (tid < s && better(sv[tid + s], si[tid + s], sv[tid], si[tid])) {
      sv[tid] = sv[tid + s];
      si[tid] = si[tid + s];
    }
    barrier();
  }
  if (tid == 0u) y[row] = si[0] == 0xFFFFFFFFu ? 0 : int(si[0]);
}
