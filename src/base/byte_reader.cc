#include "base/byte_reader.h"

namespace ferry {

Status truncated_input(size_t offset, size_t remaining, size_t needed) {
  return Error(ErrorCode::kOutOfRange,
               "input ends early at offset {}: needed {} byte{}, {} left", offset, needed,
               needed == 1 ? "" : "s", remaining);
}

}  // namespace ferry
