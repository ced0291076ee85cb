// AArch64 NEON instantiation of the float ops (kernels/ops/ops_simd.h).
#if !defined(__aarch64__) || !defined(__ARM_FEATURE_DOTPROD)
#error "ops_neon.cpp must be compiled for armv8.2-a+dotprod"
#endif

#include "kernels/ops/ops_internal.h"
#include "kernels/ops/ops_simd.h"

namespace qgemma {

const OpsKernels* ops_kernels_neon() {
  static const OpsKernels k = make_ops_kernels<xsimd::neon64>();
  return &k;
}

}  // namespace qgemma
