// Byte values of QEMU's VMState encoding that the field kinds share (design.md §5).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::vmstate::wire {

inline constexpr uint8_t kSubsection = 0x05;   // then u8 len, name, be32 version, body
inline constexpr uint8_t kPtrNull = 0x30;      // pointer-array element is NULL
inline constexpr uint8_t kPtrValid = 0x31;     // element present (auto-allocating form)
inline constexpr uint8_t kListMore = 0x01;     // list: an element follows
inline constexpr uint8_t kListEnd = 0x00;      // list: end
inline constexpr size_t kMaxNameLength = 127;  // descriptions, subsections, section ids

}  // namespace ferry::vmstate::wire
