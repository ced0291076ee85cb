// CPU feature detection (CPUID + XGETBV on x86, getauxval on Linux/aarch64) and the choice of
// the instruction-set level that every kernel family dispatches on.
#include "kernels/cpu.h"

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace qgemma {
namespace {

#if defined(__x86_64__) || defined(__i386__)

struct Regs {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

Regs cpuid(unsigned leaf, unsigned subleaf) {
  Regs r;
  __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
  return r;
}

// XCR0: which register states the OS saves on context switch. Only valid when OSXSAVE is set.
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

bool bit(unsigned v, int b) { return (v >> b) & 1u; }

CpuFeatures detect() {
  CpuFeatures f;
  const unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 1) return f;
  const Regs l1 = cpuid(1, 0);
  f.sse42 = bit(l1.ecx, 20);
  const bool osxsave = bit(l1.ecx, 27);
  const bool avx = bit(l1.ecx, 28);
  f.fma = bit(l1.ecx, 12);
  f.f16c = bit(l1.ecx, 29);
  if (osxsave) {
    const unsigned long long xcr0 = xgetbv0();
    f.os_avx = (xcr0 & 0x6) == 0x6;  // XMM + YMM state
    // + opmask (bit 5), upper halves of ZMM0-15 (bit 6), ZMM16-31 (bit 7)
    f.os_avx512 = (xcr0 & 0xE6) == 0xE6;
  }
  f.avx = avx && f.os_avx;
  if (max_leaf >= 7) {
    const Regs l7 = cpuid(7, 0);
    f.avx2 = bit(l7.ebx, 5);
    f.avx512f = bit(l7.ebx, 16);
    f.avx512dq = bit(l7.ebx, 17);
    f.avx512bw = bit(l7.ebx, 30);
    f.avx512vl = bit(l7.ebx, 31);
    f.avx512vnni = bit(l7.ecx, 11);
    if (l7.eax >= 1) {
      const Regs l71 = cpuid(7, 1);
      f.avx_vnni = bit(l71.eax, 4);
      f.avx512bf16 = bit(l71.eax, 5);
    }
  }
  return f;
}

#elif defined(__aarch64__)

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__linux__)
  // Bit numbers of the Linux arm64 ABI (asm/hwcap.h).
  constexpr unsigned long kHwcapFphp = 1ul << 9, kHwcapAsimdhp = 1ul << 10;
  constexpr unsigned long kHwcapAsimd = 1ul << 1, kHwcapAsimddp = 1ul << 20;
  constexpr unsigned long kHwcap2I8mm = 1ul << 13;
  const unsigned long hw = getauxval(AT_HWCAP);
  const unsigned long hw2 = getauxval(AT_HWCAP2);
  f.neon = (hw & kHwcapAsimd) != 0;
  f.dotprod = (hw & kHwcapAsimddp) != 0;
  f.fp16 = (hw & kHwcapFphp) != 0 && (hw & kHwcapAsimdhp) != 0;
  f.i8mm = (hw2 & kHwcap2I8mm) != 0;
#else
  f.neon = true;  // Advanced SIMD is mandatory in AArch64
#endif
  return f;
}

#else

CpuFeatures detect() { return {}; }

#endif

std::atomic<int> g_active{-1};

Isa initial_isa() {
  const char* env = std::getenv("QGEMMA_FORCE_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  Isa want;
  if (!parse_isa(env, &want)) {
    std::fprintf(stderr,
                 "qgemma: QGEMMA_FORCE_ISA=%s is not one of ref, avx2, avx512, neon; using %s\n",
                 env, std::string(isa_name(best_isa())).c_str());
    return best_isa();
  }
  if (!isa_supported(want)) {
    std::fprintf(stderr, "qgemma: QGEMMA_FORCE_ISA=%s is not supported on this CPU; using %s\n",
                 env, std::string(isa_name(best_isa())).c_str());
    return best_isa();
  }
  return want;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::ref:
      return true;
#if defined(__x86_64__)
    case Isa::avx2:
      return f.avx2 && f.fma && f.f16c && f.os_avx;
    case Isa::avx512:
      return f.avx2 && f.fma && f.f16c && f.os_avx && f.avx512f && f.avx512bw && f.avx512vl &&
             f.avx512dq && f.avx512vnni && f.os_avx512;
#endif
#if defined(__aarch64__)
    case Isa::neon:
      return f.neon && f.dotprod;
#endif
    default:
      return false;
  }
}

Isa best_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2, Isa::neon}) {
    if (isa_supported(isa)) return isa;
  }
  return Isa::ref;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_acquire);
  if (v < 0) {
    static const Isa initial = initial_isa();  // thread-safe, evaluated (and reported) once
    int expected = -1;
    g_active.compare_exchange_strong(expected, static_cast<int>(initial),
                                     std::memory_order_acq_rel);
    v = g_active.load(std::memory_order_acquire);
  }
  return static_cast<Isa>(v);
}

void set_active_isa(Isa isa) {
  if (!isa_supported(isa)) {
    std::fprintf(stderr, "qgemma: set_active_isa(%s): not supported on this CPU\n",
                 std::string(isa_name(isa)).c_str());
    std::abort();
  }
  g_active.store(static_cast<int>(isa), std::memory_order_release);
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::ref:
      return "ref";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::neon:
      return "neon";
  }
  return "unknown";
}

bool parse_isa(std::string_view s, Isa* out) {
  std::string lower;
  for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) {
    if (lower == isa_name(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

}  // namespace qgemma
