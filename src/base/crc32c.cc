#include "base/crc32c.h"

#include <isa-l/crc.h>

#include <climits>

namespace ferry {

uint32_t crc32c(std::span<const uint8_t> data, uint32_t crc) {
  // ISA-L's crc32_iscsi works on the raw register (no final inversion) and takes an int
  // length, so invert around it and feed it at most INT_MAX bytes at a time.
  uint32_t reg = ~crc;
  const uint8_t* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    int chunk = left > INT_MAX ? INT_MAX : static_cast<int>(left);
    reg = crc32_iscsi(const_cast<unsigned char*>(p), chunk, reg);
    p += chunk;
    left -= static_cast<size_t>(chunk);
  }
  return ~reg;
}

}  // namespace ferry
