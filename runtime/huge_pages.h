// Memory for data that is streamed whole on every decoding step (repacked weights, KV caches, the
// bandwidth probes): with 4 KiB pages each 4 KiB read costs a TLB miss (a two-level page walk in a
// virtual machine) and stops the hardware prefetcher at the page boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

namespace qgemma {

constexpr size_t kHugePage = size_t{2} << 20;

struct FreeDelete {
  void operator()(void* p) const noexcept { std::free(p); }
};
using HugeBuffer = std::unique_ptr<uint8_t[], FreeDelete>;

// `bytes` of uninitialized memory (pages are committed as they are written). From 2 MiB up: 2 MiB
// aligned, the size rounded up to 2 MiB, and advised for transparent huge pages (a hint, ignored
// where the kernel has them off; QGEMMA_NO_HUGEPAGES=1 skips it). Below: 64-byte aligned. nullptr
// when out of memory.
HugeBuffer alloc_huge(size_t bytes);

}  // namespace qgemma
