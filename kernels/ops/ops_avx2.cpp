// AVX2 + FMA instantiation of the float ops (kernels/ops/ops_simd.h).
#if !defined(__AVX2__) || !defined(__FMA__)
#error "ops_avx2.cpp must be compiled with -mavx2 -mfma"
#endif

#include "kernels/ops/ops_internal.h"
#include "kernels/ops/ops_simd.h"

namespace qgemma {

const OpsKernels* ops_kernels_avx2() {
  static const OpsKernels k = make_ops_kernels<xsimd::fma3<xsimd::avx2>>();
  return &k;
}

}  // namespace qgemma
