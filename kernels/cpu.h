// CPU feature detection and the instruction-set choice every kernel family dispatches on.
#pragma once

#include <string_view>

namespace qgemma {

struct CpuFeatures {
  // x86
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avx_vnni = false;
  bool os_avx = false, os_avx512 = false;  // XSAVE state enabled by the OS (XGETBV)
  // Arm
  bool neon = false, dotprod = false, i8mm = false, fp16 = false;
};

// Instruction-set levels kernels are written for. Order matters within one architecture.
enum class Isa { ref = 0, avx2 = 1, avx512 = 2, neon = 3 };

const CpuFeatures& cpu_features();  // detected once
bool isa_supported(Isa isa);        // this CPU + this build can run it
Isa best_isa();                     // the best supported level
// The level kernels use: QGEMMA_FORCE_ISA=ref|avx2|avx512|neon if set (an unsupported request
// is an error printed once, falling back to best_isa()), else best_isa(). Read once.
Isa active_isa();
void set_active_isa(Isa isa);  // for tests and benchmarks; must be supported
std::string_view isa_name(Isa isa);
bool parse_isa(std::string_view s, Isa* out);

}  // namespace qgemma
