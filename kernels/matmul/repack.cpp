// Load-time repacking of Q4_0 / Q8_0 / Q4_K / Q5_K / Q6_K weights into 8-row interleaved blocks
// (Q4_0x8, Q8_0x8, Q4_Kx8, Q5_Kx8, Q6_Kx8), and the inverse. Layouts: see block_*x8 in matmul.h.
#include "kernels/matmul/kquant.h"
#include "kernels/matmul/matmul.h"

namespace qgemma {
namespace {

const uint8_t* bytes(const void* p) { return static_cast<const uint8_t*>(p); }
uint8_t* bytes(void* p) { return static_cast<uint8_t*>(p); }

// Plain block type B (with d and qs[kQs]) <-> interleaved block type X; `to_x` picks direction.
template <typename B, typename X, int kQs>
void convert_groups(const void* src, void* dst, int64_t K, int64_t n0, int64_t n1, bool to_x) {
  const int64_t nb = K / QK8_0;
  const size_t row_bytes = nb * sizeof(B);
  for (int64_t g = n0 / 8; g < n1 / 8; ++g) {
    const size_t base = static_cast<size_t>(g) * 8 * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      for (int j = 0; j < 8; ++j) {
        const size_t plain_off = base + j * row_bytes + b * sizeof(B);
        const size_t x_off = base + b * sizeof(X);
        if (to_x) {
          const B& in = *reinterpret_cast<const B*>(bytes(src) + plain_off);
          X& out = *reinterpret_cast<X*>(bytes(dst) + x_off);
          out.d[j] = in.d;
          for (int i = 0; i < kQs; ++i) out.qs[x8_qs_offset(j, i)] = in.qs[i];
        } else {
          const X& in = *reinterpret_cast<const X*>(bytes(src) + x_off);
          B& out = *reinterpret_cast<B*>(bytes(dst) + plain_off);
          out.d = in.d[j];
          for (int i = 0; i < kQs; ++i) out.qs[i] = in.qs[x8_qs_offset(j, i)];
        }
      }
    }
  }
}

// K-quant groups: B = plain block, X = x8 block; pack(rows, X*), unpack(X, j, B*).
template <typename B, typename X, void (*pack)(const B* const*, X*),
          void (*unpack)(const X&, int, B*)>
void convert_kquant_groups(const void* src, void* dst, int64_t K, int64_t n0, int64_t n1,
                           bool to_x) {
  const int64_t nb = K / QK_K;
  const size_t row_bytes = nb * sizeof(B);
  for (int64_t g = n0 / 8; g < n1 / 8; ++g) {
    const size_t base = static_cast<size_t>(g) * 8 * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const size_t x_off = base + b * sizeof(X);
      if (to_x) {
        const B* rows[8];
        for (int j = 0; j < 8; ++j) {
          rows[j] = reinterpret_cast<const B*>(bytes(src) + base + j * row_bytes) + b;
        }
        pack(rows, reinterpret_cast<X*>(bytes(dst) + x_off));
      } else {
        const X& in = *reinterpret_cast<const X*>(bytes(src) + x_off);
        for (int j = 0; j < 8; ++j) {
          unpack(in, j, reinterpret_cast<B*>(bytes(dst) + base + j * row_bytes) + b);
        }
      }
    }
  }
}

void convert_q4_k(const void* src, void* dst, int64_t K, int64_t n0, int64_t n1, bool to_x) {
  convert_kquant_groups<block_q4_K, block_q4_Kx8, kquant_detail::q4_kx8_pack,
                        kquant_detail::q4_kx8_unpack>(src, dst, K, n0, n1, to_x);
}

void convert_q5_k(const void* src, void* dst, int64_t K, int64_t n0, int64_t n1, bool to_x) {
  convert_kquant_groups<block_q5_K, block_q5_Kx8, kquant_detail::q5_kx8_pack,
                        kquant_detail::q5_kx8_unpack>(src, dst, K, n0, n1, to_x);
}

void convert_q6_k(const void* src, void* dst, int64_t K, int64_t n0, int64_t n1, bool to_x) {
  convert_kquant_groups<block_q6_K, block_q6_Kx8, kquant_detail::q6_kx8_pack,
                        kquant_detail::q6_kx8_unpack>(src, dst, K, n0, n1, to_x);
}

}  // namespace

