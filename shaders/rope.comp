#version 450
// RoPE with a frequency table (kernels/ops/ops.h rope_inv_freq): angle_i = pos * inv_freq[i]
// (float product), pair i of each head rotated by it. NEOX = true: dimension i pairs with
// i + head_dim/2 (Gemma 4); false: (2i, 2i+1). Pairs with inv_freq 0 pass through, so the
// "proportional" rotation of Gemma 4's global layers is a table with trailing zeros.
// x: [tokens][heads][head_dim] with a token stride; one thread per pair; y may alias x.
layout(constant_id = 0) const bool NEOX = true;
layout(local_size_x = 64) in;

layout(push_constant) uniform Push {
  uint tokens;
  uint heads;
  uint head_dim;
  uint x_stride_token;  // floats
  uint y_stride_token;  // floats
  uint groups_x;
} p;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) readonly buffer PosBuf { int pos[]; };
layout(binding = 2) readonly buffer FreqBuf { float inv_freq[]; };
layout(binding = 3) writeonly buffer YBuf { float y[]; };

// cos/sin after reducing the angle by 2 pi in two parts (Cody-Waite), so large positions keep
// their accuracy on GPUs whose sin/cos are only accurate near zero.
vec2 cos_sin(float a) {
  const float k = round(a * 0.15915494309189535);
  const float r = (a - k * 6.28125) - k * 0.0019353071795864769;
  return vec2(cos(r), sin(r));
}

void main() {
  const uint half_dim = p.head_dim / 2u;
  const uint id = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * 64u + gl_LocalInvocationID.x;
  if (id >= p.tokens * p.heads * half_dim) return;
  const uint i = id % half_dim, head = (id / half_dim) % p.heads, t = id / (half_dim * p.heads);
  const uint i0 = NEOX ? i : 2u * i, i1 = NEOX ? i + half_dim : 2u * i + 1u;
  const uint xo = t * p.x_stride_token + head * p.head_dim, yo = t * p.y_stride_token + head * p.head_dim;
  const float a = float(pos[t]) * inv_freq[i];
  const vec2 cs = cos_sin(a);
  const float x0 = x[xo + i0], x1 = x[xo + i1];
  y[yo + i0] = x0 * cs.x - x1 * cs.y;
  y[yo + i1] = x0 * cs.y + x1 * cs.x;
}
