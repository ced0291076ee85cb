// AVX2 Q4_K / Q5_K / Q6_K x Q8_K matmul (the code and its notes: kquant_avx2_impl.h).
#include "kernels/matmul/kquant_avx2_impl.h"
