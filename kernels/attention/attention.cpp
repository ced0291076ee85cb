// Dispatch of the flash-attention variants on the instruction set (kernels/cpu.h).
#include "kernels/attention/attention.h"

namespace qgemma {

void flash_attn_isa(Isa isa, const FlashAttnArgs& a, int q0, int q1, int h0, int h1) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::avx512:
      return flash_attn_avx512(a, q0, q1, h0, h1);
    case Isa::avx2:
      return flash_attn_avx2(a, q0, q1, h0, h1);
#endif
#if defined(__aarch64__)
    case Isa::neon:
      return flash_attn_neon(a, q0, q1, h0, h1);
#endif
    default:
      return flash_attn_ref(a, q0, q1, h0, h1);
  }
}

void flash_attn_partial_isa(Isa isa, const FlashAttnArgs& a, int q0, int q1, int h0, int h1,
                            int64_t kv0, int64_t kv1, float* partial) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::avx512:
      return flash_attn_partial_avx512(a, q0, q1, h0, h1, kv0, kv1, partial);
    case Isa::avx2:
      return flash_attn_partial_avx2(a, q0, q1, h0, h1, kv0, kv1, partial);
#endif
#if defined(__aarch64__)
    case Isa::neon:
      return flash_attn_partial_neon(a, q0, q1, h0, h1, kv0, kv1, partial);
#endif
    default:
      return flash_attn_partial_ref(a, q0, q1, h0, h1, kv0, kv1, partial);
  }
}

void flash_attn(const FlashAttnArgs& a, int q0, int q1, int h0, int h1) {
  flash_attn_isa(active_isa(), a, q0, q1, h0, h1);
}

void flash_attn_partial(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                        int64_t kv1, float* partial) {
  flash_attn_partial_isa(active_isa(), a, q0, q1, h0, h1, kv0, kv1, partial);
}

}  // namespace qgemma
