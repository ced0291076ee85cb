#version 450
// Element-wise arithmetic: OP 0: y = a + b, 1: y = a * b, 2: y = a * s (b unused).
// b broadcasts over a: b[i % nb] (nb = n for same-shape operands, a row length for a per-row
// weight). y may alias a.
layout(constant_id = 0) const uint OP = 0;
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint n;
  uint nb;
  uint groups_x;
  float s;
} p;

layout(binding = 0) readonly buffer ABuf { float a[]; };
layout(binding = 1) readonly buffer BBuf { float b[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

void main() {
  const uint id = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x;
  if (id >= p.n) return;
  if (OP == 0u) {
    y[id] = a[id] + b[id % p.nb];
  } else if (OP == 1u) {
    y[id] = a[id] * b[id % p.nb];
  } else {
    y[id] = a[id] * p.s;
  }
}
