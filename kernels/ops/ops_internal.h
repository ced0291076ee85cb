// Per-ISA op tables, defined in ops_ref.cpp / ops_avx2.cpp / ops_avx512.cpp / ops_neon.cpp and
// picked by ops.cpp. Not for use outside kernels/ops.
#pragma once

#include "kernels/ops/ops.h"

namespace qgemma {

const OpsKernels* ops_kernels_ref();
#if defined(__x86_64__)
const OpsKernels* ops_kernels_avx2();
const OpsKernels* ops_kernels_avx512();
#endif
#if defined(__aarch64__)
const OpsKernels* ops_kernels_neon();
#endif

}  // namespace qgemma
