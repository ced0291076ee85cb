// AVX-VNNI GEMV/GEMM for the repacked Q4_0x8 / Q8_0x8 layouts: x8_avx2_impl.h with vpdpbusd (see
// there).
#define QGEMMA_X8_AVXVNNI 1
#include "kernels/matmul/x8_avx2_impl.h"
