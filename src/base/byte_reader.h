// Reads big-endian values from a byte span with hard bounds: no read ever goes past the
// end. The fast `get_*` calls return false at the end of input; `truncated()` then builds
// the error. The `read_*` calls return a Status directly for code off the hot path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/byte_order.h"
#include "base/status.h"

namespace ferry {

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }
  bool at_end() const { return pos_ == bytes_.size(); }

  template <typename T>
    requires std::is_integral_v<T>
  bool get(T& out) {
    if (remaining() < sizeof(T)) [[unlikely]] return false;
    out = load_be<T>(bytes_.data() + pos_);
    pos_ += sizeof(T);
    return true;
  }
  bool get_u8(uint8_t& out) { return get(out); }
  bool get_be16(uint16_t& out) { return get(out); }
  bool get_be32(uint32_t& out) { return get(out); }
  bool get_be64(uint64_t& out) { return get(out); }

  // Copies `out.size()` bytes.
  bool get_bytes(std::span<uint8_t> out);
  // Returns a view of the next `n` bytes and consumes them.
  bool take(size_t n, std::span<const uint8_t>& out);
  bool skip(size_t n);

  // Looks ahead without consuming; false if fewer than `ahead + 1` bytes remain.
  bool peek_u8(size_t ahead, uint8_t& out) const {
    if (remaining() <= ahead) return false;
    out = bytes_[pos_ + ahead];
    return true;
  }
  std::span<const uint8_t> peek(size_t ahead, size_t n) const {
    if (remaining() < ahead || remaining() - ahead < n) return {};
    return bytes_.subspan(pos_ + ahead, n);
  }

  // The error for a read of `needed` bytes that did not fit.
  Status truncated(size_t needed) const;

  template <typename T>
    requires std::is_integral_v<T>
  Status read(T& out) {
    return get(out) ? Status() : truncated(sizeof(T));
  }
  Status read_bytes(std::span<uint8_t> out) {
    return get_bytes(out) ? Status() : truncated(out.size());
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
};

}  // namespace ferry
