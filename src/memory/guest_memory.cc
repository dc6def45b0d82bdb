#include "memory/guest_memory.h"

#include <cstring>

namespace ferry::memory {
namespace {

inline uint8_t load8(const uint8_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void store8(uint8_t* p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline uint64_t load64(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint64_t*>(p), __ATOMIC_RELAXED);
}
inline void store64(uint8_t* p, uint64_t v) {
  __atomic_store_n(reinterpret_cast<uint64_t*>(p), v, __ATOMIC_RELAXED);
}
inline bool aligned8(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 7) == 0; }

}  // namespace

void guest_read(uint8_t* dst, const uint8_t* src, size_t n) {
  while (n > 0 && !aligned8(src)) {
    *dst++ = load8(src++);
    --n;
  }
  for (; n >= 8; n -= 8, src += 8, dst += 8) {
    uint64_t v = load64(src);
    std::memcpy(dst, &v, 8);
  }
  while (n-- > 0) *dst++ = load8(src++);
}

void guest_write(uint8_t* dst, const uint8_t* src, size_t n) {
  while (n > 0 && !aligned8(dst)) {
    store8(dst++, *src++);
    --n;
  }
  for (; n >= 8; n -= 8, src += 8, dst += 8) {
    uint64_t v;
    std::memcpy(&v, src, 8);
    store64(dst, v);
  }
  while (n-- > 0) store8(dst++, *src++);
}

void guest_fill(uint8_t* dst, uint8_t value, size_t n) {
  while (n > 0 && !aligned8(dst)) {
    store8(dst++, value);
    --n;
  }
  const uint64_t word = 0x0101010101010101ull * value;
  for (; n >= 8; n -= 8, dst += 8) store64(dst, word);
  while (n-- > 0) store8(dst++, value);
}

bool guest_copy_page_test_zero(uint8_t* dst, const uint8_t* page) {
  uint64_t any = 0;
  for (size_t i = 0; i < kPageSize; i += 8) {
    uint64_t v = load64(page + i);
    any |= v;
    std::memcpy(dst + i, &v, 8);
  }
  return any == 0;
}

}  // namespace ferry::memory
