// Fast test for an all-zero 4 KiB page (zero pages travel as 9-byte ZERO records).
#pragma once

#include <cstdint>

namespace ferry::memory {

// True when the 4096 bytes at `page` are all zero. Reads 64 bytes per step with an
// early exit, which compilers turn into SIMD loads; `page` need not be aligned.
bool is_zero_page(const uint8_t* page);

}  // namespace ferry::memory
