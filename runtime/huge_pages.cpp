#include "runtime/huge_pages.h"

#include <sys/mman.h>

namespace qgemma {

HugeBuffer alloc_huge(size_t bytes) {
  if (bytes < kHugePage) {
    return HugeBuffer(
        static_cast<uint8_t*>(std::aligned_alloc(64, bytes > 64 ? (bytes + 63) / 64 * 64 : 64)));
  }
  const size_t n = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  HugeBuffer buf(static_cast<uint8_t*>(std::aligned_alloc(kHugePage, n)));
#if defined(MADV_HUGEPAGE)
  if (buf && !std::getenv("QGEMMA_NO_HUGEPAGES")) madvise(buf.get(), n, MADV_HUGEPAGE);
#endif
  return buf;
}

}  // namespace qgemma
