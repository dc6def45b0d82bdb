#include "base/byte_reader.h"

#include <limits>

namespace ferry {

Status truncated_input(size_t offset, size_t remaining, size_t needed) {
  return Error(ErrorCode::kOutOfRange,
               "input ends early at offset {}: needed {} byte{}, {} left", offset, needed,
               needed == 1 ? "" : "s", remaining);
}

std::span<const uint8_t> ByteReader::pull(ByteSource& source, std::span<const uint8_t> now,
                                          size_t pos, size_t n) {
  if (n > std::numeric_limits<size_t>::max() - pos) return now;
  return source.grow_to(pos + n);
}

}  // namespace ferry
