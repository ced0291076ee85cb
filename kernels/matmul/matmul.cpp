// The matmul dispatch table: weight type -> activation type -> reference and per-ISA variants.
#include "kernels/matmul/matmul.h"

#include <array>
#include <cstdlib>
#include <cstring>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

struct TypeEntry {
  TensorType wtype;
  TensorType act;  // vec_dot_type
  MatmulFn ref;
  MatmulKernels avx2;
  MatmulKernels avx512;
  MatmulKernels neon;
};

#if defined(__x86_64__)
#define QG_X86(gemv, gemm) \
  MatmulKernels { gemv, gemm }
#else
#define QG_X86(gemv, gemm) \
  MatmulKernels {}
#endif
#if defined(__aarch64__)
#define QG_ARM(gemv, gemm) \
  MatmulKernels { gemv, gemm }
#else
#define QG_ARM(gemv, gemm) \
  MatmulKernels {}
#endif

// clang-format off
const std::array kTable = {
  //        weights             acts              ref
  //        avx2 {gemv, gemm}
  //        avx512 {gemv, gemm}
  //        neon {gemv, gemm}
  TypeEntry{TensorType::Q4_0,   TensorType::Q8_0, matmul_q4_0_q8_0_ref,
            QG_X86(gemv_q4_0_q8_0_avx2, nullptr),
            QG_X86(gemv_q4_0_q8_0_avx512, nullptr),
            QG_ARM(gemv_q4_0_q8_0_neon, nullptr)},
  TypeEntry{TensorType::Q8_0,   TensorType::Q8_0, matmul_q8_0_q8_0_ref,
            QG_X86(gemv_q8_0_q8_0_avx2, nullptr),
            QG_X86(gemv_q8_0_q8_0_avx512, nullptr),
            QG_ARM(gemv_q8_0_q8_0_neon, nullptr)},
  TypeEntry{TensorType::Q4_0x8, TensorType::Q8_0, matmul_q4_0x8_q8_0_ref,
            QG_X86(matmul_q4_0x8_q8_0_avx2, matmul_q4_0x8_q8_0_avx2),
            QG_X86(matmul_q4_0x8_q8_0_avx512, matmul_q4_0x8_q8_0_avx512),
            QG_ARM(matmul_q4_0x8_q8_0_neon, matmul_q4_0x8_q8_0_neon)},
  TypeEntry{TensorType::Q8_0x8, TensorType::Q8_0, matmul_q8_0x8_q8_0_ref,
            QG_X86(matmul_q8_0x8_q8_0_avx2, matmul_q8_0x8_q8_0_avx2),
            QG_X86(matmul_q8_0x8_q8_0_avx512, matmul_q8_0x8_q8_0_avx512),
            QG_ARM(matmul_q8_0x8_q8_0_neon, matmul_q8_0x8_q8_0_neon)},
  TypeEntry{TensorType::F32,    TensorType::F32,  matmul_f32_f32_ref,
            QG_X86(gemv_f32_f32_avx2, gemm_f32_f32_avx2),
            QG_X86(gemv_f32_f32_avx512, gemm_f32_f32_avx512),
            QG_ARM(gemv_f32_f32_neon, gemm_f32_f32_neon)},
  TypeEntry{TensorType::F16,    TensorType::F32,  matmul_f16_f32_ref,
            QG_X86(gemv_f16_f32_avx2, gemm_f16_f32_avx2),
            QG_X86(gemv_f16_f32_avx512, gemm_f16_f32_avx512),
            QG_ARM(gemv_f16_f32_neon, gemm_f16_f32_neon)},
  TypeEntry{TensorType::BF16,   TensorType::F32,  matmul_bf16_f32_ref,
            QG_X86(gemv_bf16_f32_avx2, gemm_bf16_f32_avx2),
            QG_X86(gemv_bf16_f32_avx512, gemm_bf16_f32_avx512),
            QG_ARM(gemv_bf16_f32_neon, gemm_bf16_f32_neon)},
  // K-quants (Q8_K activations).
  TypeEntry{TensorType::Q4_K,   TensorType::Q8_K, matmul_q4_k_q8_k_ref,
            QG_X86(matmul_q4_k_q8_k_avx2, matmul_q4_k_q8_k_avx2),
            QG_X86(matmul_q4_k_q8_k_avx512, matmul_q4_k_q8_k_avx512),
            QG_ARM(matmul_q4_k_q8_k_neon, matmul_q4_k_q8_k_neon)},
  TypeEntry{TensorType::Q6_K,   TensorType::Q8_K, matmul_q6_k_q8_k_ref,
            QG_X86(matmul_q6_k_q8_k_avx2, matmul_q6_k_q8_k_avx2),
            QG_X86(matmul_q6_k_q8_k_avx512, matmul_q6_k_q8_k_avx512),
            QG_ARM(matmul_q6_k_q8_k_neon, matmul_q6_k_q8_k_neon)},
  TypeEntry{TensorType::Q5_K,   TensorType::Q8_K, matmul_q5_k_q8_k_ref,
            QG_X86(matmul_q5_k_q8_k_avx2, matmul_q5_k_q8_k_avx2),
            QG_X86(matmul_q5_k_q8_k_avx512, matmul_q5_k_q8_k_avx512),
            QG_ARM(matmul_q5_k_q8_k_neon, matmul_q5_k_q8_k_neon)},
  // Repacked K-quants: AVX2 and AVX-512 (on Arm should_repack() keeps the plain layout).
  TypeEntry{TensorType::Q4_Kx8, TensorType::Q8_K, matmul_q4_kx8_q8_k_ref,
            QG_X86(matmul_q4_kx8_q8_k_avx2, matmul_q4_kx8_q8_k_avx2),
            QG_X86(matmul_q4_kx8_q8_k_avx512, matmul_q4_kx8_q8_k_avx512),
            QG_ARM(nullptr, nullptr)},
  TypeEntry{TensorType::Q6_Kx8, TensorType::Q8_K, matmul_q6_kx8_q8_k_ref,
            QG_X86(matmul_q6_kx8_q8_k_avx2, matmul_q6_kx8_q8_k_avx2),
            QG_X86(matmul_q6_kx8_q8_k_avx512, matmul_q6_kx8_q8_k_avx512),
            QG_ARM(nullptr, nullptr)},
  TypeEntry{TensorType::Q5_Kx8, TensorType::Q8_K, matmul_q5_kx8_q8_k_ref,
            QG_X86(nullptr, nullptr),
            QG_X86(matmul_q5_kx8_q8_k_avx512, matmul_q5_kx8_q8_k_avx512),
            QG_ARM(nullptr, nullptr)},
};
// clang-format on

