// AVX-VNNI Q4_K / Q5_K / Q6_K x Q8_K matmul: kquant_avx2_impl.h with vpdpwssd (see there).
#define QGEMMA_KQUANT_AVXVNNI 1
#include "kernels/matmul/kquant_avx2_impl.h"
