// alloc_huge: the alignment and size contract the repacked-weight arena, the KV cache and the
// bandwidth probes rely on (whether the kernel grants huge pages is its decision, not tested).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "runtime/huge_pages.h"

namespace qgemma {
namespace {

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

TEST(HugePages, LargeBuffersAre2MiBAlignedAndWritableToTheLastByte) {
  for (size_t n : {kHugePage, kHugePage + 1, 3 * kHugePage - 64, size_t{5} << 20}) {
    HugeBuffer b = alloc_huge(n);
    ASSERT_TRUE(b) << n;
    EXPECT_TRUE(aligned(b.get(), kHugePage)) << n;
    std::memset(b.get(), 0x5a, n);
    EXPECT_EQ(b[n - 1], 0x5a) << n;
  }
}

TEST(HugePages, SmallBuffersAre64ByteAligned) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{1000}, kHugePage - 1}) {
    HugeBuffer b = alloc_huge(n);
    ASSERT_TRUE(b) << n;
    EXPECT_TRUE(aligned(b.get(), 64)) << n;
    if (n) {
      std::memset(b.get(), 0xa5, n);
      EXPECT_EQ(b[n - 1], 0xa5) << n;
    }
  }
}

}  // namespace
}  // namespace qgemma