#undef QG_X86
#undef QG_ARM

const TypeEntry* find(TensorType wtype) {
  for (const TypeEntry& e : kTable) {
    if (e.wtype == wtype) return &e;
  }
  return nullptr;
}

MatmulKernels kernels_at(const TypeEntry& e, Isa isa) {
  switch (isa) {
    case Isa::ref:
      return MatmulKernels{e.ref, e.ref};
    case Isa::avx2: {
      MatmulKernels k = e.avx2;
#if defined(__x86_64__)
      if (avx_vnni_enabled()) {  // vpdpbusd / vpdpwssd ymm (same results as the avx2 kernels)
        switch (e.wtype) {
          case TensorType::Q4_0x8:
            k = {matmul_q4_0x8_q8_0_avxvnni, matmul_q4_0x8_q8_0_avxvnni};
            break;
          case TensorType::Q8_0x8:
            k = {matmul_q8_0x8_q8_0_avxvnni, matmul_q8_0x8_q8_0_avxvnni};
            break;
          case TensorType::Q4_K:
            k = {matmul_q4_k_q8_k_avxvnni, matmul_q4_k_q8_k_avxvnni};
            break;
          case TensorType::Q5_K:
            k = {matmul_q5_k_q8_k_avxvnni, matmul_q5_k_q8_k_avxvnni};
            break;
          case TensorType::Q6_K:
            k = {matmul_q6_k_q8_k_avxvnni, matmul_q6_k_q8_k_avxvnni};
            break;
          default:
            break;
        }
      }
#endif
      return k;
    }
    case Isa::avx512:
      return e.avx512;
    case Isa::neon: {
      MatmulKernels k = e.neon;
#if defined(__aarch64__)
      if (i8mm_enabled()) {  // SMMLA GEMM for prefill; GEMV stays on sdot
        if (e.wtype == TensorType::Q4_0x8) k.gemm = matmul_q4_0x8_q8_0_i8mm;
        if (e.wtype == TensorType::Q8_0x8) k.gemm = matmul_q8_0x8_q8_0_i8mm;
      }
#endif
      return k;
    }
  }
  return {};
}

// The next lower level to try when a variant is missing.
Isa fallback(Isa isa) { return isa == Isa::avx512 ? Isa::avx2 : Isa::ref; }

}  // namespace

bool i8mm_enabled() {
#if defined(__aarch64__)
  static const bool on = [] {
    const char* env = std::getenv("QGEMMA_NO_I8MM");
    const bool off = env != nullptr && *env != '\0' && std::strcmp(env, "0") != 0;
    return cpu_features().i8mm && !off;
  }();
  return on;
#else
  return false;
#endif
}

bool avx_vnni_enabled() {
#if defined(__x86_64__)
  static const bool on = [] {
    const char* env = std::getenv("QGEMMA_NO_AVX_VNNI");
    const bool off = env != nullptr && *env != '\0' && std::strcmp(env, "0") != 0;
    return cpu_features().avx_vnni && cpu_features().os_avx && !off;
  }();
  return on;
#else
  return false;
#endif
}

TensorType vec_dot_type(TensorType wtype) {
  const TypeEntry* e = find(wtype);
  return e ? e->act : TensorType::F32;
}

bool matmul_supported(TensorType wtype) { return find(wtype) != nullptr; }

int64_t matmul_row_granularity(TensorType wtype) { return unpacked_type(wtype) != wtype ? 8 : 1; }

MatmulKernels matmul_kernels(TensorType wtype, Isa isa) {
  const TypeEntry* e = find(wtype);
  return e ? kernels_at(*e, isa) : MatmulKernels{};
}

MatmulFn matmul_pick(TensorType wtype, int64_t R, Isa isa) {
  const TypeEntry* e = find(wtype);
  if (e == nullptr) return nullptr;
  for (;;) {
    const MatmulKernels k = kernels_at(*e, isa);
    const MatmulFn preferred = R <= kGemvMaxRows ? k.gemv : k.gemm;
    const MatmulFn other = R <= kGemvMaxRows ? k.gemm : k.gemv;
    if (preferred != nullptr) return preferred;
    if (other != nullptr) return other;
    if (isa == Isa::ref) return e->ref;
    isa = fallback(isa);
  }
}

void matmul(TensorType wtype, const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_pick(wtype, a.R, active_isa())(a, n0, n1);
}

void matmul_ref(TensorType wtype, const MatmulArgs& a, int64_t n0, int64_t n1) {
  find(wtype)->ref(a, n0, n1);
}

}  // namespace qgemma
