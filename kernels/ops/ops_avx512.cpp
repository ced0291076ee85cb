// AVX-512 (F/BW/DQ, 16 floats a vector) instantiation of the float ops (kernels/ops/ops_simd.h).
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512DQ__)
#error "ops_avx512.cpp must be compiled with -mavx512f -mavx512bw -mavx512dq"
#endif

// GCC 12's avx512fintrin.h trips -W(maybe-)uninitialized on _mm512_undefined_*() inside xsimd.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/ops/ops_internal.h"
#include "kernels/ops/ops_simd.h"

namespace qgemma {

const OpsKernels* ops_kernels_avx512() {
  static const OpsKernels k = make_ops_kernels<xsimd::avx512bw>();
  return &k;
}

}  // namespace qgemma
