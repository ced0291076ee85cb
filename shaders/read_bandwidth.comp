#version 450
// Memory read bandwidth probe for `qgemma devices --bandwidth`: every thread reads 16-byte
// words with a grid stride and writes one word (so the reads cannot be optimized away).
layout(local_size_x = 256) in;

layout(push_constant) uniform Push {
  uint words;  // uvec4 elements in src
} p;

layout(binding = 0) readonly buffer Src { uvec4 src[]; };
layout(binding = 1) writeonly buffer Dst { uint dst[]; };

void main() {
  const uint stride = gl_NumWorkGroups.x * 256u;
  uvec4 acc = uvec4(0u);
  for (uint i = gl_GlobalInvocationID.x; i < p.words; i += stride) acc ^= src[i];
  dst[gl_GlobalInvocationID.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
