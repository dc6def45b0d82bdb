// Loads and stores of integers on unaligned bytes: big-endian (the migration wire) and
// little-endian (PCI, NVMe and the guest's view of device registers and memory).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <cstddef>
#include <span>
#include <type_traits>

namespace ferry {

template <typename U>
inline U byte_swap(U v) {
  if constexpr (sizeof(U) == 2) return __builtin_bswap16(v);
  else if constexpr (sizeof(U) == 4) return __builtin_bswap32(v);
  else if constexpr (sizeof(U) == 8) return __builtin_bswap64(v);
  else return v;
}

template <typename T>
  requires std::is_integral_v<T>
inline T load_be(const uint8_t* p) {
  std::make_unsigned_t<T> v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::little && sizeof(T) > 1) {
    v = byte_swap(v);
  }
  return static_cast<T>(v);
}

template <typename T>
  requires std::is_integral_v<T>
inline void store_be(uint8_t* p, T value) {
  auto v = static_cast<std::make_unsigned_t<T>>(value);
  if constexpr (std::endian::native == std::endian::little && sizeof(T) > 1) {
    v = byte_swap(v);
  }
  std::memcpy(p, &v, sizeof v);
}

template <typename T>
  requires std::is_integral_v<T>
inline T load_le(const uint8_t* p) {
  std::make_unsigned_t<T> v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
    v = byte_swap(v);
  }
  return static_cast<T>(v);
}

template <typename T>
  requires std::is_integral_v<T>
inline void store_le(uint8_t* p, T value) {
  auto v = static_cast<std::make_unsigned_t<T>>(value);
  if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
    v = byte_swap(v);
  }
  std::memcpy(p, &v, sizeof v);
}

// A little-endian field `size` bytes wide (1..8) at in[at] / out[at]: register accesses
// and data-structure fields whose width is a run-time value.
inline uint64_t load_le(std::span<const uint8_t> in, size_t at, unsigned size) {
  uint64_t value = 0;
  for (unsigned i = 0; i < size; ++i) value |= uint64_t{in[at + i]} << (8 * i);
  return value;
}

inline void store_le(std::span<uint8_t> out, size_t at, uint64_t value, unsigned size) {
  for (unsigned i = 0; i < size; ++i) out[at + i] = static_cast<uint8_t>(value >> (8 * i));
}

}  // namespace ferry