TensorType unpacked_type(TensorType t) {
  if (t == TensorType::Q4_0x8) return TensorType::Q4_0;
  if (t == TensorType::Q8_0x8) return TensorType::Q8_0;
  if (t == TensorType::Q4_Kx8) return TensorType::Q4_K;
  if (t == TensorType::Q6_Kx8) return TensorType::Q6_K;
  if (t == TensorType::Q5_Kx8) return TensorType::Q5_K;
  return t;
}

TensorType repacked_type(TensorType wtype) {
  switch (wtype) {
    case TensorType::Q4_0:
      return TensorType::Q4_0x8;
    case TensorType::Q8_0:
      return TensorType::Q8_0x8;
    case TensorType::Q4_K:
      return TensorType::Q4_Kx8;
    case TensorType::Q6_K:
      return TensorType::Q6_Kx8;
    case TensorType::Q5_K:
      return TensorType::Q5_Kx8;
    default:
      return wtype;
  }
}

bool should_repack(TensorType wtype, int64_t N, int64_t K) {
  const TensorType packed = repacked_type(wtype);
  if (packed == wtype || N % 8 != 0 || K % type_traits(wtype).block_size != 0) return false;
  // Repack only where an optimized variant of the packed layout exists for the active ISA and
  // measured faster than the plain layout's: Q4_0x8 / Q8_0x8 on avx2, avx512, neon; Q4_Kx8 /
  // Q5_Kx8 / Q6_Kx8 on avx512 (Q5_Kx8 has no avx2 or neon kernel, so the table's null entries
  // keep Q5_K plain there). The avx2 Q4_Kx8 / Q6_Kx8 kernels (matmul_kx8_avx2.cpp) win
  // single-threaded and at R >= 4, but decoding is R = 1 with every thread, and there they read
  // 59-64% of the bandwidth against 65-72% for the plain layout (2 threads, quiet run,
  // docs/benchmarks.md): K-quants stay plain on avx2.
  const Isa isa = active_isa();
  if (isa == Isa::ref) return false;
  if (isa == Isa::avx2 &&
      (wtype == TensorType::Q4_K || wtype == TensorType::Q5_K || wtype == TensorType::Q6_K)) {
    return false;
  }
  const MatmulKernels k = matmul_kernels(packed, isa);
  return k.gemv != nullptr || k.gemm != nullptr;
}

void repack_rows(TensorType wtype, const void* src, void* dst, int64_t K, int64_t n0, int64_t n1) {
  if (wtype == TensorType::Q4_0) {
    convert_groups<block_q4_0, block_q4_0x8, QK4_0 / 2>(src, dst, K, n0, n1, true);
  } else if (wtype == TensorType::Q8_0) {
    convert_groups<block_q8_0, block_q8_0x8, QK8_0>(src, dst, K, n0, n1, true);
  } else if (wtype == TensorType::Q4_K) {
    convert_q4_k(src, dst, K, n0, n1, true);
  } else if (wtype == TensorType::Q6_K) {
    convert_q6_k(src, dst, K, n0, n1, true);
  } else if (wtype == TensorType::Q5_K) {
    convert_q5_k(src, dst, K, n0, n1, true);
  }
}

void unpack_rows(TensorType repacked, const void* src, void* dst, int64_t K, int64_t n0,
                 int64_t n1) {
  if (repacked == TensorType::Q4_0x8) {
    convert_groups<block_q4_0, block_q4_0x8, QK4_0 / 2>(src, dst, K, n0, n1, false);
  } else if (repacked == TensorType::Q8_0x8) {
    convert_groups<block_q8_0, block_q8_0x8, QK8_0>(src, dst, K, n0, n1, false);
  } else if (repacked == TensorType::Q4_Kx8) {
    convert_q4_k(src, dst, K, n0, n1, false);
  } else if (repacked == TensorType::Q6_Kx8) {
    convert_q6_k(src, dst, K, n0, n1, false);
  } else if (repacked == TensorType::Q5_Kx8) {
    convert_q5_k(src, dst, K, n0, n1, false);
  }
}

}  // namespace qgemma
