#version 450
// Soft cap: y = cap * tanh(x / cap) (Gemma 4 final logits: cap 30). y may alias x.
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint n;
  uint groups_x;
  float cap;
} p;

layout(binding = 0) readonly buffer XBuf { float x[]; };
layout(binding = 1) writeonly buffer YBuf { float y[]; };

void main() {
  const uint id = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x;
  if (id >= p.n) return;
  y[id] = p.cap * tanh(clamp(x[id] / p.cap, -10.0, 10.0));
}
