// AVX2 GEMV/GEMM for the repacked Q4_0x8 / Q8_0x8 layouts (the code and its notes: x8_avx2_impl.h).
#include "kernels/matmul/x8_avx2_impl.h"
