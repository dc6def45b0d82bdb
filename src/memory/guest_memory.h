// Accessors for guest RAM that other threads may write at the same time.
//
// Guest RAM is shared without a lock (design.md §3): a guest program or a device may
// write a page while the migration thread reads it. That race is intended — the dirty
// bitmap makes the page travel again — but in C++ it must not be undefined behaviour,
// so host code that can run concurrently with guest writes touches guest RAM through
// these helpers: word-wide relaxed atomic loads and stores (plain moves on x86-64,
// visible to ThreadSanitizer as atomics). Code that owns RAM exclusively (the loader of
// a stopped destination) may use memcpy.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::memory {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr unsigned kPageShift = 12;

// Copies n bytes of guest RAM at `src` into `dst` (private memory).
void guest_read(uint8_t* dst, const uint8_t* src, size_t n);
// Copies n bytes from private memory `src` into guest RAM at `dst`.
void guest_write(uint8_t* dst, const uint8_t* src, size_t n);
// Fills n bytes of guest RAM with `value`.
void guest_fill(uint8_t* dst, uint8_t value, size_t n);

// Copies one 4 KiB page of guest RAM (8-byte aligned) into `dst` and returns true when
// every byte copied was zero: the copy and the zero test are one pass.
bool guest_copy_page_test_zero(uint8_t* dst, const uint8_t* page);

}  // namespace ferry::memory
