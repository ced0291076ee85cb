// Workgroup reductions. Needs `const uint WG` (a power of two) and `shared float red[WG]`
// declared before inclusion. Every thread gets the result; all threads of the workgroup must
// call (uniform control flow).
//
// Compile-time variant SUBGROUP_REDUCE (modules <name>_sg, chosen when the device has subgroup
// arithmetic in compute shaders): subgroupAdd / subgroupMax within each subgroup, then one
// shared-memory pass over the subgroups' partials (no barrier at all when the workgroup is one
// subgroup). The shader must enable GL_KHR_shader_subgroup_arithmetic at its top. Without it:
// a shared-memory tree, log2(WG) barriers.
#ifdef SUBGROUP_REDUCE
float wg_sum(float v) {
  v = subgroupAdd(v);
  if (gl_NumSubgroups == 1u) return v;
  if (subgroupElect()) red[gl_SubgroupID] = v;
  barrier();
  float r = red[0];
  for (uint s = 1u; s < gl_NumSubgroups; ++s) r += red[s];
  barrier();
  return r;
}

float wg_max(float v) {
  v = subgroupMax(v);
  if (gl_NumSubgroups == 1u) return v;
  if (subgroupElect()) red[gl_SubgroupID] = v;
  barrier();
  float r = red[0];
  for (uint s = 1u; s < gl_NumSubgroups; ++s) r = max(r, red[s]);
  barrier();
  return r;
}
#else
float wg_sum(float v) {
  const uint tid = gl_LocalInvocationID.x;
  red[tid] = v;
  barrier();
  for (uint s = WG / 2u; s > 0u; s >>= 1) {
    if (tid < s) red[tid] += red[tid + s];
    barrier();
  }
  const float r = red[0];
  barrier();
  return r;
}

float wg_max(float v) {
  const uint tid = gl_LocalInvocationID.x;
  red[tid] = v;
  barrier();
  for (uint s = WG / 2u; s > 0u; s >>= 1) {
    if (tid < s) red[tid] = max(red[tid], red[tid + s]);
    barrier();
  }
  const float r = red[0];
  barrier();
  return r;
}
#endif
