// CPU feature detection (kernels/cpu): cross-checked against the kernel's view in /proc/cpuinfo,
// plus the QGEMMA_FORCE_ISA override (run in forked children, since it is read once).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "kernels/cpu.h"

namespace qgemma {
namespace {

// The first "flags" (x86) or "Features" (Arm) line of /proc/cpuinfo, as a set of words.
std::set<std::string> proc_cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0 || line.rfind("Features", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      std::set<std::string> out;
      for (std::string w; words >> w;) out.insert(w);
      return out;
    }
  }
  return {};
}

// These run first, before anything in this process has read QGEMMA_FORCE_ISA: each forks a
// child that sets the variable and makes the first active_isa() call.
void expect_forced(const char* value, Isa want) {
  setenv("QGEMMA_FORCE_ISA", value, 1);
  std::exit(active_isa() == want ? 0 : 1);
}

TEST(ForceIsaDeathTest, RefIsHonoured) {
  EXPECT_EXIT(expect_forced("ref", Isa::ref), testing::ExitedWithCode(0), "");
  EXPECT_EXIT(expect_forced("REF", Isa::ref), testing::ExitedWithCode(0), "");
}

TEST(ForceIsaDeathTest, BestIsHonoured) {
  const std::string best(isa_name(best_isa()));
  EXPECT_EXIT(expect_forced(best.c_str(), best_isa()), testing::ExitedWithCode(0), "");
}

TEST(ForceIsaDeathTest, UnknownNameFallsBackWithMessage) {
  EXPECT_EXIT(expect_forced("sse9", best_isa()), testing::ExitedWithCode(0),
              "QGEMMA_FORCE_ISA=sse9 is not one of");
}

TEST(ForceIsaDeathTest, UnsupportedIsaFallsBackWithMessage) {
#if defined(__x86_64__)
  const char* foreign = "neon";
#else
  const char* foreign = "avx512";
#endif
  EXPECT_EXIT(expect_forced(foreign, best_isa()), testing::ExitedWithCode(0),
              "is not supported on this CPU");
}

TEST(ForceIsaDeathTest, EmptyMeansBest) {
  EXPECT_EXIT(expect_forced("", best_isa()), testing::ExitedWithCode(0), "");
}

TEST(Cpu, ParseIsa) {
  Isa isa = Isa::ref;
  EXPECT_TRUE(parse_isa("avx2", &isa));
  EXPECT_EQ(isa, Isa::avx2);
  EXPECT_TRUE(parse_isa("AVX512", &isa));
  EXPECT_EQ(isa, Isa::avx512);
  EXPECT_TRUE(parse_isa("neon", &isa));
  EXPECT_EQ(isa, Isa::neon);
  EXPECT_TRUE(parse_isa("ref", &isa));
  EXPECT_EQ(isa, Isa::ref);
  for (const char* bad : {"", "avx-512", "sse2", "avx5122", " ref", "native"}) {
    isa = Isa::avx2;
    EXPECT_FALSE(parse_isa(bad, &isa)) << bad;
    EXPECT_EQ(isa, Isa::avx2) << "output untouched on failure";
  }
  for (Isa i : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) {
    Isa back;
    ASSERT_TRUE(parse_isa(isa_name(i), &back));
    EXPECT_EQ(back, i);
  }
}

#if defined(__x86_64__)
TEST(Cpu, X86FeaturesMatchProcCpuinfo) {
  const std::set<std::string> flags = proc_cpu_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags";
  auto has = [&](const char* f) { return flags.count(f) > 0; };
  const CpuFeatures& f = cpu_features();
  // Linux clears a flag when the OS does not enable its XSAVE state, so the kernel's list
  // corresponds to "CPU has it and the OS saves its registers".
  EXPECT_EQ(f.avx2 && f.os_avx, has("avx2"));
  EXPECT_EQ(f.fma, has("fma"));
  EXPECT_EQ(f.f16c, has("f16c"));
  EXPECT_EQ(f.sse42, has("sse4_2"));
  EXPECT_EQ(f.avx512f && f.os_avx512, has("avx512f"));
  EXPECT_EQ(f.avx512bw && f.os_avx512, has("avx512bw"));
  EXPECT_EQ(f.avx512vl && f.os_avx512, has("avx512vl"));
  EXPECT_EQ(f.avx512dq && f.os_avx512, has("avx512dq"));
  EXPECT_EQ(f.avx512vnni && f.os_avx512, has("avx512_vnni"));
  EXPECT_EQ(f.avx512bf16 && f.os_avx512, has("avx512_bf16"));
  EXPECT_EQ(f.avx_vnni && f.os_avx, has("avx_vnni"));
  EXPECT_FALSE(f.neon || f.dotprod || f.i8mm);

  const bool avx2 = has("avx2") && has("fma") && has("f16c");
  const bool avx512 = avx2 && has("avx512f") && has("avx512bw") && has("avx512vl") &&
                      has("avx512dq") && has("avx512_vnni");
  EXPECT_EQ(isa_supported(Isa::avx2), avx2);
  EXPECT_EQ(isa_supported(Isa::avx512), avx512);
  EXPECT_FALSE(isa_supported(Isa::neon));
  EXPECT_EQ(best_isa(), avx512 ? Isa::avx512 : avx2 ? Isa::avx2 : Isa::ref);
}
#endif

#if defined(__aarch64__)
TEST(Cpu, ArmFeatures) {
  const CpuFeatures& f = cpu_features();
  EXPECT_TRUE(f.neon) << "Advanced SIMD is part of every AArch64 Linux system";
  EXPECT_FALSE(f.avx2 || f.avx512f);
  EXPECT_EQ(isa_supported(Isa::neon), f.neon && f.dotprod);
  EXPECT_FALSE(isa_supported(Isa::avx2));
  EXPECT_EQ(best_isa(), f.dotprod ? Isa::neon : Isa::ref);
  // Under qemu-user /proc/cpuinfo describes the host, so it is only checked on real Arm.
  const std::set<std::string> flags = proc_cpu_flags();
  if (flags.count("asimd")) {
    EXPECT_EQ(f.dotprod, flags.count("asimddp") > 0);
    EXPECT_EQ(f.i8mm, flags.count("i8mm") > 0);
  }
}
#endif

TEST(Cpu, RefAlwaysSupportedAndSettable) {
  EXPECT_TRUE(isa_supported(Isa::ref));
  EXPECT_TRUE(isa_supported(best_isa()));
  const Isa before = active_isa();
  EXPECT_TRUE(isa_supported(before));
  set_active_isa(Isa::ref);
  EXPECT_EQ(active_isa(), Isa::ref);
  set_active_isa(best_isa());
  EXPECT_EQ(active_isa(), best_isa());
  set_active_isa(before);
}

TEST(CpuDeathTest, SettingAnUnsupportedIsaAborts) {
#if defined(__x86_64__)
  EXPECT_DEATH(set_active_isa(Isa::neon), "not supported");
#else
  EXPECT_DEATH(set_active_isa(Isa::avx2), "not supported");
#endif
}

}  // namespace
}  // namespace qgemma
