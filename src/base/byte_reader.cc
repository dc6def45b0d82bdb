#include "base/byte_reader.h"

#include <cstring>

namespace ferry {

bool ByteReader::get_bytes(std::span<uint8_t> out) {
  if (remaining() < out.size()) return false;
  if (!out.empty()) std::memcpy(out.data(), bytes_.data() + pos_, out.size());
  pos_ += out.size();
  return true;
}

bool ByteReader::take(size_t n, std::span<const uint8_t>& out) {
  if (remaining() < n) return false;
  out = bytes_.subspan(pos_, n);
  pos_ += n;
  return true;
}

bool ByteReader::skip(size_t n) {
  if (remaining() < n) return false;
  pos_ += n;
  return true;
}

Status ByteReader::truncated(size_t needed) const {
  return Error(ErrorCode::kOutOfRange,
               "input ends early at offset {}: needed {} byte{}, {} left", pos_, needed,
               needed == 1 ? "" : "s", remaining());
}

}  // namespace ferry
