#version 450
// GeGLU: y = gelu_tanh(gate) * up, gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))).
// gate, up, y: [rows][n] with their own row strides (gate and up may be halves of one buffer).
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint n;
  uint rows;
  uint gate_stride, up_stride, y_stride;  // floats
  uint groups_x;
} p;

layout(binding = 0) readonly buffer GBuf { float gate[]; };
layout(binding = 1) readonly buffer UBuf { float up[]; };
layout(binding = 2) writeonly buffer YBuf { float y[]; };

float gelu_tanh(float x) {
  // tanh of a clamped argument: GPU tanh may overflow to NaN for large |u|; tanh(10) == 1.0f.
  const float u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -10.0, 10.0);
  return 0.5 * x * (1.0 + tanh(u));
}

void main() {
  const uint id = (gl_WorkGroupID.y * p.groups_x + gl_WorkGroupID.x) * 256u + gl_LocalInvocationID.x;
  if (id >= p.n * p.rows) return;
  const uint r = id / p.n, i = id % p.n;
  y[r * p.y_stride + i] = gelu_tanh(gate[r * p.gate_stride + i]) * up[r * p.up_stride + i];
}
