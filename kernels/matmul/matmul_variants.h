// Declarations of every matmul variant (see matmul.h for the semantics of MatmulFn). The table in
// matmul.cpp maps (weight type, ISA) to these. To add a weight type or an ISA variant: declare it
// here, implement it in its own file (<name>_<isa>.cpp gets the ISA's compile flags), add it to
// the table in matmul.cpp, and add the type to the lists in tests/kernels/test_matmul.cpp and
// bench/bench_matmul.cpp.
#pragma once

#include "kernels/matmul/matmul.h"

namespace qgemma {

// ---- scalar references (one per weight type; used for both R <= 8 and larger R) --------------
void matmul_q4_0_q8_0_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q8_0_q8_0_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q4_0x8_q8_0_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q8_0x8_q8_0_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_f32_f32_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_f16_f32_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_bf16_f32_ref(const MatmulArgs& a, int64_t n0, int64_t n1);

// ---- K-quants ----------------------------------------------------------------------------------
// Q4_K / Q6_K x Q8_K (kernels/matmul/matmul_kquant_*.cpp, kquant.h). Each ISA has one body for
// any R, registered as both its gemv and its gemm.
void matmul_q4_k_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q6_k_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q5_k_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
#if defined(__x86_64__)
void matmul_q4_k_q8_k_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q6_k_q8_k_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q5_k_q8_k_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q4_k_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q6_k_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q5_k_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
#endif
// The repacked Q4_Kx8 / Q6_Kx8 / Q5_Kx8 (ref and AVX-512; one body for any R).
void matmul_q4_kx8_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q6_kx8_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q5_kx8_q8_k_ref(const MatmulArgs& a, int64_t n0, int64_t n1);
#if defined(__x86_64__)
void matmul_q4_kx8_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q6_kx8_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q5_kx8_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);  // no avx2 variant
// AVX2 (+FMA, F16C), kernels/matmul/matmul_kx8_avx2.cpp.
void matmul_q4_kx8_q8_k_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q6_kx8_q8_k_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
#endif
#if defined(__aarch64__)
void matmul_q4_k_q8_k_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q6_k_q8_k_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q5_k_q8_k_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
#endif

#if defined(__x86_64__)
// ---- Q4_0 / Q8_0 (+x8) and float weights, AVX2 (+FMA, F16C)
// -------------------------------------- gemv_*: plain layouts, tuned for R <= 8 (any R works).
// matmul_*: one body for any R (GEMV for R <= 8, tiled GEMM above), registered as both gemv and
// gemm.
void gemv_q4_0_q8_0_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_q8_0_q8_0_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q4_0x8_q8_0_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q8_0x8_q8_0_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_f32_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_f16_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_bf16_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
// GEMM for prefill (any R; registered for R > 8): cache-blocked, weights converted to F32 once
// per block of activation rows; each row's result equals the gemv's bit for bit
// (matmul_float_avx2.cpp).
void gemm_f32_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemm_f16_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemm_bf16_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1);
// AVX2 + AVX-VNNI (VEX vpdpbusd), matmul_x8_avxvnni.cpp: the repacked layouts at the avx2 level
// on CPUs with AVX-VNNI (Intel client cores since Alder Lake); results equal the AVX2 kernels'
// bit for bit. matmul.cpp puts them in the avx2 entries when avx_vnni_enabled().
void matmul_q4_0x8_q8_0_avxvnni(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q8_0x8_q8_0_avxvnni(const MatmulArgs& a, int64_t n0, int64_t n1);
// The plain K-quants with vpdpwssd (matmul_kquant_avxvnni.cpp, kquant_avx2_impl.h): the same,
// results equal to the *_avx2 kernels' bit for bit.
void matmul_q4_k_q8_k_avxvnni(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q6_k_q8_k_avxvnni(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q5_k_q8_k_avxvnni(const MatmulArgs& a, int64_t n0, int64_t n1);

// ---- the same, AVX-512 (F, BW, VL, VNNI) -------------------------------------------------------
void gemv_q4_0_q8_0_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_q8_0_q8_0_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q4_0x8_q8_0_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q8_0x8_q8_0_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_f32_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_f16_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_bf16_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
// GEMM for prefill (any R; registered for R > 8): cache-blocked, weights converted to F32 once
// per block of activation rows; each row's result equals the gemv's bit for bit
// (matmul_float_avx512.cpp).
void gemm_f32_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemm_f16_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemm_bf16_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
// BF16 weights x activations rounded to BF16 inside the kernel (vdpbf16ps; AVX512_BF16 CPUs
// only: check cpu_features().avx512bf16). Less precise than the F32-activation kernels (see
// matmul_float_avx512.cpp); not in the dispatch table.
void gemm_bf16_bf16_avx512(const MatmulArgs& a, int64_t n0, int64_t n1);
#endif

#if defined(__aarch64__)
// ---- NEON (dotprod, fp16) ----------------------------------------------------------------------
void gemv_q4_0_q8_0_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_q8_0_q8_0_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q4_0x8_q8_0_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q8_0x8_q8_0_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
// Float weights x F32 activations (matmul_float_neon.cpp): GEMV (any R; <= 8 rows share one
// weight tile) and GEMM for prefill (any R; registered for R > 8): cache-blocked, weights
// converted to F32 once per block of activation rows; each row's result equals the gemv's bit
// for bit.
void gemv_f32_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_f16_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemv_bf16_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemm_f32_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemm_f16_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
void gemm_bf16_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1);
// ---- NEON + I8MM (SMMLA), matmul_x8_i8mm.cpp: GEMM (prefill) for the repacked layouts; any R
// works. matmul.cpp puts them in the neon entry's gemm slot when cpu_features().i8mm is set and
// QGEMMA_NO_I8MM is not (see i8mm_enabled()).
void matmul_q4_0x8_q8_0_i8mm(const MatmulArgs& a, int64_t n0, int64_t n1);
void matmul_q8_0x8_q8_0_i8mm(const MatmulArgs& a, int64_t n0, int64_t n1);
#endif
// Whether the neon entries use the I8MM GEMM kernels: this build targets aarch64, the CPU has
// I8MM (cpu_features().i8mm) and the environment does not set QGEMMA_NO_I8MM (to a non-empty
// value other than 0; for A/B runs against the sdot kernels). Read once.
bool i8mm_enabled();
// True when the CPU has AVX-VNNI (cpu_features().avx_vnni, with the OS saving AVX state) and the
// environment does not set QGEMMA_NO_AVX_VNNI (to a non-empty value other than "0"): the avx2
// level then runs the repacked Q4_0x8 / Q8_0x8 and the plain K-quants through matmul_*_avxvnni.
// Always false off x86.
bool avx_vnni_enabled();

}  // namespace qgemma
